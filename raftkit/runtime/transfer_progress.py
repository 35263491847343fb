"""How far a snapshot being received or sent has come: bytes, rate and ETA
for ``status()["snapshot_progress"]`` (receiving) and
``status()["snapshot_sends"]`` (sending, per peer), and an INFO line every
few seconds.

A socket transport reports each stream's bytes as its chunks arrive
(``InboundHandler.snapshot_progress``, on the node's loop thread); the
total is the length the sender declares in the SNAPSHOT message's
``index`` (0 when it does not know it: then ``total`` and ``eta_s`` are
None). ``status()`` reads the figures from any thread, so they sit behind a
lock and are worked out when read (a stalled stream's rate keeps falling).

Sending: ``SendProgress.counted`` wraps the chunks handed to the transport
and counts each as the transport pulls it. A socket transport pulls the next
chunk only when its socket has room, so the count is the bytes written to
the connection (ahead of the receiver by at most the socket buffers); the
total is the snapshot's size. Once all are pulled the stream waits for the
receiver's acknowledgement (``state`` "sent") until ``finished`` is called;
a delivered stream is logged with its average rate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from raftkit.core.types import Message, NodeId

__all__ = ["SendProgress", "TransferProgress", "progress_text"]

# The node's log lines stay under one logger, wherever the code that writes them lives.
log = logging.getLogger("raftkit.runtime.node")

LOG_EVERY_S = 5.0
"""How often a snapshot being received is logged (not every chunk)."""

_MIB = 1024 * 1024

MAX_STREAMS_PER_PEER = 4
"""Streams to one peer followed at once (more means a transport that does
not report: the oldest are forgotten)."""


class _Receive:
    """One stream coming in (mutated under ``TransferProgress._lock``)."""

    __slots__ = ("total", "bytes", "started", "next_log")

    def __init__(self, total: int | None, now: float, log_every: float) -> None:
        self.total, self.bytes, self.started, self.next_log = total, 0, now, now + log_every


MAX_RECEIVING = 4
"""Streams coming in followed at once (each connection carries one; more
are forgotten, oldest first)."""


class TransferProgress:
    """The snapshot streams this node receives. Usually one; during a change
    of leader a deposed leader's stream may still arrive beside the new
    one's: each keeps its own figures and ``status`` shows the newest."""

    def __init__(
        self, node_id: NodeId, *, clock: Callable[[], float] = time.monotonic, log_every: float = LOG_EVERY_S
    ) -> None:
        self._id = node_id
        self._clock = clock
        self.log_every = log_every
        self._lock = threading.Lock()
        # (sender, snapshot index) of each stream, oldest first.
        self._streams: dict[tuple[NodeId, int], _Receive] = {}

    def update(self, message: Message, received: int | None) -> None:
        """``received`` bytes of ``message``'s stream are in (0 when it
        begins); None when the stream ended, delivered or abandoned. Loop
        thread (the transport's handler call)."""
        assert message.snapshot is not None
        key = (message.src, message.snapshot.index)
        now = self._clock()
        with self._lock:
            if received is None:
                self._streams.pop(key, None)
                return
            stream = self._streams.get(key)
            if stream is None:
                # The sender's declared length; 0 (or nonsense): unknown.
                total = message.index if message.index > 0 else None
                stream = self._streams[key] = _Receive(total, now, self.log_every)
                while len(self._streams) > MAX_RECEIVING:
                    del self._streams[next(iter(self._streams))]
            stream.bytes = received
            due = now >= stream.next_log
            if due:
                stream.next_log = now + self.log_every
        if due:
            log.info("%s: %s", self._id, progress_text(self._view(key, stream)))

    def _view(self, key: tuple[NodeId, int], stream: _Receive) -> dict[str, Any]:
        with self._lock:
            total, done, elapsed = stream.total, stream.bytes, max(0.0, self._clock() - stream.started)
        return {"index": key[1], "from": key[0], **_figures(done, total, elapsed)}

    def status(self) -> dict[str, Any] | None:
        """``status()["snapshot_progress"]``: the newest stream coming in,
        None when none does. Any thread."""
        with self._lock:
            if not self._streams:
                return None
            key = next(reversed(self._streams))
            stream = self._streams[key]
        return self._view(key, stream)


def _figures(done: int, total: int | None, elapsed: float) -> dict[str, Any]:
    """bytes, total, rate (average since the start) and ETA, as status() shows them."""
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = None if total is None or rate <= 0 else max(0, total - done) / rate
    return {
        "bytes": done,
        "total": total,
        "rate_bytes_per_s": round(rate, 1),
        "eta_s": None if eta is None else round(eta, 1),
        "started_s_ago": round(elapsed, 1),
    }


class _Send:
    """One stream to one peer (mutated under ``SendProgress._lock``)."""

    __slots__ = ("index", "total", "bytes", "started", "state", "next_log")

    def __init__(self, index: int, total: int | None, now: float, log_every: float) -> None:
        self.index, self.total, self.bytes = index, total, 0
        self.started, self.state, self.next_log = now, "waiting", now + log_every


class SendProgress:
    """The snapshot streams this node sends, shown one per peer: the newest
    (one queued behind an older stream to the same peer shows once it is
    the peer's newest, and stays shown when the older one is reported)."""

    def __init__(
        self, node_id: NodeId, *, clock: Callable[[], float] = time.monotonic, log_every: float = LOG_EVERY_S
    ) -> None:
        self._id = node_id
        self._clock = clock
        self.log_every = log_every
        self._lock = threading.Lock()
        # Per peer, its streams in the order they were handed to the transport,
        # which reports them in that order (a newer one may queue behind an
        # older one still in flight): status() shows the newest.
        self._sends: dict[NodeId, list[_Send]] = {}

    def counted(
        self, peer: NodeId, index: int, total: int | None, chunks: Iterable[bytes]
    ) -> Iterator[bytes]:
        """``chunks`` of snapshot ``index`` to ``peer``, counted as they are
        pulled; ``total``: its size (None when unknown). Closing the result
        closes ``chunks``, even before its first chunk (a transport dropping
        a queued stream)."""
        send = _Send(index, total, self._clock(), self.log_every)
        with self._lock:
            queue = self._sends.setdefault(peer, [])
            queue.append(send)
            del queue[:-MAX_STREAMS_PER_PEER]  # a transport that never reports must not grow it
        return _Closing(self._count(peer, send, chunks), chunks)

    def _count(self, peer: NodeId, send: _Send, chunks: Iterable[bytes]) -> Iterator[bytes]:
        it = iter(chunks)
        try:
            with self._lock:  # the stream begins when the transport first pulls (it may queue it first)
                send.started, send.state = self._clock(), "sending"
                send.next_log = send.started + self.log_every
            for chunk in it:
                now = self._clock()
                with self._lock:
                    send.bytes += len(chunk)
                    due = now >= send.next_log and self._newest(peer) is send
                    if due:
                        send.next_log = now + self.log_every
                if due:
                    self._log(peer)
                yield chunk
            with self._lock:
                send.state = "sent"  # all handed over: the receiver's acknowledgement is due
                if send.total is None:
                    send.total = send.bytes
        finally:
            close = getattr(it, "close", None)
            if callable(close):
                close()

    def _newest(self, peer: NodeId) -> _Send | None:
        queue = self._sends.get(peer)
        return queue[-1] if queue else None

    def _log(self, peer: NodeId) -> None:
        view = self.status().get(peer)
        if view is not None:
            log.info("%s: %s", self._id, progress_text(view))

    def finished(self, peer: NodeId, ok: bool) -> None:
        """The transport reported the oldest stream to ``peer``: delivered
        (logged with its average rate, acknowledgement included) or failed."""
        now = self._clock()
        with self._lock:
            queue = self._sends.get(peer)
            send = queue.pop(0) if queue else None
            if queue is not None and not queue:
                del self._sends[peer]
        if send is None:
            return
        view = _view(peer, send, now)
        if ok and view["state"] == "sent":
            log.info(
                "%s: snapshot %s delivered to %s: %.1f MiB in %.1f s, %.1f MiB/s", self._id, view["index"],
                peer, view["bytes"] / _MIB, view["started_s_ago"], view["rate_bytes_per_s"] / _MIB,
            )

    def status(self) -> dict[NodeId, dict[str, Any]]:
        """``status()["snapshot_sends"]``: each peer being sent a snapshot
        (its newest stream). Any thread."""
        now = self._clock()
        with self._lock:
            return {peer: _view(peer, queue[-1], now) for peer, queue in self._sends.items() if queue}


def _view(peer: NodeId, s: _Send, now: float) -> dict[str, Any]:
    """One stream's figures (under ``SendProgress._lock``, or once it is out of the table)."""
    return {
        "index": s.index, "to": peer, "state": s.state,
        **_figures(s.bytes, s.total, max(0.0, now - s.started)),
    }


class _Closing(Iterator[bytes]):
    """The counted chunks, whose ``close`` also closes the chunks they wrap:
    closing a generator that has not started runs none of its code, so a
    stream dropped while queued would leave its snapshot source open."""

    __slots__ = ("_counted", "_chunks")

    def __init__(self, counted: Iterator[bytes], chunks: Iterable[bytes]) -> None:
        self._counted, self._chunks = counted, chunks

    def __next__(self) -> bytes:
        return next(self._counted)

    def close(self) -> None:
        try:
            close = getattr(self._counted, "close", None)
            if callable(close):
                close()
        finally:
            close = getattr(self._chunks, "close", None)
            if callable(close):
                close()


def progress_text(p: dict[str, Any]) -> str:
    """One line for the log and ``raftkit admin status``, e.g. "receiving
    snapshot 1234 from n1: 52.1 MiB of 200.0 MiB (26 %), 12.3 MiB/s, about 12 s left"
    (a stream being sent: "sending snapshot 1234 to n3: ...")."""
    done, total = p.get("bytes") or 0, p.get("total")
    if "to" in p:
        text = f"sending snapshot {p.get('index')} to {p.get('to')}: {done / _MIB:.1f} MiB"
    else:
        text = f"receiving snapshot {p.get('index')} from {p.get('from', '?')}: {done / _MIB:.1f} MiB"
    if total:
        text += f" of {total / _MIB:.1f} MiB ({100 * done // total} %)"
    text += f", {(p.get('rate_bytes_per_s') or 0) / _MIB:.1f} MiB/s"
    eta = p.get("eta_s")
    if p.get("state") == "sent":
        return text + ", all sent: waiting for the receiver to acknowledge"
    if p.get("state") == "waiting":
        return text + ", waiting for the connection"
    text += ", time left unknown" if eta is None else f", about {eta:.0f} s left"
    return text
