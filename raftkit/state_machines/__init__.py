"""State machines: the ``StateMachine`` interface a ``Node`` applies
committed commands to, and the machines that ship with raftkit.

* ``StateMachine`` (``base``): apply, snapshot, restore; optional streaming.
* ``LmdbStateMachine`` (``lmdb_machine``): durable state larger than
  memory, applied exactly once across crashes, snapshots streamed
  (``lmdb_snapshot_stream``).
* ``LmdbDictStateMachine`` (``lmdb_dict``): the dict behind
  ``raftkit.batteries.LmdbDict``.
* ``KvStateMachine`` (``kv``): the key-value store ``raftkit node`` serves.

A plug-in package: it may import ``raftkit.errors``, ``raftkit.core``,
``raftkit.serializers`` and ``raftkit.storage`` (file helpers); never the
runtime, ``syncobj``, ``cli`` or ``testing``. The names below are imported on first use, so importing the
interface does not load ``lmdb``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raftkit.state_machines.base import SnapshotWriter, StateMachine
    from raftkit.state_machines.kv import KvStateMachine
    from raftkit.state_machines.lmdb_dict import LmdbDictStateMachine
    from raftkit.state_machines.lmdb_machine import LmdbStateMachine, SnapshotView, StateStorageError

_EXPORTS = {
    "KvStateMachine": "raftkit.state_machines.kv",
    "LmdbDictStateMachine": "raftkit.state_machines.lmdb_dict",
    "LmdbStateMachine": "raftkit.state_machines.lmdb_machine",
    "SnapshotView": "raftkit.state_machines.lmdb_machine",
    "SnapshotWriter": "raftkit.state_machines.base",
    "StateMachine": "raftkit.state_machines.base",
    "StateStorageError": "raftkit.state_machines.lmdb_machine",
}

__all__ = [
    "KvStateMachine",
    "LmdbDictStateMachine",
    "LmdbStateMachine",
    "SnapshotView",
    "SnapshotWriter",
    "StateMachine",
    "StateStorageError",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
