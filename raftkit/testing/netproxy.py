"""PartitionProxy: cut the network between REAL raftkit nodes on the
loopback, with no network namespaces, no iptables and no root.

Why: ``sim_network`` and ``MemoryNetwork`` partition simulated or
in-process transports; real node processes talk TCP, and the only thing a
test can put between them without privileges is a forwarding proxy. The
proxy listens on one port per *ordered* pair of nodes ``(src, dst)`` and
forwards what arrives there to ``dst``'s real address. Node ``src`` is
told to reach ``dst`` through ``route(src, dst)``, so the proxy sees (and
can cut) exactly the connections ``src`` dials to ``dst``.

raftkit's TCP transport sends Raft messages only over connections it
dials; the accepting side writes just the handshake and acks back. So
cutting the pair ``(i, j)`` is a one-way partition: ``i``'s messages no
longer reach ``j`` while ``j``'s still reach ``i`` (over ``(j, i)``).

How::

    targets = {"n1": "127.0.0.1:7001", "n2": "127.0.0.1:7002", "n3": "127.0.0.1:7003"}
    with PartitionProxy(targets) as proxy:
        # each node: its own id -> its real address, the others -> routes
        peers = {"n1": targets["n1"], **proxy.routes("n1")}
        ...  # start the nodes (in-process or as processes) with those peers
        proxy.isolate("n1")          # n1 can neither send nor receive
        proxy.partition({"n1", "n2"}, {"n3"})
        proxy.cut("n2", "n3")        # one way: n2 -> n3 only
        proxy.heal()                 # everything allowed again; nodes redial

A cut aborts every open connection of the pair at once (with a TCP reset,
so both nodes notice promptly) and closes new connections on that pair as
soon as they are accepted. ``heal`` reopens nothing: the nodes redial on
their own. The proxy runs one daemon thread with its own asyncio loop; the
control methods may be called from any other thread and return once the
change is in effect. ``close()`` (or leaving the ``with`` block) closes
every socket and joins the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["PartitionProxy"]

T = TypeVar("T")

_CHUNK = 64 * 1024
_CONNECT_TIMEOUT = 5.0
_CONTROL_TIMEOUT = 5.0
_counter = itertools.count(1)


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"an address must be 'host:port', got {address!r}")
    return host.strip("[]"), int(port)


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reset(transport: asyncio.WriteTransport) -> None:
    """Close at once with a TCP RST (SO_LINGER 0), dropping buffered data."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@dataclass(eq=False)
class _Conn:
    """One accepted connection and (once dialled) its upstream connection."""

    task: asyncio.Task[None] | None
    transports: list[asyncio.WriteTransport]

    def reset(self) -> None:
        for transport in self.transports:
            _reset(transport)


@dataclass(eq=False)
class _Pair:
    src: str
    dst: str
    target: tuple[str, int]
    sock: socket.socket
    route: str
    cut: bool = False
    forwarded: int = 0
    conns: set[_Conn] = field(default_factory=set)
    server: asyncio.AbstractServer | None = None


class PartitionProxy:
    """A TCP forwarding proxy with one listening port per ordered pair of
    nodes; see the module docstring. ``targets`` maps each node name to its
    real listening address ``"host:port"``."""

    def __init__(self, targets: Mapping[str, str], host: str = "127.0.0.1") -> None:
        parsed: dict[str, tuple[str, int]] = {}
        for name, address in targets.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"node names must be non-empty str, got {name!r}")
            parsed[name] = _split_address(address)
        self._names = sorted(parsed)
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._closed = False
        self._stopping = False  # set in the loop by close(): accept nothing more
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, name=f"partition-proxy-{next(_counter)}", daemon=True
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            for src in self._names:
                for dst in self._names:
                    if src == dst:
                        continue
                    sock = socket.socket(family, socket.SOCK_STREAM)
                    self._pairs[src, dst] = _Pair(src, dst, parsed[dst], sock, "")
                    sock.bind((host, 0))  # port 0: the OS picks a free one, no race
                    sock.listen(64)
                    sock.setblocking(False)
                    self._pairs[src, dst].route = _format_address(host, sock.getsockname()[1])
            self._thread.start()
            self._call(self._start)
        except BaseException:
            self.close()
            raise

    # -- addresses ------------------------------------------------------------------

    def route(self, src: str, dst: str) -> str:
        """The address ``src`` must dial to reach ``dst``."""
        return self._pair(src, dst).route

    def routes(self, src: str) -> dict[str, str]:
        """``{dst: route(src, dst)}`` for every node other than ``src``."""
        self._check(src)
        return {dst: self._pairs[src, dst].route for dst in self._names if dst != src}

    # -- partitions -----------------------------------------------------------------

    def cut(self, src: str, dst: str) -> None:
        """Cut ``src -> dst`` (one way): reset its open connections now and
        close new ones as soon as they are accepted."""
        pair = self._pair(src, dst)
        self._call(self._set_cut, [pair], True)

    def isolate(self, name: str) -> None:
        """Cut every pair between ``name`` and the other nodes, both ways."""
        self._check(name)
        pairs = [p for (s, d), p in self._pairs.items() if name in (s, d)]
        self._call(self._set_cut, pairs, True)

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every pair of nodes in different groups, both ways. Nodes in
        no group stay connected to everyone; existing cuts stay (``heal()``
        first for a fresh partition)."""
        group_of: dict[str, int] = {}
        for index, group in enumerate(groups):
            for name in group:
                self._check(name)
                if group_of.setdefault(name, index) != index:
                    raise ValueError(f"node {name!r} is in more than one group")
        pairs = [
            p for (s, d), p in self._pairs.items()
            if s in group_of and d in group_of and group_of[s] != group_of[d]
        ]
        self._call(self._set_cut, pairs, True)

    def heal(self) -> None:
        """Allow every pair again. Connections closed by a cut stay closed:
        the nodes redial."""
        self._call(self._set_cut, list(self._pairs.values()), False)

    def is_cut(self, src: str, dst: str) -> bool:
        return self._pair(src, dst).cut

    def bytes_forwarded(self, src: str, dst: str) -> int:
        """Bytes forwarded so far over the pair's connections, both
        directions together (for tests and diagnostics)."""
        return self._pair(src, dst).forwarded

    # -- lifetime -------------------------------------------------------------------

    def close(self) -> None:
        """Close the listeners and every connection, stop the loop and join
        its thread (for at most a few seconds). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._submit(self._shutdown).result(timeout=_CONTROL_TIMEOUT)
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=_CONTROL_TIMEOUT)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()
        for pair in self._pairs.values():
            pair.sock.close()

    def __enter__(self) -> PartitionProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        cuts = [f"{p.src}->{p.dst}" for p in self._pairs.values() if p.cut]
        state = "closed" if self._closed else f"cut={cuts}"
        return f"<PartitionProxy nodes={self._names} {state}>"

    # -- internals: called from any thread --------------------------------------------

    def _check(self, name: str) -> None:
        if name not in self._names:
            raise KeyError(f"unknown node {name!r}; the proxy knows {self._names}")

    def _pair(self, src: str, dst: str) -> _Pair:
        self._check(src)
        self._check(dst)
        if src == dst:
            raise ValueError(f"no route from a node to itself ({src!r})")
        return self._pairs[src, dst]

    def _submit(self, fn: Callable[..., Awaitable[T]], *args: object) -> concurrent.futures.Future[T]:
        async def run() -> T:
            return await fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop)

    def _call(self, fn: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run ``fn(*args)`` in the loop and wait for its result."""
        if self._closed:
            raise RuntimeError("the proxy is closed")
        if threading.current_thread() is self._thread:
            raise RuntimeError("PartitionProxy's methods must not be called from its own loop")
        return self._submit(fn, *args).result(timeout=_CONTROL_TIMEOUT)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    # -- internals: in the loop ---------------------------------------------------------

    async def _start(self) -> None:
        for pair in self._pairs.values():
            handler = functools.partial(self._handle, pair)
            pair.server = await asyncio.start_server(handler, sock=pair.sock, limit=_CHUNK)

    async def _set_cut(self, pairs: list[_Pair], cut: bool) -> None:
        conns: list[_Conn] = []
        for pair in pairs:
            pair.cut = cut
            if cut:
                conns.extend(pair.conns)
        await self._kill(conns)

    async def _kill(self, conns: list[_Conn]) -> None:
        """Reset ``conns`` and wait until their sockets are closed."""
        for conn in conns:
            conn.reset()
            if conn.task is not None:
                conn.task.cancel()
        tasks = [c.task for c in conns if c.task is not None and c.task is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=_CONTROL_TIMEOUT)
        # abort() closes a socket in a callback scheduled with call_soon: let it run
        await asyncio.sleep(0)

    async def _shutdown(self) -> None:
        self._stopping = True
        for pair in self._pairs.values():
            if pair.server is not None:
                pair.server.close()
        await self._kill([c for p in self._pairs.values() for c in p.conns])
        for pair in self._pairs.values():
            if pair.server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pair.server.wait_closed(), _CONTROL_TIMEOUT)

    async def _handle(self, pair: _Pair, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward one accepted connection to ``pair.dst`` until either side
        closes (then close the other) or the pair is cut."""
        conn = _Conn(asyncio.current_task(), [writer.transport])
        if pair.cut or self._stopping:
            conn.reset()
            return
        pair.conns.add(conn)
        graceful = False
        try:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*pair.target, limit=_CHUNK), _CONNECT_TIMEOUT
                )
            except (OSError, asyncio.TimeoutError):
                return  # the target is down: close the accepted connection
            conn.transports.append(up_writer.transport)
            if pair.cut or self._stopping:
                return
            pumps = [
                asyncio.create_task(self._pump(pair, reader, up_writer)),
                asyncio.create_task(self._pump(pair, up_reader, writer)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                graceful = not pair.cut
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except asyncio.CancelledError:
            pass  # cut or closed: the sockets are reset below
        finally:
            pair.conns.discard(conn)
            for transport in conn.transports:
                if graceful:
                    transport.close()  # what was written is still delivered, then FIN
                else:
                    _reset(transport)

    @staticmethod
    async def _pump(pair: _Pair, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(_CHUNK):
                pair.forwarded += len(data)  # first: a reader that got the bytes sees them counted
                writer.write(data)
                await writer.drain()  # backpressure: wait while the other side is slow
