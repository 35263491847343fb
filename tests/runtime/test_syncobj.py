"""SyncObj on real nodes (threads, timers) over an in-memory network:
replication, consumers, and every way a call reports its outcome."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import pytest

from raftkit import (
    FAIL_REASON,
    CallError,
    SerializationError,
    SyncObj,
    SyncObjConf,
    SyncObjConsumer,
    SyncObjException,
    replicated,
    replicated_sync,
)
from raftkit.testing.cluster import LocalCluster, fast_conf, wait_until
from raftkit.transports.memory import MemoryNetwork, MemoryTransport

# -- the seed README's counter, with only the imports changed ---------------------------


class MyCounter(SyncObj):
    def __init__(self, selfAddr: str, partners: list[str]) -> None:  # noqa: N803
        super(MyCounter, self).__init__(selfAddr, partners)  # noqa: UP008 - as the README writes it
        self.__counter = 0

    @replicated
    def incCounter(self) -> None:  # noqa: N802
        self.__counter += 1

    def getCounter(self) -> int:  # noqa: N802
        return self.__counter


def test_readme_counter_replicates_to_every_node(cluster: LocalCluster) -> None:
    with cluster.default_network():
        a, b, c = (MyCounter(addr, cluster.partners(addr)) for addr in cluster.addresses)
    for addr, obj in zip(cluster.addresses, (a, b, c), strict=True):
        cluster.objs[addr] = obj
        cluster.nodes[addr] = obj.get_node()
    assert a.wait_ready(5.0)
    for _ in range(4):
        a.incCounter()
    a.incCounter(sync=True)
    wait_until(lambda: (a.getCounter(), b.getCounter(), c.getCounter()) == (5, 5, 5), what="5 everywhere")
    # Only the counter is replicated state, under its mangled name.
    assert a._serialize() == {"_MyCounter__counter": 5}


# -- a richer object --------------------------------------------------------------------


class Account(SyncObj):
    """Replicated methods that return values and raise."""

    raised: dict[int, list[str]] = {}  # id(instance) -> what it raised (not replicated state)

    def __init__(self, address: str, partners: list[str], conf: SyncObjConf, **kw: Any) -> None:
        super().__init__(address, partners, conf, **kw)
        self.balance = 0
        self.history: list[int] = []

    @replicated
    def deposit(self, amount: int) -> int:
        self.balance += amount
        self.history.append(amount)
        return self.balance

    @replicated
    def withdraw(self, amount: int) -> int:
        if amount > self.balance:
            exc = ValueError(f"insufficient funds: {self.balance} < {amount}")
            Account.raised.setdefault(id(self), []).append(str(exc))
            raise exc
        self.balance -= amount
        self.history.append(-amount)
        return self.balance

    @replicated_sync
    def set_balance(self, value: int, *, note: str = "") -> str:
        self.balance = value
        return f"set to {value} {note}".strip()


def offline(address: str, **kw: Any) -> SyncObj:
    """A single-node SyncObj that is never started (for its state machine)."""
    return SyncObj(address, [], fast_conf(autoTick=False), transport=MemoryTransport(MemoryNetwork()), **kw)


def make_account(address: str, partners: list[str], transport: Any) -> Account:
    return Account(address, partners, fast_conf(), transport=transport)


@pytest.fixture
def accounts(cluster: LocalCluster) -> list[Account]:
    objs = cluster.add_syncobjs(make_account)
    cluster.wait_leader()
    return objs


def test_sync_call_returns_the_methods_value_on_leader_and_follower(
    cluster: LocalCluster, accounts: list[Account]
) -> None:
    leader = cluster.objs[cluster.wait_leader()]
    follower = cluster.objs[cluster.followers()[0]]
    assert leader.deposit(10, sync=True) == 10
    # A follower forwards the call to the leader and returns its own result.
    assert follower.deposit(5, sync=True) == 15
    assert follower.set_balance(7, note="by follower") == "set to 7 by follower"  # replicated_sync
    wait_until(lambda: all(a.balance == 7 for a in accounts), what="balance 7 everywhere")
    assert all(a.history == [10, 5] for a in accounts)


def test_plain_call_returns_at_once_and_applies_later(accounts: list[Account]) -> None:
    assert accounts[0].deposit(3) is None
    assert accounts[1].deposit(4) is None
    wait_until(lambda: all(a.balance == 7 for a in accounts), what="both deposits everywhere")


def test_a_raising_method_raises_the_same_everywhere_and_the_log_goes_on(
    cluster: LocalCluster, accounts: list[Account]
) -> None:
    Account.raised.clear()
    caller = cluster.objs[cluster.followers()[0]]
    caller.deposit(5, sync=True)
    with pytest.raises(ValueError, match="insufficient funds: 5 < 100") as info:
        caller.withdraw(100, sync=True)
    assert not isinstance(info.value, SyncObjException)  # the method's own exception, unchanged
    # Every node ran the method and got the same exception; none changed state.
    wait_until(lambda: len(Account.raised) == 3, what="the raise on all three nodes")
    assert all(msgs == ["insufficient funds: 5 < 100"] for msgs in Account.raised.values())
    # Later entries are still applied everywhere.
    assert caller.withdraw(2, sync=True) == 3
    wait_until(lambda: all(a.history == [5, -2] for a in accounts), what="the later entries everywhere")


def test_callback_gets_result_and_success_or_a_call_error(accounts: list[Account]) -> None:
    outcomes: list[tuple[Any, Any]] = []
    done = threading.Event()

    def callback(result: Any, err: Any) -> None:
        outcomes.append((result, err))
        if len(outcomes) == 2:
            done.set()

    accounts[0].deposit(8, callback=callback)
    accounts[0].withdraw(50, callback=callback)
    assert done.wait(5.0)
    (result, err), (result2, err2) = outcomes
    assert (result, err) == (8, FAIL_REASON.SUCCESS) and not err
    assert result2 is None and err2 == FAIL_REASON.METHOD_RAISED and err2
    assert isinstance(err2, CallError) and isinstance(err2.exception, ValueError)
    assert err2.reason is FAIL_REASON.METHOD_RAISED


def test_submit_future_and_sync_false_with_callback(accounts: list[Account]) -> None:
    futures = [accounts[i % 3].deposit.submit(1) for i in range(30)]
    results = sorted(f.result(5.0) for f in futures)
    assert results == list(range(1, 31))  # each call saw its own, distinct state
    bad = accounts[2].withdraw.submit(1000)
    with pytest.raises(ValueError):
        bad.result(5.0)
    with pytest.raises(TypeError, match="neither sync= nor callback="):
        accounts[0].deposit.submit(1, sync=True)


def test_aio_from_a_foreign_event_loop(accounts: list[Account]) -> None:
    async def main() -> list[int]:
        return list(await asyncio.gather(*(accounts[i % 3].deposit.aio(2) for i in range(6))))

    assert sorted(asyncio.run(main())) == [2, 4, 6, 8, 10, 12]


def test_calls_that_cannot_be_encoded_fail_at_once_naming_type_and_serializer(
    accounts: list[Account],
) -> None:
    class Opaque:
        pass

    with pytest.raises(SerializationError, match=r"Account\.deposit.*MsgpackSerializer.*Opaque"):
        accounts[0].deposit(Opaque())
    with pytest.raises(TypeError, match="deposit"):
        accounts[0].deposit(1, 2, 3)  # wrong arguments fail here, not on every node
    assert all(a.balance == 0 for a in accounts)


def test_reserved_parameter_names_are_refused_at_class_definition() -> None:
    with pytest.raises(TypeError, match="reserved"):

        class Bad(SyncObj):
            @replicated
            def go(self, timeout: float) -> None:
                pass


def test_replicated_methods_need_a_constructed_object() -> None:
    class Early(SyncObj):
        def __init__(self) -> None:
            super().__init__("solo", [], fast_conf(), transport=MemoryTransport(MemoryNetwork()))
            self.inc()  # too early: the node starts when __init__ returns

        @replicated
        def inc(self) -> None:
            pass

    with pytest.raises(RuntimeError, match="still being constructed"):
        Early()


# -- consumers ----------------------------------------------------------------------------


class Counter(SyncObjConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.value = 0

    @replicated
    def add(self, n: int) -> int:
        self.value += n
        return self.value


class Registry(SyncObjConsumer):
    """Chooses its own snapshot format."""

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, int] = {}

    @replicated
    def put(self, key: str, value: int) -> None:
        self.items[key] = value

    def _serialize(self) -> Any:
        return sorted(self.items.items())

    def _deserialize(self, data: Any) -> None:
        self.items = dict(data)


def test_consumers_share_one_log(cluster: LocalCluster) -> None:
    parts: dict[str, tuple[Counter, Counter, Registry]] = {}

    def make(address: str, partners: list[str], transport: Any) -> SyncObj:
        parts[address] = (Counter(), Counter(), Registry())
        return SyncObj(address, partners, fast_conf(), consumers=list(parts[address]), transport=transport)

    cluster.add_syncobjs(make)
    cluster.wait_leader()
    c1, c2, reg = parts[cluster.addresses[1]]
    assert c1.add(10, sync=True) == 10
    assert c2.add(1, sync=True) == 1
    reg.put("k", 3, sync=True)
    wait_until(
        lambda: all((p[0].value, p[1].value, p[2].items) == (10, 1, {"k": 3}) for p in parts.values()),
        what="all consumers everywhere",
    )
    data = cluster.objs[cluster.addresses[0]].get_node().state_machine.snapshot()
    fresh = (Counter(), Counter(), Registry())
    offline("x", consumers=list(fresh)).get_node().state_machine.restore(data)
    assert (fresh[0].value, fresh[1].value, fresh[2].items) == (10, 1, {"k": 3})


def test_a_consumer_belongs_to_one_syncobj() -> None:
    counter = Counter()
    with pytest.raises(RuntimeError, match="not attached"):
        counter.add(1)
    offline("a", consumers=[counter])
    with pytest.raises(ValueError, match="already attached"):
        offline("b", consumers=[counter])


def test_status_and_leader_queries(cluster: LocalCluster, accounts: list[Account]) -> None:
    leader = cluster.wait_leader()
    obj = cluster.objs[cluster.followers()[0]]
    assert obj.getLeader() == obj.get_leader() == obj._getLeader() == leader
    assert obj.isReady() and obj._isReady() and obj.is_ready()
    assert cluster.objs[leader].is_leader() and not obj.is_leader()
    s = obj.getStatus()  # PySyncObj's keys; raftkit's own are status()'s
    assert s["state"] == 0 and s["leader"] == leader and s["leader"].address == leader
    assert s["partner_nodes_count"] == 2 and s["self"] == obj.status()["self"]
    assert s["readonly_nodes_count"] == 0 and "role" not in s
    # Something to snapshot: a follower may not have applied the leader's no-op yet.
    applied = wait_until(lambda: obj.status()["applied_index"], what="the follower to apply an entry")
    f = obj.forceLogCompaction()
    assert isinstance(f, concurrent.futures.Future)
    f.result(5.0)
    snap = obj.get_node().snapshotter.latest()
    # The capture runs off the loop: entries applied meanwhile (the leader's
    # no-op may still arrive) come after it.
    assert snap is not None and applied <= snap.index <= obj.status()["applied_index"]


class _Writer:
    def __init__(self, frozen_state: bool) -> None:
        self.frozen_state = frozen_state
        self.pieces: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.pieces.append(bytes(data))


def test_a_frozen_state_is_written_in_pieces_with_the_bytes_of_one_snapshot() -> None:
    """A forked child's writer says nothing changes the state: the SyncObj's
    snapshot then streams (no 4 MB buffer), byte for byte what ``snapshot()``
    builds; any other writer still gets it whole, in one write."""
    obj = offline("127.0.0.1:1")
    obj.big = {f"k-{i}": "v" * 20_000 for i in range(200)}  # type: ignore[attr-defined]
    sm = obj.get_node().state_machine
    frozen, live = _Writer(frozen_state=True), _Writer(frozen_state=False)
    sm.write_snapshot(frozen)
    sm.write_snapshot(live)
    assert live.pieces == [sm.snapshot()]
    assert b"".join(frozen.pieces) == sm.snapshot() and len(frozen.pieces) >= 3


def test_a_fork_snapshot_of_a_syncobj_holds_its_state(accounts: list[Account]) -> None:
    """End to end through the fork snapshotter's child (which streams it)."""
    obj = accounts[0]
    node = obj.get_node()
    assert node.snapshots.capture.name == "fork"
    applied = wait_until(lambda: obj.status()["applied_index"], what="an entry applied")
    obj.big = {f"k-{i}": "v" * 20_000 for i in range(200)}  # type: ignore[attr-defined]
    obj.forceLogCompaction().result(10.0)
    snap = node.snapshotter.latest()
    assert snap is not None and snap.index >= applied
    with node.snapshotter.open(snap.index) as source:
        taken = b"".join(source.chunks(1 << 20))
    assert taken == node.state_machine.snapshot()  # nothing was applied since: the same bytes


def test_restoring_state_replaces_it_exactly_and_never_touches_internals() -> None:
    obj = offline("x")
    obj.a, obj.b = 1, 2
    obj._deserialize({"a": 10, "c": 3})
    assert obj._serialize() == {"a": 10, "c": 3}  # b is gone: the snapshot had none
    with pytest.raises(ValueError, match="_rk_node"):
        obj._deserialize({"_rk_node": None})
    assert obj.get_node() is not None
