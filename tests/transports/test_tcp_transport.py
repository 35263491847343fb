"""TcpTransport beyond the conformance suite: hostile bytes on its port,
reconnection, name resolution, batching, queue limits, handler faults."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkit.core.types import Message, MessageType
from raftkit.serializers import wire
from raftkit.testing.conformance.transport import Recorder
from raftkit.transports import TcpTransport
from raftkit.transports.framing import (
    PREFIX,
    FrameKind,
    batch_parts,
    encode_frame,
    encode_hello,
    frame_header,
)
from raftkit.transports.netutil import parse_address

FAST = {"backoff_min": 0.01, "backoff_max": 0.05}


def hb(src: str, dst: str, commit: int) -> Message:
    return Message(type=MessageType.HEARTBEAT, src=src, dst=dst, term=1, commit=commit)


def batch(*messages: Message) -> bytes:
    return encode_frame(FrameKind.BATCH, batch_parts([wire.encode_message(m) for m in messages]))


def hello(src: str = "a", dst: str = "b") -> bytes:
    return encode_frame(FrameKind.HELLO, [encode_hello(src, dst)])


async def raw_exchange(address: str, data: bytes, *, half_close: bool = True, timeout: float = 5.0) -> bool:
    """Send ``data`` from a bare socket (then half-close, unless told not to)
    and return True once the transport has closed the connection."""
    host, port = parse_address(address)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        try:
            while await asyncio.wait_for(reader.read(65536), timeout):
                pass
        except asyncio.TimeoutError:
            return False
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def commits(inbox: Recorder) -> list[int]:
    return [m.commit for m in inbox.messages]


# -- hostile input ----------------------------------------------------------------------

header_like = st.builds(
    lambda length, body: PREFIX + length.to_bytes(4, "big") + body,
    st.integers(min_value=0, max_value=2**32 - 1),
    st.binary(max_size=200),
)
framed_junk = st.builds(
    lambda kind, body, tail: encode_frame(kind, [body]) + tail,
    st.sampled_from(list(FrameKind)),
    st.binary(max_size=200),
    st.binary(max_size=20),
)
after_hello = st.builds(lambda junk: hello() + junk, st.binary(max_size=300) | framed_junk)


def test_garbage_closes_only_its_own_connection(net: Any) -> None:
    a, b = TcpTransport(), TcpTransport()
    _, inbox_b = net.pair(a, b)
    sent = 0

    @settings(
        max_examples=80,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.binary(max_size=400) | header_like | framed_junk | after_hello)
    def attack(data: bytes) -> None:
        nonlocal sent
        assert net.run(raw_exchange(b.address, data)), "the transport kept a garbage connection open"
        sent += 1
        a.send([hb("a", "b", sent)])
        assert net.wait_until(lambda: len(inbox_b.messages) == sent)

    attack()
    assert commits(inbox_b) == list(range(1, sent + 1))
    assert a.stats.dials == 1, "the legitimate link was disturbed"
    assert b.stats.connections_rejected > 0


@pytest.mark.parametrize(
    ("data", "half_close", "logged"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False, "bad magic"),
        (b"RKT\x07" + bytes(8), False, "unsupported framing version 7"),
        (frame_header(2**31), False, "exceeds the"),
        (frame_header(100) + bytes(10), True, "truncated"),
        (batch(hb("a", "b", 1)), False, "expected HELLO"),
        (hello("a", "z"), False, "is for 'z'"),
        (hello() + encode_frame(FrameKind.BATCH, [b"\x00\x00\x00\x04RM\x02\xc1"]), False, "malformed body"),
        (hello() + batch(hb("c", "b", 1)), False, "claims to be from 'c'"),
        (hello() + hello(), False, "unexpected HELLO"),
        (hello() + encode_frame(FrameKind.SNAPSHOT_CHUNK, [b"x"]), False, "outside a snapshot"),
        (hello() + encode_frame(FrameKind.AUTH_NONCE, [bytes(32)]), False, "AUTH_NONCE"),
        (b"", True, None),
    ],
)
def test_each_kind_of_bad_input_is_refused_and_logged(
    net: Any, caplog: pytest.LogCaptureFixture, data: bytes, half_close: bool, logged: str | None
) -> None:
    b = TcpTransport()
    inbox = net.start(b, "b")
    with caplog.at_level(logging.DEBUG, logger="raftkit.transports"):
        assert net.run(raw_exchange(b.address, data, half_close=half_close))
    assert not inbox.heard_anything
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if logged is None:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert "closed the connection from 127.0.0.1:" in warnings[0]
        assert any(part in warnings[0] for part in logged.split("|")), warnings[0]


def test_a_silent_connection_is_closed_after_the_handshake_timeout(net: Any) -> None:
    b = TcpTransport(handshake_timeout=0.2)
    net.start(b, "b")
    assert net.run(raw_exchange(b.address, b"", half_close=False, timeout=5.0))
    assert b.stats.connections_rejected == 1


def test_rejection_warnings_are_rate_limited_per_host(net: Any, caplog: pytest.LogCaptureFixture) -> None:
    b = TcpTransport()
    net.start(b, "b")
    with caplog.at_level(logging.WARNING, logger="raftkit.transports"):
        for _ in range(12):
            assert net.run(raw_exchange(b.address, b"junk", half_close=False))
    assert b.stats.connections_rejected == 12
    assert len(caplog.records) == 5


# -- connections --------------------------------------------------------------------------


def test_reconnects_to_a_peer_restarted_on_the_same_port(net: Any) -> None:
    a, b = TcpTransport(**FAST), TcpTransport()
    _, inbox_b = net.pair(a, b)
    a.send([hb("a", "b", 1)])
    assert net.wait_until(lambda: commits(inbox_b) == [1])
    address = b.address
    b.close()
    assert net.wait_until(lambda: a.stats.connections_lost == 1)
    a.send([hb("a", "b", 2)])  # queued while b is away
    assert net.wait_until(lambda: a.stats.dial_failures >= 2)
    reborn = TcpTransport(address)
    inbox_reborn = net.start(reborn, "b")
    a.send([hb("a", "b", 3)])
    assert net.wait_until(lambda: commits(inbox_reborn) == [2, 3])
    assert commits(inbox_b) == [1]


def test_unresolvable_host_is_retried_and_logged_once(net: Any, caplog: pytest.LogCaptureFixture) -> None:
    a = TcpTransport(**FAST)
    net.start(a, "a")
    a.update_peers({"b": "no-such-host.invalid:9"})
    with caplog.at_level(logging.DEBUG, logger="raftkit.transports"):
        for i in range(3):
            a.send([hb("a", "b", i)])
        assert net.wait_until(lambda: a.stats.dial_failures >= 4)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "cannot resolve" in warnings[0] and "no-such-host.invalid:9" in warnings[0]


def test_bad_peer_addresses_are_ignored_with_an_error(net: Any, caplog: pytest.LogCaptureFixture) -> None:
    a, b = TcpTransport(), TcpTransport()
    _, inbox_b = net.pair(a, b)
    with caplog.at_level(logging.ERROR, logger="raftkit.transports"):
        a.update_peers({"b": b.address, "c": "::1:9000"})
    assert "ignoring peer 'c'" in caplog.text
    a.send([hb("a", "c", 1), hb("a", "b", 2)])
    assert net.wait_until(lambda: commits(inbox_b) == [2])


def test_the_messages_of_one_send_share_one_frame_written_at_once(net: Any) -> None:
    """A connected link writes a send's messages before ``send`` returns (no
    loop turn for a scheduled flush), one frame per peer for all of them."""
    a, b = TcpTransport(), TcpTransport()
    _, inbox_b = net.pair(a, b)
    a.send([hb("a", "b", 0)])
    assert net.wait_until(lambda: len(inbox_b.messages) == 1)
    frames = a.stats.frames_sent
    a.send([hb("a", "b", i) for i in range(1, 101)])
    assert a.stats.frames_sent == frames + 1  # the loop has not run since
    a.send([hb("a", "b", 101)])
    assert a.stats.frames_sent == frames + 2
    assert net.wait_until(lambda: len(inbox_b.messages) == 102)
    assert commits(inbox_b) == list(range(102))


def test_a_backed_up_socket_holds_sends_until_it_drains_then_sends_them_in_order(net: Any) -> None:
    """While the socket is backed up (asyncio called ``pause_writing``) a send
    only queues; ``resume_writing`` sends the backlog, in order, in one frame."""
    a, b = TcpTransport(), TcpTransport()
    _, inbox_b = net.pair(a, b)
    a.send([hb("a", "b", 0)])
    assert net.wait_until(lambda: len(inbox_b.messages) == 1)
    proto = a._links["b"]._proto
    assert proto is not None
    frames = a.stats.frames_sent
    proto.pause_writing()  # what asyncio calls when the socket buffer fills
    for i in range(1, 51):
        a.send([hb("a", "b", i)])
    assert a.stats.frames_sent == frames  # nothing written while paused
    for _ in range(5):  # loop turns: a flush scheduled by a send would have run
        net.run(asyncio.sleep(0))
    assert a.stats.frames_sent == frames and len(inbox_b.messages) == 1
    proto.resume_writing()
    assert net.wait_until(lambda: len(inbox_b.messages) == 51)
    assert commits(inbox_b) == list(range(51))
    assert a.stats.frames_sent == frames + 1


def test_a_batch_larger_than_a_frame_is_split(net: Any) -> None:
    a, b = TcpTransport(max_frame_bytes=64 * 1024), TcpTransport(max_frame_bytes=64 * 1024)
    _, inbox_b = net.pair(a, b)
    big = [
        Message(type=MessageType.APPEND, src="a", dst="b", term=1, context=bytes([i]) * 10_000)
        for i in range(20)
    ]
    a.send(big)
    assert net.wait_until(lambda: len(inbox_b.messages) == 20)
    assert inbox_b.messages == big
    assert a.stats.frames_sent >= 4


def test_a_message_too_big_for_any_frame_is_dropped_not_raised(
    net: Any, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = TcpTransport(max_frame_bytes=64 * 1024), TcpTransport()
    _, inbox_b = net.pair(a, b)
    huge = Message(type=MessageType.APPEND, src="a", dst="b", term=1, context=bytes(70_000))
    a.send([huge, hb("a", "b", 7)])
    assert net.wait_until(lambda: commits(inbox_b) == [7])
    assert a.stats.messages_dropped == 1
    assert "exceeds" in caplog.text


def test_the_send_queue_of_an_absent_peer_is_bounded(net: Any) -> None:
    a = TcpTransport(send_queue_bytes=10_000, **FAST)
    net.start(a, "a")
    a.update_peers({"b": "127.0.0.1:1"})
    for i in range(1000):
        a.send([hb("a", "b", i)])
    link = a._links["b"]
    assert link._queued_bytes <= 10_000
    assert a.stats.messages_dropped == 1000 - len(link._queue) > 400
    newest = wire.decode_message(b"".join(link._queue[-1][1]))
    assert newest.commit == 999  # the newest survive


def test_a_handler_that_raises_is_logged_and_the_next_message_still_arrives(
    net: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Moody(Recorder):
        def on_message(self, message: Message) -> None:
            super().on_message(message)
            if message.commit == 1:
                raise RuntimeError("handler bug")

    a, b = TcpTransport(), TcpTransport()
    net.start(a, "a")
    inbox_b = net.start(b, "b", Moody())
    a.update_peers({"b": b.address})
    a.send([hb("a", "b", 1), hb("a", "b", 2)])
    assert net.wait_until(lambda: commits(inbox_b) == [1, 2])
    assert "handler bug" in caplog.text


def test_peers_removed_from_the_address_book_are_hung_up(net: Any) -> None:
    a, b = TcpTransport(), TcpTransport()
    _, inbox_b = net.pair(a, b)
    a.send([hb("a", "b", 1)])
    assert net.wait_until(lambda: len(inbox_b.messages) == 1)
    a.update_peers({})
    assert net.wait_until(lambda: not b.inbound)


def test_binding_a_busy_port_raises_transport_error(net: Any) -> None:
    from raftkit.errors import TransportError

    a = TcpTransport()
    net.start(a, "a")
    with pytest.raises(TransportError, match="cannot listen"):
        net.run(TcpTransport(a.address).astart("b", Recorder()))


def test_bind_must_be_host_and_port() -> None:
    with pytest.raises(ValueError, match="bad address"):
        TcpTransport("localhost")
