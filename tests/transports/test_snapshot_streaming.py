"""Snapshot streams over every socket transport: a ~20 MB snapshot arrives
intact in bounded chunks, is read lazily as the socket drains, does not
block ordinary messages, and a stream cut by a lost connection fails."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from raftkit.core.types import ConfState, Message, MessageType, SnapshotMeta
from raftkit.testing.conformance.transport import Recorder
from raftkit.transports import TcpTransport

KINDS = ("tcp", "encrypted", "tls")
MiB = 1024 * 1024


def snapshot_message(index: int = 100) -> Message:
    conf = ConfState(voters=frozenset({"a", "b"}))
    meta = SnapshotMeta(index=index, term=2, conf=conf)
    return Message(type=MessageType.SNAPSHOT, src="a", dst="b", term=3, snapshot=meta)


class Digesting(Recorder):
    """Hashes received snapshots instead of keeping them, and notes chunk sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.digests: list[tuple[Message, str, int]] = []
        self.largest_chunk = 0

    def on_snapshot(self, message: Message, chunks: Iterable[bytes]) -> None:
        digest, size = hashlib.sha256(), 0
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            self.largest_chunk = max(self.largest_chunk, len(chunk))
        self.digests.append((message, digest.hexdigest(), size))


class Source:
    """A lazily read snapshot that records how far the sender had got."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.taken = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self.chunks:
                self.taken += 1
                yield chunk
        finally:
            self.closed = True


@pytest.mark.parametrize("kind", KINDS)
def test_a_20_mb_snapshot_streams_through_intact(
    net: Any, make_transport: Callable[..., TcpTransport], kind: str
) -> None:
    a, b = make_transport(kind, "a"), make_transport(kind, "b")
    inbox_a = net.start(a, "a")
    inbox_b = net.start(b, "b", Digesting())
    a.update_peers({"b": b.address})
    # Odd chunk sizes, so the transport's re-chunking is exercised.
    data = [os.urandom(3 * MiB + 7) for _ in range(6)] + [os.urandom(1234)]
    expected = hashlib.sha256(b"".join(data)).hexdigest()
    source = Source(data)
    a.send_snapshot(snapshot_message(), iter(source))
    assert net.wait_until(lambda: bool(inbox_a.statuses), timeout=30)
    assert inbox_a.statuses == [("b", True)]
    assert inbox_b.digests == [(snapshot_message(), expected, sum(map(len, data)))]
    assert inbox_b.largest_chunk <= MiB
    assert source.closed


def test_the_sender_reads_the_snapshot_only_as_the_socket_drains(net: Any) -> None:
    a, b = TcpTransport(), TcpTransport()
    inbox_a = net.start(a, "a")
    net.start(b, "b", Digesting())
    a.update_peers({"b": b.address})
    source = Source([bytes(MiB)] * 64)
    a.send_snapshot(snapshot_message(), iter(source))
    assert net.wait_until(lambda: source.taken > 0)
    # The dial and the first writes happen within a few loop iterations; far
    # from all 64 MiB can have been pulled before anything was drained.
    assert source.taken < 64
    assert net.wait_until(lambda: bool(inbox_a.statuses), timeout=30)
    assert inbox_a.statuses == [("b", True)]


def test_messages_overtake_a_snapshot_in_progress(net: Any) -> None:
    a, b = TcpTransport(), TcpTransport()
    inbox_a = net.start(a, "a")
    inbox_b = net.start(b, "b", Digesting())
    a.update_peers({"b": b.address})
    a.send_snapshot(snapshot_message(), iter(Source([bytes(MiB)] * 32)))
    assert net.wait_until(lambda: a.stats.bytes_sent > 2 * MiB)
    a.send([Message(type=MessageType.HEARTBEAT, src="a", dst="b", term=3, commit=1)])
    assert net.wait_until(lambda: bool(inbox_b.messages))
    assert not inbox_b.digests, "the heartbeat waited for the whole snapshot"
    assert net.wait_until(lambda: bool(inbox_a.statuses), timeout=30)
    assert inbox_a.statuses == [("b", True)] and len(inbox_b.digests) == 1


def test_a_stream_cut_by_the_receiver_closing_fails_and_closes_the_source(net: Any) -> None:
    a, b = TcpTransport(backoff_min=0.01, backoff_max=0.05), TcpTransport()
    inbox_a = net.start(a, "a")
    inbox_b = net.start(b, "b", Digesting())
    a.update_peers({"b": b.address})
    source = Source([bytes(MiB)] * 200)
    a.send_snapshot(snapshot_message(), iter(source))
    assert net.wait_until(lambda: source.taken >= 3)
    b.close()
    assert net.wait_until(lambda: bool(inbox_a.statuses))
    assert inbox_a.statuses == [("b", False)]
    assert source.closed and source.taken < 200
    assert not inbox_b.digests


def test_snapshots_to_one_peer_stream_one_after_another(net: Any) -> None:
    a, b = TcpTransport(), TcpTransport()
    inbox_a = net.start(a, "a")
    inbox_b = net.start(b, "b", Digesting())
    a.update_peers({"b": b.address})
    first, second = [b"1" * (2 * MiB)], [b"2" * (3 * MiB)]
    a.send_snapshot(snapshot_message(100), iter(first))
    a.send_snapshot(snapshot_message(200), iter(second))
    assert net.wait_until(lambda: len(inbox_a.statuses) == 2, timeout=30)
    assert inbox_a.statuses == [("b", True), ("b", True)]
    digests = [(m.snapshot.index, d) for m, d, _ in inbox_b.digests]  # type: ignore[union-attr]
    assert digests == [
        (100, hashlib.sha256(first[0]).hexdigest()),
        (200, hashlib.sha256(second[0]).hexdigest()),
    ]
