"""PySyncObj's node objects: ``Node`` and ``TCPNode``.

PySyncObj hands nodes around as objects (``_getLeader()``, ``selfNode``,
``otherNodes``, the ``leader`` of ``getStatus()``) and accepts them where
it takes addresses. raftkit keeps addresses as strings inside; these
classes are the PySyncObj face of them.

A node equals another node with the same id, and, unlike PySyncObj's, also
the id string itself (``leader == "10.0.0.1:4321"``): raftkit 0.1 returned
strings there, and the hash is the id's, so both forms mix in sets and dicts.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from raftkit.transports.netutil import format_address, parse_address

__all__ = ["Node", "TCPNode", "pysyncobj_address", "readonly_address", "split_address"]


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` split on the *last* colon, as PySyncObj does
    (``'::1:6000'`` is host ``::1``, port 6000; ``'[::1]:6000'`` too).
    ValueError names the address when it has no port."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:  # only an IPv6 literal has colons ('::1' alone is no host ':' and port 1)
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            raise ValueError(f"{address!r} is not host:port") from None
    return host, int(port)


def pysyncobj_address(text: str) -> str:
    """An address as PySyncObj accepts it, as raftkit's transports take it:
    an IPv6 literal written without brackets (``'::1:6000'``: PySyncObj
    splits on the last colon) gets them (``'[::1]:6000'``). Anything else
    is left as it is (a transport that is not TCP may name nodes freely)."""
    if text.count(":") < 2 or text.startswith("["):
        return text
    host, port = split_address(text)
    return format_address(host, port)


def readonly_address(partners: list[str]) -> str:
    """Where a read-only node listens: a free port on the local address
    that reaches the first partner (the members send it the log there)."""
    host, port = parse_address(partners[0])
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(sockaddr)  # no packet is sent: this only picks the route
            local = probe.getsockname()[0]
        with socket.socket(family, socket.SOCK_STREAM) as listener:
            listener.bind((local, 0))
            free = listener.getsockname()[1]
    except OSError as exc:
        raise OSError(f"a read-only node found no local address that reaches {partners[0]}: {exc}") from exc
    return format_address(local, free)


class Node:
    """Any node of the cluster, known by an immutable, hashable ``id``."""

    _id: Any  # set through object.__setattr__: __setattr__ refuses it

    def __init__(self, id: Any, **kwargs: Any) -> None:  # noqa: A002 - PySyncObj's name
        object.__setattr__(self, "_id", id)
        for key, value in kwargs.items():
            setattr(self, key, value)

    @property
    def id(self) -> Any:
        return self._id

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("id", "_id"):
            raise AttributeError("Node id is not mutable")
        object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Node):
            return bool(self._id == other._id)
        if isinstance(other, str):
            return bool(self._id == other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._id)

    def __str__(self) -> str:
        return str(self._id)

    def __repr__(self) -> str:
        extra = "".join(f", {k} = {v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({self._id!r}{extra})"


class TCPNode(Node):
    """A node reached over TCP: its id is its address, ``host:port``."""

    _host: str
    _port: int

    def __init__(self, address: str, **kwargs: Any) -> None:
        try:
            host, port = split_address(address)
        except ValueError:  # a node named otherwise (a memory transport's "node1")
            host, port = address, 0
        object.__setattr__(self, "_host", host)
        object.__setattr__(self, "_port", port)
        super().__init__(address, **kwargs)

    @property
    def address(self) -> str:
        return str(self._id)

    @property
    def host(self) -> str:
        return str(self._host)

    @property
    def port(self) -> int:
        return int(self._port)

    @property
    def ip(self) -> str:
        """The host as given (raftkit resolves names when it dials)."""
        return str(self._host)
