"""Ready-made replicated objects ("batteries", as in PySyncObj): counters,
dicts, lists, sets, queues, locks and ``LmdbDict``, each a
``SyncObjConsumer`` with ``@replicated`` methods.

May import ``raftkit.syncobj`` and everything below it (``runtime``,
``builder``, ``admin``, ``core``, the plug-ins, ``errors``); never ``cli``
or ``testing``.

Names are imported on first use, so ``import raftkit.batteries`` does not
load ``lmdb`` until ``LmdbDict`` is asked for.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raftkit.batteries.containers import ReplDict, ReplList, ReplSet
    from raftkit.batteries.counter import ReplCounter
    from raftkit.batteries.lmdb_dict import LmdbDict, LmdbDictStateMachine
    from raftkit.batteries.locks import ReplLockManager
    from raftkit.batteries.queues import ReplPriorityQueue, ReplQueue

_EXPORTS = {
    "LmdbDict": "raftkit.batteries.lmdb_dict",
    "LmdbDictStateMachine": "raftkit.batteries.lmdb_dict",
    "ReplCounter": "raftkit.batteries.counter",
    "ReplList": "raftkit.batteries.containers",
    "ReplDict": "raftkit.batteries.containers",
    "ReplSet": "raftkit.batteries.containers",
    "ReplQueue": "raftkit.batteries.queues",
    "ReplPriorityQueue": "raftkit.batteries.queues",
    "ReplLockManager": "raftkit.batteries.locks",
}

__all__ = ["LmdbDict", "LmdbDictStateMachine"]
__all__ += ["ReplCounter", "ReplDict", "ReplList", "ReplLockManager"]
__all__ += ["ReplPriorityQueue", "ReplQueue", "ReplSet"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
