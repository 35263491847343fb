"""Inbound: the handler a node gives its transport (``InboundHandler``).

It notes each known peer's contact for the metrics and hands every arrival
to the callables the node passed in, so the transport sees five entry
points and nothing else of the node. The calls come in the transport's
delivery context: the node's loop thread for socket transports, the
dispatcher that ``Node.dispatch`` hands over to the loop for the memory
transport.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable

from raftkit.core.types import Message, NodeId

__all__ = ["Inbound"]


class Inbound:
    """The transport's view of the node (keeps the node's own API clean)."""

    def __init__(
        self,
        *,
        peers: Container[NodeId],
        contact: Callable[[NodeId], None],
        on_message: Callable[[Message], None],
        admit_snapshot: Callable[[Message], int | None],
        on_snapshot: Callable[[Message, Iterable[bytes]], None],
        on_snapshot_status: Callable[[NodeId, bool], None],
        snapshot_progress: Callable[[Message, int | None], None] | None = None,
    ) -> None:
        """``peers``: the node's live address book (it grows as members are
        added, so it is the mapping itself, not a copy); ``contact``: records
        that a peer was heard from (``NodeMetrics.contact``)."""
        self._peers = peers
        self._contact_fn = contact
        self._on_message = on_message
        self.admit_snapshot = admit_snapshot
        self._on_snapshot = on_snapshot
        self.on_snapshot_status = on_snapshot_status
        if snapshot_progress is not None:  # optional for the transport: it looks the method up
            self.snapshot_progress = snapshot_progress

    def on_message(self, message: Message) -> None:
        self._contact(message.src)
        self._on_message(message)

    def on_snapshot(self, message: Message, chunks: Iterable[bytes]) -> None:
        self._contact(message.src)
        self._on_snapshot(message, chunks)

    def _contact(self, src: NodeId) -> None:
        if src in self._peers:  # not every name a stranger makes up (memory)
            self._contact_fn(src)
