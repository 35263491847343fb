"""How far a snapshot being received has come: bytes, rate and ETA for
``status()["snapshot_progress"]``, and an INFO line every few seconds.

A socket transport reports each stream's bytes as its chunks arrive
(``InboundHandler.snapshot_progress``, on the node's loop thread); the
total is the length the sender declares in the SNAPSHOT message's
``index`` (0 when it does not know it: then ``total`` and ``eta_s`` are
None). ``status()`` reads the figures from any thread, so they sit behind a
lock and are worked out when read (a stalled stream's rate keeps falling).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from raftkit.core.types import Message, NodeId

__all__ = ["TransferProgress", "progress_text"]

# The node's log lines stay under one logger, wherever the code that writes them lives.
log = logging.getLogger("raftkit.runtime.node")

LOG_EVERY_S = 5.0
"""How often a snapshot being received is logged (not every chunk)."""

_MIB = 1024 * 1024


class TransferProgress:
    """The snapshot stream this node receives now (one at a time: a newer
    stream replaces the figures of an older one, as the leader's newer
    snapshot does)."""

    def __init__(
        self, node_id: NodeId, *, clock: Callable[[], float] = time.monotonic, log_every: float = LOG_EVERY_S
    ) -> None:
        self._id = node_id
        self._clock = clock
        self.log_every = log_every
        self._lock = threading.Lock()
        self._key: tuple[NodeId, int] | None = None  # (sender, snapshot index) of the stream
        self._total: int | None = None
        self._bytes = 0
        self._started = 0.0
        self._next_log = 0.0

    def update(self, message: Message, received: int | None) -> None:
        """``received`` bytes of ``message``'s stream are in (0 when it
        begins); None when the stream ended, delivered or abandoned. Loop
        thread (the transport's handler call)."""
        assert message.snapshot is not None
        key = (message.src, message.snapshot.index)
        now = self._clock()
        with self._lock:
            if received is None:
                if key == self._key:
                    self._key = None
                return
            if key != self._key:
                self._key, self._started, self._next_log = key, now, now + self.log_every
                self._total = message.index or None  # the sender's declared length; 0: unknown
            self._bytes = received
            due = now >= self._next_log
            if due:
                self._next_log = now + self.log_every
        if due:
            view = self.status()
            if view is not None:
                log.info("%s: %s", self._id, progress_text(view))

    def status(self) -> dict[str, Any] | None:
        """``status()["snapshot_progress"]``: None when no stream comes in. Any thread."""
        with self._lock:
            if self._key is None:
                return None
            (src, index), total, done = self._key, self._total, self._bytes
            elapsed = max(0.0, self._clock() - self._started)
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = None if total is None or rate <= 0 else max(0, total - done) / rate
        return {
            "index": index,
            "from": src,
            "bytes": done,
            "total": total,
            "rate_bytes_per_s": round(rate, 1),
            "eta_s": None if eta is None else round(eta, 1),
            "started_s_ago": round(elapsed, 1),
        }


def progress_text(p: dict[str, Any]) -> str:
    """One line for the log and ``raftkit admin status``, e.g. "receiving
    snapshot 1234 from n1: 52.1 MiB of 200.0 MiB (26 %), 12.3 MiB/s, about 12 s left"."""
    done, total = p.get("bytes") or 0, p.get("total")
    text = f"receiving snapshot {p.get('index')} from {p.get('from', '?')}: {done / _MIB:.1f} MiB"
    if total:
        text += f" of {total / _MIB:.1f} MiB ({100 * done // total} %)"
    text += f", {(p.get('rate_bytes_per_s') or 0) / _MIB:.1f} MiB/s"
    eta = p.get("eta_s")
    text += ", time left unknown" if eta is None else f", about {eta:.0f} s left"
    return text
