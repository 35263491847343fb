"""examples/custom_state_machine.py (a custom StateMachine with LMDB log,
file snapshots and a password, three nodes on 127.0.0.1 in one process)
runs to the end and prints what it promises."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

EXAMPLE = Path(__file__).parents[2] / "examples" / "custom_state_machine.py"


def test_the_example_writes_reads_back_on_every_node_and_stops() -> None:
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == ["apples: 3", "apples: 5", "refused: n must be an int, got 'many'"], done.stdout
    reads = [line for line in lines if " reads " in line]
    assert len(reads) == 3 and all(line.endswith("reads {'apples': 5}") for line in reads), done.stdout
    assert lines[-1].startswith("stopped after"), done.stdout


def test_its_state_machine_restores_what_it_snapshots() -> None:
    spec = importlib.util.spec_from_file_location("custom_state_machine", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    a = module.Tally()
    a.apply(module.Tally.add("b", 2))
    a.apply(module.Tally.add("a", 1))
    b = module.Tally()
    b.restore(a.snapshot())
    assert b.counts == a.counts and b.snapshot() == a.snapshot()
