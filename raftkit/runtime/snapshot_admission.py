"""Validate, then store: which incoming snapshots a node takes.

A snapshot replaces a node's whole state, and a stored one is what the node
restarts from, so nothing of a snapshot stream reaches the snapshotter (or
even the transport's spool) before the node has judged its SNAPSHOT
message: it must come from the node's current leader in the current term,
with metadata that makes sense, and within ``NodeConfig.max_snapshot_bytes``.
Anything else is refused as if lost; a real leader retries its snapshots
anyway, so a follower that has not yet heard of a new leader simply refuses
one round.

Membership is not checked again here: the core accepts a leader only from
the voters of a configuration it knows, including config entries it holds
but has not applied yet (raftkit.core.admission), and only the leader the
core has accepted for the current term is believed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from raftkit.core.bounds import message_out_of_bounds
from raftkit.core.membership import validate_conf
from raftkit.core.types import Message, MessageType, NodeId
from raftkit.errors import SnapshotError

__all__ = ["RefusalLog", "capped", "snapshot_refusal"]

log = logging.getLogger(__name__)


def snapshot_refusal(message: Message, lead: NodeId | None, term: int, limit: int) -> str | None:
    """Why the node must refuse this snapshot before storing a byte of it
    (None: take it). ``lead`` and ``term``: the core's current leader and
    term; ``limit``: the most bytes the node takes (``max_snapshot_bytes``)."""
    snap = message.snapshot
    if message.type is not MessageType.SNAPSHOT or snap is None:
        return f"a {message.type.name} message is not a snapshot"
    beyond = message_out_of_bounds(message, term)
    if beyond is not None:
        return beyond
    if lead is None or message.src != lead or message.term != term:
        known = f"{lead} in term {term}" if lead is not None else f"no leader known in term {term}"
        return f"not from the current leader ({known}; the stream claims term {message.term})"
    if not 0 < snap.term <= message.term or snap.index <= 0:
        sent = f"index {snap.index}, term {snap.term}, sent in term {message.term}"
        return f"its metadata makes no sense ({sent})"
    try:
        validate_conf(snap.conf)
    except ValueError as exc:
        return f"its membership is invalid ({exc})"
    if message.index > limit:  # the declared length (0: not declared)
        return (
            f"it declares {message.index} bytes, over max_snapshot_bytes ({limit}); raise "
            "NodeConfig.max_snapshot_bytes on this node if the state machine really is that large"
        )
    return None


def capped(chunks: Iterable[bytes], limit: int, what: str) -> Iterator[bytes]:
    """``chunks`` as they are, raising ``SnapshotError`` as soon as they
    total more than ``limit`` bytes (the store then discards what it wrote)."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise SnapshotError(
                f"{what} exceeds max_snapshot_bytes ({limit} bytes); raise NodeConfig.max_snapshot_bytes "
                "on this node if the state machine really is that large"
            )
        yield chunk


class RefusalLog:
    """Logs refusals at most once per sender and reason every ``interval``
    seconds, so a flood of bad input cannot flood the log."""

    def __init__(self, node_id: NodeId, interval: float = 60.0, max_keys: int = 1024) -> None:
        self._id = node_id
        self._interval = interval
        self._max_keys = max_keys
        self._last: dict[tuple[NodeId, str], float] = {}
        self.refused = 0  # every refusal, logged or not

    def refuse(self, src: NodeId, what: str, reason: str) -> None:
        self.refused += 1
        now = time.monotonic()
        key = (src, what)
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            return
        if len(self._last) >= self._max_keys:
            self._last.clear()  # bounded memory; at worst a line repeats sooner
        self._last[key] = now
        log.warning("%s: refused %s from %s: %s", self._id, what, src, reason)
