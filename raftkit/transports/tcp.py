"""Plain TCP transport: raftkit frames over asyncio sockets.

Each node listens on one address and dials each peer it sends to; a dialled
connection carries traffic one way (dialler -> listener), so the two nodes of
a pair talk over two connections and neither waits on the other's queue.
The frame format is in ``raftkit.transports.framing``; the sending half in
``_outbound``, the receiving half in ``_inbound``. Subclasses add security by
overriding the channel factories (password encryption) or the SSL contexts
(TLS).

Threading: a socket transport lives on one asyncio loop. The runtime calls
``await astart(...)`` inside that loop, then ``send``, ``send_snapshot``,
``update_peers`` and ``close`` from the loop's thread only, and every handler
call happens on that thread. A handler that raises has the exception logged;
the transport carries on with the next message.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

from raftkit.core.types import Entry, Message, NodeId
from raftkit.errors import SerializationError, TransportError
from raftkit.serializers import wire
from raftkit.transports._inbound import ServerProtocol
from raftkit.transports._lograte import OncePerKey, RateLimit
from raftkit.transports._outbound import OutboundLink, SnapshotJob
from raftkit.transports.base import InboundHandler, Transport
from raftkit.transports.framing import BATCH_ITEM_OVERHEAD, Channel
from raftkit.transports.netutil import Resolver, bind_listener, format_address, parse_address
from raftkit.transports.options import TcpOptions, TransportStats

log = logging.getLogger(__name__)


class TcpTransport(Transport):
    """Raft over plain TCP. Peer addresses are ``"host:port"`` strings
    (``"[::1]:9000"`` for IPv6); host names are resolved with a short cache.

    ``authenticated`` is False: anyone who can reach the port can inject
    messages, so only the safe wire codec crosses it and the node builder
    refuses pickle. Use ``EncryptedTcpTransport`` or ``TlsTransport`` on any
    network you do not fully control.
    """

    authenticated = False
    kind = "tcp"

    def __init__(
        self,
        bind: str = "127.0.0.1:0",
        *,
        max_frame_bytes: int = wire.MAX_FRAME_BYTES,
        connect_timeout: float = 5.0,
        handshake_timeout: float = 5.0,
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
        keepalive: bool = True,
        send_queue_bytes: int = TcpOptions.send_queue_bytes,
        snapshot_chunk_bytes: int | None = None,
        resolve_ttl: float = 30.0,
        prefer_family: str = "any",
        bind_retries: int = 5,
        bind_retry_delay: float = 0.2,
        max_inbound_connections: int = TcpOptions.max_inbound_connections,
        max_unidentified_connections: int = TcpOptions.max_unidentified_connections,
        max_connections_per_peer: int = TcpOptions.max_connections_per_peer,
        max_preauth_frame_bytes: int = TcpOptions.max_preauth_frame_bytes,
        max_buffered_bytes: int = TcpOptions.max_buffered_bytes,
    ) -> None:
        self._bind = parse_address(bind)
        self.options = TcpOptions(
            max_frame_bytes=max_frame_bytes,
            connect_timeout=connect_timeout,
            handshake_timeout=handshake_timeout,
            backoff_min=backoff_min,
            backoff_max=backoff_max,
            keepalive=keepalive,
            send_queue_bytes=send_queue_bytes,
            snapshot_chunk_bytes=snapshot_chunk_bytes or min(1024 * 1024, max_frame_bytes - 1024),
            resolve_ttl=resolve_ttl,
            prefer_family=prefer_family,
            bind_retries=bind_retries,
            bind_retry_delay=bind_retry_delay,
            max_inbound_connections=max_inbound_connections,
            max_unidentified_connections=max_unidentified_connections,
            max_connections_per_peer=max_connections_per_peer,
            max_preauth_frame_bytes=max_preauth_frame_bytes,
            max_buffered_bytes=max_buffered_bytes,
        )
        self.stats = TransportStats()
        self.resolver = Resolver(resolve_ttl, prefer_family=prefer_family)
        self.node_id: NodeId = ""
        self.inbound: set[ServerProtocol] = set()
        self.buffered_bytes = 0  # unfinished inbound frames, all connections together
        self.peer_log = OncePerKey()  # failures that repeat on every redial
        self._host_log = OncePerKey()  # failures that repeat on every inbound attempt
        self._reject_log = RateLimit()
        self._shed_log = RateLimit(burst=1, period=10.0)
        self._shed_since_logged = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._address: str | None = None
        self._handler: InboundHandler | None = None
        self._peers: dict[NodeId, tuple[str, str, int]] = {}
        self._links: dict[NodeId, OutboundLink] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._starting = False
        self._closed = False

    # -- hooks for secure subclasses -----------------------------------------------------

    def client_channel(self, peer: NodeId = "") -> Channel:
        """The security layer of a connection this node dials to ``peer``."""
        return Channel()

    def server_channel(self) -> Channel:
        """The security layer of a connection this node accepts."""
        return Channel()

    client_ssl: ssl.SSLContext | None = None
    """TLS context for dialled connections (None: no TLS)."""

    server_ssl: ssl.SSLContext | None = None
    """TLS context for accepted connections (None: no TLS)."""

    admin_handoff: Callable[[socket.socket, bytes], None] | None = None
    """Takes accepted connections that open with the admin protocol's magic
    (``fn(socket, bytes read so far)``, on the loop thread), so one port
    serves Raft and the authenticated admin endpoint, as PySyncObj's does.
    None: such a connection is refused as not a raftkit peer."""

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise TransportError(f"{self.kind} transport: not started")
        return self._loop

    @property
    def address(self) -> str:
        """``host:port`` this transport listens on, with the real port when
        it was bound to port 0. Peers dial this (unless it is a wildcard
        such as ``0.0.0.0``; then advertise a routable address)."""
        if self._address is None:
            raise TransportError(f"{self.kind} transport: no address before astart()")
        return self._address

    def start(self, node_id: NodeId, handler: InboundHandler) -> None:
        self._check_startable()
        raise TransportError(
            f"{type(self).__name__} listens on an asyncio loop: call "
            "`await transport.astart(node_id, handler)` inside the node's event loop"
        )

    async def astart(self, node_id: NodeId, handler: InboundHandler) -> None:
        self._check_startable()
        self._starting = True
        loop = asyncio.get_running_loop()
        host, port = self._bind
        attempts = self.options.bind_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                sock = bind_listener(host, port)
                break
            except OSError as exc:
                where = format_address(host, port)
                if attempt == attempts:
                    self._starting = False
                    raise TransportError(
                        f"{self.kind} transport: cannot listen on {where} after {attempts} attempts: {exc}"
                    ) from exc
                # A restarted node's old socket may still hold the port for a moment.
                log.warning("%s transport: cannot listen on %s (%s); retrying", self.kind, where, exc)
                await asyncio.sleep(self.options.bind_retry_delay * attempt)
        try:
            self._server = await loop.create_server(lambda: ServerProtocol(self), sock=sock)
        except BaseException:
            sock.close()
            self._starting = False
            raise
        bound = sock.getsockname()
        self._address = format_address(bound[0], bound[1])
        self._loop, self.node_id = loop, node_id
        if self._closed:  # closed while the listener was being set up
            self._shutdown()
            return
        self._handler = handler
        log.info("%s transport for node %r listening on %s", self.kind, node_id, self._address)

    def _check_startable(self) -> None:
        if self._closed:
            raise TransportError(f"{self.kind} transport: cannot start after close()")
        if self._starting:
            raise TransportError(f"{self.kind} transport: already started as {self.node_id!r}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._handler = None
        self._shutdown()

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links.values():
            link.close()
        self._links.clear()
        for protocol in list(self.inbound):
            protocol.abort()
        for task in list(self._tasks):
            task.cancel()

    async def aclose(self) -> None:
        self.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.sleep(0)  # let aborted sockets run their connection_lost

    # -- sending ---------------------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> None:
        if self._closed:
            return
        self._require_started()
        limit = self.options.batch_bytes - BATCH_ITEM_OVERHEAD
        touched: dict[NodeId, OutboundLink] = {}
        # An entry sent to several peers is packed once.
        packed_entries: dict[int, tuple[Entry, tuple[bytes, ...]]] = {}
        for message in messages:
            link = self._link(message.dst)
            if link is None:
                continue
            try:
                size, pieces = wire.encode_message_pieces(message, limit, packed_entries)
            except SerializationError as exc:
                self.stats.messages_dropped += 1
                log.error("dropping a %s message to %r: %s", message.type.name, message.dst, exc)
                continue
            link.enqueue(size, pieces)
            touched[message.dst] = link
        for link in touched.values():
            link.send_now()  # one frame per peer for the whole batch, written now

    def send_snapshot(self, message: Message, chunks: Iterable[bytes]) -> None:
        if self._closed:
            return
        self._require_started()
        link = self._link(message.dst)
        try:
            encoded = wire.encode_message(message, self.options.batch_bytes)
        except SerializationError as exc:
            log.error("cannot send a snapshot to %r: %s", message.dst, exc)
            link = None
        if link is None:
            self.stats.snapshots_failed += 1
            self.report_snapshot(message.dst, False)
            return
        link.enqueue_snapshot(SnapshotJob(message.dst, encoded, chunks))

    def _require_started(self) -> None:
        if self._handler is None:
            raise TransportError(f"{self.kind} transport: call `await astart()` before sending")

    def _link(self, peer: NodeId) -> OutboundLink | None:
        link = self._links.get(peer)
        if link is None:
            known = self._peers.get(peer)
            if known is None:
                return None
            link = self._links[peer] = OutboundLink(self, peer, *known)
        return link

    # -- peers ----------------------------------------------------------------------------

    def update_peers(self, peers: Mapping[NodeId, str]) -> None:
        book: dict[NodeId, tuple[str, str, int]] = {}
        for peer, address in peers.items():
            try:
                host, port = parse_address(address)
            except ValueError as exc:
                log.error("ignoring peer %r: %s", peer, exc)
                continue
            book[peer] = (address, host, port)
        for peer, link in list(self._links.items()):
            if book.get(peer, ("",))[0] != link.address:
                link.close()
                del self._links[peer]
        self._peers = book

    # -- used by links and protocols ------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background task owned by this transport (cancelled by close)."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s transport task failed", self.kind, exc_info=task.exception())

    def report_snapshot(self, peer: NodeId, ok: bool) -> None:
        """Tell the handler how a snapshot stream ended, from a fresh loop
        callback (never inside ``send_snapshot``), unless closed by then."""
        self.loop.call_soon(self._snapshot_status, peer, ok)

    def _snapshot_status(self, peer: NodeId, ok: bool) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            handler.on_snapshot_status(peer, ok)
        except Exception:
            log.exception("inbound handler raised in on_snapshot_status(%r, %r)", peer, ok)

    def deliver(self, message: Message) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            handler.on_message(message)
        except Exception:
            log.exception("inbound handler raised on a %s message from %r", message.type.name, message.src)

    def admit_snapshot(self, message: Message) -> int | None:
        """The handler's verdict on a snapshot stream that begins (see
        ``InboundHandler.admit_snapshot``): its byte limit, or None."""
        handler = self._handler
        if handler is None:
            return None
        admit = getattr(handler, "admit_snapshot", None)
        if admit is None:
            return 1 << 62  # a handler that judges nothing: no limit of the transport's own
        try:
            limit: int | None = admit(message)
            return limit
        except Exception:
            log.exception("inbound handler raised judging a snapshot from %r", message.src)
            return None

    def snapshot_progress(self, message: Message, received: int | None) -> None:
        """Tell the handler how far an admitted snapshot stream has come
        (``InboundHandler.snapshot_progress``), if it wants to know."""
        report = getattr(self._handler, "snapshot_progress", None)
        if report is None:
            return
        try:
            report(message, received)
        except Exception:
            log.exception("inbound handler raised on snapshot progress from %r", message.src)

    def deliver_snapshot(self, message: Message, chunks: Iterable[bytes]) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            handler.on_snapshot(message, chunks)
        except Exception:
            log.exception("inbound handler raised on a snapshot from %r", message.src)

    def admit(self, newcomer: ServerProtocol) -> bool:
        """Keep accepted connections within the limits when ``newcomer``
        arrives: displace the oldest unidentified connection, or the idlest
        one from an unknown node id; False if ``newcomer`` must go instead."""
        options = self.options
        live = [p for p in self.inbound if not p.closing and p is not newcomer]
        waiting = sorted((p for p in live if p.src is None), key=lambda p: p.accepted_at)
        if len(waiting) >= options.max_unidentified_connections:
            self._shed(
                waiting[0], f"more than {options.max_unidentified_connections} connections in their handshake"
            )
            return True
        if len(live) < options.max_inbound_connections:
            return True
        if waiting:
            self._shed(waiting[0], f"more than {options.max_inbound_connections} connections")
            return True
        strangers = [p for p in live if p.src not in self._peers]
        if strangers:
            self._shed(
                min(strangers, key=lambda p: p.last_active),
                f"more than {options.max_inbound_connections} connections",
            )
            return True
        self._shed(newcomer, f"more than {options.max_inbound_connections} connections, all from known peers")
        return False

    def identified(self, protocol: ServerProtocol) -> None:
        """``protocol`` named a node of the address book: keep at most
        ``max_connections_per_peer`` of that id (a reconnecting peer's newer
        link displaces its idlest older one)."""
        src = protocol.src
        if src not in self._peers:
            return
        same = [p for p in self.inbound if p.src == src and not p.closing and p is not protocol]
        if len(same) >= self.options.max_connections_per_peer:
            self._shed(
                min(same, key=lambda p: p.last_active), f"more than {len(same)} connections from {src!r}"
            )

    def _shed(self, protocol: ServerProtocol, why: str) -> None:
        """Close ``protocol`` to keep within the limits; logged once per burst."""
        self.stats.connections_shed += 1
        self._shed_since_logged += 1
        if self._shed_log.allow("shed")[0]:
            log.warning(
                "%s transport: closing inbound connections to stay within its limits (%s; %d closed since "
                "the last such message; a flood of connections?)",
                self.kind,
                why,
                self._shed_since_logged,
            )
            self._shed_since_logged = 0
        protocol.abort()

    def log_rejected(self, host: str, peer: str, reason: str) -> None:
        """An inbound connection sent bad input and was closed."""
        self.stats.connections_rejected += 1
        allowed, suppressed = self._reject_log.allow(host)
        if allowed:
            more = f" ({suppressed} similar messages suppressed)" if suppressed else ""
            log.warning("closed the connection from %s: %s%s", peer, reason, more)
        else:
            log.debug("closed the connection from %s: %s", peer, reason)

    def log_auth_failure(self, host: str, peer: str, reason: str) -> None:
        """An inbound connection failed authentication; said once per host."""
        self.stats.connections_rejected += 1
        if self._host_log.first(("auth", host)):
            log.warning("refused a connection from %s: %s (logged once per host)", peer, reason)
        else:
            log.debug("refused a connection from %s: %s", peer, reason)

    def log_handshake_abandoned(self, host: str, peer: str) -> None:
        """A dialler hung up mid-handshake: typically it rejected our proof,
        that is, it holds a different password."""
        if self._host_log.first(("abandoned", host)):
            log.warning(
                "%s hung up during the handshake: does it use another password? (logged once per host)",
                peer,
            )
        else:
            log.debug("%s hung up during the handshake", peer)

    def log_accepted(self, host: str, peer: str, src: NodeId) -> None:
        self._host_log.clear(("auth", host))
        self._host_log.clear(("abandoned", host))
        log.debug("accepted a connection from node %r at %s", src, peer)

    def __repr__(self) -> str:
        where = self._address or format_address(*self._bind)
        return f"<{type(self).__name__} node={self.node_id!r} address={where}>"
