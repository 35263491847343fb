"""AdminServer: a node's authenticated admin endpoint.

A TCP listener of its own (not the Raft port), served by an asyncio loop in
its own thread. Each request runs the node's blocking, thread-safe API in a
small thread pool (``loop.run_in_executor``), so a slow membership change
never stalls other admin connections or the node. See
``raftkit.admin.protocol`` for the wire format and the authentication.

Operations (``args`` in brackets)::

    ping                                  -> {"id", "ops"}
    status                                -> node.status()
    members                               -> {"voters", "learners", "addresses"}
    add      {id, address?, learner?}     -> node.add_member(...)
    remove   {id}                         -> node.remove_member(...)
    promote  {id}                         -> node.promote_member(...)
    transfer {to?}                        -> {"leader": new leader}
    snapshot                              -> {"index", "term"} or null
    set-version and anything else         -> the ``handlers`` given (a SyncObj's
                                             serve_admin gives set-version; without
                                             one, the answer says where it is served)

Every operation takes an optional ``timeout`` (seconds) in ``args``.
``handlers`` maps more operation names to ``fn(args) -> JSON-able``; they run
in the pool too, and may override a built-in operation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any

from raftkit.admin.protocol import (
    DEFAULT_TIMEOUTS,
    HEADER_LEN,
    MAX_FRAME_BYTES,
    PREFIX,
    AdminAuthError,
    AdminProtocolError,
    Kind,
    PlainChannel,
    SealedChannel,
    ServerHandshake,
    admin_key,
    decode_message,
    encode_frame,
    encode_message,
    error_body,
    parse_header,
    split_body,
)
from raftkit.errors import CommandTimeoutError, RaftkitError
from raftkit.runtime.futures import wait_outcome
from raftkit.transports.netutil import format_address, parse_address

log = logging.getLogger(__name__)

__all__ = ["AdminServer", "Handler", "refuse_admin"]

Handler = Callable[[dict[str, Any]], Any]

UNAUTHENTICATED = (
    "an admin endpoint must be authenticated: give the cluster password (password=...) or a TLS "
    "server context that requires client certificates (ssl_context=raftkit.transports.tls."
    "server_context(...)); anyone who can reach an unauthenticated endpoint could change the "
    "cluster's membership"
)

MAX_TIMEOUT = 3600.0

# set-version lives in the SyncObj layer (its handler); a plain Node has nothing to switch.
NO_CODE_VERSIONS = (
    "this node does not serve set-version: it has no code versions to switch. set-version switches a "
    "SyncObj cluster's @replicated(ver=N) methods (docs/operations.md, 'Rolling upgrades'); a `raftkit "
    "node` runs one fixed key-value state machine, so it has none. Run set-version against the admin "
    "endpoint a SyncObj serves (obj.serve_admin(...)), or give AdminServer a 'set-version' handler"
)


def refuse_admin(sock: socket.socket, reason: str) -> None:
    """Answer an admin connection that nothing here may serve (one that
    reached a node's Raft port: ``TcpTransport.admin_handoff``) with
    ``reason``, so the client shows it, and close it."""
    try:  # never blocks the caller (the node's loop): a new socket's buffer takes these bytes
        sock.setblocking(False)
        sock.send(encode_frame(Kind.ERROR, error_body(reason, "AdminAuthError")))
    except OSError:
        pass  # the client left already, or reads nothing
    finally:
        sock.close()


class _Refused(Exception):
    """Close the connection after sending this reason (already a payload)."""

    def __init__(self, payload: bytes, sealed: bool) -> None:
        self.payload = payload
        self.sealed = sealed


class AdminServer:
    """The admin endpoint of ``node`` on ``address`` (``"host:port"``; port
    0 picks a free one, see ``address`` after ``start()``).

    ``password`` (the cluster password; ``cluster_id`` or ``salt`` as the
    cluster's transport uses) and/or ``ssl_context``
    (``raftkit.transports.tls.server_context``: TLS 1.3, client certificate
    required) authenticate every client; with both, a client needs both.
    With neither, or with an empty password or key, the constructor raises
    ``ValueError``: an unauthenticated admin endpoint would hand the cluster
    to anyone who can reach the port.

    Limits: ``max_connections`` connections at once (more are refused with
    ``AdminBusyError``), of which at most ``max_unauthenticated`` may still
    be authenticating (a new one displaces the oldest of those), each for at
    most ``auth_timeout`` seconds; so strangers that connect and stall never
    lock the operator out. ``idle_timeout`` closes an authenticated
    connection that sends nothing.
    """

    def __init__(
        self,
        node: Any,
        address: str,
        *,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        handlers: Mapping[str, Handler] | None = None,
        salt: bytes | None = None,
        key: bytes | None = None,
        cluster_id: str | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        max_connections: int = 32,
        max_unauthenticated: int = 8,
        workers: int = 8,
        handshake_timeout: float = 3.0,
        idle_timeout: float = 300.0,
    ) -> None:
        """``key`` is the derived cluster key, if the caller has it already
        (saves one scrypt run); it stands for ``password``.
        ``handshake_timeout`` is the authentication deadline (TLS and
        password handshake)."""
        if ssl_context is not None and ssl_context.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError(
                "the admin endpoint's TLS context must require client certificates (CERT_REQUIRED); "
                "use raftkit.transports.tls.server_context(...)"
            )
        self._key = admin_key(password, key, salt, cluster_id)
        if self._key is None and ssl_context is None:
            raise ValueError(UNAUTHENTICATED)
        if max_unauthenticated < 1 or max_connections < 1:
            raise ValueError("max_connections and max_unauthenticated must be at least 1")
        if handshake_timeout <= 0 or idle_timeout <= 0:
            raise ValueError("handshake_timeout and idle_timeout must be positive")
        self.host, self.port = parse_address(address)
        self.node = node
        self._ssl = ssl_context
        self._handlers = dict(handlers or {})
        for name, fn in self._handlers.items():
            if not isinstance(name, str) or not callable(fn):
                raise TypeError(f"handlers must map operation names to callables, got {name!r}: {fn!r}")
        self.max_frame_bytes = max_frame_bytes
        self.max_connections = max_connections
        self.max_unauthenticated = min(max_unauthenticated, max_connections)
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self._workers = workers
        self._ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": self._op_ping,
            "status": self._op_status,
            "members": self._op_members,
            "add": self._op_add,
            "remove": self._op_remove,
            "promote": self._op_promote,
            "transfer": self._op_transfer,
            "snapshot": self._op_snapshot,
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closing = False  # stop() began: adopt nothing more
        self._authenticating: dict[asyncio.Task[None], float] = {}  # task -> when it connected
        self._shed_logged_at = -1e9
        self._shed_since_logged = 0
        self.stats = {"connections": 0, "refused": 0, "auth_failures": 0, "requests": 0, "shed": 0}

    # -- life cycle -------------------------------------------------------------------------

    @property
    def auth(self) -> str:
        """How clients authenticate: "password", "tls" or "password+tls"."""
        return "+".join(name for name, on in (("password", self._key), ("tls", self._ssl)) if on)

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    @property
    def ops(self) -> list[str]:
        return sorted({*self._ops, *self._handlers})

    def start(self, *, listen: bool = True) -> AdminServer:
        """Listen (raises ``OSError`` if the address is taken) and serve in a
        thread; returns once the listener is bound. ``listen=False``: no
        listener of its own, only connections handed over by ``adopt``."""
        if self._thread is not None:
            raise RuntimeError("admin server already started")
        loop = asyncio.new_event_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(self._workers, thread_name_prefix="admin-call")
        started: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                if listen:
                    self._server = loop.run_until_complete(
                        asyncio.start_server(
                            self._serve,
                            self.host,
                            self.port,
                            ssl=self._ssl,
                            ssl_handshake_timeout=self.handshake_timeout if self._ssl else None,
                            limit=HEADER_LEN + self.max_frame_bytes,
                        )
                    )
            except BaseException as exc:
                started.set_exception(exc)
                loop.close()
                return
            if self._server is not None:
                self.port = self._server.sockets[0].getsockname()[1]
            started.set_result(None)
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"admin-server-{self.port}", daemon=True)
        self._thread.start()
        try:
            started.result()
        except BaseException:
            self._thread.join()
            self._thread = None
            self._executor.shutdown(wait=False)
            raise
        log.info("admin endpoint on %s (%s)", self.address, self.auth)
        return self

    def adopt(self, sock: socket.socket, early: bytes) -> None:
        """Serve a connection accepted elsewhere (a node's Raft port, see
        ``TcpTransport.admin_handoff``), whose first bytes ``early`` were
        already read. Any thread; the server must be started."""
        if self._loop is None or self._loop.is_closed() or self._closing:
            sock.close()
            raise RuntimeError("admin server not running")
        sock.setblocking(False)
        asyncio.run_coroutine_threadsafe(self._adopt(sock, early), self._loop)

    async def _adopt(self, sock: socket.socket, early: bytes) -> None:
        task = asyncio.current_task()
        if self._closing or task is None:
            sock.close()
            return
        # A connection from its first step: stop() cancels it even while its
        # socket is being wrapped (a loop turn before _serve counts it).
        self._connections.add(task)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=HEADER_LEN + self.max_frame_bytes, loop=loop)
        reader.feed_data(early)  # before the socket's own bytes: the transport reads after this
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
        except (OSError, asyncio.CancelledError):
            self._connections.discard(task)
            sock.close()
            return
        await self._serve(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection, and join the thread.
        Requests still running on the node finish in the pool (their
        answers are dropped). Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return

        async def close() -> None:
            self._closing = True
            if self._server is not None:
                self._server.close()
            for task in list(self._connections):
                task.cancel()
            if self._connections:
                await asyncio.wait(list(self._connections), timeout=timeout)
            if self._server is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._server.wait_closed(), timeout)

        with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout + 1)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join(timeout)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> AdminServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connections ------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        who = format_address(*peer[:2]) if isinstance(peer, tuple) else str(peer)
        self.stats["connections"] += 1
        try:
            self._admit(task)
            if len(self._connections) > self.max_connections:
                too_many = f"too many admin connections (limit {self.max_connections})"
                raise _Refused(error_body(too_many, "AdminBusyError"), False)
            await self._session(reader, writer, who)
        except _Refused as refusal:
            self.stats["refused"] += 1
            with contextlib.suppress(Exception):
                if not refusal.sealed:
                    writer.write(encode_frame(Kind.ERROR, refusal.payload))
                else:
                    writer.write(refusal.payload)
                await asyncio.wait_for(writer.drain(), 2.0)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, ssl.SSLError, OSError):
            pass  # the client left, timed out or broke TLS: nothing to answer
        except asyncio.CancelledError:
            pass  # stop()
        except Exception:
            log.exception("admin connection from %s failed", who)
        finally:
            self._connections.discard(task)
            self._authenticating.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2.0)

    def _admit(self, task: asyncio.Task[None]) -> None:
        """Count ``task`` as authenticating; past ``max_unauthenticated``
        such connections, cancel the oldest (a stranger that stalls), so
        an operator who authenticates at once always gets a slot."""
        loop = asyncio.get_running_loop()
        self._authenticating[task] = loop.time()
        while len(self._authenticating) > self.max_unauthenticated:
            oldest = min(self._authenticating, key=self._authenticating.__getitem__)
            del self._authenticating[oldest]
            self._connections.discard(oldest)
            oldest.cancel()
            self.stats["shed"] += 1
            self._shed_since_logged += 1
            if loop.time() - self._shed_logged_at >= 10.0:  # once per burst, not per connection
                self._shed_logged_at = loop.time()
                log.warning(
                    "admin endpoint %s: closed %d connection(s) that had not authenticated, to keep at "
                    "most %d waiting (a flood of connections?)",
                    self.address,
                    self._shed_since_logged,
                    self.max_unauthenticated,
                )
                self._shed_since_logged = 0

    async def _read_frame(self, reader: asyncio.StreamReader, timeout: float) -> tuple[bytes, bytes] | None:
        """The next ``(header, body)``, or None at a clean end of stream."""
        try:
            header = await asyncio.wait_for(reader.readexactly(HEADER_LEN), timeout)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None
            if not PREFIX.startswith(exc.partial[:4]):  # a short stranger: say what it is
                try:
                    parse_header(exc.partial.ljust(HEADER_LEN, b"\0"), self.max_frame_bytes)
                except AdminProtocolError as bad:
                    raise _Refused(error_body(str(bad)), False) from None
            raise _Refused(error_body("truncated frame header"), False) from None
        try:
            length = parse_header(header, self.max_frame_bytes)
        except AdminProtocolError as exc:
            raise _Refused(error_body(str(exc)), False) from None
        try:
            body = await asyncio.wait_for(reader.readexactly(length), timeout)
        except asyncio.IncompleteReadError:
            raise _Refused(error_body(f"truncated frame: {length} bytes announced"), False) from None
        return header, body

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, who: str) -> None:
        channel: PlainChannel | SealedChannel = PlainChannel()
        if self._key is not None:
            channel = await asyncio.wait_for(self._handshake(reader, writer, who), self.handshake_timeout)
        task = asyncio.current_task()
        self._authenticating.pop(task, None)  # type: ignore[arg-type]
        while True:
            frame = await self._read_frame(reader, self.idle_timeout)
            if frame is None:
                return
            try:
                kind, payload = channel.open(*frame)
            except AdminAuthError as exc:
                self.stats["auth_failures"] += 1
                log.warning("admin connection from %s: %s", who, exc)
                raise _Refused(error_body(str(exc), "AdminAuthError"), False) from None
            except AdminProtocolError as exc:
                raise _Refused(error_body(str(exc)), False) from None
            if kind is not Kind.MESSAGE:
                why = f"unexpected {kind.name} frame"
                if kind is Kind.AUTH_NONCE and self._key is None:
                    why = (
                        "this admin endpoint does not take a password: it authenticates clients by their "
                        "TLS certificate (connect without the password)"
                    )
                raise _Refused(channel.seal(Kind.ERROR, error_body(why)), True)
            answer, fatal = await self._answer(payload, who)
            writer.write(channel.seal(Kind.ERROR if fatal else Kind.MESSAGE, answer))
            await writer.drain()
            if fatal:
                return

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, who: str
    ) -> SealedChannel:
        assert self._key is not None
        handshake = ServerHandshake(self._key)
        try:
            for step in range(2):
                frame = await self._read_frame(reader, self.handshake_timeout)
                if frame is None:
                    if step == 1:
                        log.info("admin client %s left during the handshake (another password?)", who)
                    raise ConnectionResetError
                kind, payload = split_body(frame[1])
                if step == 0:
                    writer.write(handshake.challenge(kind, payload))
                    await writer.drain()
                else:
                    confirm, channel = handshake.finish(kind, payload)
                    writer.write(confirm)
                    await writer.drain()
                    return channel
        except AdminAuthError as exc:
            self.stats["auth_failures"] += 1
            log.warning("admin connection from %s refused: %s", who, exc)
            raise _Refused(error_body(str(exc), "AdminAuthError"), False) from None
        except AdminProtocolError as exc:
            raise _Refused(error_body(str(exc)), False) from None
        raise AssertionError("unreachable")

    # -- requests ---------------------------------------------------------------------------

    async def _answer(self, payload: bytes, who: str) -> tuple[bytes, bool]:
        """The encoded answer to one request, and whether to close after it
        (the request itself was malformed)."""
        try:
            request = decode_message(payload)
        except AdminProtocolError as exc:
            return error_body(str(exc)), True
        op, args = request.get("op"), request.get("args", {})
        if not isinstance(op, str) or not op:
            return error_body("bad request: 'op' must be a non-empty string"), True
        if args is None:
            args = {}
        if not isinstance(args, dict):
            return error_body(f"bad request: 'args' must be a JSON object, got {type(args).__name__}"), True
        self.stats["requests"] += 1
        fn = self._handlers.get(op) or self._ops.get(op)
        if fn is None:
            if op == "set-version":
                return error_body(NO_CODE_VERSIONS, "AdminRequestError"), False
            known = ", ".join(self.ops)
            unknown = f"unknown operation {op!r} (this node serves: {known})"
            return error_body(unknown, "AdminRequestError"), False
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, fn, args)
        except RaftkitError as exc:
            return error_body(str(exc) or type(exc).__name__, type(exc).__name__), False
        except (TimeoutError, concurrent.futures.TimeoutError) as exc:
            return error_body(str(exc) or f"{op} timed out", "CommandTimeoutError"), False
        except _BadRequest as exc:
            return error_body(f"bad request for {op}: {exc}", "AdminRequestError"), False
        except ValueError as exc:  # a handler's (or the state machine's) refusal of these arguments
            return error_body(str(exc) or f"{op}: invalid request", type(exc).__name__), False
        except Exception as exc:
            log.warning("admin %s from %s raised %r", op, who, exc, exc_info=True)
            return error_body(f"{type(exc).__name__}: {exc}", type(exc).__name__), False
        try:
            return encode_message({"ok": True, "result": result}), False
        except (TypeError, ValueError) as exc:
            return error_body(f"{op}: the result cannot be sent as JSON: {exc}"), False

    # -- built-in operations (run in the pool) ------------------------------------------------

    def _method(self, name: str, op: str) -> Callable[..., Any]:
        fn = getattr(self.node, name, None)
        if fn is None:
            raise AdminNotSupported(f"this node cannot {op} (it has no {name}() method)")
        return fn  # type: ignore[no-any-return]

    def _op_ping(self, args: dict[str, Any]) -> Any:
        return {"id": getattr(self.node, "id", None), "ops": self.ops}

    def _op_status(self, args: dict[str, Any]) -> Any:
        return self.node.status()

    def _op_members(self, args: dict[str, Any]) -> Any:
        members = getattr(self.node, "members", None)
        if callable(members):
            return members()
        status = self.node.status()  # older runtimes: what the status says
        addresses = status.get("addresses") or dict(getattr(self.node, "peers", {}) or {})
        return {
            "voters": list(status.get("members") or []),
            "learners": list(status.get("learners") or []),
            "addresses": addresses,
        }

    def _op_add(self, args: dict[str, Any]) -> Any:
        node_id = _str_arg(args, "id")
        address = _str_arg(args, "address", required=False)
        learner = args.get("learner", False)
        if not isinstance(learner, bool):
            raise _BadRequest(f"'learner' must be true or false, got {learner!r}")
        self._method("add_member", "add members")(
            node_id, address, learner=learner, timeout=_timeout(args, "add")
        )
        return {"id": node_id, "address": address, "learner": learner}

    def _op_remove(self, args: dict[str, Any]) -> Any:
        node_id = _str_arg(args, "id")
        self._method("remove_member", "remove members")(node_id, timeout=_timeout(args, "remove"))
        return {"id": node_id}

    def _op_promote(self, args: dict[str, Any]) -> Any:
        node_id = _str_arg(args, "id")
        self._method("promote_member", "promote learners")(node_id, timeout=_timeout(args, "promote"))
        return {"id": node_id}

    def _op_transfer(self, args: dict[str, Any]) -> Any:
        to = _str_arg(args, "to", required=False)
        leader = self.node.transfer_leadership(to, timeout=_timeout(args, "transfer"))
        return {"leader": leader}

    def _op_snapshot(self, args: dict[str, Any]) -> Any:
        timeout = _timeout(args, "snapshot")
        future = self.node.request_log_compaction()
        meta = wait_outcome(
            future, timeout, lambda: CommandTimeoutError(f"the snapshot was not done within {timeout:g}s")
        )
        if meta is None:
            return None
        return {"index": getattr(meta, "index", None), "term": getattr(meta, "term", None)}


class AdminNotSupported(RaftkitError):
    """The node's runtime lacks the method an operation needs."""


class _BadRequest(ValueError):
    pass


def _str_arg(args: dict[str, Any], name: str, *, required: bool = True) -> Any:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _BadRequest(f"{name!r} must be a non-empty string, got {value!r}")
    return value


def _timeout(args: dict[str, Any], op: str) -> float:
    value = args.get("timeout")
    if value is None:
        return DEFAULT_TIMEOUTS.get(op, 30.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT:
        raise _BadRequest(f"'timeout' must be a number of seconds in (0, {MAX_TIMEOUT:g}], got {value!r}")
    return float(value)
