"""A peer's claimed node id is bound to its credentials: a TLS certificate
must name the id its holder claims (dialler and listener alike), the id in
HELLO must be the one the password handshake authenticated, and on every
transport each message must come from its connection's HELLO id."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from raftkit.core.types import Message, MessageType
from raftkit.serializers import wire
from raftkit.transports import EncryptedTcpTransport, TcpTransport
from raftkit.transports.encrypted import EncryptedChannel, cluster_salt, derive_cluster_key
from raftkit.transports.framing import Channel, FrameDecoder, FrameKind, batch_parts, encode_hello
from raftkit.transports.netutil import parse_address

FAST = {"backoff_min": 0.01, "backoff_max": 0.05}
PASSWORD = "correct horse battery staple"


def hb(src: str, commit: int) -> Message:
    return Message(type=MessageType.HEARTBEAT, src=src, dst="b", term=1, commit=commit)


def test_a_certificate_that_does_not_name_the_claimed_node_is_refused(
    net: Any, tls_files: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # "c" holds a certificate from the cluster CA, but claims to be node "a".
    impostor = tls_files.transport("c", **FAST)
    b = tls_files.transport("b", **FAST)
    _, inbox_b = net.pair(impostor, b)  # started as nodes "a" and "b"
    impostor.send([hb("a", 1)])
    assert net.wait_until(lambda: b.stats.connections_rejected >= 1)
    assert not inbox_b.heard_anything
    assert "certificate names c, not node 'a'" in caplog.text


def test_a_listener_whose_certificate_names_another_node_is_refused(
    net: Any, tls_files: Any, caplog: pytest.LogCaptureFixture
) -> None:
    a = tls_files.transport("a", **FAST)
    b = tls_files.transport("c", **FAST)  # at b's address, with c's certificate
    _, inbox_b = net.pair(a, b)
    with caplog.at_level(logging.DEBUG, logger="raftkit.transports"):
        a.send([hb("a", 1)])
        assert net.wait_until(lambda: a.stats.dial_failures >= 2)
    assert not inbox_b.heard_anything
    assert "the listener's certificate names c, not node 'b'" in caplog.text


def test_matching_certificates_still_connect(net: Any, tls_files: Any) -> None:
    a, b = tls_files.transport("a", **FAST), tls_files.transport("b", **FAST)
    _, inbox_b = net.pair(a, b)
    a.send([hb("a", 1)])
    assert net.wait_until(lambda: len(inbox_b.messages) == 1)


async def _raw_session(
    address: str, channel: Channel, hello: bytes, batch: bytes, *, wait: bool = True
) -> bool:
    """Handshake over ``channel``, send HELLO and one batch; with ``wait``,
    True if the listener then closed the connection."""
    reader, writer = await asyncio.open_connection(*parse_address(address))
    decoder = FrameDecoder()
    try:
        writer.write(channel.take_output())
        while not channel.established:
            data = await asyncio.wait_for(reader.read(65536), 5)
            if not data:
                return True
            for frame in decoder.feed(data):
                channel.open(*frame)
            writer.write(channel.take_output())
        writer.write(channel.seal(FrameKind.HELLO, [hello]))
        writer.write(channel.seal(FrameKind.BATCH, batch_parts([batch])))
        await writer.drain()
        if not wait:
            return False
        return await asyncio.wait_for(reader.read(1), 5) == b""
    finally:
        writer.close()


def test_a_hello_naming_another_node_than_the_handshake_is_refused(net: Any) -> None:
    b = EncryptedTcpTransport(PASSWORD, cluster_id="tests", **FAST)
    inbox_b = net.start(b, "b")
    key = derive_cluster_key(PASSWORD, cluster_salt("tests"))
    # A password holder authenticated as "x" that then claims to be "a".
    channel = EncryptedChannel(key, client_side=True, node_id="x", peer_id="b")
    closed = net.run(
        _raw_session(b.address, channel, encode_hello("a", "b"), wire.encode_message(hb("a", 7)))
    )
    assert closed
    assert b.stats.connections_rejected == 1
    assert not inbox_b.heard_anything
    # The same holder, honest about its id, is heard.
    channel = EncryptedChannel(key, client_side=True, node_id="x", peer_id="b")
    net.run(
        _raw_session(b.address, channel, encode_hello("x", "b"), wire.encode_message(hb("x", 8)), wait=False)
    )
    assert net.wait_until(lambda: [m.commit for m in inbox_b.messages] == [8])


def test_on_plain_tcp_a_message_from_another_id_than_hello_closes_the_connection(net: Any) -> None:
    b = TcpTransport(**FAST)
    inbox_b = net.start(b, "b")
    closed = net.run(
        _raw_session(b.address, Channel(), encode_hello("x", "b"), wire.encode_message(hb("a", 7)))
    )
    assert closed
    assert not inbox_b.heard_anything


def test_nodes_with_different_cluster_ids_do_not_connect_and_with_the_same_id_do(net: Any) -> None:
    a = EncryptedTcpTransport(PASSWORD, cluster_id="east", **FAST)
    b = EncryptedTcpTransport(PASSWORD, cluster_id="west", **FAST)
    _, inbox_b = net.pair(a, b)
    a.send([hb("a", 1)])
    assert net.wait_until(lambda: a.stats.dial_failures >= 2)
    assert not inbox_b.heard_anything
    c = EncryptedTcpTransport(PASSWORD, cluster_id="east", **FAST)
    d = EncryptedTcpTransport(PASSWORD, cluster_id="east", **FAST)
    inbox_d = net.start(d, "b")
    net.start(c, "a")
    c.update_peers({"b": d.address})
    c.send([hb("a", 2)])
    assert net.wait_until(lambda: len(inbox_d.messages) == 1)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"password": ""}, "empty"),
        ({"password": "  "}, "empty"),
        ({"key": b""}, "derive_cluster_key"),
        ({"key": bytes(32)}, "all zero"),
        ({}, "needs the cluster password"),
        ({"password": PASSWORD, "salt": b"s", "cluster_id": "c"}, "not both"),
    ],
)
def test_the_encrypted_transport_refuses_empty_credentials(options: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EncryptedTcpTransport(**options)


def test_the_common_name_names_a_node_only_when_the_certificate_has_no_san_at_all() -> None:
    """A host agent's certificate (CN = a host name that is also a node id,
    SAN = its IP address only) must not speak for that node. Found by review:
    the common name was used whenever no DNS or URI SAN was present."""
    from raftkit.transports.identity import certificate_names, identity_error

    agent = {"subject": ((("commonName", "db1"),),), "subjectAltName": (("IP Address", "10.0.0.5"),)}
    assert certificate_names(agent) == set()
    assert identity_error(agent, "db1", "dialler") is not None
    legacy = {"subject": ((("commonName", "n1"),),)}  # no SAN extension: the CN names the node
    assert certificate_names(legacy) == {"n1"}
    sans = (("DNS", "n2"), ("IP Address", "127.0.0.1"))
    node = {"subject": ((("commonName", "x"),),), "subjectAltName": sans}
    assert certificate_names(node) == {"n2"}
