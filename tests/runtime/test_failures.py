"""Every call gets exactly one outcome, also without a leader, with a full
queue, when the node stops, when the leader dies or loses its leadership;
and a replaced node catches up from a snapshot."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from raftkit import (
    FAIL_REASON,
    LeadershipLostError,
    NodeStoppedError,
    NoLeaderError,
    QueueFullError,
    SyncObj,
    SyncObjConf,
    SyncObjException,
    replicated,
)
from raftkit.testing.cluster import LocalCluster, fast_conf, node_threads, wait_until


class Ledger(SyncObj):
    def __init__(self, address: str, partners: list[str], conf: SyncObjConf, **kw: Any) -> None:
        super().__init__(address, partners, conf, **kw)
        self.entries: list[int] = []

    @replicated
    def add(self, value: int) -> int:
        self.entries.append(value)
        return len(self.entries)


def ledger(conf: SyncObjConf | None = None) -> Any:
    def make(address: str, partners: list[str], transport: Any) -> Ledger:
        return Ledger(address, partners, conf or fast_conf(), transport=transport)

    return make


class Outcomes:
    """Collects callback outcomes from the node's thread."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, result: Any, err: Any) -> None:
        with self._lock:
            self.items.append((result, err))


def lone_node(cluster: LocalCluster, conf: SyncObjConf | None = None) -> Ledger:
    """One node of a three-node cluster whose partners never start: no leader."""
    return cluster.add_syncobj(cluster.addresses[0], ledger(conf))


def test_no_leader_before_the_timeout(cluster: LocalCluster) -> None:
    obj = lone_node(cluster)
    started = time.monotonic()
    with pytest.raises(NoLeaderError) as info:
        obj.add(1, sync=True, timeout=0.3)
    assert 0.25 < time.monotonic() - started < 2.0
    # PySyncObj code catches it too, with PySyncObj's error code.
    assert isinstance(info.value, SyncObjException) and info.value.errorCode == FAIL_REASON.MISSING_LEADER
    outcomes = Outcomes()
    obj.add(2, callback=outcomes, timeout=0.2)
    future = obj.add.submit(3, timeout=0.2)
    with pytest.raises(NoLeaderError):
        future.result(3.0)
    wait_until(lambda: outcomes.items, what="the callback")
    assert outcomes.items == [(None, FAIL_REASON.MISSING_LEADER)]
    assert isinstance(outcomes.items[0][1].exception, NoLeaderError)


def test_commands_wait_leader_false_fails_at_once(cluster: LocalCluster) -> None:
    obj = lone_node(cluster, fast_conf(commandsWaitLeader=False))
    started = time.monotonic()
    with pytest.raises(NoLeaderError, match="commandsWaitLeader"):
        obj.add(1, sync=True, timeout=10)
    assert time.monotonic() - started < 1.0


def test_a_full_queue_refuses_at_once(cluster: LocalCluster) -> None:
    obj = lone_node(cluster, fast_conf(commandsQueueSize=3))
    for i in range(3):
        obj.add(i)  # held in the queue: there is no leader to take them
    with pytest.raises(QueueFullError, match="commands_queue_size=3") as info:
        obj.add(99)
    assert info.value.errorCode == FAIL_REASON.QUEUE_FULL
    outcomes = Outcomes()
    obj.add(100, callback=outcomes)
    assert outcomes.items == [(None, FAIL_REASON.QUEUE_FULL)]  # delivered before the call returned
    assert outcomes.items[0][1].reason is FAIL_REASON.QUEUE_FULL
    refusal = outcomes.items[0][1].exception  # the SyncObjException form, made when asked for
    assert isinstance(refusal, QueueFullError) and isinstance(refusal, SyncObjException)
    assert refusal.errorCode == FAIL_REASON.QUEUE_FULL and "commands_queue_size=3" in str(refusal)
    assert outcomes.items[0][1].exception is refusal  # made once
    replaced = ValueError("a callback may replace it, as before")
    outcomes.items[0][1].exception = replaced
    assert outcomes.items[0][1].exception is replaced
    with pytest.raises(QueueFullError):
        obj.add.submit(101)


def test_a_callback_that_raises_on_its_refusal_is_logged_and_the_caller_goes_on(
    cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    obj = lone_node(cluster, fast_conf(commandsQueueSize=1))
    obj.add(1)  # held: there is no leader to take it
    seen: list[Any] = []

    def failing(result: Any, err: Any) -> None:
        seen.append(err)
        raise RuntimeError("the callback's own bug")

    with caplog.at_level(logging.ERROR, logger="raftkit.syncobj.decorator"):
        assert obj.add(2, callback=failing) is None
    assert seen == [FAIL_REASON.QUEUE_FULL]
    assert "callback" in caplog.text and "the callback's own bug" in caplog.text


def test_a_refused_call_is_not_encoded(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under overload a refusal must cost little: the queue is checked before
    the call is encoded (an argument that cannot be encoded shows it)."""
    obj = lone_node(cluster, fast_conf(commandsQueueSize=1))
    obj.add(1)  # held: there is no leader to take it
    encoded: list[object] = []
    serializer = obj._rk_serializer
    monkeypatch.setattr(serializer, "dumps", lambda value: encoded.append(value) or b"")
    outcomes = Outcomes()
    obj.add(object(), callback=outcomes)  # an encoding would fail: the refusal comes first
    with pytest.raises(QueueFullError):
        obj.add(2)
    assert outcomes.items == [(None, FAIL_REASON.QUEUE_FULL)]
    assert encoded == []


def test_a_call_with_a_callback_is_refused_before_its_arguments_are_checked(cluster: LocalCluster) -> None:
    """Under overload most calls are refused, and the caller's thread competes
    with the node's loop for the CPU: with ``callback=`` nothing of the call
    is looked at first. Without a callback the arguments still come first."""
    obj = lone_node(cluster, fast_conf(commandsQueueSize=1))
    obj.add(1)  # held: there is no leader to take it
    outcomes = Outcomes()
    obj.add(1, 2, 3, callback=outcomes)  # add takes one argument
    assert outcomes.items == [(None, FAIL_REASON.QUEUE_FULL)]
    with pytest.raises(TypeError):
        obj.add(1, 2, 3)


def test_stop_fails_every_pending_call_and_leaves_no_thread(cluster: LocalCluster) -> None:
    obj = lone_node(cluster)
    raised: list[BaseException] = []

    def blocked_caller() -> None:
        try:
            obj.add(1, sync=True, timeout=30)
        except BaseException as exc:
            raised.append(exc)

    caller = threading.Thread(target=blocked_caller)
    caller.start()
    outcomes = Outcomes()
    obj.add(2, callback=outcomes, timeout=30)
    future = obj.add.submit(3, timeout=30)
    node = obj.get_node()
    wait_until(lambda: node.status()["pending_commands"] == 3, what="three pending calls")
    assert node_threads()

    obj.destroy()

    caller.join(5.0)
    assert len(raised) == 1 and isinstance(raised[0], NodeStoppedError)
    assert raised[0].errorCode == FAIL_REASON.STOPPED
    assert outcomes.items == [(None, FAIL_REASON.STOPPED)]
    with pytest.raises(NodeStoppedError):
        future.result(1.0)
    assert not node_threads()
    with pytest.raises(NodeStoppedError):
        obj.add(4)
    obj.destroy()  # idempotent


def test_context_manager_single_node_cluster() -> None:
    with LocalCluster(1) as cluster:
        with cluster.add_syncobj("node1", ledger()) as obj:
            assert obj.add(7, sync=True) == 1
            assert obj.is_leader()
        assert not obj.status()["running"]
        assert not node_threads()


def test_leader_killed_a_new_one_is_elected_and_writes_continue(cluster: LocalCluster) -> None:
    objs = cluster.add_syncobjs(ledger())
    first = cluster.wait_leader()
    assert cluster.objs[first].add(1, sync=True) == 1

    cluster.stop(first)

    second = cluster.wait_leader(exclude=first)
    survivors = [o for o in objs if o is not cluster.objs[first]]
    assert survivors[0].add(2, sync=True) == 2
    assert survivors[1].add(3, sync=True) == 3
    wait_until(lambda: all(o.entries == [1, 2, 3] for o in survivors), what="both survivors")
    assert second != first


def test_a_leader_cut_off_fails_its_calls_with_leadership_lost(cluster: LocalCluster) -> None:
    cluster.add_syncobjs(ledger())
    old = cluster.wait_leader()
    old_obj = cluster.objs[old]
    old_obj.add(0, sync=True)
    cluster.network.isolate(old)
    # Appended by the isolated leader; it can never commit.
    future = old_obj.add.submit(666, timeout=20)
    outcomes = Outcomes()
    old_obj.add(667, callback=outcomes, timeout=20)
    watcher = cluster.objs[next(a for a in cluster.addresses if a != old)]

    def new_leader() -> str | None:
        leader = watcher.get_leader()
        return leader if leader != old else None

    new = wait_until(new_leader, what="a new leader among the others")
    assert cluster.objs[new].add(1, sync=True) == 2
    cluster.network.heal()

    with pytest.raises(LeadershipLostError) as info:
        future.result(5.0)
    assert info.value.errorCode == FAIL_REASON.DISCARDED
    wait_until(lambda: outcomes.items, what="the callback")
    assert outcomes.items == [(None, FAIL_REASON.DISCARDED)]
    wait_until(lambda: all(o.entries == [0, 1] for o in cluster.objs.values()), what="everyone converged")


def test_a_replaced_node_catches_up_from_a_snapshot(cluster: LocalCluster) -> None:
    conf = fast_conf(logCompactionMinEntries=10, log_compaction_keep=2)
    cluster.add_syncobjs(ledger(conf))
    leader = cluster.wait_leader()
    lagging = next(a for a in cluster.addresses if a != leader)
    cluster.stop(lagging)

    leader_obj = cluster.objs[leader]
    # One call at a time: 60 entries (calls waiting together would share entries).
    assert [leader_obj.add(i, sync=True) for i in range(60)] == list(range(1, 61))
    wait_until(lambda: leader_obj.status()["log_first_index"] > 40, what="the leader to compact its log")

    # A fresh, empty node under the same address: the log it needs is gone.
    fresh = cluster.add_syncobj(lagging, ledger(conf))
    wait_until(lambda: fresh.entries == leader_obj.entries, timeout=10, what="the fresh node to catch up")
    snapshot = fresh.get_node().snapshotter.latest()
    assert snapshot is not None and snapshot.index > 40  # it came from the leader, not from replaying
    assert fresh.add(60, sync=True) == 61
    wait_until(lambda: all(len(o.entries) == 61 for o in cluster.objs.values()), what="the write everywhere")


def test_a_call_forwarded_to_a_deposed_leader_fails_once_the_term_is_over(cluster: LocalCluster) -> None:
    objs = cluster.add_syncobjs(ledger())
    old = cluster.wait_leader()
    caller_address = next(a for a in cluster.addresses if a != old)
    caller = cluster.objs[caller_address]
    caller.add(0, sync=True)
    cluster.network.cut(caller_address, old)  # the forwarded call is lost on the way
    future = caller.add.submit(5, timeout=20)
    wait_until(lambda: caller.status()["queued_commands"] == 0, what="the call forwarded")
    assert not future.done()

    cluster.network.isolate(old)  # the caller and the other node elect a new leader

    with pytest.raises(LeadershipLostError, match="lost its leadership"):
        future.result(5.0)  # long before its 20 s deadline
    cluster.network.heal()
    assert caller.add(6, sync=True) == 2
    wait_until(lambda: all(o.entries == [0, 6] for o in objs), what="all converged without the lost call")
