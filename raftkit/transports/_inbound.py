"""The receiving half of a socket transport: one ``ServerProtocol`` per
accepted connection checks every frame, spools snapshot streams to a
temporary file and hands what is valid to the node's handler.

Every method runs on the owning transport's event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, cast

from raftkit.core.types import Message, MessageType, NodeId
from raftkit.errors import CodecError
from raftkit.serializers import wire
from raftkit.transports.framing import (
    AuthenticationError,
    FrameDecoder,
    FrameError,
    FrameKind,
    decode_batch,
    decode_hello,
)
from raftkit.transports.identity import identity_error
from raftkit.transports.netutil import format_address, tune_socket

if TYPE_CHECKING:
    from raftkit.transports.tcp import TcpTransport

log = logging.getLogger(__name__)

# The admin protocol's first bytes (raftkit.admin.protocol.MAGIC; that layer
# sits above the transports, so the three bytes are repeated here).
ADMIN_MAGIC = b"RKA"

SPOOL_MEMORY_BYTES = 8 * 1024 * 1024
"""A received snapshot stays in memory up to this size, then moves to disk."""

SPOOL_READ_BYTES = 1024 * 1024
"""The handler reads a received snapshot back in chunks of this size."""


def read_spool(spool: IO[bytes], size: int = SPOOL_READ_BYTES) -> Iterator[bytes]:
    """The spooled snapshot, from the start, in ``size``-byte chunks."""
    spool.seek(0)
    while chunk := spool.read(size):
        yield chunk


class ServerProtocol(asyncio.Protocol):
    """One accepted connection. Nothing reaches the handler until the
    connection is established (TLS, password handshake) and has named its
    sender in a HELLO frame; any bad frame closes the connection."""

    def __init__(self, owner: TcpTransport) -> None:
        self.owner = owner
        # Until HELLO only handshake frames and HELLO are due: tiny ones.
        self.decoder = FrameDecoder(owner.options.max_preauth_frame_bytes)
        self.channel = owner.server_channel()
        self.transport: asyncio.Transport | None = None
        self.host = "?"
        self.peer = "?"
        self.src: NodeId | None = None
        self.closing = False
        self._spool: IO[bytes] | _Discard | None = None
        self._spool_message: Message | None = None
        self._spool_left = -1  # bytes the node still takes for the stream (-1: discarding it)
        self._spool_bytes = 0  # bytes of the stream so far, for the node's progress report
        self._timer: asyncio.TimerHandle | None = None
        self._upgrade: asyncio.Task[None] | None = None
        self._held: list[bytes] | None = None  # writes waiting for the TLS transport
        self._early: list[bytes] | None = None  # bytes read before the TLS transport was ours
        self._buffered = 0  # this connection's share of owner.buffered_bytes
        self.accepted_at = owner.loop.time()
        self.last_active = self.accepted_at
        # The first bytes, while they may still turn out to open an admin
        # connection (raftkit.admin's magic) for owner.admin_handoff.
        sniff = owner.admin_handoff is not None and owner.server_ssl is None
        self._sniff: bytes | None = b"" if sniff else None

    # -- connection events ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass).
        transport = cast(asyncio.Transport, transport)
        owner = self.owner
        self.transport = transport
        peername = transport.get_extra_info("peername")
        if peername:
            self.host = str(peername[0])
            self.peer = format_address(self.host, peername[1])
        owner.inbound.add(self)
        owner.stats.connections_accepted += 1
        if not owner.admit(self):
            return
        tune_socket(transport.get_extra_info("socket"), keepalive=owner.options.keepalive)
        self._timer = owner.loop.call_later(owner.options.handshake_timeout, self._timed_out)
        context = owner.server_ssl
        if context is not None:
            transport.pause_reading()  # nothing may be read before TLS is in place
            # Python 3.10 (and uvloop) register the reader after connection_made
            # whatever it paused: the ClientHello then reached this protocol
            # instead of TLS, and the handshake never finished. Pause again
            # once that has happened, before the upgrade starts.
            owner.loop.call_soon(self._pause_again, transport)
            self._held = []
            self._early = []
            self._upgrade = owner.spawn(self._start_tls(transport, context))

    @staticmethod
    def _pause_again(transport: asyncio.Transport) -> None:
        if not transport.is_closing():
            transport.resume_reading()  # resets the paused flag, so the pause below takes effect
            transport.pause_reading()

    async def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        try:
            tls = await self.owner.loop.start_tls(
                raw,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self.owner.options.handshake_timeout,
            )
        except asyncio.CancelledError:
            raw.abort()
            raise
        except Exception as exc:
            if self.closing:  # we hung up ourselves (the transport is closing)
                log.debug("TLS handshake with %s abandoned: %r", self.peer, exc)
            else:
                reason = str(exc) or f"{type(exc).__name__} (the dialler hung up; does it trust our CA?)"
                self.owner.log_rejected(self.host, self.peer, f"TLS handshake failed: {reason}")
            raw.abort()
            self._cleanup()
            return
        if tls is None or self.closing:
            raw.abort()
            return
        # Bytes may have arrived in the same read that finished the
        # handshake, before this task resumed: they were kept for now, when
        # the TLS transport (and so the peer's certificate) is at hand.
        self.transport = tls
        held, self._held = self._held or [], None
        for data in held:
            tls.write(data)
        early, self._early = self._early, None
        if early:
            self.data_received(b"".join(early))

    def _write(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
        elif self.transport is not None:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self._early is not None:
            self._early.append(data)
            return
        if self._sniff is not None:
            data, self._sniff = self._sniff + data, None
            if len(data) < len(ADMIN_MAGIC) and ADMIN_MAGIC.startswith(data):
                self._sniff = data  # too short to tell yet
                return
            if data.startswith(ADMIN_MAGIC):
                self._hand_to_admin(data)
                return
        try:
            self.last_active = self.owner.loop.time()
            for header, body in self.decoder.frames(data):
                frame = self.channel.open(header, body)
                out = self.channel.take_output()
                if out:
                    self._write(out)
                if frame is not None:
                    self._on_frame(*frame)
                if self.closing:
                    return
            self._account()
        except AuthenticationError as exc:
            self.owner.log_auth_failure(self.host, self.peer, str(exc))
            self.abort()
        except CodecError as exc:
            self.reject(str(exc))
        except Exception:  # a bug must cost this connection, not the node
            log.exception("closing the connection from %s after an internal error", self.peer)
            self.abort()

    def _hand_to_admin(self, data: bytes) -> None:
        """This connection speaks the admin protocol: give a duplicate of its
        socket, and what it sent, to the admin endpoint; let this one go."""
        transport = self.transport
        handoff = self.owner.admin_handoff
        assert transport is not None and handoff is not None
        transport.pause_reading()
        raw = transport.get_extra_info("socket")
        try:
            sock = socket.socket(raw.family, raw.type, raw.proto, fileno=os.dup(raw.fileno()))
            handoff(sock, data)
        except Exception as exc:  # the admin client sees the connection close
            log.warning("could not hand an admin connection from %s over: %r", self.peer, exc)
        self._cleanup()
        transport.abort()  # closes our descriptor only: the duplicate keeps the connection

    def _account(self) -> None:
        """Count this connection's unfinished frame against the transport's
        buffer budget; past it, this connection goes (its sender retries)."""
        owner = self.owner
        pending = self.decoder.pending
        owner.buffered_bytes += pending - self._buffered
        self._buffered = pending
        budget = owner.options.buffer_budget
        if owner.buffered_bytes > budget:
            self.reject(f"unfinished frames on all connections would pass the {budget}-byte budget")

    def eof_received(self) -> bool:
        if self.decoder.pending:
            self.reject(f"connection closed inside a frame ({self.decoder.pending} bytes of a truncated one)")
        elif not self.channel.established:
            self.owner.log_handshake_abandoned(self.host, self.peer)
        elif self._spool is not None:
            log.info("snapshot stream from %s was cut short by the sender closing", self.peer)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._cleanup()

    def _timed_out(self) -> None:
        self._timer = None
        if self.src is None and not self.closing:
            timeout = self.owner.options.handshake_timeout
            self.reject(f"no handshake and HELLO within {timeout:g} s")

    def reject(self, reason: str) -> None:
        """Close this connection because of bad input, and say so (rate-limited)."""
        if self.closing:
            return
        self.owner.log_rejected(self.host, self.peer, reason)
        self.abort()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()
        self._cleanup()

    def _cleanup(self) -> None:
        self.closing = True
        self.owner.inbound.discard(self)
        self.owner.buffered_bytes -= self._buffered
        self._buffered = 0
        if self.decoder.pending:  # free an unfinished frame now, not when the protocol is collected
            self.decoder = FrameDecoder(self.decoder.max_frame_bytes)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._upgrade is not None and not self._upgrade.done() and self._upgrade is not _current_task():
            self._upgrade.cancel()
        self._drop_spool()

    # -- frames ----------------------------------------------------------------------

    def _on_frame(self, kind: FrameKind, payload: memoryview) -> None:
        owner = self.owner
        if self.src is None:
            if kind is not FrameKind.HELLO:
                raise FrameError(f"expected HELLO as the first frame, got {kind.name}")
            src, dst = decode_hello(payload)
            if dst != owner.node_id:
                raise FrameError(f"HELLO from {src!r} is for {dst!r}, but this node is {owner.node_id!r}")
            self._check_identity(src)
            self.src = src
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.decoder.max_frame_bytes = owner.options.max_frame_bytes
            owner.log_accepted(self.host, self.peer, src)
            owner.identified(self)
            return
        if kind is FrameKind.BATCH:
            messages = decode_batch(payload, owner.options.max_frame_bytes)
            for message in messages:
                self._check_route(message)
            owner.stats.messages_received += len(messages)
            for message in messages:
                if self.closing:  # the handler closed the transport mid-batch
                    return
                owner.deliver(message)
        elif kind is FrameKind.SNAPSHOT_BEGIN:
            if self._spool is not None:
                raise FrameError("SNAPSHOT_BEGIN inside an unfinished snapshot stream")
            message = wire.decode_message(payload, owner.options.max_frame_bytes)
            self._check_route(message)
            if message.type is not MessageType.SNAPSHOT or message.snapshot is None:
                raise FrameError(f"SNAPSHOT_BEGIN carries a {message.type.name} message")
            # Validate, then store: the node judges the stream before a byte is kept.
            limit = owner.admit_snapshot(message)
            # Closed by END, ABORT or connection loss, not by this scope.
            self._spool = _Discard() if limit is None else tempfile.SpooledTemporaryFile(  # noqa: SIM115
                max_size=SPOOL_MEMORY_BYTES
            )
            self._spool_message = message
            self._spool_left = -1 if limit is None else limit
            self._spool_bytes = 0
            if limit is not None:
                owner.snapshot_progress(message, 0)
        elif kind is FrameKind.SNAPSHOT_CHUNK:
            spool = self._require_spool(kind)
            if self._spool_left >= 0:
                self._spool_left -= len(payload)
                if self._spool_left < 0:
                    raise FrameError("snapshot stream exceeds the receiving node's max_snapshot_bytes")
            spool.write(payload)
            if self._spool_left >= 0 and self._spool_message is not None:  # admitted: the node follows it
                self._spool_bytes += len(payload)
                owner.snapshot_progress(self._spool_message, self._spool_bytes)
        elif kind is FrameKind.SNAPSHOT_END:
            spool, streamed = self._require_spool(kind), self._spool_message
            if len(payload):
                raise FrameError("SNAPSHOT_END with a payload")
            self._spool, self._spool_message = None, None
            if isinstance(spool, _Discard):  # refused at SNAPSHOT_BEGIN: tell the sender it failed
                self._write(self.channel.seal(FrameKind.SNAPSHOT_ACK, [b"\x00"]))
                return
            assert streamed is not None
            try:
                owner.stats.snapshots_received += 1
                owner.deliver_snapshot(streamed, read_spool(spool))
            finally:
                spool.close()
                owner.snapshot_progress(streamed, None)
            if not self.closing:
                self._write(self.channel.seal(FrameKind.SNAPSHOT_ACK, [b"\x01"]))
        elif kind is FrameKind.SNAPSHOT_ABORT:
            self._require_spool(kind)
            log.info("%s abandoned its snapshot stream", self.peer)
            self._drop_spool()
        else:  # a second HELLO
            raise FrameError(f"unexpected {kind.name} frame")

    def _check_identity(self, src: NodeId) -> None:
        """The id a HELLO claims must be the one the credentials prove: the
        id bound into the password handshake, or a name in the TLS
        certificate. (Plain TCP proves nothing; every later message must
        still come from this id, see ``_check_route``.)"""
        proven = self.channel.peer_id
        if proven is not None and src != proven:
            raise AuthenticationError(
                f"HELLO claims to be {src!r}, but the handshake authenticated {proven!r}"
            )
        if self.owner.server_ssl is not None and self.transport is not None:
            why = identity_error(self.transport.get_extra_info("peercert"), src, "dialler")
            if why is not None:
                raise AuthenticationError(why)

    def _check_route(self, message: Message) -> None:
        if message.src != self.src:
            raise FrameError(f"a message claims to be from {message.src!r} on a connection from {self.src!r}")
        if message.dst != self.owner.node_id:
            raise FrameError(f"a message for {message.dst!r} arrived at {self.owner.node_id!r}")

    def _require_spool(self, kind: FrameKind) -> IO[bytes] | _Discard:
        if self._spool is None:
            raise FrameError(f"{kind.name} outside a snapshot stream")
        return self._spool

    def _drop_spool(self) -> None:
        spool, message = self._spool, self._spool_message
        self._spool, self._spool_message = None, None
        if spool is not None:
            spool.close()
            if message is not None and not isinstance(spool, _Discard):
                self.owner.snapshot_progress(message, None)  # abandoned: the node stops reporting it


class _Discard:
    """The spool of a refused snapshot stream: its bytes are dropped as
    they arrive, so nothing of it is kept in memory or on disk."""

    def write(self, data: bytes | memoryview) -> int:
        return len(data)

    def close(self) -> None:
        pass


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None
