"""Zero-downtime upgrades: ``@replicated(ver=N)`` definitions, the cluster's
code version (``set_code_version`` / PySyncObj's ``setCodeVersion``), how a
call picks its implementation, snapshots carrying the version, and a node
running old code stopping instead of diverging."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from raftkit import FAIL_REASON, CallError, SyncObj, SyncObjConf, SyncObjConsumer, replicated, replicated_sync
from raftkit.serializers.msgpack_serializer import MsgpackSerializer
from raftkit.storage.memory import MemoryLogStore
from raftkit.storage.memory_snapshotter import MemorySnapshotter
from raftkit.syncobj.decorator import _Raised, _replicated_methods
from raftkit.syncobj.object_machine import _ObjectStateMachine
from raftkit.syncobj.versions import CodeVersionError, UnsupportedCodeVersionError
from raftkit.testing.cluster import LocalCluster, fast_conf, wait_until

UNSUPPORTED = (
    "cluster switched to code version 1 but this process supports up to 0: "
    "upgrade this node; it stops applying until then"
)

# -- two deployments of one service: same method names, different code ----------------


class _Store(SyncObj):
    def __init__(self, address: str, partners: list[str], conf: SyncObjConf, **kw: Any) -> None:
        super().__init__(address, partners, conf, **kw)
        self.items: list[str] = []


class StoreV0(_Store):
    """The code running before the upgrade."""

    @replicated
    def add(self, item: str) -> str:
        self.items.append(item)
        return f"v0:{item}"


class StoreV1(_Store):
    """The code being deployed: the old behaviour, and the new one from version 1."""

    @replicated
    def add(self, item: str) -> str:
        self.items.append(item)
        return f"v0:{item}"

    @replicated(ver=1)
    def add(self, item: str) -> str:  # noqa: F811 - a second version of the same method
        self.items.append(item.upper())
        return f"v1:{item}"

    @replicated(ver=1)
    def tag(self, item: str, label: str = "new") -> str:
        """Only exists from version 1 on."""
        self.items.append(f"{item}#{label}")
        return label


def conf(**overrides: Any) -> SyncObjConf:
    return fast_conf(snapshot_mode="inline", log_compaction_keep=0, **overrides)


def items(objs: list[_Store]) -> list[list[str]]:
    return [list(o.items) for o in objs]


# -- definitions ---------------------------------------------------------------------------


def test_several_versions_of_one_name_live_in_one_class_body() -> None:
    versions = _replicated_methods(StoreV1)
    assert sorted(versions["add"]) == [0, 1] and sorted(versions["tag"]) == [1]
    assert versions["add"][1].func is not versions["add"][0].func
    assert sorted(_replicated_methods(StoreV0)["add"]) == [0]

    class StoreV2(StoreV1):  # a subclass adds a version and keeps the inherited ones
        @replicated_sync(ver=2)
        def add(self, item: str) -> str:
            return f"v2:{item}"

    assert sorted(_replicated_methods(StoreV2)["add"]) == [0, 1, 2]
    assert _replicated_methods(StoreV2)["add"][2].sync_default is True


def test_a_class_body_run_twice_collects_its_own_definitions_each_time() -> None:
    def factory() -> type:
        class Made(SyncObj):
            @replicated
            def m(self) -> int:
                return 0

            @replicated(ver=3)
            def m(self) -> int:  # noqa: F811
                return 3

            @replicated(ver=5)
            def shadowed(self) -> None: ...

            def shadowed(self) -> None: ...  # noqa: F811 - a plain def wins: not replicated

        return Made

    first, second = factory(), factory()
    assert sorted(_replicated_methods(first)["m"]) == sorted(_replicated_methods(second)["m"]) == [0, 3]
    assert "shadowed" not in _replicated_methods(second)
    assert _replicated_methods(second)["m"][3].func is not _replicated_methods(first)["m"][3].func


class _Base(SyncObj):
    @replicated
    def mark(self) -> str:
        return "base"


class _Derived(_Base):
    @replicated(ver=1)
    def mark(self) -> str:
        return "derived"


def test_one_definition_called_through_two_classes_runs_each_class_newest() -> None:
    """``_Base.mark`` called on a ``_Derived`` runs ``_Derived``'s newest
    definition, on a ``_Base`` its own, however the calls alternate: the
    per-call lookup of the newest definition remembers the latest class, and
    must never answer for another."""
    base = _Base("127.0.0.1:1", [], fast_conf(autoTick=False))
    derived = _Derived("127.0.0.1:2", [], fast_conf(autoTick=False))
    try:
        seen = [_Base.mark(obj, _doApply=True) for obj in (base, derived, base, derived, derived, base)]
        assert seen == ["base", "derived", "base", "derived", "derived", "base"]
    finally:
        base._destroy()
        derived._destroy()


def test_bad_versions_are_refused_when_the_class_is_defined() -> None:
    with pytest.raises(ValueError, match="must be >= 0, got -1"):
        replicated(ver=-1)
    with pytest.raises(TypeError, match="must be an int >= 0, got str '1'"):
        replicated(ver="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got bool"):
        replicated_sync(ver=True)
    with pytest.raises(TypeError, match="got float"):
        replicated_sync(ver=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Twice\.m is defined twice with ver=2 \(lines \d+ and \d+\)"):

        class Twice(SyncObj):
            @replicated(ver=2)
            def m(self) -> None: ...

            @replicated(ver=2)
            def m(self) -> None: ...  # noqa: F811


# -- one cluster through an upgrade ------------------------------------------------------------


def test_calls_run_the_version_in_force_on_every_node_before_and_after_the_switch(
    cluster: LocalCluster,
) -> None:
    changes: list[tuple[str, int, int]] = []
    lock = threading.Lock()

    def make(address: str, partners: list[str], transport: Any) -> StoreV1:
        def changed(old: int, new: int) -> None:
            with lock:
                changes.append((address, old, new))

        return StoreV1(address, partners, conf(onCodeVersionChanged=changed), transport=transport)

    objs = cluster.add_syncobjs(make)
    leader = cluster.objs[cluster.wait_leader()]
    follower = cluster.objs[cluster.followers()[0]]
    assert isinstance(follower, StoreV1)
    s = follower.status()
    assert (s["code_version"], s["code_version_supported"]) == (0, 1)

    assert follower.add("a", sync=True) == "v0:a"
    with pytest.raises(LookupError, match=r"no implementation for code version 0 .*set_code_version\(1\)"):
        follower.tag("x", sync=True)  # only defined from version 1: refused the same way everywhere
    with pytest.raises(TypeError, match="tag"):
        follower.tag("x", "label", "extra")  # no definition takes that: refused before it is logged

    assert follower.set_code_version(1) == 1  # sync by default: returns once applied here
    wait_until(lambda: all(o.get_code_version() == 1 for o in objs), what="version 1 everywhere")
    assert leader.add("b", sync=True) == "v1:b"
    assert follower.tag("c", label="t", sync=True) == "t"
    wait_until(lambda: items(objs) == [["a", "B", "c#t"]] * 3, what="the same items everywhere")

    assert follower.set_code_version(1) == 1  # already in force: a no-op
    with pytest.raises(CodeVersionError, match="only go up"):
        follower.set_code_version(0)
    with pytest.raises(CodeVersionError, match="supports code versions up to 1"):
        follower.set_code_version(2)  # nobody has it: refused before anything is logged
    with pytest.raises(ValueError, match=">= 0"):
        follower.set_code_version(-1)
    with pytest.raises(TypeError, match="int"):
        follower.set_code_version("2")  # type: ignore[arg-type]

    wait_until(lambda: len(changes) == 3, what="onCodeVersionChanged on every node")
    assert sorted(changes) == [(a, 0, 1) for a in cluster.addresses]
    g = follower.getStatus()
    assert (g["enabled_code_version"], g["self_code_version"]) == (1, 1)


def test_pysyncobj_set_code_version_with_callback_and_a_lost_race(cluster: LocalCluster) -> None:
    class Tally(SyncObjConsumer):
        def __init__(self) -> None:
            super().__init__()
            self.total = 0

        @replicated
        def add(self, n: int) -> int:
            self.total += n
            return self.total

        @replicated(ver=2)
        def add(self, n: int) -> int:  # noqa: F811 - doubles from version 2 on
            self.total += 2 * n
            return self.total

    tallies: dict[str, Tally] = {}

    def make(address: str, partners: list[str], transport: Any) -> SyncObj:
        tallies[address] = Tally()
        return SyncObj(address, partners, conf(), consumers=[tallies[address]], transport=transport)

    objs = cluster.add_syncobjs(make)
    cluster.wait_leader()
    obj, tally = objs[1], tallies[cluster.addresses[1]]
    assert obj.get_supported_code_version() == 2  # consumers' versions count

    results: list[tuple[Any, Any]] = []
    with pytest.raises(CodeVersionError, match="supports code versions up to 2"):
        obj.setCodeVersion(3, callback=lambda r, e: results.append((r, e)))
    assert obj.setCodeVersion(1, callback=lambda r, e: results.append((r, e))) is None
    wait_until(lambda: results, what="the callback")
    assert results == [(1, FAIL_REASON.SUCCESS)] and obj.getCodeVersion() == 1
    assert tally.add(1, sync=True) == 1  # version 1: the highest ver <= 1 is 0

    # Two switches proposed before either applied: the later, lower one loses, on every node alike.
    results.clear()
    obj.set_code_version(2, sync=False)
    obj.set_code_version(1, callback=lambda r, e: results.append((r, e)))
    wait_until(lambda: results, what="the losing switch's callback")
    (result, err), = results
    assert result is None and isinstance(err, CallError) and err == FAIL_REASON.METHOD_RAISED
    assert isinstance(err.exception, CodeVersionError) and "cannot go back to 1" in str(err.exception)
    assert obj.get_code_version() == 2 and tally.add(1, sync=True) == 3
    wait_until(lambda: [t.total for t in tallies.values()] == [3, 3, 3], what="the same total everywhere")


# -- snapshots carry the version ---------------------------------------------------------------


def test_restarted_and_new_nodes_learn_the_version_from_a_snapshot(cluster: LocalCluster) -> None:
    stores = {a: (MemoryLogStore(), MemorySnapshotter()) for a in cluster.addresses}

    def make(address: str, partners: list[str], transport: Any, **over: Any) -> StoreV1:
        log_store, snapshotter = stores[address]
        return StoreV1(address, partners, conf(**over), transport=transport, log_store=log_store,
                       snapshotter=snapshotter)

    objs = cluster.add_syncobjs(make)
    first = objs[0]
    cluster.wait_leader()
    first.add("a", sync=True)
    first.set_code_version(1)
    first.add("b", sync=True)
    wait_until(lambda: items(objs) == [["a", "B"]] * 3, what="both items everywhere")
    for o in objs:
        o.force_log_compaction().result(5)  # the switch is now only in the snapshots

    # A restart from its own storage: recovery restores the snapshot before the node runs.
    node3 = cluster.addresses[2]
    cluster.stop(node3)
    manual = make(node3, cluster.partners(node3), cluster.transport(), autoTick=False)
    assert manual.status()["recovery"]["restored"]
    assert manual.get_code_version() == 1 and manual.items == ["a", "B"]
    manual.destroy()

    # A new, empty node: the leader's log starts after the switch, so it sends its snapshot.
    stores[node3] = (MemoryLogStore(), MemorySnapshotter())
    fresh = cluster.add_syncobj(node3, make)
    wait_until(lambda: (fresh.get_code_version(), fresh.items) == (1, ["a", "B"]), what="the snapshot")
    # It got a snapshot, not the entries. status() is the copy the loop refreshes
    # after each Ready, so it may lag the state machine just restored: wait for it.
    wait_until(lambda: fresh.status()["log_first_index"] > 1, what="a log that starts after the snapshot")
    assert fresh.add("c", sync=True) == "v1:c"
    wait_until(lambda: items(objs[:2] + [fresh]) == [["a", "B", "C"]] * 3, what="'C' everywhere")


# -- a node still running old code -------------------------------------------------------------


def test_a_node_with_old_code_stops_applying_then_catches_up_once_upgraded(
    cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    old_address = cluster.addresses[2]
    storage = {"log_store": MemoryLogStore(), "snapshotter": MemorySnapshotter()}

    def make(address: str, partners: list[str], transport: Any) -> _Store:
        if address != old_address:
            return StoreV1(address, partners, conf(), transport=transport)
        # storage_retry_interval: the blocked node retries the entry often, to show it logs its error once
        return StoreV0(address, partners, conf(storage_retry_interval=0.05), transport=transport, **storage)

    caplog.set_level(logging.INFO)
    objs = cluster.add_syncobjs(make)
    new, old = objs[0], objs[2]
    assert isinstance(new, StoreV1) and isinstance(old, StoreV0)
    cluster.wait_leader()
    assert old.add("a", sync=True) == "v0:a"
    wait_until(lambda: items(objs) == [["a"]] * 3, what="'a' everywhere")

    with pytest.raises(CodeVersionError, match="supports code versions up to 0"):
        old.set_code_version(1)  # its own code cannot follow
    assert new.set_code_version(1) == 1
    assert new.add("b", sync=True) == "v1:b"
    wait_until(lambda: items(objs[:2]) == [["a", "B"]] * 2, what="the upgraded nodes go on")

    wait_until(lambda: UNSUPPORTED in (old.status()["error"] or ""), what="the old node reporting why")
    assert old.items == ["a"] and old.get_code_version() == 0  # stopped, not diverged
    s = old.status()
    assert s["applied_index"] < s["commit_index"] and s["code_version_supported"] == 0

    # The node keeps retrying the entry; the reason is logged once all the same.
    # (Counted in _call_slow, which a set_code_version takes whether its
    # entry carries one command or several.)
    refusals: list[int] = []
    sm = old._rk_sm
    call = sm._call_slow

    def counted(decoded: Any) -> Any:
        try:
            return call(decoded)
        except UnsupportedCodeVersionError:
            refusals.append(1)
            raise

    sm._call_slow = counted  # type: ignore[method-assign]
    wait_until(lambda: len(refusals) >= 3, what="the node retrying the entry")
    ours = [
        r for r in caplog.records if r.name == "raftkit.syncobj.object_machine" and r.levelno == logging.ERROR
    ]
    assert [r.getMessage() for r in ours] == [f"{old_address}: {UNSUPPORTED}"]

    # Deploy the new code on that node: a new process object over the same storage.
    cluster.stop(old_address)
    upgraded = cluster.add_syncobj(
        old_address, lambda a, p, t: StoreV1(a, p, conf(), transport=t, **storage)
    )
    wait_until(lambda: upgraded.items == ["a", "B"], what="the upgraded node catching up")
    assert upgraded.get_code_version() == 1 and upgraded.status()["error"] is None
    assert upgraded.add("c", sync=True) == "v1:c"
    wait_until(lambda: items(objs[:2] + [upgraded]) == [["a", "B", "C"]] * 3, what="'C' everywhere")


# -- the state machine's dispatch cache ------------------------------------------------------


class _Owner:
    """Just what _ObjectStateMachine needs of a SyncObj, with StoreV1's ``add``."""

    _rk_consumers: list[Any] = []
    _rk_address = "owner"

    def __init__(self) -> None:
        self.items: list[str] = []

    def _rk_code_version_changed(self, old: int, new: int) -> None:
        pass

    add = StoreV1.__dict__["add"]


def _sm() -> Any:
    return _ObjectStateMachine(_Owner(), MsgpackSerializer())  # type: ignore[arg-type]


def _calls(*calls: tuple[int, str, list[Any]]) -> list[bytes]:
    return [MsgpackSerializer().dumps([target, name, args, {}]) for target, name, args in calls]


def test_a_switch_inside_a_batch_entry_changes_the_implementation_of_the_calls_after_it() -> None:
    sm = _sm()
    batch = _calls((-1, "add", ["a"]), (-2, "set_code_version", [1]), (-1, "add", ["b"]))
    outcomes = sm.apply_entries(1, batch)
    assert [result for result, _ in outcomes] == ["v0:a", 1, "v1:b"]
    assert sm.apply_entries(2, _calls((-1, "add", ["c"]))) == [("v1:c", None)]


def test_a_switch_inside_an_entry_applies_to_a_method_already_resolved_before_it() -> None:
    """The entry's loop keeps the resolved methods at hand: a switch in the
    middle must still reach the calls after it (v0's ``add`` was resolved
    by an earlier entry, so it is in the cache when the switching entry starts)."""
    sm = _sm()
    assert sm.apply_entries(1, _calls((-1, "add", ["warm"]))) == [("v0:warm", None)]
    batch = _calls((-1, "add", ["a"]), (-2, "set_code_version", [1]), (-1, "add", ["b"]))
    assert [result for result, _ in sm.apply_entries(2, batch)] == ["v0:a", 1, "v1:b"]


def test_a_restored_code_version_picks_the_implementation_of_the_next_call() -> None:
    sm = _sm()
    assert sm.apply_entries(1, _calls((-1, "add", ["a"]))) == [("v0:a", None)]  # v0 resolved and kept
    sm._restore_version({"code_version": 1})  # what installing a snapshot taken at version 1 does
    assert sm.apply_entries(2, _calls((-1, "add", ["b"]))) == [("v1:b", None)]
    sm._restore_version({"code_version": 0})  # an older snapshot (a node rebuilt from an old backup)
    assert sm.apply_entries(3, _calls((-1, "add", ["c"]))) == [("v0:c", None)]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("not a call", "malformed replicated call"),
        ([-1, "add", ["a"]], "malformed replicated call"),  # three fields
        ([-1, ["add"], ["a"], {}], "has no replicated method"),  # an unhashable name
        ([-1, 7, ["a"], {}], "has no replicated method"),
        ([-1, "items", [], {}], "has no replicated method"),  # an attribute, not a replicated method
        ([-1, "add", 5, {}], "must be an iterable"),  # args not an array
        ([-1, "add", ["a"], ["b"]], "must be a mapping"),
        ([5, "add", ["a"], {}], "consumer #5"),
    ],
)
def test_a_malformed_call_in_the_log_is_its_own_error_and_changes_nothing(call: Any, error: str) -> None:
    # The log holds whatever a leader appended; every node must reach the
    # same verdict on it, and the calls around it run as usual.
    sm = _sm()
    sm.apply_entries(1, _calls((-1, "add", ["warm"])))  # the fast path has "add" from here on
    bad = MsgpackSerializer().dumps(call)
    before = list(sm._owner.items)
    (result, _), (after, _) = sm.apply_entries(2, [bad, *_calls((-1, "add", ["ok"]))])
    assert isinstance(result, _Raised), f"no error: {result!r}"
    with pytest.raises(Exception, match=error):
        raise result.exception
    assert after == "v0:ok" and sm._owner.items == [*before, "ok"]
