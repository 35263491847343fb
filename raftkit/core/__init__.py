"""The sans-I/O Raft core: the protocol as pure, deterministic code driven
by ``RawNode``. It reads no clock, opens no socket and starts no thread: a
caller ticks it, steps messages into it and carries out the ``Ready`` it
returns (messages to send, entries to persist and apply). The node runtime
and the simulator are two such callers.

May import only itself, ``raftkit.errors`` and the ``LogStore`` interface
(``raftkit.storage.log_store``) it persists through.
"""

from raftkit.core.raft import RaftConfig
from raftkit.core.rawnode import RawNode, Status
from raftkit.core.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    NodeId,
    ReadState,
    Ready,
    Role,
    SnapshotMeta,
    SoftState,
)

__all__ = [
    "ConfState",
    "Entry",
    "EntryKind",
    "HardState",
    "Message",
    "MessageType",
    "NodeId",
    "RaftConfig",
    "RawNode",
    "ReadState",
    "Ready",
    "Role",
    "SnapshotMeta",
    "SoftState",
    "Status",
]
