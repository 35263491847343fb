"""The command queue between client threads and the node's loop: a command
that failed with a definite error (no leader, timed out before it was
proposed) is never proposed afterwards, and submits from other threads never
disturb the loop (issue 10, item 5)."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time

import pytest

from raftkit.errors import NoLeaderError, QueueFullError, RaftkitError
from raftkit.runtime.commands import OVERLOAD_HOLD, CommandQueue
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.futures import CallbackOutcome
from raftkit.runtime.metrics import NodeMetrics
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
    node = cluster.add_node("node1", kv, fast_config(commands_queue_size=1_000_000))
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


def test_an_overload_verdict_stands_for_its_hold_and_a_full_queue_is_never_held() -> None:
    """Under overload most calls are refused: the verdict (backlog, oldest
    wait, message) is reached once per ``OVERLOAD_HOLD``, not per call, and
    looked at again after it. A full queue is counted at every call."""
    now = [1000.0]
    metrics = NodeMetrics(clock=lambda: now[0])
    pending = PendingCommands(metrics)
    queue = CommandQueue(
        None, NodeConfig(max_queue_delay=0.1, commands_queue_size=3), pending, b"origin",  # type: ignore[arg-type]
        wake_soon=lambda: None, per_entry=lambda: 1,
    )
    queue.backlog_min = 2
    seqs = [pending.register(deadline=now[0] + 60, outcome=CallbackOutcome.of(lambda r, e: None))[0]
            for _ in range(3)]
    now[0] += 0.2
    metrics.last_latency = 0.2  # the latest outcome was late, and three commands wait 0.2 s
    first = queue.room_error()
    assert isinstance(first, QueueFullError) and str(first).startswith("overloaded: 3 commands in flight")
    for seq in seqs:  # the backlog is gone at once...
        pending.fail(seq, NoLeaderError("gone"))
    held = queue.room_error()  # ...but the verdict stands until its hold ends
    assert isinstance(held, QueueFullError) and held is not first and str(held) == str(first)
    now[0] += OVERLOAD_HOLD
    assert queue.room_error() is None  # looked at again: no backlog
    for i in range(3):
        queue.put(i, b"c")
    assert isinstance(queue.room_error(), QueueFullError)  # commands_queue_size
    queue._inbox.clear()
    assert queue.room_error() is None  # a full queue is not held: room again at once


def test_a_held_overload_verdict_lifts_once_the_latest_outcome_is_in_time_again() -> None:
    """Calls are admitted without looking at the clock while the latest
    outcome came back within ``max_queue_delay``; so a verdict's hold ends
    early when outcomes are in time again (the rule would admit them after
    the hold anyway), and only a late outcome keeps it."""
    now = [1000.0]
    queue, pending, _ = _busy_queue(NodeConfig(max_queue_delay=0.1), now)
    metrics = pending.metrics
    now[0] += 0.2  # three commands wait 0.2 s, the latest outcome took 0.5
    assert isinstance(queue.room_error(), QueueFullError)
    now[0] += OVERLOAD_HOLD / 2
    assert isinstance(queue.room_error(), QueueFullError)  # held: the outcome is still late
    metrics.last_latency = 0.05
    assert queue.room_error() is None  # in time again: admitted inside the hold
    metrics.last_latency = 0.2
    assert isinstance(queue.room_error(), QueueFullError)  # late again: the hold still stands


def test_an_admission_checked_once_does_not_delay_a_refusal_past_the_oldest_commands_limit() -> None:
    """After finding the oldest command in flight under ``max_queue_delay``,
    the queue skips that check until the oldest could reach the limit: the
    first call after that moment is refused, not one a whole limit later;
    a younger oldest (the old one finished) is admitted and checked anew."""
    now = [1000.0]
    metrics = NodeMetrics(clock=lambda: now[0])
    pending = PendingCommands(metrics)
    queue = CommandQueue(
        None, NodeConfig(max_queue_delay=0.1), pending, b"origin",  # type: ignore[arg-type]
        wake_soon=lambda: None, per_entry=lambda: 1,
    )
    queue.backlog_min = 2
    outcome = lambda: CallbackOutcome.of(lambda r, e: None)  # noqa: E731
    oldest = pending.register(deadline=now[0] + 60, outcome=outcome())[0]
    now[0] += 0.03
    for _ in range(3):
        pending.register(deadline=now[0] + 60, outcome=outcome())
    metrics.last_latency = 0.5  # late outcomes: only the oldest command's wait decides
    now[0] += 0.03
    assert queue.room_error() is None  # the oldest waited 0.06 s
    now[0] += 0.03
    assert queue.room_error() is None  # 0.09 s
    now[0] += 0.011
    refused = queue.room_error()  # 0.101 s: over the limit, this very call
    assert isinstance(refused, QueueFullError) and "4 commands in flight" in str(refused)
    pending.fail(oldest, NoLeaderError("gone"))
    now[0] += OVERLOAD_HOLD
    assert queue.room_error() is None  # the oldest now waited 0.073 s
    now[0] += 0.026
    assert queue.room_error() is None  # 0.099 s
    now[0] += 0.002
    assert isinstance(queue.room_error(), QueueFullError)  # 0.101 s



def _busy_queue(config: NodeConfig, now: list[float]) -> tuple[CommandQueue, PendingCommands, list[int]]:
    """A queue whose node has three commands in flight and late outcomes."""
    metrics = NodeMetrics(clock=lambda: now[0])
    pending = PendingCommands(metrics)
    queue = CommandQueue(
        None, config, pending, b"origin",  # type: ignore[arg-type]
        wake_soon=lambda: None, per_entry=lambda: 1,
    )
    queue.backlog_min = 1
    seqs = [pending.register(deadline=now[0] + 60, outcome=CallbackOutcome.of(lambda r, e: None))[0]
            for _ in range(3)]
    metrics.last_latency = 0.5
    return queue, pending, seqs


def test_a_remembered_oldest_start_follows_a_max_queue_delay_lowered_at_run_time() -> None:
    now = [1000.0]
    config = NodeConfig(max_queue_delay=0.1)
    queue, _, _ = _busy_queue(config, now)
    now[0] += 0.04
    assert queue.room_error() is None  # the oldest waited 0.04 s of 0.1
    config.max_queue_delay = 0.02  # an operator lowers it on a running node
    assert isinstance(queue.room_error(), QueueFullError)  # 0.04 s is over the new limit at once


def test_a_remembered_oldest_start_is_not_trusted_once_the_clock_went_back() -> None:
    now = [1000.0]
    queue, pending, seqs = _busy_queue(NodeConfig(max_queue_delay=0.1), now)
    now[0] += 0.04
    assert queue.room_error() is None  # the oldest waited 0.04 s
    now[0] = 500.0  # a test's clock set back
    for seq in seqs:
        pending.fail(seq, NoLeaderError("gone"))
    for _ in range(3):
        pending.register(deadline=now[0] + 60, outcome=CallbackOutcome.of(lambda r, e: None))
    now[0] += 0.5
    assert isinstance(queue.room_error(), QueueFullError)  # these waited 0.5 s
