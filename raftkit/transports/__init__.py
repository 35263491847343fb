"""Transports: how Raft messages and snapshots travel between nodes."""

from raftkit.transports.base import InboundHandler, Transport
from raftkit.transports.memory import Frame, MemoryNetwork, MemoryTransport

__all__ = ["Frame", "InboundHandler", "MemoryNetwork", "MemoryTransport", "Transport"]
