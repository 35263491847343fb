"""Node runtime behaviour behind SyncObj: stopping from any thread or from
inside the loop, deadlock guards, and a state that cannot be snapshotted."""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import threading
import time
from typing import Any

import pytest

from raftkit import FAIL_REASON, NodeStoppedError, QueueFullError, SyncObj, SyncObjConf, replicated
from raftkit.runtime import commands
from raftkit.runtime.commands import BACKLOG_MIN, BACKLOG_MIN_LARGE
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.futures import CallbackOutcome
from raftkit.testing.cluster import LocalCluster, fast_conf, fast_config, node_threads, wait_until
from raftkit.testing.kv import KeyValueStateMachine, set_command
from raftkit.transports.memory import MemoryNetwork, MemoryTransport


class Box(SyncObj):
    def __init__(self, conf: SyncObjConf | None = None, partners: tuple[str, ...] = ()) -> None:
        transport = MemoryTransport(MemoryNetwork())
        super().__init__("solo", list(partners), conf or fast_conf(), transport=transport)
        self.items: list[Any] = []

    @replicated
    def put(self, item: Any) -> int:
        self.items.append(item)
        return len(self.items)


def test_stop_from_a_callback_on_the_nodes_own_thread_ends_the_thread() -> None:
    box = Box()
    box.put(1, sync=True)
    called = threading.Event()

    def stop_from_inside(result: Any, err: Any) -> None:
        box.destroy()
        called.set()

    box.put(2, callback=stop_from_inside)
    assert called.wait(5.0)
    wait_until(lambda: not node_threads(), what="the node thread to end")
    assert not box.status()["running"]


def test_stop_from_another_thread_while_the_callers_loop_runs_the_node() -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        # Its partners never start: the call stays pending until the stop.
        box = Box(fast_conf(autoTick=False), partners=("p1", "p2"))
        asyncio.run_coroutine_threadsafe(box.astart(), loop).result(5.0)
        pending = box.put.submit(2, timeout=30)
        wait_until(lambda: box.status()["pending_commands"] == 1, what="the pending call")
        box.destroy()  # from this thread: hands the shutdown to the loop's thread
        with pytest.raises(NodeStoppedError):
            pending.result(5.0)
        assert not box.status()["running"]
        assert asyncio.run_coroutine_threadsafe(asyncio.sleep(0, "alive"), loop).result(5.0) == "alive"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5.0)
        loop.close()


def test_blocking_proposals_from_inside_the_loop_are_refused() -> None:
    async def main() -> None:
        with LocalCluster(1) as cluster:
            node = cluster.add_node("node1", KeyValueStateMachine(), start=False)
            await node.astart()
            with pytest.raises(RuntimeError, match="deadlock"):
                node.propose(set_command("k", 1))
            assert await node.apropose(set_command("k", 2)) is None
            await node.astop()

    asyncio.run(main())


def test_a_state_that_cannot_be_snapshotted_does_not_stop_the_node(caplog: pytest.LogCaptureFixture) -> None:
    box = Box(fast_conf(logCompactionMinEntries=5))
    try:
        box.put(1, sync=True)
        box.lock = threading.Lock()  # not encodable: every snapshot attempt fails
        with caplog.at_level(logging.ERROR, logger="raftkit.runtime.node"):
            for i in range(30):
                assert box.put(i, sync=True) == i + 2

            def failures() -> list[logging.LogRecord]:
                return [r for r in caplog.records if "snapshot at" in r.getMessage()]

            wait_until(failures, what="the failed snapshot to be reported")  # captured off the loop
        assert 1 <= len(failures()) <= 7  # retried every few entries, not after every Ready
        assert box.get_node().snapshotter.latest() is None
    finally:
        box.destroy()


def test_stopped_nodes_refuse_work_explicitly() -> None:
    with LocalCluster(1) as cluster:
        node = cluster.add_node("node1", KeyValueStateMachine(), config=fast_config())
        node.propose(set_command("a", 1))
        node.stop()
        node.stop()  # idempotent
        with pytest.raises(NodeStoppedError):
            node.submit(set_command("a", 2))
        with pytest.raises(NodeStoppedError):
            node.request_log_compaction().result(1.0)
        node.dispatch(lambda: None)  # dropped silently
        # A compaction request the loop ran just after the close (it was queued
        # before): refused with the close's reason, no capture started.
        late = node.snapshots.request()
        with pytest.raises(NodeStoppedError):
            late.result(0)
        assert node.snapshots.status()["in_progress"] is None
    assert not node_threads()


def test_enqueue_skips_the_refusal_that_submit_makes_and_still_gives_each_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``enqueue`` is ``submit`` for a caller that asked ``refusal()``
    itself: it does not refuse when the queue is full, and what it queues
    gets its outcome like any command; on a stopped node it still raises."""
    with LocalCluster(1) as cluster:
        node = cluster.add_node("node1", KeyValueStateMachine(), config=fast_config())
        node.propose(set_command("a", 1))
        seen: list[tuple[Any, Any]] = []
        done = threading.Event()

        def record(result: Any, exc: BaseException | None) -> None:
            seen.append((result, exc))
            done.set()

        full = QueueFullError("the queue is full (test)")
        monkeypatch.setattr(node._commands, "room_error", lambda: full)  # only client threads ask it
        assert node.refusal() is full
        with pytest.raises(QueueFullError):
            node.submit(set_command("a", 2))
        assert node.enqueue(set_command("a", 3), None, CallbackOutcome(record)) is None
        future = node.enqueue(set_command("a", 4), None, None)
        assert done.wait(10) and seen == [(1, None)]
        assert future is not None and future.result(10) == 3
        node.stop()
        with pytest.raises(NodeStoppedError):
            node.enqueue(set_command("a", 5), None, None)


def test_a_refused_call_yields_the_cpu_to_the_loop_and_an_accepted_one_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A caller refused for overload that calls again at once would keep the
    GIL from the loop thread that must drain the queue: each refusal yields
    once, on the caller's thread, whichever way the call came; a call that is
    accepted does not pay for it."""
    yields: list[int] = []
    monkeypatch.setattr(commands, "_yield_cpu", lambda: yields.append(threading.get_ident()))
    box = Box(fast_conf(commandsQueueSize=1), partners=("p1", "p2"))  # no leader: the first call stays queued
    try:
        errors: list[Any] = []
        box.put(0, callback=lambda r, e: errors.append(e), timeout=3600)
        assert yields == [] and errors == []
        for i in range(5):
            box.put(i, callback=lambda r, e: errors.append(e))
        assert errors == [FAIL_REASON.QUEUE_FULL] * 5
        assert yields == [threading.get_ident()] * 5
        with pytest.raises(QueueFullError):
            box.put.submit(6)
        assert len(yields) == 6
    finally:
        box.destroy()


def test_call_in_loop_hands_back_any_exception_and_the_loop_lives_on() -> None:
    """What ``fn`` raises reaches the caller, even SystemExit, which must not
    end the node's loop on its way."""
    with LocalCluster(1) as cluster:
        node = cluster.add_node("node1", KeyValueStateMachine(), config=fast_config())
        assert node.call_in_loop(lambda: threading.current_thread().name).startswith("raftkit-")

        def leave() -> None:
            raise SystemExit(3)

        with pytest.raises(SystemExit):
            node.call_in_loop(leave)
        with pytest.raises(ZeroDivisionError):
            node.call_in_loop(lambda: 1 / 0)
        assert node.propose(set_command("a", 1)) is None  # the loop still runs
        assert node.call_in_loop(lambda: node.raw.raft.role.name) == "LEADER"


def test_a_callback_gets_each_outcome_once_on_the_nodes_thread_without_a_future() -> None:
    with LocalCluster(1) as cluster:
        node = cluster.add_node("node1", KeyValueStateMachine(), config=fast_config())
        node.propose(set_command("a", 1))  # a leader, and a previous value to return
        seen: list[tuple[Any, Any, str]] = []
        done = threading.Event()

        def record(result: Any, exc: BaseException | None) -> None:
            seen.append((result, exc, threading.current_thread().name))
            if len(seen) == 3:
                done.set()

        assert node.submit(set_command("a", 2), callback=record) is None
        node.submit(b"\xc1 not msgpack", callback=record)  # the state machine raises: an outcome too
        node.submit(set_command("a", 3), callback=lambda r, e: 1 / 0)  # a raising callback is logged
        node.submit(set_command("b", 1), callback=record)
        assert done.wait(10)
        assert [(r, type(e).__name__ if e else None) for r, e, _ in seen] == [
            (1, None), (None, "ValueError"), (None, None)
        ]
        assert all(name.startswith("raftkit-") for _, _, name in seen)  # the loop thread
        assert node.propose(set_command("a", 4)) == 3  # the node lived through the raising callback
        node.stop()
        late: list[Any] = []
        with pytest.raises(NodeStoppedError):
            node.submit(set_command("a", 5), callback=lambda r, e: late.append(e))
        assert late == []  # refused at once: raised, not called back


class SlowApply(KeyValueStateMachine):
    """Each apply takes a millisecond, and notes how many loop callbacks
    ran since the previous apply (a counter the loop bumps on its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0  # bumped by loop callbacks scheduled from outside the applier
        self.seen: list[int] = []

    def apply(self, command: bytes) -> Any:
        self.seen.append(self.ticks)
        deadline = time.perf_counter() + 0.001
        while time.perf_counter() < deadline:
            pass
        return super().apply(command)


class GatedSlowApply(SlowApply):
    """SlowApply whose applies wait while ``gate`` is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = False  # an apply is waiting at the closed gate

    def apply(self, command: bytes) -> Any:
        self.waiting = not self.gate.is_set()
        self.gate.wait(20)
        self.waiting = False
        return super().apply(command)


def test_a_backlog_is_applied_in_slices_so_the_loop_keeps_running_between_them() -> None:
    sm = GatedSlowApply()
    with LocalCluster(1) as cluster:
        # One command per entry: the budget is checked between entries, and a
        # packed entry is applied whole (commands_per_entry bounds it).
        node = cluster.add_node("node1", sm, config=fast_config(apply_budget=0.02, commands_per_entry=1))
        node.propose(set_command("warm", 1))  # a leader
        loop = node._require_loop()

        def bump() -> None:  # a stand-in for ticks and messages: runs once in every loop turn
            sm.ticks += 1
            if len(sm.seen) < 401:
                loop.call_soon(bump)

        done = threading.Event()
        outcomes: list[Any] = []

        def record(result: Any, exc: BaseException | None) -> None:
            outcomes.append(exc)
            if len(outcomes) == 400:
                done.set()

        # The backlog arrives whole: the first command's apply holds the loop
        # until the other 399 are queued, so they are committed together.
        sm.gate.clear()
        node.call_in_loop(lambda: loop.call_soon(bump))
        node.submit(set_command("k0", 0), callback=record)
        wait_until(lambda: sm.waiting, timeout=10, what="the first apply waiting at the gate")
        for i in range(1, 400):  # ~0.4 s of applying
            node.submit(set_command(f"k{i}", i), callback=record)
        sm.gate.set()
        assert done.wait(30)
        assert outcomes == [None] * 400
        batch = sm.seen[2:]  # the 399 applied after the gate opened
        # Within a 20 ms slice nothing else runs; between slices the loop does.
        interruptions = sum(1 for a, b in zip(batch, batch[1:], strict=False) if b > a)
        assert interruptions >= 399 * 0.001 / 0.02 * 0.5, batch


def test_commands_arriving_during_a_backlog_wait_for_its_next_slice() -> None:
    """The apply budget bounds a loop turn, not each call: commands committed
    while a backlog is being applied join it instead of each callback of the
    turn applying a slice of its own (that held the loop for 100 ms a turn)."""
    sm = SlowApply()
    with LocalCluster(1) as cluster:
        node = cluster.add_node("node1", sm, config=fast_config(apply_budget=0.02, commands_per_entry=1))
        node.propose(set_command("warm", 1))
        loop = node._require_loop()
        total = 600

        def bump() -> None:  # runs once in every loop turn
            sm.ticks += 1
            if len(sm.seen) < total + 1:
                loop.call_soon(bump)

        done = threading.Event()
        outcomes: list[Any] = []

        def record(result: Any, exc: BaseException | None) -> None:
            outcomes.append(exc)
            if len(outcomes) == total:
                done.set()

        node.call_in_loop(lambda: loop.call_soon(bump))
        for i in range(total):  # in bursts, so new commands keep arriving while the loop applies
            node.submit(set_command(f"k{i}", i), callback=record)
            if i % 50 == 0:
                time.sleep(0.005)
        assert done.wait(60)
        assert outcomes == [None] * total
        per_turn = collections.Counter(sm.seen[1:])
        # A slice is at most 21 one-millisecond commands (the budget is checked
        # after each); a turn may end one backlog and start a new one.
        assert max(per_turn.values()) <= 2 * 21, per_turn


def test_an_overloaded_node_refuses_new_commands_at_once_and_takes_them_again_once_caught_up() -> None:
    sm = GatedSlowApply()
    with LocalCluster(1) as cluster:
        node = cluster.add_node("node1", sm, config=fast_config(max_queue_delay=0.1))
        wait_until(lambda: node.leader is not None, timeout=10, what="a leader")
        node.propose(set_command("warm", 1))  # answered at once: the latest outcome is not late
        assert node.metrics.last_latency < 0.1
        sm.gate.clear()  # the next apply waits: 3,000 commands pile up, none answered yet
        finished = threading.Semaphore(0)
        try:
            submitted = time.monotonic()
            for i in range(3000):  # all accepted: no outcome is late (none came at all)
                node.submit(set_command(f"k{i}", i), callback=lambda r, e: finished.release())
            wait_until(lambda: time.monotonic() - submitted > 0.15, timeout=5, what="0.15 s to pass")
        finally:
            sm.gate.set()  # the first outcome comes > 0.1 s late; 2,999 still in flight (1 ms each)
        wait_until(lambda: node.metrics.last_latency > 0.1, timeout=20, what="a late outcome")
        refusals = []
        for i in range(10):
            started = time.monotonic()
            with pytest.raises(QueueFullError) as refused:
                node.submit(set_command(f"late{i}", i), callback=lambda r, e: None)
            refusals.append((time.monotonic() - started, str(refused.value)))
        assert max(took for took, _ in refusals) < 0.05  # at once
        assert all(re.match(r"overloaded: \d+ commands in flight, the latest took \d+\.\d\ds "
                            r"\(max_queue_delay=0.1s\)", why) for _, why in refusals), refusals[0]
        for _ in range(3000):  # every accepted command still gets its outcome
            assert finished.acquire(timeout=60)
        assert node.propose(set_command("after", 1)) is None  # caught up: taken again


def test_big_commands_are_refused_with_fewer_in_flight_than_small_ones() -> None:
    """The backlog floor is 1,000 commands, or ``BACKLOG_MIN_BYTES`` of big
    ones: 600 commands of 20 KB (12 MB, 0.6 s of applying here) are a
    backlog, where the count alone let them wait for seconds (7 nodes, 20 KB)."""
    sm = GatedSlowApply()
    big = "x" * 20_000
    with LocalCluster(1) as cluster:
        node = cluster.add_node("node1", sm, config=fast_config(max_queue_delay=0.1))
        wait_until(lambda: node.leader is not None, timeout=10, what="a leader")
        node.propose(set_command("warm", big))  # a big command: the floor follows the size
        floor = node._commands.backlog_min
        assert BACKLOG_MIN_LARGE <= floor < 600 < BACKLOG_MIN
        sm.gate.clear()
        finished = threading.Semaphore(0)
        try:
            submitted = time.monotonic()
            for i in range(600):  # all accepted: no outcome came late yet
                node.submit(set_command(f"k{i}", big), callback=lambda r, e: finished.release())
            wait_until(lambda: time.monotonic() - submitted > 0.15, timeout=5, what="0.15 s to pass")
        finally:
            sm.gate.set()  # the first outcome comes > 0.1 s late; 599 still in flight (1 ms each)
        wait_until(lambda: node.metrics.last_latency > 0.1, timeout=20, what="a late outcome")
        with pytest.raises(QueueFullError, match=r"overloaded: \d+ commands in flight"):
            node.submit(set_command("late", big), callback=lambda r, e: None)
        for _ in range(600):  # every accepted command still gets its outcome
            assert finished.acquire(timeout=60)
        assert node.propose(set_command("after", big)) is None  # caught up: taken again


def test_the_backlog_floor_follows_the_command_size_within_its_bounds() -> None:
    """Huge commands never bring the floor under ``BACKLOG_MIN_LARGE`` (one
    slow big command is no overload); small ones bring it back to ``BACKLOG_MIN``."""
    with LocalCluster(1) as cluster:
        node = cluster.add_node("node1", KeyValueStateMachine(), config=fast_config())
        assert node._commands.backlog_min == BACKLOG_MIN
        node.propose(set_command("huge", "x" * (1 << 20)))
        assert node._commands.backlog_min == BACKLOG_MIN_LARGE
        for i in range(50):  # a moving mean: a few small commands bring it back
            node.propose(set_command(f"small{i}", i))
            if node._commands.backlog_min == BACKLOG_MIN:
                break
        assert node._commands.backlog_min == BACKLOG_MIN, node._commands.backlog_min


def test_one_late_outcome_long_ago_does_not_refuse_a_later_burst() -> None:
    sm = GatedSlowApply()
    with LocalCluster(1) as cluster:
        node = cluster.add_node("node1", sm, config=fast_config(max_queue_delay=0.5))
        node.propose(set_command("warm", 1))
        sm.gate.clear()
        try:
            slow = node.submit(set_command("slow", 1))
            held = time.monotonic()
            wait_until(lambda: time.monotonic() - held > 0.6, timeout=5, what="0.6 s to pass")
        finally:
            sm.gate.set()  # never leave the node's thread waiting on the gate
        slow.result(10)
        assert node.metrics.last_latency > 0.5  # the latest outcome was late...
        finished = threading.Semaphore(0)
        for i in range(1500):  # ...but nothing waits now: a burst over 1,000 is no backlog yet
            node.submit(set_command(f"k{i}", i), callback=lambda r, e: finished.release())
        for _ in range(1500):
            assert finished.acquire(timeout=30)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("apply_budget", 0, "apply_budget must be a positive number of seconds, got 0"),
        ("apply_budget", float("nan"), "apply_budget must be a positive number of seconds, got nan"),
        ("max_queue_delay", 0, "max_queue_delay must be seconds > 0 or None, not 0"),
        ("max_queue_delay", -1.0, "max_queue_delay must be seconds > 0 or None, not -1.0"),
    ],
)
def test_load_settings_out_of_range_are_refused(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        NodeConfig(**{field: value})
    assert NodeConfig(max_queue_delay=None).max_queue_delay is None  # None: off
