"""ReplLockManager: PySyncObj's API, and the guarantees behind it: a lock
is never held by two clients at once (under contention, at start-up,
across leader changes and partitions); a vanished holder's locks expire;
live holders keep theirs through a leader crash while new acquisitions
resume with the new leader; the keeper thread never outlives its manager."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkit import FAIL_REASON, RaftkitError, SerializationError, SyncObj
from raftkit.batteries import ReplLockManager
from raftkit.batteries.locks import _LockTable
from raftkit.testing.cluster import LocalCluster, fast_conf, node_threads, wait_until

pytestmark = pytest.mark.usefixtures("no_new_threads")


def lock_managers(
    cluster: LocalCluster, ttl: float, addresses: list[str] | None = None
) -> dict[str, ReplLockManager]:
    """One ReplLockManager per node (its client id is the node's address)."""
    managers: dict[str, ReplLockManager] = {}

    def make(address: str, partners: list[str], transport: Any) -> SyncObj:
        managers[address] = ReplLockManager(autoUnlockTime=ttl, selfID=f"client-{address}")
        return SyncObj(address, partners, fast_conf(), consumers=[managers[address]], transport=transport)

    for address in addresses or cluster.addresses:
        cluster.add_syncobj(address, make)
    return managers


def acquire_retrying(manager: ReplLockManager, lock: str, within: float) -> bool:
    """tryAcquire, again after a failed call (one made as the leader
    crashed fails with LeadershipLostError: its outcome is unknown)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return bool(manager.tryAcquire(lock, sync=True, timeout=max(0.1, deadline - time.monotonic())))
        except RaftkitError:
            if time.monotonic() >= deadline:
                raise


def always(predicate: Callable[[], bool], duration: float, what: str) -> None:
    """Assert ``predicate`` holds at every check for ``duration`` seconds."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert predicate(), what


def test_acquire_check_release_in_every_pysyncobj_call_form() -> None:
    with LocalCluster(3) as cluster:
        m = lock_managers(cluster, ttl=5.0)
        a, b, c = (m[x] for x in cluster.addresses)
        assert a.tryAcquire("testLockName", sync=True) is True
        assert a.isAcquired("testLockName") and a.is_acquired("testLockName")
        assert b.try_acquire("testLockName", sync=True) is False
        assert not b.isAcquired("testLockName")
        assert a.tryAcquire("testLockName", sync=True) is True  # the holder may take it again

        results: list[tuple[Any, Any]] = []
        c.tryAcquire("other", callback=lambda res, err: results.append((res, err)))
        wait_until(lambda: results)
        assert results == [(True, FAIL_REASON.SUCCESS)] and c.isAcquired("other")

        b.tryAcquire("fire-and-forget")  # PySyncObj: check isAcquired later
        wait_until(lambda: b.isAcquired("fire-and-forget"), what="the asynchronous acquisition")

        assert b.release("testLockName", sync=True) is False  # not b's: nothing happens
        assert a.isAcquired("testLockName")
        assert a.release("testLockName", sync=True) is True
        assert not a.isAcquired("testLockName")
        assert b.tryAcquire("testLockName", sync=True) is True
        b.release("testLockName")  # asynchronous: not held from this moment on
        assert not b.isAcquired("testLockName")
        wait_until(lambda: c.tryAcquire("testLockName", sync=True), what="c to take the released lock")


def test_no_two_holders_under_contention_across_leader_changes() -> None:
    with LocalCluster(3) as cluster:
        managers = list(lock_managers(cluster, ttl=1.0).values())
        cluster.wait_leader()
        inside: list[ReplLockManager | None] = [None]
        entries = [0]
        errors: list[BaseException] = []
        stop = threading.Event()

        def client(me: ReplLockManager) -> None:
            while not stop.is_set():
                try:
                    if not me.tryAcquire("cs", sync=True, timeout=2):
                        continue
                    # Critical section: nobody else may be in it, or think they hold the lock.
                    assert inside[0] is None, f"{me.self_id} entered while {inside[0]} was inside"
                    inside[0] = me
                    for other in managers:
                        assert other is me or not other.isAcquired("cs"), f"{other.self_id} also holds it"
                    assert me.isAcquired("cs")
                    entries[0] += 1
                    inside[0] = None
                    me.release("cs", sync=True, timeout=2)
                except RaftkitError:
                    continue  # a leader change: the outcome is unknown, try again
                except BaseException as exc:
                    errors.append(exc)
                    stop.set()

        threads = [threading.Thread(target=client, args=(m,)) for m in managers]
        for t in threads:
            t.start()
        try:
            for _ in range(3):  # hand leadership over while the clients run
                wait_until(lambda: entries[0] >= 5 or stop.is_set(), timeout=10, what="progress")
                entries_before = entries[0]
                leader = cluster.wait_leader(timeout=5)
                target = next(a for a in cluster.addresses if a != leader)
                cluster.nodes[leader].transfer_leadership(target)
                cluster.wait_leader(timeout=5, exclude=leader)
                wait_until(lambda b=entries_before: entries[0] >= b + 5 or stop.is_set(), timeout=10)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert not errors, errors[0]
        assert entries[0] >= 20


def test_start_up_never_grants_a_lock_twice() -> None:
    """PySyncObj's issue #108: a request made while no leader exists gets
    logged after the lock's lifetime, next to a fresh request from another
    node; both used to be granted."""
    ttl = 1.0
    with LocalCluster(3) as cluster:
        first, *others = cluster.addresses
        m = lock_managers(cluster, ttl, [first])  # alone: no quorum, no leader
        a = m[first]
        asked = time.time()
        outcome: list[Any] = []
        early = threading.Thread(target=lambda: outcome.append(a.tryAcquire("L", sync=True, timeout=10)))
        early.start()
        wait_until(lambda: time.time() - asked > 1.5 * ttl, timeout=5, what="the lock's lifetime to pass")
        m.update(lock_managers(cluster, ttl, others))
        b = m[others[0]]
        fresh = b.tryAcquire("L", sync=True, timeout=10)
        early.join(10)
        assert outcome == [False] and fresh is True
        always(lambda: b.isAcquired("L") and not a.isAcquired("L"), 0.5, "exactly b holds the lock")


def test_a_live_holder_keeps_its_lock_through_a_leader_crash() -> None:
    ttl = 2.0
    with LocalCluster(3) as cluster:
        m = lock_managers(cluster, ttl)
        leader = cluster.wait_leader()
        holder_at, other_at = [a for a in cluster.addresses if a != leader]
        holder, other = m[holder_at], m[other_at]
        assert holder.tryAcquire("L", sync=True)
        crashed = time.monotonic()
        cluster.stop(leader)
        # New acquisitions resume as soon as a leader is elected, long before
        # any lock could have expired ...
        assert acquire_retrying(other, "M", within=5)
        assert time.monotonic() - crashed < 0.75 * ttl
        assert cluster.wait_leader(timeout=5) != leader
        # ... and the holder's lock never lapsed, nor went to anyone else.
        assert holder.isAcquired("L")
        assert acquire_retrying(other, "L", within=5) is False
        always(lambda: holder.isAcquired("L"), 1.5 * ttl, "the holder kept its lock")
        assert other.tryAcquire("L", sync=True, timeout=5) is False


@pytest.mark.parametrize("cut_off", ["follower", "leader"])
def test_a_cut_off_holders_lock_expires_and_the_two_never_overlap(cut_off: str) -> None:
    ttl = 1.0
    with LocalCluster(3) as cluster:
        m = lock_managers(cluster, ttl)
        leader = cluster.wait_leader()
        holder_at = leader if cut_off == "leader" else next(a for a in cluster.addresses if a != leader)
        other_at = next(a for a in cluster.addresses if a not in (leader, holder_at))
        holder, other = m[holder_at], m[other_at]
        assert holder.tryAcquire("L", sync=True)
        assert other.tryAcquire("L", sync=True) is False

        last_held = [time.time()]  # wall-clock time the holder last saw itself holding
        watching = threading.Event()

        def watch() -> None:
            while not watching.is_set():
                now = time.time()
                if holder.isAcquired("L"):
                    last_held[0] = now
                watching.wait(0.001)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            cluster.network.isolate(holder_at)
            isolated = time.monotonic()
            while True:
                asked = time.time()
                try:
                    if other.tryAcquire("L", sync=True, timeout=2):
                        break
                except RaftkitError:
                    pass  # no leader for a moment (when the leader was cut off)
                assert time.monotonic() - isolated < 4 * ttl, "the vanished holder's lock never expired"
        finally:
            watching.set()
            watcher.join(5)
        # The holder's own view ended before the request that got the lock was made.
        assert last_held[0] < asked
        assert not holder.isAcquired("L") and other.isAcquired("L")
        cluster.network.heal()
        assert holder.tryAcquire("L", sync=True, timeout=5) is False


def test_a_stopped_holders_locks_are_released_from_the_table() -> None:
    ttl = 1.0
    with LocalCluster(3) as cluster:
        m = lock_managers(cluster, ttl)
        gone_at, *alive = cluster.addresses
        assert m[gone_at].tryAcquire("L", sync=True) and m[gone_at].tryAcquire("M", sync=True)
        stopped = time.monotonic()
        cluster.stop(gone_at)
        wait_until(
            lambda: all(not cluster.objs[a]._rk_consumers[0]._locks for a in alive),
            timeout=4 * ttl,
            what="the live nodes' keepers to drop the vanished holder's locks",
        )
        assert time.monotonic() - stopped >= 0.7 * ttl  # not before they could have expired
        assert m[alive[0]].tryAcquire("L", sync=True)


def test_the_keeper_thread_ends_with_its_manager_or_node() -> None:
    def keepers() -> list[threading.Thread]:
        return [t for t in node_threads() if t.name.startswith("raftkit-locks-")]

    lone = ReplLockManager(1.0, selfID="lone")  # never attached
    assert any(t.name == "raftkit-locks-lone" for t in keepers())
    lone.destroy()
    lone.destroy()  # idempotent
    assert not keepers()

    forgotten = ReplLockManager(1.0, selfID="forgotten")
    del forgotten
    gc.collect()
    wait_until(lambda: not keepers(), what="a forgotten manager's keeper to end")

    with LocalCluster(2) as cluster:
        m = lock_managers(cluster, ttl=1.0)
        a, b = cluster.addresses
        assert len(keepers()) == 2
        cluster.stop(a)  # SyncObj.destroy() stops its consumers' helpers
        assert [t.name for t in keepers()] == [f"raftkit-locks-client-{b}"]
        cluster.objs[b].get_node().stop()  # a node stopped underneath: the keeper notices
        wait_until(lambda: not keepers(), what="the keeper of a stopped node to end")
        assert m[b].isAcquired("x") is False


def test_misuse_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="autoUnlockTime must be a positive"):
        ReplLockManager(0)
    manager = ReplLockManager(autoUnlockTime=75)  # the README's call
    try:
        assert ":" in manager.self_id and manager.auto_unlock_time == 75.0
        with pytest.raises(RuntimeError, match="not attached"):
            manager.tryAcquire("x", sync=True)
        with LocalCluster(1) as cluster:
            cluster.add_syncobj(
                cluster.addresses[0],
                lambda a, p, t: SyncObj(a, p, fast_conf(), consumers=[manager], transport=t),
            )
            with pytest.raises(SerializationError, match="type object"):
                manager.tryAcquire(object(), sync=True)
            assert manager.tryAcquire(("tuple", "ids", 1), sync=True)  # any encodable id
    finally:
        manager.destroy()


# -- the replicated table's rule, on its own -------------------------------------------------

clients = st.sampled_from(["A", "B", "C"])
locks = st.sampled_from(["x", "y"])
times = st.floats(0, 40, allow_nan=False)  # proposer clocks, in any order (late, reordered requests)
lifetimes = st.sampled_from([5.0, 10.0])  # clients may be configured differently
lock_lists = st.lists(locks, max_size=2)
table_ops = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), locks, clients, times, lifetimes),
        st.tuples(st.just("refresh"), clients, times, lock_lists, lock_lists),
        st.tuples(st.just("release"), locks, clients),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(ops=table_ops)
def test_the_table_hands_a_lock_over_only_after_release_or_expiry(ops: list[tuple[Any, ...]]) -> None:
    """Whatever order requests with whatever times are logged in, a lock
    changes hands only when its holder released it or the new holder's
    request is at least the holder's autoUnlockTime after its last refresh,
    i.e. when the holder's own view already says "expired"; and a request
    older than its lifetime (next to the newest one seen) is never granted."""
    table = _LockTable()
    run = {name: getattr(_LockTable, name).func for name in ("acquire", "refresh", "release")}
    newest = 0.0
    for op in ops:
        before = dict(table._locks)
        result = run[op[0]](table, *op[1:])
        if op[0] != "release":
            newest = max(newest, op[3] if op[0] == "acquire" else op[2])
        if op[0] == "acquire" and result:
            assert newest - op[3] < op[4], f"stale request granted: {op}"
        for lock, (holder, since, _) in table._locks.items():
            prev = before.get(lock)
            if prev is None or prev[0] == holder:
                assert prev is None or since >= prev[1], "a holder's time never goes back"
                continue
            assert op[0] == "acquire" and op[3] - prev[1] >= prev[2], f"{lock} taken from {prev} by {op}"
        if op[0] == "release":
            assert table._locks.get(op[1], ("",))[0] != op[2]
