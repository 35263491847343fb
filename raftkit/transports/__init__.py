"""Transports: how Raft messages and snapshots travel between nodes."""

from raftkit.transports.base import InboundHandler, Transport
from raftkit.transports.encrypted import EncryptedTcpTransport
from raftkit.transports.memory import Frame, MemoryNetwork, MemoryTransport
from raftkit.transports.options import TcpOptions, TransportStats
from raftkit.transports.tcp import TcpTransport
from raftkit.transports.tls import TlsTransport

__all__ = [
    "EncryptedTcpTransport",
    "Frame",
    "InboundHandler",
    "MemoryNetwork",
    "MemoryTransport",
    "TcpOptions",
    "TcpTransport",
    "TlsTransport",
    "Transport",
    "TransportStats",
]
