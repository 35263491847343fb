"""Transports: how Raft messages and snapshots travel between nodes, behind
the ``Transport`` interface: in memory (tests, the simulator's twin), TCP,
TCP encrypted and authenticated with a cluster password, and mutual TLS.

A plug-in package: it may import ``raftkit.errors``, ``raftkit.core``
(message types) and ``raftkit.serializers`` (the wire codec); never the
runtime, ``syncobj``, ``cli`` or ``testing``.
"""

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
