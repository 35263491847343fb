"""SnapshotTransfer: snapshots on the wire, both ways.

Receiving: a stream is judged before any of its bytes are kept
(``admit``), stored to the snapshotter within ``max_snapshot_bytes``
(``receive``), then handed to the core as a message; the core decides and
the node installs it when it persists that Ready (``Applier.installed``).
Sending: a SNAPSHOT message the core emits is streamed from the
snapshotter (``send``), and the transport's report on it goes back to the
core (``sent``). Progress both ways (raftkit.runtime.transfer_progress) and
of peers catching up the log (raftkit.runtime.catch_up) join ``status()``
through ``add_to_status``.

Everything here runs on the node's loop thread: the transport calls in
through ``Inbound`` there, and ``send`` runs inside the Ready loop.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from raftkit.core.rawnode import RawNode
from raftkit.core.types import Message, NodeId
from raftkit.errors import RaftkitError
from raftkit.runtime.catch_up import CatchUpProgress
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.snapshot_admission import RefusalLog, capped, snapshot_refusal
from raftkit.runtime.transfer_progress import SendProgress, TransferProgress
from raftkit.storage.snapshotter import Snapshotter
from raftkit.transports.base import Transport

__all__ = ["SnapshotTransfer", "closing_chunks"]

# The node's log lines stay under one logger, wherever the code that writes them lives.
log = logging.getLogger("raftkit.runtime.node")


class closing_chunks(Iterator[bytes]):  # noqa: N801 - used as the function it was
    """The chunks of an open snapshot source, closing it once read, or when
    closed (also before the first chunk: a generator that never started
    would not run its ``with`` block, and a transport dropping a queued
    stream left the source open)."""

    def __init__(self, source: Any, size: int) -> None:
        self._source = source
        self._open = True  # until the source is closed, once
        self._chunks = self._read(size)

    def _read(self, size: int) -> Generator[bytes, None, None]:
        try:
            with self._source:
                yield from self._source.chunks(size)
        finally:
            self._open = False

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        try:
            self._chunks.close()
        finally:
            if self._open:  # the generator never started: its with block did not run
                self._open = False
                self._source.close()


class SnapshotTransfer:
    def __init__(
        self,
        node_id: NodeId,
        raw: RawNode,
        config: NodeConfig,
        snapshotter: Callable[[], Snapshotter],
        transport: Callable[[], Transport],
        refusals: RefusalLog,
        *,
        stopped: Callable[[], bool],
        busy: Callable[[], str | None],
        step: Callable[[Message], None],
        process_ready: Callable[[], None],
    ) -> None:
        """``snapshotter``, ``transport``: the node's, looked up on each use
        (public attributes of ``Node``; a test swaps the snapshotter for a
        failing one); ``busy``: why the node cannot take a snapshot now
        (its log store fails, a capture reads the state), or None; ``step``:
        feeds a message to the core and runs the Ready loop (``Node._step``)."""
        self._id = node_id
        self._raw = raw
        self._config = config
        self._snapshotter = snapshotter
        self._transport = transport
        self._refusals = refusals
        self._stopped = stopped
        self._busy = busy
        self._step = step
        self._process_ready = process_ready
        # How far a stream being received has come (the transport reports it):
        # status()["snapshot_progress"] and a log line every few seconds.
        self.progress = TransferProgress(node_id)
        self.sends = SendProgress(node_id)  # streams this node sends, per peer
        self.catch_up = CatchUpProgress(node_id)  # peers far behind in the log (as leader)

    def add_to_status(self, status: dict[str, Any]) -> None:
        """The live progress fields of ``status()`` (any thread)."""
        status["snapshot_progress"] = self.progress.status()
        status["snapshot_sends"] = self.sends.status()
        status["catch_up"] = self.catch_up.status()

    # -- receiving -----------------------------------------------------------------------

    def admit(self, message: Message) -> int | None:
        """Judge a snapshot stream before any of its bytes are kept (the
        transport asks when the stream begins): the most bytes this node
        takes for it, or None when it is refused (raftkit.runtime.snapshot_admission)."""
        raft = self._raw.raft
        limit = self._config.max_snapshot_bytes
        reason = snapshot_refusal(message, raft.lead, raft.term, limit) if not self._stopped() else "stopped"
        if reason is not None:
            self._refusals.refuse(message.src, "a snapshot", reason)
            return None
        return limit

    def receive(self, message: Message, chunks: Iterable[bytes]) -> None:
        """Validate, then store: a snapshot from the current leader is
        streamed to the snapshotter (chunk by chunk, within
        ``max_snapshot_bytes``), then the core decides; it is installed when
        the node persists that Ready. Refusing one is like losing the
        message: the leader sends it again."""
        snap = message.snapshot
        if snap is None or self.admit(message) is None:
            return
        why = self._busy()
        if why is not None:
            log.info("%s: not taking snapshot %d from %s now: %s", self._id, snap.index, message.src, why)
            return
        if snap.index > self._raw.raft.log.committed:  # otherwise the core just answers what it has
            what = f"snapshot {snap.index} from {message.src}"
            try:
                self._snapshotter().install(snap, capped(chunks, self._config.max_snapshot_bytes, what))
            except Exception as exc:
                log.warning("%s: cannot store %s: %s", self._id, what, exc)
                return
        self._step(message)

    # -- sending -------------------------------------------------------------------------

    def send(self, m: Message) -> None:
        """Stream the snapshot a SNAPSHOT message names to its peer."""
        snap = m.snapshot
        assert snap is not None
        try:
            source = self._snapshotter().open(snap.index)
        except RaftkitError as exc:
            log.warning("%s: cannot send snapshot %d to %s: %s", self._id, snap.index, m.dst, exc)
            self._raw.report_snapshot(m.dst, False)
            return
        log.info("%s: sending snapshot %d to %s", self._id, snap.index, m.dst)
        m = dataclasses.replace(m, index=source.size)  # declared length: see Message (SNAPSHOT)
        chunks = closing_chunks(source, self._config.snapshot_chunk_size)
        counted = self.sends.counted(m.dst, snap.index, source.size or None, chunks)
        self._transport().send_snapshot(m, counted)

    def sent(self, peer: NodeId, ok: bool) -> None:
        """The transport's report on an earlier ``send`` to ``peer``."""
        try:
            self.sends.finished(peer, ok)
        except Exception:  # the figures must never keep the core from hearing of the stream
            log.exception("%s: snapshot send progress for %s failed", self._id, peer)
        if self._stopped():
            return
        self._raw.report_snapshot(peer, ok)
        if not ok:
            log.info("%s: sending a snapshot to %s failed; it will be sent again", self._id, peer)
        self._process_ready()
