"""What a stranger can make a listener spend before it authenticates: a
bounded number of connections (total and still in their handshake), small
frames only before HELLO, and a deadline; the peers' own links keep
working throughout, and the flood is logged once per burst."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

import pytest

from raftkit.core.types import Message, MessageType
from raftkit.transports import EncryptedTcpTransport, TcpTransport
from raftkit.transports.framing import PREFIX, FrameKind, encode_frame, encode_hello
from raftkit.transports.netutil import parse_address

FAST = {"backoff_min": 0.01, "backoff_max": 0.05}
PASSWORD = "correct horse battery staple"


def hb(commit: int) -> Message:
    return Message(type=MessageType.HEARTBEAT, src="a", dst="b", term=1, commit=commit)


class Crowd:
    """Raw connections opened by the test, each reporting when the
    listener closes it."""

    def __init__(self, net: Any, address: str) -> None:
        self.net = net
        self.address = parse_address(address)
        self.writers: list[asyncio.StreamWriter] = []
        self.closed = 0

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        self.closed += 1

    def open(self, count: int, first: bytes = b"") -> None:
        async def one() -> None:
            reader, writer = await asyncio.open_connection(*self.address)
            self.writers.append(writer)
            if first:
                writer.write(first)
            self.net.loop.create_task(self._watch(reader))
            await asyncio.sleep(0.005)  # let the listener accept them in order

        async def all_of_them() -> None:
            for _ in range(count):
                await one()

        self.net.run(all_of_them())

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


@pytest.mark.parametrize("kind", ["tcp", "encrypted"])
def test_a_big_frame_before_hello_closes_the_connection_at_its_header(net: Any, kind: str) -> None:
    b = TcpTransport(**FAST) if kind == "tcp" else EncryptedTcpTransport(PASSWORD, cluster_id="t", **FAST)
    net.start(b, "b")
    crowd = Crowd(net, b.address)
    try:
        crowd.open(1, PREFIX + struct.pack(">I", 8 * 1024 * 1024))  # announces 8 MiB, sends no body
        assert net.wait_until(lambda: crowd.closed == 1, timeout=3)
        assert b.stats.connections_rejected == 1
    finally:
        crowd.close()


def test_connections_stuck_in_their_handshake_are_bounded_and_a_peer_still_gets_through(
    net: Any, caplog: pytest.LogCaptureFixture
) -> None:
    b = EncryptedTcpTransport(PASSWORD, cluster_id="t", max_unidentified_connections=4, **FAST)
    a = EncryptedTcpTransport(PASSWORD, cluster_id="t", **FAST)
    _, inbox_b = net.pair(a, b)
    crowd = Crowd(net, b.address)
    try:
        with caplog.at_level(logging.WARNING, logger="raftkit.transports"):
            crowd.open(30)  # connect and say nothing
            assert net.wait_until(lambda: crowd.closed >= 26, timeout=5)
            assert len(b.inbound) <= 4
            a.send([hb(1)])
            assert net.wait_until(lambda: len(inbox_b.messages) == 1)
        shed = [r for r in caplog.records if "to stay within its limits" in r.getMessage()]
        assert len(shed) == 1  # one line for the burst, not one per connection
    finally:
        crowd.close()


def test_on_plain_tcp_strangers_after_hello_cannot_crowd_out_a_peer(net: Any) -> None:
    b = TcpTransport(max_inbound_connections=8, max_unidentified_connections=4, **FAST)
    a = TcpTransport(**FAST)
    _, inbox_b = net.pair(a, b)
    a.send([hb(1)])
    assert net.wait_until(lambda: len(inbox_b.messages) == 1)
    crowd = Crowd(net, b.address)
    try:
        crowd.open(30, encode_frame(FrameKind.HELLO, [encode_hello("stranger", "b")]))
        assert net.wait_until(lambda: crowd.closed >= 23, timeout=5)
        assert len(b.inbound) <= 8
        a.send([hb(2)])  # the peer's link was never displaced
        assert net.wait_until(lambda: len(inbox_b.messages) == 2)
        assert a.stats.connections_lost == 0
    finally:
        crowd.close()


def test_a_connection_that_never_sends_hello_is_closed_at_the_deadline(net: Any) -> None:
    b = TcpTransport(handshake_timeout=0.2, **FAST)
    net.start(b, "b")
    crowd = Crowd(net, b.address)
    try:
        crowd.open(1)
        assert net.wait_until(lambda: crowd.closed == 1, timeout=3)
    finally:
        crowd.close()


def test_unfinished_frames_across_connections_stay_within_the_buffer_budget(net: Any) -> None:
    mib = 1024 * 1024
    b = TcpTransport(max_frame_bytes=mib, max_buffered_bytes=mib, **FAST)
    a = TcpTransport(max_frame_bytes=mib, **FAST)
    _, inbox_b = net.pair(a, b)
    hello = encode_frame(FrameKind.HELLO, [encode_hello("stranger", "b")])
    crowd = Crowd(net, b.address)
    try:
        # Each announces an almost 1 MiB frame and sends 400 KiB of it.
        crowd.open(4, hello + PREFIX + struct.pack(">I", mib - 1) + bytes(400 * 1024))
        assert net.wait_until(lambda: crowd.closed >= 2, timeout=5)
        a.send([hb(1)])
        assert net.wait_until(lambda: len(inbox_b.messages) == 1)
    finally:
        crowd.close()
