"""One port for Raft and the admin endpoint (PySyncObj's arrangement): a
connection whose first bytes are the admin protocol's magic goes to
``TcpTransport.admin_handoff`` with every byte read so far, however the
bytes are split; everything else is Raft, as before, even when its first
bytes arrive one at a time."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import pytest

from raftkit.core.types import Message, MessageType
from raftkit.serializers import wire
from raftkit.transports import EncryptedTcpTransport, TcpTransport
from raftkit.transports.framing import FrameKind, batch_parts, encode_frame, encode_hello
from raftkit.transports.netutil import parse_address

FAST = {"backoff_min": 0.01, "backoff_max": 0.05}


class Taken:
    """The hand-off: what it was given, read to the end on a thread of its own."""

    def __init__(self) -> None:
        self.first: list[bytes] = []
        self.rest: list[bytes] = []

    def __call__(self, sock: socket.socket, early: bytes) -> None:  # on the loop: must not block it
        self.first.append(early)
        threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        sock.settimeout(5)
        with sock:
            sock.sendall(b"admin here")
            while chunk := sock.recv(100):
                self.rest.append(chunk)


async def send_in_pieces(address: str, pieces: list[bytes], answer: int = 0) -> bytes:
    reader, writer = await asyncio.open_connection(*parse_address(address))
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.02)  # separate reads on the listener's side
    got = await asyncio.wait_for(reader.readexactly(answer), 5) if answer else b""
    writer.close()
    return got


@pytest.mark.parametrize("kind", ["tcp", "encrypted"])
def test_an_admin_connection_is_handed_over_with_its_first_bytes(net: Any, kind: str) -> None:
    password = "a long cluster password"
    b = TcpTransport(**FAST) if kind == "tcp" else EncryptedTcpTransport(password, cluster_id="t")
    taken = Taken()
    b.admin_handoff = taken
    net.start(b, "b")
    answer = net.run(send_in_pieces(b.address, [b"R", b"K", b"A\x01hello", b" more"], answer=10))
    assert answer == b"admin here"  # the admin side owns the connection now
    assert net.wait_until(lambda: b"".join(taken.first + taken.rest) == b"RKA\x01hello more")
    assert taken.first[0].startswith(b"RKA") and not b.inbound  # the transport let it go


def test_raft_traffic_split_into_single_bytes_still_arrives_beside_a_handoff(net: Any) -> None:
    b = TcpTransport(**FAST)
    taken = Taken()
    b.admin_handoff = taken
    inbox = net.start(b, "b")
    b.update_peers({"b": b.address, "a": "127.0.0.1:9"})
    hello = encode_frame(FrameKind.HELLO, [encode_hello("a", "b")])
    beat = Message(type=MessageType.HEARTBEAT, src="a", dst="b", term=1, commit=0)
    batch = encode_frame(FrameKind.BATCH, batch_parts([wire.encode_message(beat)]))
    data = hello + batch
    net.run(send_in_pieces(b.address, [data[:1], data[1:2], data[2:3], data[3:]]))
    assert net.wait_until(lambda: len(inbox.messages) == 1)
    assert taken.first == []


def test_without_a_handoff_the_admin_magic_is_refused_as_not_a_peer(net: Any) -> None:
    b = TcpTransport(**FAST)
    net.start(b, "b")
    net.run(send_in_pieces(b.address, [b"RKA\x01" + b"\x00" * 4]))
    assert net.wait_until(lambda: b.stats.connections_rejected == 1)
