"""Conformance suite for ``Transport`` implementations.

Every clause of the ``Transport`` contract that two well-connected nodes can
observe has a test here. Run it against your own transport from a pytest
module::

    class TestMyTransport(TransportConformance):
        def make_pair(self):
            a, b = MyTransport(port=0), MyTransport(port=0)
            return a, b, wait_until_with_deadline

        def address_of(self, transport, node_id):
            return transport.listen_address

A transport that must start inside an event loop (``astart``) overrides
``start_transport`` too, for instance with
``loop.run_until_complete(transport.astart(node_id, handler))``.

The suite starts the two transports as nodes ``"a"`` and ``"b"``, gives each
the other's address, and closes both afterwards. ``deliver(until)`` must
drive traffic (run rounds, or wait on the event loop) until ``until()`` is
true, and return ``until()``'s final value as soon as it is true or once no
more traffic can arrive (an idle simulated network; a short deadline for
sockets). The suite only waits for something it expects, except when
checking that a closed transport hears nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

import pytest

from raftkit.core.types import ConfState, Entry, EntryKind, Message, MessageType, NodeId, SnapshotMeta
from raftkit.errors import TransportError
from raftkit.transports.base import InboundHandler, Transport

Deliver = Callable[[Callable[[], bool]], bool]
"""``deliver(until)``: drive traffic until ``until()`` holds; return its final value."""


@dataclass
class Recorder:
    """An ``InboundHandler`` that remembers every call, in order."""

    messages: list[Message] = field(default_factory=list)
    snapshots: list[tuple[Message, tuple[bytes, ...]]] = field(default_factory=list)
    statuses: list[tuple[NodeId, bool]] = field(default_factory=list)

    def on_message(self, message: Message) -> None:
        self.messages.append(message)

    def on_snapshot(self, message: Message, chunks: Iterable[bytes]) -> None:
        self.snapshots.append((message, tuple(chunks)))

    def on_snapshot_status(self, peer: NodeId, ok: bool) -> None:
        self.statuses.append((peer, ok))

    @property
    def heard_anything(self) -> bool:
        return bool(self.messages or self.snapshots or self.statuses)


def sample_messages(src: NodeId, dst: NodeId) -> list[Message]:
    """One message of each shape the core sends, with every field set to
    something other than its default somewhere, so a lossy codec shows."""
    return [
        Message(
            type=MessageType.APPEND,
            src=src,
            dst=dst,
            term=3,
            log_term=2,
            index=7,
            commit=5,
            entries=(
                Entry(index=8, term=3, data=b"set x 1"),
                Entry(index=9, term=3, kind=EntryKind.NOOP),
                Entry(index=10, term=3, kind=EntryKind.CONFIG, data=bytes(range(256))),
            ),
        ),
        Message(
            type=MessageType.APPEND_RESP,
            src=src,
            dst=dst,
            term=3,
            index=6,
            reject=True,
            reject_hint=4,
            log_term=2,
        ),
        Message(type=MessageType.PRE_VOTE, src=src, dst=dst, term=4, index=10, log_term=3),
        Message(type=MessageType.VOTE_RESP, src=src, dst=dst, term=4),
        Message(type=MessageType.HEARTBEAT, src=src, dst=dst, term=4, commit=9, context=b"read-\x00\xff"),
        Message(type=MessageType.READ_INDEX_RESP, src=src, dst=dst, term=4, index=9, context=b"r1"),
        Message(type=MessageType.TIMEOUT_NOW, src=src, dst=dst, term=4),
    ]


def snapshot_message(src: NodeId, dst: NodeId) -> Message:
    conf = ConfState(voters=frozenset({"a", "b", "c"}), learners=frozenset({"d"}))
    return Message(
        type=MessageType.SNAPSHOT,
        src=src,
        dst=dst,
        term=5,
        snapshot=SnapshotMeta(index=120, term=4, conf=conf),
    )


def snapshot_chunks() -> Iterator[bytes]:
    """About 1 MiB in 40 chunks of varied sizes whose order matters. A
    generator, because the transport must accept a lazily read stream."""
    for i in range(40):
        yield bytes([i]) * (1 + (i * 7919) % 50_000)


def heartbeat(src: NodeId, dst: NodeId, commit: int) -> Message:
    return Message(type=MessageType.HEARTBEAT, src=src, dst=dst, term=1, commit=commit)


@dataclass
class Pair:
    """Two started transports, ``a`` and ``b``, each knowing the other."""

    a: Transport
    b: Transport
    inbox_a: Recorder
    inbox_b: Recorder
    deliver: Deliver
    peers: dict[NodeId, str]


class TransportConformance:
    """Base class of the suite: subclass it in a ``Test*`` class."""

    def make_pair(self) -> tuple[Transport, Transport, Deliver]:
        """Return two fresh, unstarted transports that can reach each other
        once started, and the ``deliver`` function for their traffic."""
        raise NotImplementedError("implement make_pair() to return (transport_a, transport_b, deliver)")

    def address_of(self, transport: Transport, node_id: NodeId) -> str:
        """The address peers use to reach ``transport``, started as ``node_id``."""
        raise NotImplementedError("implement address_of() to return a started transport's address")

    def start_transport(self, transport: Transport, node_id: NodeId, handler: Recorder) -> None:
        """Start ``transport`` as ``node_id``; must raise ``TransportError``
        where ``start`` would. Override to drive ``astart`` in a loop."""
        # A Recorder lacks the optional methods (the transport looks them up).
        transport.start(node_id, cast(InboundHandler, handler))

    # -- plumbing ----------------------------------------------------------

    @pytest.fixture
    def pair(self) -> Iterator[Pair]:
        a, b, deliver = self.make_pair()
        inbox_a, inbox_b = Recorder(), Recorder()
        self.start_transport(a, "a", inbox_a)
        self.start_transport(b, "b", inbox_b)
        peers = {"a": self.address_of(a, "a"), "b": self.address_of(b, "b")}
        a.update_peers(peers)
        b.update_peers(peers)
        yield Pair(a, b, inbox_a, inbox_b, deliver, peers)
        a.close()
        b.close()

    # -- messages ------------------------------------------------------------

    def test_messages_arrive_intact_and_in_order(self, pair: Pair) -> None:
        to_b, to_a = sample_messages("a", "b"), sample_messages("b", "a")
        for message in to_b:
            pair.a.send([message])
        for message in to_a:
            pair.b.send([message])
        assert pair.deliver(
            lambda: len(pair.inbox_b.messages) >= len(to_b) and len(pair.inbox_a.messages) >= len(to_a)
        )
        assert pair.inbox_b.messages == to_b
        assert pair.inbox_a.messages == to_a

    def test_a_large_batch_arrives_whole_and_in_order(self, pair: Pair) -> None:
        batch = [heartbeat("a", "b", commit=i) for i in range(2000)]
        pair.a.send(batch)
        assert pair.deliver(lambda: len(pair.inbox_b.messages) >= len(batch))
        assert pair.inbox_b.messages == batch

    def test_batches_keep_order_across_send_calls(self, pair: Pair) -> None:
        sent = [heartbeat("a", "b", commit=i) for i in range(300)]
        for lo in range(0, len(sent), 30):
            pair.a.send(sent[lo : lo + 30])
        assert pair.deliver(lambda: len(pair.inbox_b.messages) >= len(sent))
        assert pair.inbox_b.messages == sent

    def test_send_to_an_unknown_peer_does_not_raise(self, pair: Pair) -> None:
        known = heartbeat("a", "b", commit=1)
        pair.a.send([heartbeat("a", "nobody", commit=0), known, heartbeat("a", "nobody", commit=2)])
        assert pair.deliver(lambda: bool(pair.inbox_b.messages))
        assert pair.inbox_b.messages == [known]

    def test_send_before_start_raises(self) -> None:
        a, b, _ = self.make_pair()
        try:
            with pytest.raises(TransportError):
                a.send([heartbeat("a", "b", commit=0)])
            with pytest.raises(TransportError):
                a.send_snapshot(snapshot_message("a", "b"), snapshot_chunks())
        finally:
            a.close()
            b.close()

    def test_second_start_raises(self, pair: Pair) -> None:
        with pytest.raises(TransportError):
            self.start_transport(pair.a, "a", Recorder())

    # -- snapshots -------------------------------------------------------------

    def test_snapshot_stream_arrives_with_every_chunk_in_order(self, pair: Pair) -> None:
        message = snapshot_message("a", "b")
        pair.a.send_snapshot(message, snapshot_chunks())
        assert pair.deliver(lambda: bool(pair.inbox_a.statuses))
        assert len(pair.inbox_b.snapshots) == 1
        got_message, got_chunks = pair.inbox_b.snapshots[0]
        assert got_message == message
        assert b"".join(got_chunks) == b"".join(snapshot_chunks())
        assert pair.inbox_a.statuses == [("b", True)]

    def test_snapshot_to_an_unknown_peer_reports_failure(self, pair: Pair) -> None:
        pair.a.send_snapshot(snapshot_message("a", "nobody"), snapshot_chunks())
        assert pair.deliver(lambda: bool(pair.inbox_a.statuses))
        assert pair.inbox_a.statuses == [("nobody", False)]

    def test_snapshot_whose_chunks_fail_reports_failure(self, pair: Pair) -> None:
        def broken() -> Iterator[bytes]:
            yield b"first"
            raise OSError("snapshot file vanished")

        pair.a.send_snapshot(snapshot_message("a", "b"), broken())
        assert pair.deliver(lambda: bool(pair.inbox_a.statuses))
        assert pair.inbox_a.statuses == [("b", False)]
        assert pair.inbox_b.snapshots == []

    # -- peers -------------------------------------------------------------------

    def test_update_peers_adds_and_removes_peers(self, pair: Pair) -> None:
        pair.a.update_peers({})
        pair.a.send([heartbeat("a", "b", commit=1)])
        pair.a.update_peers(pair.peers)
        after = heartbeat("a", "b", commit=2)
        pair.a.send([after])
        assert pair.deliver(lambda: bool(pair.inbox_b.messages))
        assert pair.inbox_b.messages == [after]

    def test_update_peers_before_start(self) -> None:
        a, b, deliver = self.make_pair()
        inbox_b = Recorder()
        try:
            self.start_transport(b, "b", inbox_b)
            a.update_peers({"b": self.address_of(b, "b")})
            self.start_transport(a, "a", Recorder())
            message = heartbeat("a", "b", commit=1)
            a.send([message])
            assert deliver(lambda: bool(inbox_b.messages))
            assert inbox_b.messages == [message]
        finally:
            a.close()
            b.close()

    # -- close -------------------------------------------------------------------

    def test_close_is_idempotent(self, pair: Pair) -> None:
        pair.a.close()
        pair.a.close()

    def test_closed_transport_neither_sends_nor_hears(self, pair: Pair) -> None:
        pair.a.close()
        pair.a.send([heartbeat("a", "b", commit=1)])
        pair.a.send_snapshot(snapshot_message("a", "b"), snapshot_chunks())
        pair.b.send([heartbeat("b", "a", commit=2)])
        pair.b.send_snapshot(snapshot_message("b", "a"), snapshot_chunks())
        assert pair.deliver(lambda: bool(pair.inbox_b.statuses))
        assert pair.inbox_b.statuses == [("a", False)]
        assert pair.inbox_b.messages == [] and pair.inbox_b.snapshots == []
        assert not pair.inbox_a.heard_anything

    def test_authenticated_is_declared(self, pair: Pair) -> None:
        assert isinstance(pair.a.authenticated, bool)
