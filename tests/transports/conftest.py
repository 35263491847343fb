"""Fixtures for the socket transport tests.

Each test gets its own asyncio loop, run in the test's thread: ``net.run``
runs a coroutine to completion and ``net.wait_until`` runs the loop until a
condition holds or a deadline passes (it polls between loop iterations; no
test waits on a fixed sleep). Test modules here have no package, so helpers
are handed out as fixtures rather than imported.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from raftkit.testing.certs import make_ca, make_cert
from raftkit.testing.conformance.transport import Recorder
from raftkit.transports import EncryptedTcpTransport, TcpTransport, TlsTransport

T = TypeVar("T")


class Net:
    """Drives one asyncio loop from the test's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transports: list[TcpTransport] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def wait_until(self, until: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Run the loop until ``until()`` holds (True) or ``timeout`` passes (False)."""

        async def poll() -> bool:
            deadline = self.loop.time() + timeout
            while not until():
                if self.loop.time() >= deadline:
                    return False
                await asyncio.sleep(0.002)
            return True

        return self.loop.run_until_complete(poll())

    def start(self, transport: TcpTransport, node_id: str, handler: Recorder | None = None) -> Recorder:
        handler = handler if handler is not None else Recorder()
        self.run(transport.astart(node_id, handler))
        self.transports.append(transport)
        return handler

    def pair(self, a: TcpTransport, b: TcpTransport) -> tuple[Recorder, Recorder]:
        """Start ``a`` and ``b`` as nodes "a" and "b", each knowing the other."""
        inbox_a, inbox_b = self.start(a, "a"), self.start(b, "b")
        peers = {"a": a.address, "b": b.address}
        a.update_peers(peers)
        b.update_peers(peers)
        return inbox_a, inbox_b


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    """Every transport test runs on asyncio's loop and on uvloop's (the
    ``fast`` extra; a node uses it when installed), whose transports are
    not asyncio classes."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    yield loop
    try:

        async def settle() -> None:
            for _ in range(3):
                await asyncio.sleep(0)

        loop.run_until_complete(settle())
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


@pytest.fixture
def net(loop: asyncio.AbstractEventLoop) -> Iterator[Net]:
    net = Net(loop)
    yield net
    for transport in net.transports:
        loop.run_until_complete(transport.aclose())


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _has_ipv6_loopback()


@pytest.fixture
def ipv6() -> None:
    if not HAS_IPV6:
        pytest.skip("this machine has no IPv6 loopback")


# -- TLS material ---------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the cluster CA, node certificates it signed, and a node
    certificate from an unrelated CA that the cluster must refuse."""

    ca: Path
    nodes: dict[str, tuple[Path, Path]]  # name -> (certfile, keyfile)
    rogue_ca: Path
    rogue: tuple[Path, Path]

    def transport(self, name: str, *, cafile: Path | None = None, **options: Any) -> TlsTransport:
        cert, key = self.rogue if name == "rogue" else self.nodes[name]
        return TlsTransport(cert, key, cafile or self.ca, **options)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    directory = tmp_path_factory.mktemp("tls")
    ca_path, ca, ca_key = make_ca(directory, "cluster-ca")
    rogue_ca_path, rogue_ca, rogue_key = make_ca(directory, "rogue-ca")
    return TlsFiles(
        ca=ca_path,
        nodes={name: make_cert(directory, name, ca, ca_key) for name in ("a", "b", "c")},
        rogue_ca=rogue_ca_path,
        rogue=make_cert(directory, "rogue", rogue_ca, rogue_key),
    )


# -- one factory for every kind ---------------------------------------------------------


@pytest.fixture
def make_transport(tls_files: TlsFiles) -> Callable[..., TcpTransport]:
    """``make_transport(kind, name="a", **options)``, kind being "tcp",
    "encrypted" or "tls" (``name`` picks the node certificate)."""

    def make(kind: str, name: str = "a", **options: Any) -> TcpTransport:
        if kind == "tcp":
            return TcpTransport(**options)
        if kind == "encrypted":
            return EncryptedTcpTransport("correct horse battery staple", salt=b"raftkit tests", **options)
        if kind == "tls":
            return tls_files.transport(name, **options)
        raise ValueError(kind)

    return make
