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
    # The restarted node's catch-up, shown as `admin status --watch` shows it.
    bar = r"t=\s*[\d.]+s  \[[#.]{20}\]\s+\d+ %  node\d: applied \d+ of \d+ committed, log to \d+"
    assert re.search(bar, text), text
    assert re.search(r">>> node\d caught up [\d.]+s after its restart: applied \d+", text), text
    assert "\nOK: " in text and "identical" in text
    assert "all node processes stopped" in text


def test_the_catch_up_line_names_the_work_done_for_the_restarted_node() -> None:
    from raftkit.cli.demo import catch_up_line

    names = {"127.0.0.1:5001": "node1", "127.0.0.1:5002": "node2", "127.0.0.1:50021": "node3"}
    sends = {"127.0.0.1:5002": {"index": 9, "to": "127.0.0.1:5002", "state": "sending", "bytes": 1 << 20,
                                "total": 4 << 20, "rate_bytes_per_s": 1 << 20, "eta_s": 3.0},
             "127.0.0.1:50021": {"index": 9, "to": "127.0.0.1:50021", "state": "sending", "bytes": 0,
                                 "total": 4 << 20, "rate_bytes_per_s": 0, "eta_s": None}}
    leader = {"commit_index": 400, "snapshot_sends": sends, "catch_up": {}}
    node = {"applied_index": 100, "log_last_index": 100, "snapshot_progress": None}
    assert catch_up_line("127.0.0.1:5002", node, leader, names) == (
        "[#####...............]  25 %  node2: applied 100 of 400 committed, log to 100; "
        "sending snapshot 9 to node2: 1.0 MiB of 4.0 MiB (25 %), 1.0 MiB/s, about 3 s left"
    )
    assert catch_up_line("127.0.0.1:5002", None, leader, names) == "node2: starting"


def test_the_demo_progress_line_is_live_on_a_terminal_and_plain_elsewhere() -> None:
    import io

    from raftkit.cli.demo import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    p = Progress(tty)
    p.show("a longer line")
    p.show("short")
    p.say(">>> event")
    assert tty.getvalue() == "\r\x1b[Ka longer line\r\x1b[Kshort\n>>> event\n"  # the old tail erased
    plain = io.StringIO()
    p = Progress(plain, every=3600.0)
    p.show(" first ")
    p.show("second")  # within the interval: not printed
    p.say(">>> event")
    assert plain.getvalue() == "first\n>>> event\n"


def test_simulated_demo_converges() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "raftkit.cli.sim_demo"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK: all 5 nodes applied the same" in out.stdout
