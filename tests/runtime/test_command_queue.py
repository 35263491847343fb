"""The command queue between client threads and the node's loop: a command
that failed with a definite error (no leader, timed out before it was
proposed) is never proposed afterwards, and submits from other threads never
disturb the loop (issue 10, item 5)."""

from __future__ import annotations

import concurrent.futures
import logging
import re
import threading
import time
from typing import Any

import pytest

from raftkit.errors import NoLeaderError, RaftkitError
from raftkit.runtime.pending import PendingCommands
from raftkit.testing.cluster import LocalCluster, fast_config, wait_until
from raftkit.testing.kv import KeyValueStateMachine, set_command


def _start_partners(cluster: LocalCluster) -> None:
    for address in cluster.addresses[1:]:
        cluster.add_node(address, KeyValueStateMachine())


def test_a_command_failed_with_no_leader_is_never_applied_after_a_concurrent_submit(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving of the bug, driven explicitly: right after k1 failed
    with NoLeaderError, while the loop is still tidying its queue, a client
    thread submits another command. k1 must stay failed for good."""
    kv = KeyValueStateMachine()
    node = cluster.add_node("node1", kv)  # its partners are not running: no leader
    k1 = node.submit(set_command("k1", "v1"), timeout=0.2)
    other: list[concurrent.futures.Future] = []
    original = PendingCommands.__contains__

    def contains(self: PendingCommands, seq: int) -> bool:
        # The first membership test on the loop once k1 has failed: in the
        # old code, the rebuild of the queue iterating over it.
        if not other and k1.done() and threading.current_thread().name == "raftkit-node1":
            submitter = threading.Thread(target=lambda: other.append(node.submit(set_command("other", "x"))))
            submitter.start()
            submitter.join(5.0)
        return original(self, seq)

    monkeypatch.setattr(PendingCommands, "__contains__", contains)
    with pytest.raises(NoLeaderError):
        k1.result(5.0)
    wait_until(lambda: other, what="the concurrent submit")
    monkeypatch.setattr(PendingCommands, "__contains__", original)

    _start_partners(cluster)
    cluster.wait_leader(10.0)
    assert other[0].result(10.0) is None  # the queue was proposed...
    wait_until(lambda: kv.data.get("other") == "x", what="node1 to apply the concurrent write")
    assert "k1" not in kv.data  # ...without the command that definitely failed


def test_concurrent_submits_never_break_the_tick_nor_revive_failed_commands(
    cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Many writer threads, no leader, short timeouts: the tick never raises,
    and once a leader exists no write that failed with NoLeaderError is applied."""
    caplog.set_level(logging.ERROR)
    kv = KeyValueStateMachine()
    # Only the count bounds the queue: the commands waiting for a leader are
    # a backlog that max_queue_delay would refuse, which is not this test's point.
    node = cluster.add_node("node1", kv, fast_config(commands_queue_size=1_000_000, max_queue_delay=None))
    failed: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 1.5

    def writer(w: int) -> None:
        futures = []
        for i in range(100_000):  # bounded; the clock ends it first
            if time.monotonic() >= stop_at:
                break
            key = f"w{w}-{i}"
            futures.append((key, node.submit(set_command(key, i), timeout=0.02)))
            if i % 50 == 0:
                time.sleep(0.001)
        for key, future in futures:
            try:
                future.result(5.0)
            except NoLeaderError:
                with lock:
                    failed.append(key)
            except RaftkitError:
                pass

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in writers:
        t.start()
    for t in writers:
        t.join(30.0)
    assert not any(t.is_alive() for t in writers)
    assert failed, "no write failed with NoLeaderError: the scenario did not run"

    _start_partners(cluster)
    cluster.wait_leader(10.0)
    node.propose(set_command("marker", 1), timeout=10.0)
    wait_until(lambda: "marker" in kv.data, what="node1 to apply the marker write")
    revived = [key for key in failed if key in kv.data]
    assert revived == []
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


# -- refusing under overload (max_queue_delay) ------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _overload_queue(limit: float) -> tuple[Any, PendingCommands, _Clock]:
    from raftkit.runtime.commands import CommandQueue
    from raftkit.runtime.config import NodeConfig
    from raftkit.runtime.metrics import NodeMetrics

    clock = _Clock()
    pending = PendingCommands(NodeMetrics(clock=clock))
    queue = CommandQueue(None, NodeConfig(max_queue_delay=limit), pending, b"me",  # type: ignore[arg-type]
                         wake_soon=lambda: None, per_entry=lambda: 1)
    return queue, pending, clock


def _finish(pending: PendingCommands, seqs: list[int]) -> None:
    for seq in seqs:
        pending.fail(seq, RaftkitError("done"))  # an outcome, as far as the drain rate goes


def test_a_backlog_is_refused_as_it_stands_before_any_outcome_comes_late() -> None:
    queue, pending, clock = _overload_queue(0.2)
    queue.measure_drain(clock.now)
    seqs = [pending.register(30.0)[0] for _ in range(1500)]
    clock.now = 0.1
    assert queue.room_error() is None  # the oldest has waited 0.1 s: a burst, not a backlog
    clock.now = 0.3
    refused = queue.room_error()  # nothing finished, nothing came late: refused all the same
    assert refused is not None and "1500 commands in flight, no outcomes lately" in str(refused)
    _finish(pending, seqs[:600])  # 900 left: under BACKLOG_MIN, never refused
    assert queue.room_error() is None


def test_a_backlog_the_node_drains_within_max_queue_delay_is_not_refused() -> None:
    queue, pending, clock = _overload_queue(0.2)
    queue.measure_drain(clock.now)
    pending.register(30.0)  # one slow command, never finished here: the oldest waits on
    seqs = [pending.register(30.0)[0] for _ in range(4999)]
    for _ in range(20):  # 1 s at 40,000 outcomes/s; 5,000 of them in flight, 0.125 s of work
        clock.now += 0.05
        _finish(pending, seqs[:2000])
        del seqs[:2000]
        seqs += [pending.register(30.0)[0] for _ in range(2000)]
        queue.measure_drain(clock.now)
    assert len(pending) == 5000 and pending.oldest_wait() > 0.2
    assert queue.drain_rate == pytest.approx(40_000, rel=0.02)  # smoothed over about 0.25 s
    assert queue.room_error() is None
    for _ in range(20):  # the node slows to 10,000/s: the same 5,000 are 0.5 s of work
        clock.now += 0.05
        _finish(pending, seqs[:500])
        del seqs[:500]
        seqs += [pending.register(30.0)[0] for _ in range(500)]
        queue.measure_drain(clock.now)
    assert queue.drain_rate == pytest.approx(10_000, rel=0.1)
    refused = queue.room_error()
    assert refused is not None
    assert re.search(r"5000 commands in flight, 0\.4\ds of work at the recent 10\d\d\d outcomes/s",
                     str(refused))


def test_max_queue_delay_none_refuses_only_past_the_queue_size() -> None:
    queue, pending, clock = _overload_queue(0.2)
    queue._config = queue._config.__class__(max_queue_delay=None)
    for _ in range(5000):
        pending.register(30.0)
    clock.now = 10.0
    assert queue.room_error() is None
