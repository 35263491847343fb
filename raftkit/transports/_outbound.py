"""The sending half of a socket transport: one ``OutboundLink`` per peer owns
that peer's bounded send queue, its connection (dialled lazily, redialled
with backoff) and its snapshot streams.

Every method runs on the owning transport's event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from collections import deque
from collections.abc import Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from raftkit.core.types import NodeId
from raftkit.errors import CodecError
from raftkit.transports.framing import (
    AuthenticationError,
    Buffer,
    Channel,
    FrameDecoder,
    FrameError,
    FrameKind,
    batch_pieces,
    encode_hello,
)
from raftkit.transports.identity import identity_error
from raftkit.transports.netutil import tune_socket

if TYPE_CHECKING:
    from raftkit.transports.tcp import TcpTransport

log = logging.getLogger(__name__)


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Mark a failure as seen, so a future nobody awaited any more (its waiter
    # was cancelled by close()) does not log "exception was never retrieved".
    if not future.cancelled():
        future.exception()


class SnapshotJob:
    """One ``send_snapshot`` call waiting for, or in, its stream."""

    __slots__ = ("peer", "message", "chunks")

    def __init__(self, peer: NodeId, message: bytes, chunks: Iterable[Buffer]) -> None:
        self.peer = peer
        self.message = message  # the wire-encoded SNAPSHOT message
        self.chunks = chunks


def rechunk(chunks: Iterable[Buffer], size: int) -> Generator[Buffer, None, None]:
    """Pieces of at most ``size`` bytes: big chunks are sliced (without
    copying), small ones glued together so they do not become tiny frames.
    A piece is only valid until the next one is requested."""
    held = bytearray()
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        pos = 0
        if held:
            pos = min(size - len(held), len(view))
            held += view[:pos]
            if len(held) < size:
                continue
            yield bytes(held)
            held.clear()
        while len(view) - pos >= size:
            yield view[pos : pos + size]
            pos += size
        held += view[pos:]
    if held:
        yield bytes(held)


class ClientProtocol(asyncio.Protocol):
    """One dialled connection. It writes frames and reads only handshake
    replies and snapshot acknowledgements; ``ready`` resolves once HELLO is
    written."""

    def __init__(self, link: OutboundLink, channel: Channel) -> None:
        self.link = link
        self.channel = channel
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(link.owner.options.max_frame_bytes)
        loop = link.owner.loop
        self.ready: asyncio.Future[None] = loop.create_future()
        self.ready.add_done_callback(_retrieve)
        self.paused = False
        self.lost = False
        self._waiter: asyncio.Future[None] | None = None
        self._ack: asyncio.Future[bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass).
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        tune_socket(transport.get_extra_info("socket"), keepalive=self.link.owner.options.keepalive)
        if self.link.owner.client_ssl is not None:
            why = identity_error(transport.get_extra_info("peercert"), self.link.peer, "listener")
            if why is not None:  # someone else's certificate at this peer's address
                self._fail(AuthenticationError(why))
                return
        self._write_handshake()
        if self.channel.established:
            self._on_established()

    def _write_handshake(self) -> None:
        out = self.channel.take_output()
        if out and self.transport is not None:
            self.transport.write(out)

    def _on_established(self) -> None:
        hello = encode_hello(self.link.owner.node_id, self.link.peer)
        self.write_frame(FrameKind.HELLO, [hello])
        if not self.ready.done():
            self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.lost:
            return
        try:
            for header, body in self.decoder.feed(data):
                was_established = self.channel.established
                frame = self.channel.open(header, body)
                if frame is not None:
                    self._on_ack(*frame)
                self._write_handshake()
                if not was_established and self.channel.established:
                    self._on_established()
        except CodecError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must cost this connection, not the node
            log.exception("closing the connection to %s after an internal error", self.link.label)
            self._fail(exc)

    def _on_ack(self, kind: FrameKind, payload: memoryview) -> None:
        ack, self._ack = self._ack, None
        if kind is not FrameKind.SNAPSHOT_ACK or ack is None or len(payload) != 1:
            raise FrameError(f"the receiving side sent an unexpected {kind.name} frame")
        if not ack.done():  # done: the stream's waiter was cancelled by close()
            ack.set_result(payload[0] == 1)

    def expect_ack(self) -> asyncio.Future[bool]:
        """A future for the receiver's acknowledgement of the snapshot stream
        about to end; ``ConnectionError`` if the connection goes first."""
        self._ack = self.link.owner.loop.create_future()
        self._ack.add_done_callback(_retrieve)
        return self._ack

    def _fail(self, exc: Exception) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)  # the dialer logs it
        else:
            log.warning("closing the connection to %s: %s", self.link.label, exc)
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ready.done():
            reason = f": {exc}" if exc else ""
            if getattr(self.channel, "proof_sent", False) and not self.channel.established:
                # The listener hung up on our proof: the usual cause is another password.
                self.ready.set_exception(
                    AuthenticationError(
                        "the listener refused our proof: does it use the same cluster password and "
                        f"cluster id?{reason}"
                    )
                )
            else:
                self.ready.set_exception(ConnectionError(f"connection closed during the handshake{reason}"))
        ack, self._ack = self._ack, None
        if ack is not None and not ack.done():
            ack.set_exception(ConnectionError("connection lost before the snapshot was acknowledged"))
        self._wake()
        self.link.connection_lost(self, exc)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake()
        self.link.kick()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drained(self) -> None:
        """Yield to the loop, then wait while the socket's buffer is over its
        high-water mark; ``ConnectionError`` once the connection is gone."""
        await asyncio.sleep(0)
        while self.paused and not self.lost:
            self._waiter = self.link.owner.loop.create_future()
            await self._waiter
        if self.lost:
            raise ConnectionError("connection lost")

    def write_frame(self, kind: FrameKind, parts: Sequence[Buffer] = ()) -> int:
        frame = self.channel.seal(kind, parts)
        assert self.transport is not None
        self.transport.write(frame)
        return len(frame)


class OutboundLink:
    """Everything this node sends to one peer."""

    def __init__(self, owner: TcpTransport, peer: NodeId, address: str, host: str, port: int) -> None:
        self.owner = owner
        self.peer = peer
        self.address = address
        self.host, self.port = host, port
        self.label = f"peer {peer!r} at {address}"
        self.closed = False
        self._queue: deque[tuple[int, list[bytes]]] = deque()  # encoded messages: (size, pieces)
        self._queued_bytes = 0
        self._jobs: deque[SnapshotJob] = deque()
        self._current: SnapshotJob | None = None
        self._proto: ClientProtocol | None = None
        self._dialer: asyncio.Task[None] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._backoff = owner.options.backoff_min
        self._delay_next_dial = False
        self._failures = 0
        self._established_at = 0.0

    @property
    def has_work(self) -> bool:
        return bool(self._queue or self._jobs)

    # -- what the transport calls ---------------------------------------------------

    def enqueue(self, size: int, pieces: list[bytes]) -> None:
        """Queue one encoded message (``wire.encode_message_pieces``: its size
        and pieces), dropping the oldest past the byte budget; ``send_now``
        sends what is queued (once the caller queued them all)."""
        stats, budget = self.owner.stats, self.owner.options.send_queue_bytes
        if size > budget:
            stats.messages_dropped += 1
            return
        self._queue.append((size, pieces))
        self._queued_bytes += size
        while self._queued_bytes > budget:
            self._queued_bytes -= self._queue.popleft()[0]
            stats.messages_dropped += 1

    def send_now(self) -> None:
        """Write what is queued now, in one frame where it fits, if connected
        and not paused; else as ``kick``. Saves the loop turn a scheduled
        flush costs: at low rates each message would otherwise pay one."""
        proto = self._proto
        if proto is None or proto.paused or self.closed or self._jobs:
            self.kick()
            return
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()

    def enqueue_snapshot(self, job: SnapshotJob) -> None:
        self._jobs.append(job)
        self.kick()

    def kick(self) -> None:
        """Make progress: dial if disconnected, else schedule a flush (at the
        end of this loop iteration, so everything queued meanwhile shares one
        frame) and the snapshot pump."""
        if self.closed:
            return
        proto = self._proto
        if proto is None:
            if self._dialer is None and self.has_work:
                self._dialer = self.owner.spawn(self._dial())
            return
        if self._queue and self._flush_handle is None and not proto.paused:
            self._flush_handle = self.owner.loop.call_soon(self._flush)
        if self._jobs and self._pump is None:
            self._pump = self.owner.spawn(self._pump_snapshots())

    def close(self) -> None:
        """Forget this peer: drop its queue, fail its snapshots, hang up."""
        if self.closed:
            return
        self.closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        for task in (self._dialer, self._pump):
            if task is not None:
                task.cancel()
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()
        self._queue.clear()
        self._queued_bytes = 0
        if self._current is not None:
            self._fail_job(self._current)
            self._current = None
        self._fail_jobs()

    # -- messages -------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_handle = None
        proto = self._proto
        options, stats = self.owner.options, self.owner.stats
        while self._queue and proto is not None and not proto.paused:
            batch: list[tuple[int, list[bytes]]] = []
            size = 0
            while self._queue and (not batch or size + 4 + self._queue[0][0] <= options.batch_bytes):
                item = self._queue.popleft()
                batch.append(item)
                size += 4 + item[0]
            self._queued_bytes -= size - 4 * len(batch)
            stats.bytes_sent += proto.write_frame(FrameKind.BATCH, batch_pieces(batch))
            stats.frames_sent += 1
            stats.messages_sent += len(batch)

    # -- connecting -------------------------------------------------------------------

    async def _dial(self) -> None:
        try:
            while not self.closed and self.has_work:
                if self._delay_next_dial:
                    await asyncio.sleep(self._next_backoff())
                    if self.closed or not self.has_work:
                        return
                self._delay_next_dial = True
                try:
                    proto = await self._connect()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._dial_failed(exc)
                    continue
                self._connected(proto)
                return
        finally:
            self._dialer = None
            if self._proto is not None:
                self.kick()

    def _next_backoff(self) -> float:
        delay = self._backoff * random.uniform(0.5, 1.0)
        self._backoff = min(self._backoff * 2, self.owner.options.backoff_max)
        return delay

    async def _connect(self) -> ClientProtocol:
        owner, options = self.owner, self.owner.options
        loop = owner.loop
        owner.stats.dials += 1
        family, sockaddr = await owner.resolver.resolve(self.host, self.port)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, sockaddr), options.connect_timeout)
        except BaseException:
            sock.close()
            raise
        proto = ClientProtocol(self, owner.client_channel(self.peer))
        context = owner.client_ssl
        try:
            if context is None:
                transport, _ = await loop.create_connection(lambda: proto, sock=sock)
            else:
                transport, _ = await loop.create_connection(
                    lambda: proto, sock=sock, ssl=context, server_hostname=self.host,
                    ssl_handshake_timeout=options.handshake_timeout,
                )
        except BaseException:
            sock.close()
            raise
        try:
            await asyncio.wait_for(asyncio.shield(proto.ready), options.handshake_timeout)
        except BaseException:
            transport.abort()
            raise
        if proto.lost:  # lost between the handshake and this line: not a live link
            raise ConnectionError("connection closed right after the handshake")
        return proto

    def _dial_failed(self, exc: Exception) -> None:
        self._failures += 1
        self.owner.stats.dial_failures += 1
        kind, text = _describe_failure(exc)
        if self.owner.peer_log.first((kind, self.peer, self.address)):
            log.warning("cannot connect to %s: %s (retrying with backoff; logged once)", self.label, text)
        else:
            log.debug("attempt %d to connect to %s failed: %s", self._failures, self.label, text)
        self._fail_jobs()

    def _connected(self, proto: ClientProtocol) -> None:
        if self._failures:
            log.info("connected to %s after %d failed attempts", self.label, self._failures)
        else:
            log.debug("connected to %s", self.label)
        for kind in _FAILURE_KINDS:
            self.owner.peer_log.clear((kind, self.peer, self.address))
        self._failures = 0
        self._proto = proto
        self._established_at = self.owner.loop.time()

    def connection_lost(self, proto: ClientProtocol, exc: Exception | None) -> None:
        if proto is not self._proto:
            return  # a dial that never completed: the dialer reports it
        self._proto = None
        self.owner.stats.connections_lost += 1
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        options = self.owner.options
        if self.owner.loop.time() - self._established_at >= options.backoff_max:
            self._backoff = options.backoff_min  # it was a stable link: redial promptly
        self._delay_next_dial = True
        log.info("connection to %s lost%s", self.label, f": {exc}" if exc else "")
        self._fail_jobs()
        self.kick()

    # -- snapshots ----------------------------------------------------------------------

    async def _pump_snapshots(self) -> None:
        try:
            while self._jobs and self._proto is not None and not self.closed:
                job = self._current = self._jobs.popleft()
                ok = await self._stream(job, self._proto)
                self._current = None
                self._finish_job(job, ok)
        finally:
            self._pump = None

    async def _stream(self, job: SnapshotJob, proto: ClientProtocol) -> bool:
        """Send one snapshot, reading the next chunk only when the socket has
        room for it, so the snapshot is never held in memory whole; succeed
        when the receiver acknowledges it."""
        options, stats = self.owner.options, self.owner.stats
        pieces = rechunk(job.chunks, options.snapshot_chunk_bytes)
        try:
            stats.bytes_sent += proto.write_frame(FrameKind.SNAPSHOT_BEGIN, [job.message])
            while True:
                await proto.drained()
                try:
                    piece = next(pieces)
                except StopIteration:
                    break
                except Exception:
                    log.warning("snapshot stream to %s failed: its chunks raised", self.label, exc_info=True)
                    proto.write_frame(FrameKind.SNAPSHOT_ABORT)
                    return False
                stats.bytes_sent += proto.write_frame(FrameKind.SNAPSHOT_CHUNK, [piece])
            ack = proto.expect_ack()
            stats.bytes_sent += proto.write_frame(FrameKind.SNAPSHOT_END)
            return await ack
        except ConnectionError:
            log.info("snapshot stream to %s failed: the connection was lost", self.label)
            return False
        finally:
            pieces.close()
            close = getattr(job.chunks, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.debug("closing the snapshot chunks for %s raised", self.label, exc_info=True)

    def _finish_job(self, job: SnapshotJob, ok: bool) -> None:
        if ok:
            self.owner.stats.snapshots_sent += 1
        else:
            self.owner.stats.snapshots_failed += 1
        self.owner.report_snapshot(job.peer, ok)

    def _fail_job(self, job: SnapshotJob) -> None:
        close = getattr(job.chunks, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.debug("closing the snapshot chunks for %s raised", self.label, exc_info=True)
        self._finish_job(job, False)

    def _fail_jobs(self) -> None:
        while self._jobs:
            self._fail_job(self._jobs.popleft())


_FAILURE_KINDS = ("auth", "resolve", "tls", "timeout", "connect")


def _describe_failure(exc: BaseException) -> tuple[str, str]:
    """A failure's kind (each kind is logged once per peer address) and text."""
    if isinstance(exc, AuthenticationError):
        return "auth", f"authentication failed: {exc}"
    if isinstance(exc, socket.gaierror):
        return "resolve", f"cannot resolve the host name ({exc})"
    if isinstance(exc, ssl.SSLError):
        return "tls", f"TLS handshake failed ({exc})"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout", "timed out"
    return "connect", str(exc) or type(exc).__name__
