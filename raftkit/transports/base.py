"""The Transport interface: how Raft messages and snapshots travel between nodes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from raftkit.core.types import Message, NodeId


class InboundHandler(Protocol):
    """What a transport calls when something arrives; the node driver
    implements it and feeds each call into its Raft core.

    Calls happen in the transport's delivery context, which each
    implementation documents (the node's event loop for socket transports;
    ``MemoryNetwork.deliver`` or a dispatcher for the memory transport).
    A handler should not raise; see each implementation for what happens if
    it does.
    """

    def on_message(self, message: Message) -> None:
        """A message addressed to this node arrived (decoded and checked)."""

    def on_snapshot(self, message: Message, chunks: Iterable[bytes]) -> None:
        """A SNAPSHOT ``message`` arrived together with its complete byte
        stream. Iterating ``chunks`` never waits on the network; their
        concatenation is exactly what the sender streamed (chunk boundaries
        may differ). Consume them before returning."""

    def admit_snapshot(self, message: Message) -> int | None:
        """Optional (a transport uses it when the handler has it): called
        when a snapshot stream begins, before any of its bytes are kept.
        Returns the most bytes the handler takes for it (a longer stream is
        cut and its connection closed), or None to refuse it: the transport
        then discards the stream and reports failure to the sender."""

    def snapshot_progress(self, message: Message, received: int | None) -> None:
        """Optional (a streaming transport calls it when the handler has
        it): ``received`` bytes of an admitted snapshot stream are in (0
        when it begins, then after each chunk), or None once the stream
        ended (delivered to ``on_snapshot``, or abandoned). ``message.index``
        is the length the sender declared (0: unknown). Keep it cheap."""

    def on_snapshot_status(self, peer: NodeId, ok: bool) -> None:
        """The outcome of an earlier ``send_snapshot`` to ``peer``; the driver
        passes it on as ``report_snapshot(peer, ok)``."""


class Transport(ABC):
    """Carries Raft messages between the nodes of one cluster.

    Contract (every implementation is checked by
    ``raftkit.testing.conformance.transport``):

    * Lifecycle: ``start(node_id, handler)`` once, before any send; then
      ``close()``, which is idempotent. Sending before ``start``, or calling
      ``start`` twice or after ``close``, is a bug and raises
      ``TransportError``. ``send`` and ``send_snapshot`` after ``close`` are
      silent no-ops (a driver may race its own shutdown). After ``close``
      the handler is never called again.
    * ``update_peers(peers)`` replaces the whole address book (node id ->
      address in the implementation's format); it may be called before or
      after ``start`` and may include the local node, so one cluster-wide
      map can be shared. Peers that disappear are forgotten: their queued
      traffic may be dropped.
    * ``send(messages)`` is fire-and-forget: it never blocks and never raises
      because a peer is unknown, unreachable or slow. Raft retries, so a
      transport may drop anything; lost messages are simply lost. Messages to
      one destination are put on the wire in the given order, grouped into as
      few frames as the implementation can. Without faults, messages from one
      sender to one receiver arrive once, intact and in order.
    * ``send_snapshot(message, chunks)`` streams a snapshot's bytes beside its
      SNAPSHOT message. The transport takes ``chunks`` over and may consume it
      after the call returns; an exception from it fails the transfer. The
      receiver's handler gets ``on_snapshot`` once the whole stream is in.
      Exactly one ``on_snapshot_status(message.dst, ok)`` follows each call
      (unless this transport is closed first), never from inside the call
      itself, so the driver need not be reentrant there (unless it configured
      the transport to run callbacks synchronously, as the memory
      transport's default auto-deliver dispatcher does).
    * Event loops: socket transports need the node's asyncio loop, so the
      runtime starts them with ``await transport.astart(node_id, handler)``
      inside that loop, and then calls ``send``, ``send_snapshot``,
      ``update_peers`` and ``close`` on the loop's thread only; every handler
      call happens on that thread too. Their synchronous ``start`` raises
      ``TransportError`` saying so. Transports without a loop (the memory
      transport) support both: ``astart`` defaults to ``start``, and
      ``aclose`` to ``close``.
    * Security: ``authenticated`` is True only if every inbound frame is known
      to come from a holder of the cluster's credentials (shared password,
      mutual TLS) or from this very process. The node builder refuses an
      unsafe serializer such as pickle when it is False, so the default is
      False and an implementation must opt in. Implementations that decode
      bytes enforce a frame size limit; malformed, truncated, oversized or
      unauthenticated input closes that connection and is logged, and never
      reaches the handler or raises out of the transport.
    """

    # Where a node in memory mode keeps its restart marker (raftkit.runtime.state_marker)
    # when its NodeConfig names no folder; None means the per-user default. An
    # in-process network is a world of its own: its nodes' markers must live
    # exactly as long as it does, not outlive it in a shared folder.
    state_marker_dir: str | None = None


    authenticated: bool = False

    @abstractmethod
    def start(self, node_id: NodeId, handler: InboundHandler) -> None:
        """Begin accepting traffic for ``node_id``, delivering it to
        ``handler``; raises ``TransportError`` if that is impossible
        (address in use, already started, closed)."""

    async def astart(self, node_id: NodeId, handler: InboundHandler) -> None:
        """``start`` from inside the node's running event loop. Socket
        transports override it (binding needs the loop); the default simply
        calls ``start``."""
        self.start(node_id, handler)

    @abstractmethod
    def send(self, messages: Sequence[Message]) -> None:
        """Queue ``messages`` (each to its ``dst``) and return at once."""

    @abstractmethod
    def send_snapshot(self, message: Message, chunks: Iterable[bytes]) -> None:
        """Stream a snapshot to ``message.dst``; the outcome is reported via
        ``on_snapshot_status``."""

    @abstractmethod
    def update_peers(self, peers: Mapping[NodeId, str]) -> None:
        """Replace the address book."""

    @abstractmethod
    def close(self) -> None:
        """Stop sending and receiving; safe to call more than once."""

    async def aclose(self) -> None:
        """``close``, then wait until sockets and background tasks are gone,
        so the loop can be closed without leaking them. The default just
        calls ``close``."""
        self.close()
