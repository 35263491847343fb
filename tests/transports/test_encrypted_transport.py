"""EncryptedTcpTransport: the handshake and sealing layer frame by frame,
then end to end: wrong passwords, and a tampering proxy that replays or
alters frames on the wire."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from raftkit.core.types import Message, MessageType
from raftkit.transports import EncryptedTcpTransport, TcpTransport
from raftkit.transports.encrypted import DEFAULT_SALT, EncryptedChannel, derive_cluster_key
from raftkit.transports.framing import (
    AuthenticationError,
    FrameDecoder,
    FrameError,
    FrameKind,
    encode_frame,
    encode_hello,
)
from raftkit.transports.netutil import parse_address

FAST = {"backoff_min": 0.01, "backoff_max": 0.05}
KEY = derive_cluster_key("open sesame", b"tests")
OTHER_KEY = derive_cluster_key("open sesame!", b"tests")


def hb(commit: int) -> Message:
    return Message(type=MessageType.HEARTBEAT, src="a", dst="b", term=1, commit=commit)


def frames_of(data: bytes) -> list[tuple[bytes, bytes]]:
    decoder = FrameDecoder()
    frames = decoder.feed(data)
    assert decoder.pending == 0
    return frames


def handshake(client_key: bytes = KEY, server_key: bytes = KEY) -> tuple[EncryptedChannel, EncryptedChannel]:
    """Run the four-step handshake between two in-memory channels ("a" dials "b")."""
    client = EncryptedChannel(client_key, client_side=True, node_id="a", peer_id="b")
    server = EncryptedChannel(server_key, client_side=False, node_id="b")
    for header, body in frames_of(client.take_output()):  # AUTH_NONCE
        assert server.open(header, body) is None
    for header, body in frames_of(server.take_output()):  # AUTH_CHALLENGE
        assert client.open(header, body) is None
    assert not client.established and not server.established
    for header, body in frames_of(client.take_output()):  # AUTH_PROOF: the dialler proves first
        assert server.open(header, body) is None
    assert server.established and server.peer_id == "a"
    for header, body in frames_of(server.take_output()):  # AUTH_CONFIRM
        assert client.open(header, body) is None
    assert client.established
    return client, server


# -- the sealing layer ---------------------------------------------------------------------


def test_key_derivation_depends_on_password_and_salt() -> None:
    assert derive_cluster_key("open sesame", b"tests") == KEY
    assert len(KEY) == 32
    assert KEY != OTHER_KEY
    assert derive_cluster_key("open sesame", DEFAULT_SALT) != KEY
    with pytest.raises(ValueError, match="empty"):
        derive_cluster_key("")


def test_sealed_frames_round_trip_in_both_directions_and_hide_their_kind() -> None:
    client, server = handshake()
    wire = client.seal(FrameKind.BATCH, [b"hello ", b"world"])
    assert b"hello" not in wire
    ((header, body),) = frames_of(wire)
    kind, payload = server.open(header, body)  # type: ignore[misc]
    assert (kind, bytes(payload)) == (FrameKind.BATCH, b"hello world")
    ((header, body),) = frames_of(server.seal(FrameKind.SNAPSHOT_END))
    assert client.open(header, body)[0] is FrameKind.SNAPSHOT_END  # type: ignore[index]


def test_the_same_plaintext_never_seals_to_the_same_bytes() -> None:
    client, _ = handshake()
    assert client.seal(FrameKind.BATCH, [b"x"]) != client.seal(FrameKind.BATCH, [b"x"])
    other, _ = handshake()
    assert other.seal(FrameKind.BATCH, [b"x"]) != handshake()[0].seal(FrameKind.BATCH, [b"x"])


def test_a_replayed_frame_fails() -> None:
    client, server = handshake()
    ((header, body),) = frames_of(client.seal(FrameKind.BATCH, [b"once"]))
    server.open(header, body)
    with pytest.raises(AuthenticationError, match="failed authentication"):
        server.open(header, body)


def test_reordered_frames_fail() -> None:
    client, server = handshake()
    client.seal(FrameKind.BATCH, [b"1"])  # sealed, but overtaken on the way
    second = frames_of(client.seal(FrameKind.BATCH, [b"2"]))[0]
    with pytest.raises(AuthenticationError):
        server.open(*second)


@pytest.mark.parametrize("position", [0, 5, -1])
def test_an_altered_frame_fails(position: int) -> None:
    client, server = handshake()
    ((header, body),) = frames_of(client.seal(FrameKind.BATCH, [b"payload bytes"]))
    altered = bytearray(body)
    altered[position] ^= 0x01
    with pytest.raises(AuthenticationError):
        server.open(header, bytes(altered))


def test_an_altered_header_fails_even_with_an_intact_body() -> None:
    client, server = handshake()
    ((header, body),) = frames_of(client.seal(FrameKind.BATCH, [b"payload"]))
    with pytest.raises(AuthenticationError):
        server.open(header[:3] + b"\x02" + header[4:], body)


def test_a_truncated_frame_fails() -> None:
    client, server = handshake()
    ((header, body),) = frames_of(client.seal(FrameKind.BATCH, [b"payload bytes"]))
    with pytest.raises(AuthenticationError):
        server.open(header, body[:-1])


def test_a_frame_from_another_connection_fails() -> None:
    client, _ = handshake()
    _, other_server = handshake()
    ((header, body),) = frames_of(client.seal(FrameKind.BATCH, [b"elsewhere"]))
    with pytest.raises(AuthenticationError):
        other_server.open(header, body)


def test_a_frame_reflected_back_to_its_sender_fails() -> None:
    client, _ = handshake()
    ((header, body),) = frames_of(client.seal(FrameKind.BATCH, [b"mirror"]))
    with pytest.raises(AuthenticationError):
        client.open(header, body)


def test_the_listener_rejects_a_dialler_with_another_password_and_proves_nothing() -> None:
    with pytest.raises(AuthenticationError, match="dialler could not prove"):
        handshake(client_key=OTHER_KEY, server_key=KEY)


def test_the_dialler_rejects_a_listener_with_another_password() -> None:
    client = EncryptedChannel(KEY, client_side=True, node_id="a", peer_id="b")
    server = EncryptedChannel(KEY, client_side=False, node_id="b")
    for frame in frames_of(client.take_output()):
        server.open(*frame)
    for frame in frames_of(server.take_output()):
        client.open(*frame)
    client.take_output()
    forged = frames_of(encode_frame(FrameKind.AUTH_CONFIRM, [bytes(32)]))[0]
    with pytest.raises(AuthenticationError, match="listener could not prove"):
        client.open(*forged)


def _answer_to_a_stranger(server_key: bytes) -> tuple[bytes, bytes]:
    """What a listener with ``server_key`` sends to an unauthenticated
    dialler: its answer to AUTH_NONCE, then to a wrong AUTH_PROOF."""
    fixed = bytes(range(32))
    stranger = EncryptedChannel(
        OTHER_KEY, client_side=True, node_id="x", peer_id="b", urandom=lambda n: fixed[:n]
    )
    server = EncryptedChannel(server_key, client_side=False, node_id="b", urandom=lambda n: fixed[::-1][:n])
    for frame in frames_of(stranger.take_output()):
        server.open(*frame)
    challenge = server.take_output()
    for frame in frames_of(challenge):
        stranger.open(*frame)
    with pytest.raises(AuthenticationError):
        for frame in frames_of(stranger.take_output()):
            server.open(*frame)
    return challenge, server.take_output()


def test_an_unauthenticated_dialler_gets_nothing_that_checks_a_password_guess() -> None:
    # Offline-attack regression: the listener proves itself only after the
    # dialler has, so what a stranger receives does not depend on the key.
    challenge, after_bad_proof = _answer_to_a_stranger(KEY)
    assert after_bad_proof == b""
    assert (challenge, after_bad_proof) == _answer_to_a_stranger(derive_cluster_key("other", b"tests"))
    ((_, body),) = frames_of(challenge)
    assert body[0] == FrameKind.AUTH_CHALLENGE and len(body) == 1 + 32  # a bare nonce


def test_a_v1_dialler_is_refused_saying_so() -> None:
    server = EncryptedChannel(KEY, client_side=False, node_id="b")
    with pytest.raises(FrameError, match="older raftkit release"):
        server.open(*frames_of(encode_frame(FrameKind.AUTH_NONCE, [bytes(32)]))[0])


def test_the_claimed_ids_are_bound_into_the_proof() -> None:
    # A proof made for one claimed id does not pass for another.
    client = EncryptedChannel(KEY, client_side=True, node_id="a", peer_id="b")
    server = EncryptedChannel(KEY, client_side=False, node_id="b")
    (nonce_frame,) = frames_of(client.take_output())
    forged_ids = encode_frame(FrameKind.AUTH_NONCE, [nonce_frame[1][1:33], encode_hello("n2", "b")])
    server.open(*frames_of(forged_ids)[0])
    for frame in frames_of(server.take_output()):
        client.open(*frame)
    with pytest.raises(AuthenticationError, match="dialler could not prove"):
        for frame in frames_of(client.take_output()):
            server.open(*frame)


def test_a_dialler_for_another_node_is_refused() -> None:
    client = EncryptedChannel(KEY, client_side=True, node_id="a", peer_id="c")
    server = EncryptedChannel(KEY, client_side=False, node_id="b")
    with pytest.raises(FrameError, match="means to reach 'c'"):
        for frame in frames_of(client.take_output()):
            server.open(*frame)


def test_the_listener_rejects_a_forged_proof() -> None:
    client = EncryptedChannel(KEY, client_side=True, node_id="a", peer_id="b")
    server = EncryptedChannel(KEY, client_side=False, node_id="b")
    for frame in frames_of(client.take_output()):
        server.open(*frame)
    server.take_output()
    forged = frames_of(encode_frame(FrameKind.AUTH_PROOF, [bytes(32)]))[0]
    with pytest.raises(AuthenticationError, match="dialler could not prove"):
        server.open(*forged)


@pytest.mark.parametrize(
    "frame",
    [
        encode_frame(FrameKind.HELLO, [b"\x00\x01a\x00\x01b"]),
        encode_frame(FrameKind.AUTH_NONCE, [b"short"]),
        encode_frame(FrameKind.AUTH_PROOF, [bytes(32)]),
    ],
)
def test_the_listener_takes_nothing_but_a_nonce_first(frame: bytes) -> None:
    server = EncryptedChannel(KEY, client_side=False)
    with pytest.raises(FrameError, match="handshake"):
        server.open(*frames_of(frame)[0])


def test_nothing_can_be_sealed_before_the_handshake() -> None:
    with pytest.raises(FrameError, match="before the handshake"):
        EncryptedChannel(KEY, client_side=True).seal(FrameKind.BATCH, [b"x"])


# -- end to end ----------------------------------------------------------------------------


def test_wrong_password_delivers_nothing_and_is_logged_once(
    net: Any, caplog: pytest.LogCaptureFixture
) -> None:
    a = EncryptedTcpTransport("one password", salt=b"t", **FAST)
    b = EncryptedTcpTransport("another password", salt=b"t", **FAST)
    _, inbox_b = net.pair(a, b)
    with caplog.at_level(logging.DEBUG, logger="raftkit.transports"):
        a.send([hb(1)])
        assert net.wait_until(lambda: a.stats.dial_failures >= 5)
        a.send([hb(2)])
        assert net.wait_until(lambda: a.stats.dial_failures >= 8)
    assert not inbox_b.heard_anything
    assert a.stats.dials == a.stats.dial_failures
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    dialler = [r.getMessage() for r in warnings if "cannot connect to peer 'b'" in r.getMessage()]
    listener = [
        r.getMessage() for r in warnings if "could not prove it knows the cluster password" in r.getMessage()
    ]
    assert len(dialler) == 1 and "authentication failed" in dialler[0] and "password" in dialler[0]
    assert len(listener) == 1
    assert len(warnings) == 2


def test_a_plain_tcp_dialler_is_refused_before_its_hello_is_read(
    net: Any, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = TcpTransport(**FAST), EncryptedTcpTransport("pw", **FAST)
    _, inbox_b = net.pair(a, b)
    a.send([hb(1)])
    assert net.wait_until(lambda: b.stats.connections_rejected == 1)
    assert not inbox_b.heard_anything
    assert "handshake: expected AUTH_NONCE, got HELLO" in caplog.text


class TamperingProxy:
    """Forwards TCP between a dialler and a listener; on the first connection
    only, hands the dialler's frame number ``at`` to ``tamper``, which returns
    the bytes to forward instead (frames 0 and 1 are the handshake)."""

    def __init__(self, net: Any, target: str, at: int, tamper: Callable[[bytes, bytes], bytes]) -> None:
        self.net = net
        self.target = parse_address(target)
        self.at = at
        self.tamper = tamper
        self.connections = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.server = net.run(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        tamper = self.connections == 0
        self.connections += 1
        s_reader, s_writer = await asyncio.open_connection(*self.target)

        async def upstream() -> None:
            decoder, index = FrameDecoder(), 0
            while data := await c_reader.read(65536):
                for header, body in decoder.feed(data):
                    frame = self.tamper(header, body) if tamper and index == self.at else header + body
                    s_writer.write(frame)
                    index += 1
                await s_writer.drain()

        async def downstream() -> None:
            while data := await s_reader.read(65536):
                c_writer.write(data)
                await c_writer.drain()

        try:
            await asyncio.wait(
                [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())],
                return_when=asyncio.FIRST_COMPLETED,
            )
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for writer in (c_writer, s_writer):
                writer.close()

    def close(self) -> None:
        self.server.close()
        for task in self.tasks:
            task.cancel()


def replay(header: bytes, body: bytes) -> bytes:
    return (header + body) * 2


def flip_last_bit(header: bytes, body: bytes) -> bytes:
    return header + body[:-1] + bytes([body[-1] ^ 1])


@pytest.mark.parametrize(("at", "tamper"), [(2, replay), (3, flip_last_bit), (3, replay)])
def test_a_tampered_frame_closes_the_connection_and_the_link_recovers(
    net: Any, caplog: pytest.LogCaptureFixture, at: int, tamper: Callable[[bytes, bytes], bytes]
) -> None:
    a = EncryptedTcpTransport("pw", salt=b"t", **FAST)
    b = EncryptedTcpTransport("pw", salt=b"t", **FAST)
    _, inbox_b = net.pair(a, b)
    proxy = TamperingProxy(net, b.address, at, tamper)
    try:
        a.update_peers({"b": proxy.address})
        a.send([hb(1)])  # frame 2 is HELLO, frame 3 this batch
        assert net.wait_until(lambda: b.stats.connections_rejected == 1)
        assert "failed authentication" in caplog.text
        assert net.wait_until(lambda: a.stats.connections_lost == 1)
        a.send([hb(2)])
        assert net.wait_until(lambda: any(m.commit == 2 for m in inbox_b.messages))
        # A replayed batch is refused: each message arrives at most once.
        assert [m.commit for m in inbox_b.messages] in ([1, 2], [2])
        assert proxy.connections == 2
    finally:
        proxy.close()
