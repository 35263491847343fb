"""The sans-I/O Raft core: pure, deterministic, and driven by ``RawNode``."""

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
