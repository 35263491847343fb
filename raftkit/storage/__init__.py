"""Log stores and snapshotters: where a node's log and snapshots persist
(memory, files, LMDB, a forked copy-on-write child), behind the
``LogStore`` and ``Snapshotter`` interfaces, and the strategies that
capture a state machine into a snapshot (``capture``).

A plug-in package: it may import ``raftkit.errors``, ``raftkit.core``
(types), ``raftkit.serializers`` (the record codec) and
``raftkit.state_machines`` (the fork snapshotter captures one); never the
runtime, ``syncobj``, ``cli`` or ``testing``.

The names below are imported on first use, so ``import raftkit.storage``
stays cheap and does not load ``lmdb`` until ``LmdbLogStore`` is asked for.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raftkit.storage.auto_capture import AutoCapture
    from raftkit.storage.capture import InlineCapture, SnapshotCapture, ThreadCapture
    from raftkit.storage.file_snapshotter import FileSnapshotter
    from raftkit.storage.fork_snapshotter import ForkCapture, ForkSnapshotter
    from raftkit.storage.lmdb_log_store import LmdbLogStore
    from raftkit.storage.log_store import LogStore
    from raftkit.storage.memory import MemoryLogStore
    from raftkit.storage.memory_snapshotter import MemorySnapshotter
    from raftkit.storage.snapshotter import SnapshotSink, SnapshotSource, Snapshotter

_EXPORTS = {
    "AutoCapture": "raftkit.storage.auto_capture",
    "FileSnapshotter": "raftkit.storage.file_snapshotter",
    "ForkCapture": "raftkit.storage.fork_snapshotter",
    "ForkSnapshotter": "raftkit.storage.fork_snapshotter",
    "InlineCapture": "raftkit.storage.capture",
    "LmdbLogStore": "raftkit.storage.lmdb_log_store",
    "LogStore": "raftkit.storage.log_store",
    "MemoryLogStore": "raftkit.storage.memory",
    "MemorySnapshotter": "raftkit.storage.memory_snapshotter",
    "SnapshotCapture": "raftkit.storage.capture",
    "SnapshotSink": "raftkit.storage.snapshotter",
    "SnapshotSource": "raftkit.storage.snapshotter",
    "Snapshotter": "raftkit.storage.snapshotter",
    "ThreadCapture": "raftkit.storage.capture",
}

__all__ = [
    "AutoCapture",
    "FileSnapshotter",
    "ForkCapture",
    "ForkSnapshotter",
    "InlineCapture",
    "LmdbLogStore",
    "LogStore",
    "MemoryLogStore",
    "MemorySnapshotter",
    "SnapshotCapture",
    "SnapshotSink",
    "SnapshotSource",
    "Snapshotter",
    "ThreadCapture",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
