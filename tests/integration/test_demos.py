"""`make demo` and `make demo-sim` must keep working: run short versions."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


@pytest.mark.timeout(120)
def test_process_demo_fails_over_and_verifies() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "raftkit.cli.demo", "--seconds", "6", "--batch", "50"],
        capture_output=True,
        text=True,
        timeout=110,
    )
    text = out.stdout
    assert out.returncode == 0, text + out.stderr
    # Not a terminal (a log, CI): plain lines, no carriage returns, no rate
    # over a near-zero interval (it once printed 433,838,504/s).
    assert "\r" not in text and max(len(line) for line in text.splitlines()) < 200
    rates = [int(r.replace(",", "")) for r in re.findall(r"\(([\d,]+)/s\)", text)]
    assert rates and max(rates) < 1_000_000, rates
    assert ">>> SIGKILL" in text and ">>> new leader" in text
    assert "\nOK: " in text and "identical" in text
    assert "all node processes stopped" in text


def test_simulated_demo_converges() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "raftkit.cli.sim_demo"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK: all 5 nodes applied the same" in out.stdout
