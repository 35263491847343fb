"""Addresses and sockets for the socket transports: parsing ``host:port``,
resolving names with a short cache, binding a listener, tuning a connection."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable
from typing import Any

Address = tuple[str, int]
SockAddr = tuple[int, tuple[Any, ...]]  # (family, sockaddr as getaddrinfo returns it)


def parse_address(text: str) -> Address:
    """``"host:port"`` or ``"[v6 literal]:port"`` -> ``(host, port)``.

    A bare IPv6 literal (``"::1:9000"``) is refused: its port is ambiguous.
    Raises ``ValueError`` with the reason.
    """
    if not isinstance(text, str):
        raise ValueError(f"address must be a 'host:port' string, got {type(text).__name__}")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad address {text!r}: expected '[v6 address]:port'")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError as exc:
            raise ValueError(f"bad address {text!r}: {host!r} is not an IPv6 address") from exc
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"bad address {text!r}: expected 'host:port'")
        if ":" in host:
            raise ValueError(f"bad address {text!r}: write IPv6 addresses as '[{host}]:{port_text}'")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad address {text!r}: port must be a number from 0 to 65535")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    """The inverse of ``parse_address``: brackets around IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class Resolver:
    """Resolves host names on the event loop, remembering answers for ``ttl``
    seconds so reconnect storms do not hammer DNS, but a moved host is still
    found again soon. Failures are never cached: the caller's backoff paces
    the retries."""

    def __init__(
        self, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic, *, prefer_family: str = "any"
    ) -> None:
        self.ttl = ttl
        self.prefer = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}.get(prefer_family)
        self._clock = clock
        self._cache: dict[Address, tuple[float, SockAddr]] = {}

    async def resolve(self, host: str, port: int) -> SockAddr:
        """One ``(family, sockaddr)`` for ``host:port``; ``OSError`` (usually
        ``socket.gaierror``) if the name does not resolve."""
        key = (host, port)
        hit = self._cache.get(key)
        now = self._clock()
        if hit is not None and hit[0] > now:
            return hit[1]
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"no address for {host!r}")
        preferred = [info for info in infos if info[0] == self.prefer]
        family, _, _, _, sockaddr = (preferred or infos)[0]
        answer = (family, sockaddr)
        if not is_ip_literal(host):
            self._cache[key] = (now + self.ttl, answer)
        return answer


def bind_listener(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening TCP socket on exactly one address (the first that ``host``
    resolves to), so binding to port 0 yields one well-defined port."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        if hasattr(socket, "SO_REUSEADDR") and socket.SO_REUSEADDR:
            # Lets a restarted node rebind its port while old connections sit
            # in TIME_WAIT; on POSIX it never lets two live listeners share it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def tune_socket(sock: socket.socket | None, *, keepalive: bool) -> None:
    """TCP_NODELAY (Raft messages are small and latency-bound) and, if asked,
    keepalive probes so a silently dead peer is noticed within a minute or
    so instead of after the OS default of hours."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if keepalive:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
                option = getattr(socket, name, None)
                if option is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError:
        pass  # best effort: an exotic platform refusing an option is no reason to drop the link
