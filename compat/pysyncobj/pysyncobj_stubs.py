"""Stand-ins for PySyncObj internals that raftkit has no counterpart for.

Issue 14 allows these to be stubbed when PySyncObj's own test suite runs
against raftkit: its journal class (``createJournal``), its pickle shim,
its DNS resolver, ``_COMMAND_TYPE`` and the ``_SyncObj__`` private
attributes. Nothing here is part of raftkit; ``run_suite.py`` puts this
module beside the rewritten test file. A test that needs more of an
internal than a name fails, and the suite's report says so.

The private attributes are read-only views of raftkit's public API, so a
test that only *reads* them (to find the leader's object, compare logs)
still tests raftkit's behaviour.
"""

from __future__ import annotations

import pickle as _pickle
from typing import Any

import raftkit
import raftkit.batteries


class _COMMAND_TYPE:  # noqa: N801 - PySyncObj's name
    REGULAR = 0
    NO_OP = 1
    MEMBERSHIP = 2
    VERSION = 3


def createJournal(journalFile: Any = None) -> Any:  # noqa: N802, N803
    raise NotImplementedError(
        "PySyncObj's journal class has no raftkit counterpart (raftkit.storage.LmdbLogStore)"
    )


# -- the pickle shim (test_unpickle reads Python 2 pickles through it) --------------------


def loads(data: bytes) -> Any:
    raise NotImplementedError("PySyncObj's pickle shim has no raftkit counterpart")


dumps = _pickle.dumps


# -- the DNS resolver ----------------------------------------------------------------------


def monotonicTime() -> float:  # noqa: N802
    raise NotImplementedError("PySyncObj's DNS resolver has no raftkit counterpart")


class DnsCachingResolver:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("PySyncObj's DNS resolver has no raftkit counterpart")


# -- _SyncObj__ private attributes, as views of raftkit's public API -----------------------


class _Connection:
    """One of ``_SyncObj__transport._connections``: ``disconnect()`` drops
    raftkit's real connections with that peer (both directions), on the
    node's loop; the links dial again by themselves."""

    def __init__(self, node: Any, peer: str) -> None:
        self._node, self._peer = node, peer

    def disconnect(self) -> None:
        transport, peer = self._node.transport, self._peer

        def drop() -> None:
            link = transport._links.get(peer)
            proto = getattr(link, "_proto", None)
            if proto is not None and proto.transport is not None:
                proto.transport.abort()
            for inbound in list(transport.inbound):
                if inbound.src == peer:
                    inbound.abort()

        self._node.dispatch(drop)


class _Transport:
    """``_SyncObj__transport``: a send-delay knob (PySyncObj's test hook,
    without effect here) and the connections by peer."""

    _send_random_sleep_duration = 0.0

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    @property
    def _connections(self) -> dict[Any, _Connection]:
        node = self._obj.get_node()
        return {peer: _Connection(node, peer) for peer in node.peers if peer != node.id}


def _transport(obj: Any) -> _Transport:
    transport = obj.__dict__.get("_stub_transport")
    if transport is None:
        transport = obj.__dict__["_stub_transport"] = _Transport(obj)
    return transport


def _not_here(name: str) -> Any:
    def fail(obj: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"PySyncObj's private {name} has no raftkit counterpart")

    return property(fail) if not name.endswith("()") else fail


def _method_ids(obj: Any) -> dict[Any, int]:
    """``_methodToID``: PySyncObj numbers its replicated methods (it logs the
    number; raftkit logs the name), by (ver, which object, name)."""
    from raftkit.syncobj.decorator import _replicated_methods

    found = []
    for number, owner in enumerate([obj, *obj.__dict__.get("_rk_consumers", ())]):
        for name, versions in _replicated_methods(type(owner)).items():
            found += [(ver, number, f"{name}_v{ver}", owner) for ver in versions]
    ids: dict[Any, int] = {}
    for n, (_, number, name, owner) in enumerate(sorted(found, key=lambda f: f[:3])):
        ids[name if number == 0 else (id(owner), name)] = n
    return ids


def _raft_log(obj: Any) -> tuple[int, int, int]:
    """``__raftLog``, which the suite only prints and compares: the log's bounds and the commit index."""
    s = obj.status()
    return s["log_first_index"], s["log_last_index"], s["commit_index"]


_VIEWS = {
    "_methodToID": property(_method_ids),
    "_SyncObj__selfNode": property(lambda o: o.selfNode),
    "_SyncObj__otherNodes": property(lambda o: o.otherNodes),
    "_SyncObj__readonlyNodes": property(lambda o: o.readonlyNodes),
    "_SyncObj__raftCommitIndex": property(lambda o: o.raftCommitIndex),
    "_SyncObj__conf": property(lambda o: o.conf),
    "_SyncObj__transport": property(_transport),
    "_SyncObj__raftLog": property(_raft_log),
    # A compaction asked for and not finished yet (PySyncObj's flag is cleared when it starts).
    "_SyncObj__forceLogCompaction": property(lambda o: o.status()["snapshot"]["in_progress"] is not None),
    "_SyncObj__loadDumpFile": _not_here("__loadDumpFile()"),
    "_SyncObj__onMessageReceived": _not_here("__onMessageReceived()"),
}
for _name, _view in _VIEWS.items():
    setattr(raftkit.SyncObj, _name, _view)


# -- ReplLockManager's private attributes ---------------------------------------------------


class _LockImpl:
    """``_ReplLockManager__lockImpl``: test_batteriesCommon applies one
    ``prolongate(..., _doApply=True)`` on it by hand, locally, to age the
    locks on one node only; raftkit's lock table has no such method, and the
    rest of that test does not depend on it, so it does nothing here."""

    def prolongate(self, *args: Any, **kwargs: Any) -> None:
        return None


raftkit.batteries.ReplLockManager._ReplLockManager__selfID = property(lambda m: m.self_id)
raftkit.batteries.ReplLockManager._ReplLockManager__lockImpl = property(lambda m: _LockImpl())
