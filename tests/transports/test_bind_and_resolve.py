"""Start-up robustness: a busy port is retried a bounded number of times,
and a host name that resolves to both families honours the preference."""

from __future__ import annotations

import asyncio
import socket

import pytest

from raftkit.errors import TransportError
from raftkit.testing.conformance.transport import Recorder
from raftkit.transports import TcpTransport
from raftkit.transports.netutil import Resolver


def test_busy_port_fails_after_bounded_retries_with_a_clear_error() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    transport = TcpTransport(f"127.0.0.1:{port}", bind_retries=2, bind_retry_delay=0.01)
    try:
        with pytest.raises(TransportError, match=rf"cannot listen on 127\.0\.0\.1:{port} after 3 attempts"):
            asyncio.run(transport.astart("a", Recorder()))
    finally:
        holder.close()


def test_port_freed_during_retries_is_bound() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    transport = TcpTransport(f"127.0.0.1:{port}", bind_retries=20, bind_retry_delay=0.01)

    async def scenario() -> str | None:
        asyncio.get_running_loop().call_later(0.02, holder.close)
        await transport.astart("a", Recorder())
        address = transport.address
        await transport.aclose()
        return address

    assert asyncio.run(scenario()) == f"127.0.0.1:{port}"


@pytest.mark.parametrize(("prefer", "family"), [("ipv4", socket.AF_INET), ("ipv6", socket.AF_INET6)])
def test_resolver_prefers_the_requested_family(monkeypatch, prefer: str, family: int) -> None:
    answers = [
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 7000, 0, 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 7000)),
    ]

    async def fake_getaddrinfo(*args, **kwargs):
        return answers

    async def resolve() -> tuple:
        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo)
        return await Resolver(prefer_family=prefer).resolve("db.example", 7000)

    assert asyncio.run(resolve())[0] == family


def test_unknown_family_preference_is_refused() -> None:
    with pytest.raises(ValueError, match="prefer_family"):
        TcpTransport(prefer_family="ipx")
