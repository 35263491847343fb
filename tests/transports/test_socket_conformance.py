"""The transport conformance suite against each socket transport, over real
sockets on the loopback interface (IPv4, and IPv6 for plain TCP)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from raftkit.errors import TransportError
from raftkit.testing.conformance.transport import Deliver, Recorder, TransportConformance
from raftkit.transports import EncryptedTcpTransport, TcpTransport, TlsTransport, Transport


class _SocketSuite(TransportConformance):
    """Runs the suite on a fresh loop per test, in the test's thread."""

    net: Any

    @pytest.fixture(autouse=True)
    def _use_net(self, net: Any, tls_files: Any) -> None:
        self.net = net
        self.tls_files = tls_files

    def new_transport(self, name: str) -> TcpTransport:
        raise NotImplementedError

    def make_pair(self) -> tuple[Transport, Transport, Deliver]:
        return self.new_transport("a"), self.new_transport("b"), self.net.wait_until

    def start_transport(self, transport: Transport, node_id: str, handler: Recorder) -> None:
        self.net.run(transport.astart(node_id, handler))

    def address_of(self, transport: Transport, node_id: str) -> str:
        assert isinstance(transport, TcpTransport)
        return transport.address


class TestTcpConformance(_SocketSuite):
    def new_transport(self, name: str) -> TcpTransport:
        return TcpTransport("127.0.0.1:0")


@pytest.mark.usefixtures("ipv6")
class TestTcpIpv6Conformance(_SocketSuite):
    def new_transport(self, name: str) -> TcpTransport:
        return TcpTransport("[::1]:0")

    def test_address_is_bracketed(self, pair: Any) -> None:
        assert pair.peers["a"].startswith("[::1]:")


class TestEncryptedTcpConformance(_SocketSuite):
    def new_transport(self, name: str) -> TcpTransport:
        return EncryptedTcpTransport("s3cret", salt=b"conformance")


class TestTlsConformance(_SocketSuite):
    def new_transport(self, name: str) -> TcpTransport:
        return self.tls_files.transport(name)


def test_sync_start_points_to_astart() -> None:
    with pytest.raises(TransportError, match="astart"):
        TcpTransport().start("a", Recorder())


def test_authenticated_flags() -> None:
    assert TcpTransport.authenticated is False
    assert EncryptedTcpTransport.authenticated is True
    assert TlsTransport.authenticated is True


@pytest.mark.parametrize("cls", [EncryptedTcpTransport, TlsTransport])
def test_secure_transports_take_every_tcp_option_through_the_builder(cls: type) -> None:
    """They forward **options to TcpTransport; the node builder must still
    see every TcpTransport option as accepted, and nothing else."""
    from raftkit.builder import _accepted

    options = [
        name
        for name, p in inspect.signature(TcpTransport).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    hints = dict.fromkeys([*options, "idle_timeout", "send_buffer_size"], 1)
    assert set(_accepted(cls, hints, exclude={})) == set(options)
