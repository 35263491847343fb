"""The seed README's three examples (examples/*.py: only the imports
changed from pysyncobj to raftkit, addresses from the command line) run as
three real processes each on 127.0.0.1 and print what they should."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from raftkit.testing.process_cluster import free_ports

pytestmark = pytest.mark.timeout(120)

EXAMPLES = Path(__file__).parents[2] / "examples"


class Example:
    """One example script per node; lines of stdout collected as they come."""

    def __init__(self, script: str, nodes: int = 3) -> None:
        addresses = [f"127.0.0.1:{p}" for p in free_ports(nodes)]
        self.procs: list[subprocess.Popen[str]] = []
        self.lines: list[list[str]] = [[] for _ in addresses]
        self.errors: list[list[str]] = [[] for _ in addresses]  # stderr, drained so a pipe never fills
        self._arrived: queue.Queue[int] = queue.Queue()
        for i, address in enumerate(addresses):
            partners = [a for a in addresses if a != address]
            proc = subprocess.Popen(
                [sys.executable, str(EXAMPLES / script), address, *partners],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            self.procs.append(proc)
            threading.Thread(target=self._read, args=(i, proc), daemon=True).start()
            threading.Thread(target=self._drain, args=(i, proc), daemon=True).start()

    def _read(self, i: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines[i].append(line.rstrip("\n"))
            self._arrived.put(i)
        proc.stdout.close()

    def _drain(self, i: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.errors[i].append(line)
        proc.stderr.close()

    def wait_for(self, done: Callable[[list[str]], bool], timeout: float = 60) -> list[list[str]]:
        """Wait until every process's output satisfies ``done``."""
        deadline = time.monotonic() + timeout
        while not all(done(lines) for lines in self.lines):
            if any(p.poll() is not None for p in self.procs):
                break  # one exited early: report what it said
            try:
                self._arrived.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
        assert all(done(lines) for lines in self.lines), self.report()
        return [list(lines) for lines in self.lines]

    def stop(self) -> None:
        """Close every process's stdin (the examples then leave cleanly)."""
        for p in self.procs:
            if p.stdin is not None and not p.stdin.closed:
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)  # ours, by PID
                p.wait(10)
        assert [p.returncode for p in self.procs] == [0, 0, 0], self.report()

    def report(self) -> str:
        out = []
        for i, p in enumerate(self.procs):
            err = "".join(self.errors[i][-20:])
            out.append(f"node {i} (exit {p.poll()}): stdout={self.lines[i]!r} stderr tail={err!r}")
        return "\n".join(out)

    def __enter__(self) -> Example:
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
            if p.stdin is not None and not p.stdin.closed:
                p.stdin.close()


def test_my_counter_every_node_sees_every_increment() -> None:
    with Example("counter.py") as ex:
        lines = ex.wait_for(lambda out: any(line.startswith("counter:") for line in out))
        ex.stop()
    assert all(out == ["counter: 3"] for out in lines), lines


def test_counter_and_dict_batteries() -> None:
    with Example("batteries.py") as ex:
        lines = ex.wait_for(lambda out: any(line.startswith("final:") for line in out))
        ex.stop()
    finals = set()
    for out in lines:
        readme_line, final = out
        # The README's print: this node's view right after its own calls
        # (the other nodes' set/add calls interleave with them).
        c1, c2, v1, v2 = readme_line.split(" ")
        assert c1 in {f"ReplCounter({n})" for n in (42, 52, 62, 72)} and c2 == "ReplCounter(0)", readme_line
        assert v1 == "testValue1" and v2 in ("testValue2", "None"), readme_line  # the last write was async
        finals.add(final)
    # Once every node's calls are applied, all nodes agree: the last set(42)
    # was followed by one to three add(10)s.
    assert len(finals) == 1, finals
    assert finals.pop() in {f"final: {n} 0 testValue1 testValue2" for n in (52, 62, 72)}


def test_lock_manager_exactly_one_node_gets_the_lock() -> None:
    with Example("lock.py") as ex:
        lines = ex.wait_for(lambda out: any(line.startswith("holds testLockName:") for line in out))
        ex.stop()
    holders = [out for out in lines if out == ["acquired testLockName", "holds testLockName: True"]]
    others = [out for out in lines if out == ["holds testLockName: False"]]
    assert (len(holders), len(others)) == (1, 2), lines
