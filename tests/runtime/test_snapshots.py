"""Taking snapshots: the compaction policy, the three capture strategies
(fork, thread, inline), the fork snapshotter, and what the event loop feels
while a big state is captured."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from raftkit import BuildError, NodeBuilder
from raftkit.core.types import MessageType, SnapshotMeta
from raftkit.errors import SnapshotError
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.node import Node
from raftkit.runtime.snapshot_policy import CompactionPolicy, Progress
from raftkit.runtime.snapshots import choose_capture
from raftkit.state_machines.base import SnapshotWriter
from raftkit.storage import fork_snapshotter
from raftkit.storage.auto_capture import AutoCapture
from raftkit.storage.capture import InlineCapture, ThreadCapture
from raftkit.storage.file_snapshotter import FileSnapshotter
from raftkit.storage.fork_snapshotter import CHILD_NICENESS, ForkCapture, ForkSnapshotter
from raftkit.storage.memory_snapshotter import MemorySnapshotter
from raftkit.storage.snapshotter import Snapshotter
from raftkit.testing.cluster import LocalCluster, fast_config, wait_until
from raftkit.testing.conformance.snapshotter import SnapshotterConformance
from raftkit.testing.kv import KeyValueStateMachine, set_command
from raftkit.transports.memory import MemoryNetwork, MemoryTransport

# -- the policy -------------------------------------------------------------------------------


def policy(**kw: Any) -> CompactionPolicy:
    base = {"min_entries": 100, "min_bytes": 10_000, "min_time": 60.0, "min_time_entries": 5, "keep": 10}
    return CompactionPolicy(**{**base, **kw})


def test_a_snapshot_is_due_after_enough_entries_bytes_or_time_with_new_entries() -> None:
    p = policy()
    assert p.due(Progress(applied=99, applied_bytes=0, now=1.0)) is None
    assert "100 entries" in (p.due(Progress(100, 0, 1.0)) or "")
    assert "bytes" in (p.due(Progress(3, 10_000, 1.0)) or "")
    assert p.due(Progress(4, 0, 61.0)) is None  # old enough, but too few new entries
    assert "61s" in (p.due(Progress(5, 0, 61.0)) or "")
    assert policy(min_time=None).due(Progress(5, 0, 1e9)) is None


def test_counting_restarts_at_each_snapshot_and_a_snapshot_from_the_leader_counts() -> None:
    p = policy()
    p.started(Progress(150, 5_000, 10.0))
    p.succeeded(150)
    assert p.due(Progress(249, 14_999, 69.0)) is None
    assert p.due(Progress(250, 0, 0.0)) is not None
    p.installed(400, Progress(260, 20_000, 80.0))
    assert p.last_index == 400 and p.due(Progress(450, 25_000, 100.0)) is None


def test_the_byte_trigger_grows_with_the_last_snapshot_so_a_large_state_is_not_rewritten_often() -> None:
    p = policy(size_ratio=4.0)
    p.started(Progress(10, 1_000, 1.0))
    p.succeeded(10, size=50_000)  # a large state: 4 x 50,000 bytes of log before the next one
    assert p.due(Progress(20, 1_000 + 199_999, 2.0)) is None
    assert "200000 bytes" in (p.due(Progress(20, 1_000 + 200_000, 2.0)) or "")
    assert "100 entries" in (p.due(Progress(110, 1_000, 2.0)) or "")  # the entry trigger is unchanged
    small = policy(size_ratio=4.0)
    small.started(Progress(10, 1_000, 1.0))
    small.succeeded(10, size=100)  # a small state: min_bytes still applies
    assert small.due(Progress(20, 1_000 + 9_999, 2.0)) is None
    assert small.due(Progress(20, 1_000 + 10_000, 2.0)) is not None
    alone = policy(size_ratio=0.0)
    alone.started(Progress(10, 1_000, 1.0))
    alone.succeeded(10, size=50_000)
    assert alone.due(Progress(20, 1_000 + 10_000, 2.0)) is not None


def test_the_byte_trigger_is_stretched_by_a_factor_drawn_anew_after_each_snapshot() -> None:
    exact = policy(spread=0.0)
    assert exact.stretch == 1.0 and exact.byte_threshold == 10_000
    p = policy(spread=0.5, rng=random.Random(7))
    first = p.stretch
    assert 1.0 <= first < 1.5
    assert p.due(Progress(3, int(10_000 * first) - 1, 1.0)) is None
    assert "bytes" in (p.due(Progress(3, int(10_000 * first) + 1, 1.0)) or "")
    assert "100 entries" in (p.due(Progress(100, 0, 1.0)) or "")  # PySyncObj's triggers stay exact
    assert "61s" in (p.due(Progress(5, 0, 61.0)) or "")
    p.started(Progress(50, 20_000, 2.0))
    p.succeeded(50, size=100)
    second = p.stretch
    p.installed(80, Progress(60, 30_000, 3.0))
    assert len({first, second, p.stretch}) == 3 and all(1.0 <= f < 1.5 for f in (second, p.stretch))
    # Seven nodes applying the same log would all fork at one index with an
    # exact threshold; stretched, they are spread over half the interval.
    cluster = [policy(spread=0.5, rng=random.Random(seed)) for seed in range(7)]
    thresholds = sorted(c.byte_threshold for c in cluster)
    assert thresholds[-1] - thresholds[0] > 0.2 * 10_000
    assert all(10_000 <= t < 15_000 for t in thresholds)


def test_a_node_stretches_its_byte_trigger_by_default(solo: list[Node]) -> None:
    assert NodeConfig().log_compaction_spread == 0.5
    node = start(solo, solo_builder(KeyValueStateMachine()))
    assert node.snapshots.policy.spread == 0.5
    assert node.snapshots.policy.rng is node._rng  # the node's: seeded where the node's is
    policy_of_a_node = CompactionPolicy.from_config(NodeConfig(), now=0.0, rng=random.Random(1))
    assert policy_of_a_node.spread == 0.5 and 1.0 <= policy_of_a_node.stretch < 1.5
    assert CompactionPolicy.from_config(NodeConfig(log_compaction_spread=0), now=0.0).stretch == 1.0


@pytest.mark.parametrize("bad", [-0.1, float("nan"), 11.0])
def test_a_spread_outside_0_to_10_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="log_compaction_spread must be between 0"):
        NodeConfig(log_compaction_spread=bad)


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_a_negative_size_ratio_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="log_compaction_size_ratio"):
        NodeConfig(log_compaction_size_ratio=bad)


def test_after_a_failure_the_next_attempt_waits_for_entries_and_time() -> None:
    p = policy()
    backoff = p.failed(Progress(100, 0, 10.0))
    assert backoff > 0
    assert p.due(Progress(199, 0, 1000.0)) is None  # time passed, entries did not
    assert p.due(Progress(300, 0, 10.0)) is None  # entries arrived, time did not
    assert p.due(Progress(300, 0, 10.0 + backoff)) is not None
    assert p.failed(Progress(300, 0, 20.0)) > backoff  # exponential back-off


def test_the_log_keeps_k_entries_behind_a_snapshot() -> None:
    assert policy(keep=10).compact_to(100) == 90
    assert policy(keep=500).compact_to(100) == 0


# -- choosing a capture --------------------------------------------------------------------------


class LockedState(KeyValueStateMachine):
    fork_safe = False


def test_auto_mode_chooses_per_snapshot_for_fork_safe_state_machines_and_uses_a_thread_otherwise() -> None:
    snaps = MemorySnapshotter()
    assert isinstance(choose_capture("auto", KeyValueStateMachine(), snaps), AutoCapture)
    assert isinstance(choose_capture("auto", LockedState(), snaps), ThreadCapture)
    assert isinstance(choose_capture("thread", KeyValueStateMachine(), snaps), ThreadCapture)
    assert isinstance(choose_capture("inline", LockedState(), snaps), InlineCapture)
    assert isinstance(choose_capture("auto", KeyValueStateMachine(), ForkSnapshotter()), ForkCapture)
    with pytest.raises(ValueError, match="fork_safe"):
        choose_capture("fork", LockedState(), snaps)


class _Report:
    def __init__(self) -> None:
        self.fixed = threading.Event()
        self.errors: list[BaseException | None] = []

    def view_fixed(self) -> None:
        self.fixed.set()

    def finished(self, error: BaseException | None) -> None:
        self.errors.append(error)


def _capture(auto: AutoCapture, sm: KeyValueStateMachine, snaps: MemorySnapshotter, index: int) -> str:
    """One capture by ``auto`` to its end; which kind it was."""
    report = _Report()
    job = auto.start(sm, snaps.create(SnapshotMeta(index, 1)), report)
    job.join(30)
    assert report.errors == [None] and report.fixed.is_set()
    assert decode(snaps, index) == sm.data
    return auto.name


def test_auto_capture_forks_first_then_takes_whichever_held_the_loop_less() -> None:
    """What a capture took is measured (a fake clock here): the loop's time
    in the fork, the child's ``write_snapshot``, a thread capture's hold."""
    readings: list[float] = []
    auto = AutoCapture(clock=lambda: readings.pop(0))
    sm, snaps = KeyValueStateMachine(), MemorySnapshotter(keep=10)
    sm.data = {f"k{i}": i for i in range(100)}

    readings += [0.0, 5.0]  # the fork "took" 5 s: far more than the child's real write_snapshot
    assert auto.choice() is auto.fork and _capture(auto, sm, snaps, 1) == "fork"
    assert auto.fork_stall == 5.0 and auto.holds_applies is False
    child = auto.measurements()["serialize_s"]  # status shows the child's time before the next choice
    assert child is not None and 0 <= child < 5.0
    assert auto.choice() is auto.thread  # learns the child's time once the capture is over
    assert auto.serialize_stall is not None and 0 <= auto.serialize_stall < 5.0

    readings += [10.0, 17.0]  # the thread capture's view "took" 7 s to fix: more than the fork
    sm.data["more"] = 1
    assert _capture(auto, sm, snaps, 2) == "thread"
    assert auto.holds_applies is True and auto.reads_live_state is True
    assert auto.serialize_stall == 7.0 and auto.choice() is auto.fork

    readings += [20.0, 26.0]  # a fork of 6 s; its child's time does not replace the thread's hold
    assert _capture(auto, sm, snaps, 3) == "fork"
    assert auto.measurements() == {"fork_s": 6.0, "serialize_s": 7.0}
    assert auto.choice() is auto.fork  # the hold (7 s) is still longer than a fork

    readings += [30.0, 38.0]  # a fork of 8 s: now the thread's 7 s is shorter
    assert _capture(auto, sm, snaps, 4) == "fork"
    assert auto.choice() is auto.thread and auto.serialize_stall == 7.0


class _FailsInChild(KeyValueStateMachine):
    def write_snapshot(self, out: SnapshotWriter) -> None:
        raise TypeError("cannot encode <socket>")


def test_auto_capture_learns_nothing_from_a_failed_fork_capture() -> None:
    readings = [0.0, 5.0]
    auto = AutoCapture(clock=lambda: readings.pop(0))
    snaps = MemorySnapshotter()
    report = _Report()
    job = auto.start(_FailsInChild(), snaps.create(SnapshotMeta(1, 1)), report)
    job.join(30)
    assert len(report.errors) == 1 and "cannot encode" in str(report.errors[0])
    assert auto.choice() is auto.fork and auto.serialize_stall is None  # a failed child says nothing


def test_auto_capture_takes_a_snapshot_in_a_thread_when_the_kernel_refuses_the_fork(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused() -> int:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", refused)
    readings = [0.0, 1.0, 1.5]  # the failed fork's start, then the thread capture's start and hold
    auto = AutoCapture(clock=lambda: readings.pop(0))
    sm, snaps = KeyValueStateMachine(), MemorySnapshotter()
    sm.data = {"k": 1}
    assert _capture(auto, sm, snaps, 1) == "thread"  # and the snapshot holds the state (checked there)
    assert "fork refused" in caplog.text and "Cannot allocate memory" in caplog.text
    assert auto.fork_stall is None and auto.serialize_stall == 0.5
    assert auto.choice() is auto.fork  # nothing measured a fork yet: the next one tries again


def test_auto_capture_keeps_no_hold_from_a_failed_thread_capture() -> None:
    readings = [0.0, 0.5]  # a thread capture that fails half a second in
    auto = AutoCapture(clock=lambda: readings.pop(0))
    auto.fork_stall, auto.thread_hold = 0.5, 0.001
    report = _Report()
    job = auto.start(_FailsInChild(), MemorySnapshotter().create(SnapshotMeta(1, 1)), report)
    job.join(30)
    assert auto.name == "thread" and "cannot encode" in str(report.errors[0])
    assert auto.serialize_stall == 0.001 and auto.measurements()["serialize_s"] == 0.001


def test_a_fork_capture_closes_its_first_pipe_when_the_second_cannot_be_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_pipe, made = os.pipe, []

    def second_fails() -> tuple[int, int]:
        if made:
            raise OSError(errno.EMFILE, "Too many open files")
        made.append(real_pipe())
        return made[-1]

    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    monkeypatch.setattr(os, "pipe", second_fails)
    snaps = MemorySnapshotter()
    with pytest.raises(OSError, match="Too many open files"):
        ForkCapture().start(KeyValueStateMachine(), snaps.create(SnapshotMeta(1, 1)), _Report())
    for fd in made[0]:
        with pytest.raises(OSError):
            os.fstat(fd)  # closed
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) == before


_CLOSED_STDIO = """
import os, threading
os.close(0); os.close(1)  # a daemon started with stdin and stdout closed: pipes get fds 0 and 1
from raftkit.core.types import SnapshotMeta
from raftkit.storage.fork_snapshotter import ForkCapture
from raftkit.storage.memory_snapshotter import MemorySnapshotter
from raftkit.testing.kv import KeyValueStateMachine
done, errors = threading.Event(), []
class Report:
    def view_fixed(self): pass
    def finished(self, error): errors.append(error); done.set()
sm = KeyValueStateMachine(); sm.data = {"k": "v" * 100}
snaps = MemorySnapshotter()
ForkCapture().start(sm, snaps.create(SnapshotMeta(1, 1)), Report())
assert done.wait(30)
with snaps.open(1) as source:
    stored = b"".join(source.chunks(1 << 20))
os.write(2, f"{errors} {len(stored)} {len(sm.snapshot())}".encode())
"""


def test_a_fork_capture_in_a_process_without_stdin_and_stdout_writes_the_whole_state(tmp_path: Path) -> None:
    script = tmp_path / "closed_stdio.py"
    script.write_text(_CLOSED_STDIO)
    root = str(Path(__file__).resolve().parents[2])  # this checkout's raftkit, not an installed one
    done = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60, cwd=root,
                          env={**os.environ, "PYTHONPATH": root})
    assert done.returncode == 0, done.stderr.decode()
    errors, stored, expected = done.stderr.decode().rsplit("\n", 1)[-1].split(" ")
    assert errors == "[None]" and stored == expected and int(expected) > 100


class _ReportsItsNiceness(KeyValueStateMachine):
    """Writes the nice value of the process that serializes it into its state."""

    def write_snapshot(self, out: SnapshotWriter) -> None:
        self.data["niceness"] = os.nice(0)
        super().write_snapshot(out)


def test_a_fork_capture_serializes_at_a_lower_priority_than_the_node() -> None:
    """The child that serializes a fork capture yields the CPU to the node
    processes (``CHILD_NICENESS``): at the same priority its work set a busy
    node's tail latency (docs/benchmarks.md, session 37)."""
    sm, snaps, report = _ReportsItsNiceness(), MemorySnapshotter(), _Report()
    sm.data = {"k": 1}
    ForkCapture().start(sm, snaps.create(SnapshotMeta(1, 1)), report).join(30)
    assert report.errors == [None]
    ours = os.nice(0)
    assert "niceness" not in sm.data  # the parent's state is untouched: the child wrote it
    assert decode(snaps, 1)["niceness"] == min(19, ours + CHILD_NICENESS)


def test_a_fork_childs_time_leaves_out_its_waits_for_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child's ``write_snapshot`` time stands for what a thread capture
    would hold the applies; at its lower priority the child also waits for
    a CPU while the nodes run, which is not that: it is left out (a fake
    ``run_delay`` of 100 s passing during a 0.3 s write leaves nothing)."""
    readings = iter([0.0, 100.0])  # the child's reads, before and after its write_snapshot
    monkeypatch.setattr(fork_snapshotter, "_cpu_wait", lambda: next(readings))
    report = _Report()
    job = ForkCapture().start(_Waits(), MemorySnapshotter().create(SnapshotMeta(1, 1)), report)
    job.join(30)
    assert report.errors == [None] and job.serialize_seconds == 0.0
    assert 0.0 <= fork_snapshotter._cpu_wait() < 1e9  # this process's real reading, or 0.0 without schedstat


class _Waits(KeyValueStateMachine):
    """Little to serialize, but its ``write_snapshot`` waits (I/O, a lock):
    a thread capture would hold the applies for as long."""

    def write_snapshot(self, out: SnapshotWriter) -> None:
        time.sleep(0.3)
        super().write_snapshot(out)


def test_auto_capture_counts_a_childs_waits_not_only_its_cpu() -> None:
    readings = [0.0, 0.1]  # a fork of 100 ms
    auto = AutoCapture(clock=lambda: readings.pop(0))
    sm = _Waits()
    assert _capture(auto, sm, MemorySnapshotter(), 1) == "fork"
    assert auto.choice() is auto.fork
    assert auto.serialize_stall is not None and auto.serialize_stall >= 0.3


def test_fork_snapshots_are_refused_clearly_without_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "fork")
    with pytest.raises(SnapshotError, match="POSIX only"):
        ForkSnapshotter()
    assert isinstance(choose_capture("auto", KeyValueStateMachine(), MemorySnapshotter()), ThreadCapture)
    builder = solo_builder(KeyValueStateMachine(), snapshot_mode="fork")
    with pytest.raises(BuildError, match="POSIX only"):
        builder.build()


def test_a_fork_snapshotter_needs_a_fork_safe_state_machine() -> None:
    builder = solo_builder(LockedState()).snapshotter(ForkSnapshotter())
    with pytest.raises(BuildError, match="fork_safe"):
        builder.build()


class TestForkSnapshotterOverMemory(SnapshotterConformance):
    def make_snapshotter(self, tmp_path: Path) -> Snapshotter:
        return ForkSnapshotter(MemorySnapshotter(keep=3))


class TestForkSnapshotterOverFiles(SnapshotterConformance):
    def make_snapshotter(self, tmp_path: Path) -> Snapshotter:
        return ForkSnapshotter(FileSnapshotter(tmp_path / "snaps", keep=3))

    def reopen_snapshotter(self, snapshotter: Snapshotter, tmp_path: Path) -> Snapshotter:
        snapshotter.close()
        return ForkSnapshotter(FileSnapshotter(tmp_path / "snaps", keep=3))


# -- taking snapshots on a running node -------------------------------------------------------------


def solo_builder(sm: Any, **config: Any) -> NodeBuilder:
    """A one-node cluster with short timers and ``config`` overrides."""
    return (
        NodeBuilder("solo")
        .partners([])
        .transport(MemoryTransport(MemoryNetwork(auto_deliver=True)))
        .config(fast_config(**config))
        .state_machine(sm)
    )


@pytest.fixture
def solo() -> Iterator[list[Node]]:
    """Nodes a test starts are stopped at the end, whatever happens."""
    nodes: list[Node] = []
    yield nodes
    for node in nodes:
        node.stop()


def start(nodes: list[Node], builder: NodeBuilder) -> Node:
    node = builder.build()
    nodes.append(node)
    node.start()
    wait_until(node.wait_ready, what="the single node to lead")
    return node


def decode(snaps: Snapshotter, index: int | None = None) -> dict[str, Any]:
    with snaps.open(index) as source:
        return msgpack.unpackb(b"".join(source.chunks(1000)), raw=False)


@pytest.mark.parametrize("mode", ["fork", "thread", "inline", "auto"])
def test_the_log_is_compacted_behind_each_snapshot_and_keeps_k_entries(solo: list[Node], mode: str) -> None:
    sm = KeyValueStateMachine()
    node = start(solo, solo_builder(sm, snapshot_mode=mode, log_compaction_min_entries=50,
                                   log_compaction_keep=7))
    for i in range(120):
        node.propose(set_command(f"k{i}", i))
    wait_until(lambda: node.status()["snapshot"]["taken"] >= 2, what="two snapshots")
    snap = node.snapshotter.latest()
    assert snap is not None
    if mode == "auto":  # the first forked; the second took whichever had measured less
        auto = node.snapshots.capture
        assert isinstance(auto, AutoCapture) and auto.fork_stall is not None
        assert node.status()["snapshot"]["mode"] in ("fork", "thread")
    else:
        assert node.status()["snapshot"]["mode"] == mode
    wait_until(lambda: node.status()["log_first_index"] == snap.index - 7 + 1, what="the log compacted to K")
    # Entry 1 is the leader's no-op, so k<i> is entry i + 2.
    assert decode(node.snapshotter, snap.index) == {f"k{i}": i for i in range(snap.index - 1)}
    meta = node.request_log_compaction().result(10)  # forceLogCompaction: at the applied index
    assert meta is not None and meta.index == node.status()["applied_index"]
    assert decode(node.snapshotter) == sm.data


def test_a_requested_snapshot_is_taken_once_while_its_log_is_compacted_in_steps(
    solo: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The callers of ``request_log_compaction()`` wait until the log is
    compacted, which takes several loop turns; a tick or a Ready in between
    (``maybe_take``) must not start a second capture for them."""
    from raftkit.runtime import snapshots as pipeline_module

    monkeypatch.setattr(pipeline_module, "_COMPACT_STEP", 5)  # 60 entries: a dozen turns
    node = start(solo, solo_builder(KeyValueStateMachine(), snapshot_mode="inline", log_compaction_keep=0))
    for i in range(60):
        node.propose(set_command(f"k{i}", i))
    pipeline = node.snapshots
    starts: list[str] = []
    start_capture, post = pipeline._start, pipeline._post

    def counted(reason: str) -> None:
        starts.append(reason)
        start_capture(reason)

    def post_after_a_tick(fn: Any) -> None:  # what a tick between two steps does
        post(lambda: (pipeline.maybe_take(), fn()))

    pipeline._start = counted  # type: ignore[method-assign]
    pipeline._post = post_after_a_tick  # type: ignore[method-assign]
    meta = node.request_log_compaction().result(10)
    assert meta is not None and meta.index == node.status()["applied_index"]
    wait_until(lambda: node.status()["log_first_index"] == meta.index + 1, what="the log compacted")
    assert starts == ["requested"]


class Unencodable(KeyValueStateMachine):
    def write_snapshot(self, out: SnapshotWriter) -> None:
        raise TypeError("cannot encode <socket> in attribute 'conn'")


@pytest.mark.parametrize("mode", ["fork", "thread"])
def test_a_failing_capture_reports_its_error_and_the_node_keeps_serving(solo: list[Node], mode: str) -> None:
    node = start(solo, solo_builder(Unencodable(), snapshot_mode=mode, log_compaction_min_entries=5))
    for i in range(10):
        node.propose(set_command("k", i))
    error = wait_until(lambda: node.status()["snapshot"]["error"], what="the failure to be reported")
    assert "cannot encode <socket> in attribute 'conn'" in error
    with pytest.raises((SnapshotError, TypeError), match="attribute 'conn'"):
        node.request_log_compaction().result(10)
    assert node.propose(set_command("k", 99)) == 9  # still serving
    assert node.snapshotter.latest() is None and node.status()["log_first_index"] == 1


class Gated(KeyValueStateMachine):
    """Not fork-safe; its capture waits for the test at chosen points."""

    fork_safe = False

    def __init__(self) -> None:
        super().__init__()
        self.before_view = threading.Event()
        self.after_first_write = threading.Event()
        self.in_capture = threading.Event()

    def write_snapshot(self, out: SnapshotWriter) -> None:
        self.in_capture.set()
        assert self.before_view.wait(10)
        data = self.snapshot()  # the view is fixed here...
        out.write(data[:10])  # ...and reported by the first write
        assert self.after_first_write.wait(10)
        out.write(data[10:])


class GatedForkSafe(Gated):
    fork_safe = True


@pytest.mark.parametrize("mode", ["thread", "auto"])
def test_a_thread_capture_holds_applies_until_its_view_is_fixed_then_lets_them_run(
    solo: list[Node], mode: str
) -> None:
    sm = Gated() if mode == "thread" else GatedForkSafe()
    node = start(solo, solo_builder(sm, snapshot_mode=mode, log_compaction_min_entries=10**6))
    if mode == "auto":  # as if a fork had measured slower than serializing the state here
        auto = node.snapshots.capture
        assert isinstance(auto, AutoCapture)
        auto.fork_stall, auto.thread_hold = 1.0, 0.001
    for i in range(5):
        node.propose(set_command(f"k{i}", i))
    before = node.status()["applied_index"]
    requested = node.request_log_compaction()
    assert sm.in_capture.wait(5)
    held = node.submit(set_command("late", 1))
    wait_until(lambda: node.status()["commit_index"] > before, what="the late write to commit")
    assert not held.done() and "late" not in sm.data  # committed, not applied: the capture reads the state
    sm.before_view.set()
    assert held.result(5) is None and sm.data["late"] == 1  # applies resumed while the thread streams
    assert not requested.done()
    sm.after_first_write.set()
    meta = requested.result(5)
    assert meta is not None and meta.index == before
    assert "late" not in decode(node.snapshotter)  # the snapshot shows the state at its index
    assert node.status()["snapshot"]["mode"] == "thread"


class Recorder(KeyValueStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.restores: list[int] = []

    def restore_from(self, chunks: Iterable[bytes]) -> None:
        parts = list(chunks)
        self.restores.append(len(parts))
        self.restore(b"".join(parts))


class _SlowView(KeyValueStateMachine):
    """Building its view takes a while in this process (a big state)."""

    def write_snapshot(self, out: SnapshotWriter) -> None:
        if not getattr(out, "frozen_state", False):
            time.sleep(0.3)
        out.write(self.snapshot())


def test_no_capture_starts_while_a_snapshot_from_the_leader_waits_to_be_installed() -> None:
    """A compaction asked between a snapshot's arrival and its install would
    otherwise read the state while the install replaces it (found by review:
    the snapshot labelled with the old index held the leader's newer state)."""
    with LocalCluster(3) as cluster:
        nodes = {a: cluster.add_node(a, _SlowView(), fast_config(log_compaction_min_entries=20,
                                                                    log_compaction_keep=0))
                 for a in cluster.addresses}
        leader = cluster.wait_leader()
        lagging = next(a for a in cluster.addresses if a != leader)
        node = nodes[lagging]
        for i in range(5):  # entries 2-6 (1 is the leader's no-op)
            nodes[leader].propose(set_command(f"early{i}", i))
        wait_until(lambda: node.status()["applied_index"] >= 6, what="the follower to apply")
        cluster.network.isolate(lagging)
        for i in range(100):  # entries 7-106
            nodes[leader].propose(set_command(f"late{i}", i))
        wait_until(lambda: nodes[leader].status()["log_first_index"] > 50, what="the leader to compact")
        auto = node.snapshots.capture
        assert isinstance(auto, AutoCapture)
        auto.fork_stall, auto.thread_hold = 1.0, 0.001  # as if a thread capture were cheaper here
        loop, step = node._require_loop(), node._transfer._step
        asked: list[Any] = []

        def stepped(message: Any) -> None:  # a request_log_compaction() reaching the loop right then
            if message.type is MessageType.SNAPSHOT and not asked:
                asked.append(loop.call_soon(lambda: asked.append(node.snapshots.request())))
            step(message)

        node._transfer._step = stepped  # type: ignore[method-assign]
        cluster.network.heal()
        wait_until(lambda: len(node.state_machine.data) == 105, what="the follower to catch up")
        assert len(asked) == 2 and asked[1].result(10) is not None
        for meta in node.snapshotter.list():
            held = decode(node.snapshotter, meta.index)
            assert sum(k.startswith("late") for k in held) == max(0, meta.index - 6), (meta.index, len(held))


def test_a_lagging_follower_gets_the_snapshot_streamed_in_chunks_even_after_a_failed_transfer() -> None:
    config = fast_config(log_compaction_min_entries=20, log_compaction_keep=0, snapshot_chunk_size=256)
    with LocalCluster(3) as cluster:
        for address in cluster.addresses:
            cluster.add_node(address, Recorder(), config)
        leader = cluster.wait_leader()
        lagging = next(a for a in cluster.addresses if a != leader)
        cluster.network.isolate(lagging)
        for i in range(100):
            cluster.nodes[leader].propose(set_command(f"k{i}", "v" * 20))
        wait_until(lambda: cluster.nodes[leader].status()["log_first_index"] > 50, what="compaction")
        fail_once = FailingOnce(cluster.nodes[leader].snapshotter)
        cluster.nodes[leader].snapshotter = fail_once  # type: ignore[assignment]
        cluster.network.heal()
        sm = cluster.nodes[lagging].state_machine
        assert isinstance(sm, Recorder)
        wait_until(lambda: len(sm.data) == 100, timeout=10, what="the lagging node to catch up")
        assert fail_once.failed  # the first transfer broke off; the leader sent it again
        assert sm.restores and sm.restores[-1] > 1  # streamed in chunks, not one blob
        assert cluster.nodes[lagging].status()["log_first_index"] > 50


class FailingOnce(Snapshotter):
    """Wraps a snapshotter; the first source it opens breaks mid-stream."""

    def __init__(self, inner: Snapshotter) -> None:
        self.inner = inner
        self.failed = False

    def open(self, index: int | None = None) -> Any:
        source = self.inner.open(index)
        if self.failed:
            return source
        self.failed = True
        original = source.chunks

        def chunks(size: int = 1 << 20) -> Iterator[bytes]:
            it = original(size)
            yield next(it)
            raise OSError("connection to the disk lost")

        source.chunks = chunks  # type: ignore[method-assign]
        return source

    def create(self, meta: Any) -> Any:
        return self.inner.create(meta)

    def latest(self) -> Any:
        return self.inner.latest()

    def list(self) -> Any:
        return self.inner.list()

    def prune(self, keep: int) -> None:
        self.inner.prune(keep)


# -- the event loop while a big state is captured -----------------------------------------------------


def loop_stall(node: Node, action: Any, duration: float) -> float:
    """The longest the node's loop was late running a 5 ms timer while
    ``action`` ran (and for ``duration`` seconds)."""

    running = threading.Event()

    async def probe() -> float:
        worst = 0.0
        running.set()
        end = time.monotonic() + duration
        while time.monotonic() < end:
            t = time.monotonic()
            await asyncio.sleep(0.005)
            worst = max(worst, time.monotonic() - t - 0.005)
        return worst

    loop = node._require_loop()
    fut = asyncio.run_coroutine_threadsafe(probe(), loop)
    assert running.wait(10)
    action()
    return fut.result(duration + 30)


def big_state(sm: KeyValueStateMachine, megabytes: int) -> None:
    # Many small Python objects, like a real replicated dict: what makes
    # serializing slow (one big string would just be copied).
    sm.data = {f"key-{i:08d}": [i, "v" * 80] for i in range(megabytes * 10_000)}


def test_a_fork_capture_of_a_big_state_barely_stalls_the_loop(solo: list[Node]) -> None:
    """benchmarks/snapshot_stall.py measures all modes at 20 MB: fork stalls
    for the fork() call (about 1-10 ms), a thread or inline capture for
    the whole serialization (100-250 ms: msgpack holds the GIL)."""
    mode = "fork"
    sm = KeyValueStateMachine()
    node = start(solo, solo_builder(sm, snapshot_mode=mode, log_compaction_min_entries=10**6))
    node.propose(set_command("a", 1))
    big_state(sm, 8)  # about 8 MB serialized, a stand-in for the benchmark's 20 MB
    done: list[Any] = []
    stall = loop_stall(node, lambda: done.append(node.request_log_compaction()), 0.5)
    assert done[0].result(30) is not None
    # The election timeout is 150 ms in these tests.
    assert stall < 0.1, f"{mode} capture stalled the loop for {stall * 1000:.0f} ms"


def test_the_fork_pipe_is_widened_to_one_read() -> None:
    fcntl = pytest.importorskip("fcntl")
    if not hasattr(fcntl, "F_GETPIPE_SZ"):
        pytest.skip("pipe sizes are a Linux feature")
    r, w = os.pipe()
    try:
        before = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)
        fork_snapshotter._widen(r)
        after = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
    finally:
        os.close(r)
        os.close(w)
    with open("/proc/sys/fs/pipe-max-size") as limit:
        expected = min(fork_snapshotter._PIPE_CHUNK, int(limit.read()))
    if before >= expected:
        pytest.skip(f"pipes here start at {before} bytes: nothing to widen")
    assert after >= expected


class _RefusesPipeSizes:
    F_SETPIPE_SZ = 1031

    def __init__(self) -> None:
        self.asked: list[int] = []

    def fcntl(self, fd: int, cmd: int, arg: int) -> int:
        self.asked.append(arg)
        raise PermissionError(1, "Operation not permitted")


def test_a_fork_capture_works_when_the_pipe_cannot_be_widened(
    solo: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Above /proc/sys/fs/pipe-max-size an unprivileged process gets EPERM;
    # the pipe then keeps its default size and the snapshot is still whole.
    refuses = _RefusesPipeSizes()
    monkeypatch.setattr(fork_snapshotter, "fcntl", refuses)
    sm = KeyValueStateMachine()
    node = start(solo, solo_builder(sm, snapshot_mode="fork", log_compaction_min_entries=10**6))
    node.propose(set_command("a", 1))
    value = "v" * 20_000  # about 20 MB: many pipe-fulls of the default 64 KiB
    for i in range(1_000):
        sm.data[f"big-{i}"] = value
    meta = node.request_log_compaction().result(30)
    assert meta is not None
    assert decode(node.snapshotter, meta.index) == sm.data
    assert refuses.asked == [fork_snapshotter._PIPE_CHUNK]  # the capture did ask


class Hangs(KeyValueStateMachine):
    """Its capture never ends (a lock held by another thread at fork time)."""

    def write_snapshot(self, out: SnapshotWriter) -> None:
        threading.Event().wait()


def test_a_hung_fork_child_is_killed_after_the_timeout_and_on_stop(solo: list[Node]) -> None:
    node = start(solo, solo_builder(Hangs(), snapshot_mode="fork", snapshot_timeout=0.3,
                                    log_compaction_min_entries=10**6))
    node.propose(set_command("a", 1))
    with pytest.raises(SnapshotError, match="took longer than snapshot_timeout=0.3s"):
        node.request_log_compaction().result(10)
    assert node.propose(set_command("a", 2)) == 1
    pending = node.request_log_compaction()  # hangs again: stopping the node ends it
    wait_until(lambda: node.status()["snapshot"]["in_progress"], what="the second capture")
    node.stop()
    with pytest.raises(Exception, match="stopped"):
        pending.result(5)
    # (the fixture checks that no raftkit thread, such as the child's reaper, is left)
