"""SyncObj: PySyncObj's replicated-object API, running on a raftkit Node.

A class inherits from ``SyncObj`` and marks the methods that change its
state with ``@replicated`` (``raftkit.syncobj.decorator``: what calling
one does and the four ways its outcome comes back). Batteries-style
objects (``SyncObjConsumer``, ``raftkit.syncobj.consumer``) passed as
``consumers=[...]`` share one SyncObj's log.

This module holds the ``SyncObj`` class: it builds the node around the
object state machine (``raftkit.syncobj.object_machine``), proposes the
calls, switches code versions and runs and stops the node. Status, reads
and cluster operations come from its base ``NodeOperations``
(``raftkit.syncobj.node_operations``).

Zero-downtime upgrades (PySyncObj's code versions): a method name may be
defined several times with ``@replicated(ver=N)``; the cluster's code
version is replicated state changed by ``set_code_version(N)`` (logged like
a call), and each call runs the implementation with the highest
``ver <= `` the version in force at its log index (see ``raftkit.syncobj.versions``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypedDict

from raftkit.builder import NodeBuilder
from raftkit.errors import NoLeaderError, SerializationError, TransportError
from raftkit.runtime.futures import CallbackOutcome, OnOutcome
from raftkit.runtime.node import Node
from raftkit.storage.log_store import LogStore
from raftkit.storage.snapshotter import Snapshotter
from raftkit.syncobj.conf import SyncObjConf
from raftkit.syncobj.consumer import ConsumerWrapper, SyncObjConsumer, _public_state, _replace_state
from raftkit.syncobj.decorator import (
    ReplicatedMethod,
    _deliver,
    _implementations,
    _supported_version,
)
from raftkit.syncobj.membership_requests import READONLY_PREFIX, ChangeRequest, join_readonly, leave
from raftkit.syncobj.node_operations import NodeOperations
from raftkit.syncobj.nodes import Node as PyNode
from raftkit.syncobj.nodes import pysyncobj_address, readonly_address
from raftkit.syncobj.object_machine import (
    _SET_CODE_VERSION,
    _SYSTEM,
    _ObjectStateMachine,
)
from raftkit.syncobj.outcomes import SyncObjException, compat_error
from raftkit.syncobj.versions import (
    CodeVersionError,
    check_version,
    discard_strays,
    select_version,
)
from raftkit.transports.base import Transport

__all__ = ["SyncObj"]

log = logging.getLogger(__name__)


def _bind_error(exc: TransportError) -> SyncObjException:
    """A port that cannot be bound, as PySyncObj reports it (errorCode 'BindError')."""
    error = compat_error(exc)
    assert isinstance(error, SyncObjException)
    error.errorCode = "BindError"
    return error


def _refuse_admin(sock: Any, early: bytes) -> None:
    from raftkit.admin.server import refuse_admin  # only when someone tries

    refuse_admin(sock, NO_ADMIN_WITHOUT_PASSWORD)


NO_ADMIN_WITHOUT_PASSWORD = (
    "this node serves no admin commands: it has no cluster password, and anyone who can reach an "
    "unauthenticated admin endpoint could take the cluster over. Give the cluster a password "
    "(SyncObjConf(password=...)), then use syncobj_admin -pass on this address"
)


def _pick(old_name: str, old: Any, new_name: str, new: Any) -> Any:
    if old is not None and new is not None:
        raise TypeError(f"give {old_name} or {new_name}, not both")
    return new if old is None else old


class _PlugIns(TypedDict):
    """The plug-ins given to ``SyncObj(...)``, kept until the node is built."""

    transport: Transport | None
    log_store: LogStore | None
    snapshotter: Snapshotter | None


class SyncObj(NodeOperations):
    """A replicated object (PySyncObj's ``SyncObj``): subclass it and mark
    mutating methods ``@replicated``, or pass ``consumers=[...]``.

    ``selfNode`` (or ``self_address``) is this node's ``host:port`` and
    ``otherNodes`` (or ``partner_addresses``) the others'. Keyword-only
    extras compose the node from other plug-ins: ``transport`` (e.g. a
    ``MemoryTransport``), ``log_store`` and ``snapshotter``.

    The node starts when the outermost ``__init__`` returns (so a subclass
    sets its initial state after ``super().__init__`` as in PySyncObj, and a
    restored snapshot is never overwritten by it): in its own thread, or,
    with ``SyncObjConf(autoTick=False)``, when ``doTick()`` is first called
    or ``await astart()`` runs it inside the caller's event loop.

    Replicated state is every instance attribute not starting with
    ``_rk_``; override ``_serialize`` / ``_deserialize`` to choose.

    Status, leader and readiness, reads, compaction, membership and the
    admin endpoint: see ``NodeOperations``.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        discard_strays(cls)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_rk_wrapped", False):
            return

        @functools.wraps(init)
        def __init__(self: SyncObj, *args: Any, **kw: Any) -> None:  # noqa: N807
            depth = self.__dict__.get("_rk_init_depth", 0)
            self.__dict__["_rk_init_depth"] = depth + 1
            try:
                init(self, *args, **kw)
            finally:
                self.__dict__["_rk_init_depth"] = depth
            if depth == 0:
                self._rk_finish_init()

        __init__._rk_wrapped = True  # type: ignore[attr-defined]
        cls.__init__ = __init__  # type: ignore[method-assign]

    def __init__(
        self,
        selfNode: str | None = None,  # noqa: N803 - PySyncObj's names
        otherNodes: Iterable[str] | None = None,  # noqa: N803
        conf: SyncObjConf | None = None,
        consumers: Iterable[SyncObjConsumer | ConsumerWrapper] | None = None,
        *,
        self_address: str | None = None,
        partner_addresses: Iterable[str] | None = None,
        transport: Transport | None = None,
        log_store: LogStore | None = None,
        snapshotter: Snapshotter | None = None,
    ) -> None:
        if self.__dict__.get("_rk_args") is not None:
            raise RuntimeError("SyncObj.__init__ ran twice on the same object")
        given = _pick("selfNode", selfNode, "self_address", self_address)
        given_partners = _pick("otherNodes", otherNodes, "partner_addresses", partner_addresses)
        if given_partners is None:
            raise TypeError("SyncObj needs the other nodes' addresses (otherNodes / partner_addresses); "
                            "[] for a single-node cluster")
        self._rk_spelling: dict[str, str] = {}  # normalized address -> as written here
        address = None if given is None else self._rk_address_of(given)
        partners = [self._rk_address_of(p) for p in given_partners]
        partners = list(dict.fromkeys(p for p in partners if p != address))  # PySyncObj drops itself
        self._rk_readonly = address is None
        if address is None:
            if not partners:
                raise TypeError("a read-only node (selfNode=None) needs the cluster's addresses (otherNodes)")
            if (conf or SyncObjConf()).password is None and transport is None:
                raise ValueError(
                    "a read-only node (selfNode=None) joins the cluster as a learner, which members allow "
                    "only over an authenticated transport: give the cluster's SyncObjConf(password=...) (or "
                    "a TLS transport). Over plain TCP anyone reaching the port could read all the data"
                )
            address = readonly_address(partners)
        conf = SyncObjConf() if conf is None else conf
        if not isinstance(conf, SyncObjConf):
            raise TypeError(f"conf must be a SyncObjConf, got {type(conf).__name__}")
        conf.validate()
        self._rk_conf = conf
        self._rk_address: str = address
        self._rk_partners: list[str] = partners
        self._rk_consumers: list[SyncObjConsumer] = []
        for i, consumer in enumerate(consumers or ()):
            if not isinstance(consumer, SyncObjConsumer) and callable(getattr(consumer, "_consumer", None)):
                consumer = consumer._consumer()  # PySyncObj: a wrapper (ReplLockManager) hands over its part
            if not isinstance(consumer, SyncObjConsumer):
                raise TypeError(f"consumers must be SyncObjConsumer instances, got {type(consumer).__name__}")
            consumer._rk_attach(self, i)
            self._rk_consumers.append(consumer)
        self._rk_args: _PlugIns = {"transport": transport, "log_store": log_store, "snapshotter": snapshotter}
        self._rk_node: Node | None = None
        self._rk_start_lock = threading.Lock()
        self._rk_tick_callbacks: list[Callable[[], Any]] = []  # addOnTickCallback
        self._rk_ticking = False  # the tick callbacks are scheduled on the node's loop
        self._rk_candidates: dict[tuple[type, str, int], Any] = {}  # _rk_check_arguments cache
        self._rk_started_at = time.monotonic()
        if self.__dict__.get("_rk_init_depth", 0) == 0:
            self._rk_finish_init()

    def _rk_address_of(self, given: Any) -> str:
        """A node object or an address as PySyncObj takes it, as raftkit's
        address (``'::1:6000'`` becomes ``'[::1]:6000'``); the spelling
        given is remembered for display (``getLeader().address``)."""
        text = str(given.id) if isinstance(given, PyNode) else given
        if not isinstance(text, str):
            kind = type(given).__name__
            raise TypeError(f"a node address must be a 'host:port' string or a TCPNode, not {kind}")
        normal = pysyncobj_address(text)
        self._rk_spelling.setdefault(normal, text)
        return normal

    def _rk_finish_init(self) -> None:
        """Build (and, with autoTick, start) the node once construction is over."""
        if "_rk_args" not in self.__dict__:
            raise TypeError(
                f"{type(self).__name__}.__init__ must call super().__init__(selfNode, otherNodes, ...)"
            )
        conf: SyncObjConf = self._rk_conf
        serializer = conf.resolved_serializer()
        self._rk_serializer = serializer
        args = self._rk_args
        self._rk_sm = _ObjectStateMachine(self, serializer)
        config = conf.node_config()
        if self._rk_readonly:
            config = dataclasses.replace(config, join=True)  # not a voter: it asks to become a learner
        node_id = READONLY_PREFIX + self._rk_address if self._rk_readonly else self._rk_address
        builder = (
            NodeBuilder(node_id, self._rk_address)
            .partners(self._rk_partners)
            .config(config)
            .serializer(serializer)
            .state_machine(self._rk_sm)
        )
        if args["transport"] is not None:
            builder.transport(args["transport"])
        else:
            if conf.password is not None:
                builder.password(conf.password)
            if conf.bindAddress is not None:
                builder.bind(conf.bindAddress)
            builder.transport_hints(**conf.transport_hints())
        if args["log_store"] is not None:
            builder.log_store(args["log_store"])
        if args["snapshotter"] is not None:
            builder.snapshotter(args["snapshotter"])
        node = builder.build()
        if args["transport"] is None:  # syncobj_admin on the Raft port, as in PySyncObj
            handoff = self._rk_adopt_admin if conf.password is not None else _refuse_admin
            node.transport.admin_handoff = handoff  # type: ignore[attr-defined]
        self._rk_bind_error: SyncObjException | None = None
        if conf.autoTick:
            try:
                node.start()
            except TransportError as exc:  # PySyncObj: waitBinded() raises it, the object still exists
                self._rk_bind_error = _bind_error(exc)
                log.error("%s", exc)
        self._rk_node = node
        self._rk_start_ticking()  # callbacks added during __init__, on a node already running
        conf.watch(self._rk_conf_changed)
        if self._rk_readonly:  # ask the members in turn until one adds it (syncobj.membership_requests)
            steps = join_readonly(node_id, self._rk_address)
            request = ChangeRequest(node, steps, deadline=None, contacts=list(self._rk_partners))
            self._rk_run_on_ticks(request.tick)

    def _rk_conf_changed(self, name: str, value: Any) -> None:
        """An option set on the running object's conf: applied if it can be."""
        if name != "leaderFallbackTimeout":
            return
        node = self.get_node()
        node.config = dataclasses.replace(node.config, leader_fallback_timeout=value)  # checks it
        ticks = node.config.quorum_check_tick

        def set_ticks() -> None:
            node.raw.raft.set_quorum_check_tick(ticks)

        if node.started:
            node.dispatch(set_ticks)
        else:
            set_ticks()

    # -- calls ---------------------------------------------------------------------------

    def _rk_call_owner(self) -> tuple[SyncObj, int]:
        """Its own replicated calls go to its own log (``raftkit.syncobj.decorator.CallOwner``)."""
        return self, -1

    def _rk_node_for_call(self) -> Node:
        node: Node | None = self.__dict__.get("_rk_node")
        if node is None:
            raise RuntimeError(
                f"{type(self).__name__} is still being constructed: replicated methods can be called once "
                "__init__ returns (set initial state by plain assignment in __init__)"
            )
        bind_error = self.__dict__.get("_rk_bind_error")
        if bind_error is not None:
            raise bind_error
        if not node.started:
            with self._rk_start_lock:
                if not node.started and not self.__dict__.get("_rk_astarting"):
                    try:
                        node.start_manual()  # autoTick=False: PySyncObj queues calls until doTick()
                    except TransportError as exc:
                        raise _bind_error(exc) from exc.__cause__
            self._rk_start_ticking()
        return node

    def _rk_submit(
        self,
        index: int,
        target: Any,
        method: ReplicatedMethod[Any, ..., Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        on_done: OnOutcome | CallbackOutcome | None = None,
    ) -> concurrent.futures.Future[Any] | None:
        """Check, encode and propose a call (the caller asked ``_rk_node_for_call`` first)."""
        found = self._rk_candidates.get((type(target), method.name, self._rk_sm.code_version))
        # The common case costs a comparison: no keywords, and a count of
        # positional arguments the newest candidate takes.
        if found is None or kwargs or not found[2] <= len(args) <= found[3]:
            self._rk_check_arguments(target, method, args, kwargs)
        node: Node = self._rk_node  # type: ignore[assignment]  # set: _rk_node_for_call came first
        if not self._rk_conf.commandsWaitLeader and node.leader is None:
            raise NoLeaderError("no leader is known and commandsWaitLeader is False")
        if isinstance(on_done, CallbackOutcome):
            outcome: CallbackOutcome | None = on_done  # a call with a callback asked refusal() already
        else:
            refused = node.refusal()  # before encoding: under overload a refusal must cost little
            if refused is not None:
                raise refused
            outcome = CallbackOutcome.of(on_done)
        try:
            # Arrays, not tuples: msgpack then needs no type marker for the
            # envelope, and decoding a call with plain arguments takes no hook.
            command = self._rk_serializer.dumps([index, method.name, list(args), kwargs])
        except SerializationError as exc:
            raise SerializationError(
                f"cannot replicate the call {method.func.__qualname__}(...): {exc}"
            ) from exc
        # enqueue, not submit: refusal() was asked above (or by the caller) moments ago.
        return node.enqueue(command, timeout, outcome)

    def _rk_check_arguments(
        self, target: Any, method: ReplicatedMethod[Any, ..., Any, Any], args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """Refuse at once arguments that no implementation the cluster may
        still run accepts: the one in force at this node's code version, or
        a newer one (the cluster may have switched already; it never goes
        back). The call itself carries only the name: the version in force
        where it lands in the log picks the implementation."""
        sm: _ObjectStateMachine = self._rk_sm
        key = (type(target), method.name, sm.code_version)
        found = self._rk_candidates.get(key)
        if found is None:  # once per method and code version (benign race: the same value)
            impls = _implementations(type(target), method)
            current = select_version(impls, sm.code_version)
            floor = current.ver if current is not None else -1
            candidates = [impls[v] for v in sorted(impls, reverse=True) if v >= floor]
            # (low, high): positional counts that bind without keywords (an empty range if unknown)
            low, high = candidates[0].positional or (1, 0)
            found = current, candidates, low, high
            self._rk_candidates[key] = found
        current, candidates, _, _ = found
        if not kwargs:
            for impl in candidates:
                if impl.positional is not None and impl.positional[0] <= len(args) <= impl.positional[1]:
                    return
        first_error: TypeError | None = None
        for impl in candidates:
            try:
                impl.signature.bind(None, *args, **kwargs)
                return
            except TypeError as exc:
                first_error = first_error or exc
        shown = current or candidates[0]
        several = len(_implementations(type(target), method)) > 1
        versions = f" (ver {shown.ver}, code version {sm.code_version})" if several else ""
        raise TypeError(f"{shown.func.__qualname__}(){versions}: {first_error}") from None

    def _rk_propose(
        self, command: bytes, timeout: float | None, on_done: OnOutcome | None = None
    ) -> concurrent.futures.Future[Any] | None:
        """Submit ``command``: a Future, or None when ``on_done`` takes the outcome."""
        node = self._rk_node_for_call()
        if not self._rk_conf.commandsWaitLeader and node.leader is None:
            raise NoLeaderError("no leader is known and commandsWaitLeader is False")
        return node.submit(command, timeout, callback=on_done)

    # -- code versions (zero-downtime upgrades) -----------------------------------------------

    def set_code_version(
        self,
        version: int,
        *,
        sync: bool = True,
        callback: Callable[[Any, Any], Any] | None = None,
        timeout: float | None = None,
    ) -> int | None:
        """Switch the whole cluster to code ``version``: from the log index
        of this command on, every node runs each replicated call with the
        implementation of the highest ``ver <= version``.

        Deploy code defining the new ``@replicated(ver=version)`` methods
        (and keeping the old ones) on every node first: a node whose code
        stops below ``version`` stops applying when it reaches this entry
        (status()["error"] says so) until it is restarted with newer code.

        Logged like a replicated call: ``sync=True`` (the default) blocks
        and returns the version now in force; ``callback=fn`` makes it
        asynchronous, ``fn(version, err)``; ``sync=False`` fires and forgets.
        Refused at once with ``CodeVersionError`` when this process's own
        code does not have ``version`` or it is below the version in force,
        and with TypeError / ValueError when it is not an int >= 0."""
        version = check_version(version, "code version")
        sm: _ObjectStateMachine | None = self.__dict__.get("_rk_sm")
        if sm is None:
            raise RuntimeError(f"{type(self).__name__} is still being constructed: it has no node yet")
        if version > sm.supported:
            raise CodeVersionError(
                f"cannot switch the cluster to code version {version}: this process's code supports code "
                f"versions up to {sm.supported}. Deploy code defining @replicated(ver={version}) methods on "
                f"every node first, then set the version from one of them"
            )
        if version < sm.code_version:
            raise CodeVersionError(
                f"cannot switch the cluster back from code version {sm.code_version} to {version}: code "
                "versions only go up (calls may already have run with the newer implementations)"
            )
        if callback is not None:
            sync = False
        node = self._rk_node_for_call()
        command = self._rk_serializer.dumps([_SYSTEM, _SET_CODE_VERSION, [version], {}])
        result: int | None = _deliver(
            node, f"set_code_version({version})", lambda on_done: self._rk_propose(command, timeout, on_done),
            sync=sync, callback=callback, timeout=timeout,
        )
        return result

    def setCodeVersion(  # noqa: N802 - PySyncObj's name
        self, newVersion: int, callback: Callable[[Any, Any], Any] | None = None  # noqa: N803
    ) -> None:
        """PySyncObj's form: asynchronous, ``callback(result, err)`` when done."""
        self.set_code_version(newVersion, sync=False, callback=callback)

    def get_code_version(self) -> int:
        """The cluster's code version as of the last entry this node applied."""
        sm: _ObjectStateMachine | None = self.__dict__.get("_rk_sm")
        return 0 if sm is None else sm.code_version

    getCodeVersion = get_code_version  # noqa: N815 - PySyncObj's name

    def get_supported_code_version(self) -> int:
        """The highest ``ver`` this process's code defines (on this class and
        its consumers): the highest version it can follow the cluster to."""
        sm: _ObjectStateMachine | None = self.__dict__.get("_rk_sm")
        if sm is not None:
            return sm.supported
        return _supported_version([type(self), *(type(c) for c in self.__dict__.get("_rk_consumers", ()))])

    def _rk_code_version_changed(self, old: int, new: int) -> None:
        """PySyncObj's ``SyncObjConf.onCodeVersionChanged(old, new)``, run on
        the node's thread as the switch is applied."""
        hook = getattr(self._rk_conf, "onCodeVersionChanged", None)
        if hook is None:
            return
        try:
            hook(old, new)
        except Exception:
            log.exception("onCodeVersionChanged callback %r raised", hook)

    # -- replicated state hooks ---------------------------------------------------------------

    def _serialize(self) -> Any:
        """This object's part of a snapshot: its attributes, minus raftkit's."""
        return _public_state(self)

    def _deserialize(self, data: Any) -> None:
        """Replace the state with one made by ``_serialize`` on some node."""
        _replace_state(self, data)

    # -- running --------------------------------------------------------------------------------

    def doTick(self, timeToWait: float = 0.0) -> None:  # noqa: N802, N803 - PySyncObj's name
        """Manual mode (``autoTick=False``): run the node for up to
        ``timeToWait`` seconds: network traffic, timers, queued calls."""
        if self._rk_conf.autoTick:
            raise RuntimeError("doTick() is for SyncObjConf(autoTick=False); this node runs its own thread")
        self._rk_node_for_call().on_tick(timeToWait)

    on_tick = doTick
    _onTick = doTick  # noqa: N815 - the name PySyncObj's own tests and much manual-tick code use

    def addOnTickCallback(self, callback: Callable[[], Any]) -> None:  # noqa: N802 - PySyncObj's name
        """Run ``callback()`` on the node's thread at every tick (keep it
        short); a manual node's callbacks start with its first ``doTick()``
        or ``astart()``."""
        with self._rk_start_lock:
            self._rk_tick_callbacks.append(callback)
        self._rk_start_ticking()

    def _rk_start_ticking(self) -> None:
        """Schedule the tick callbacks on a started node, if any wait and they are not yet."""
        node = self.__dict__.get("_rk_node")
        with self._rk_start_lock:
            if self._rk_ticking or not self._rk_tick_callbacks or node is None or not node.started:
                return
            self._rk_ticking = True
        node.dispatch(self._rk_run_tick_callbacks)

    def removeOnTickCallback(self, callback: Callable[[], Any]) -> None:  # noqa: N802 - PySyncObj's name
        with self._rk_start_lock, contextlib.suppress(ValueError):
            self._rk_tick_callbacks.remove(callback)

    def _rk_run_on_ticks(self, fn: Callable[[], bool]) -> None:
        """Run ``fn()`` on the node's loop at every tick until it returns False."""

        def tick() -> None:
            if not fn():
                self.removeOnTickCallback(tick)

        self.addOnTickCallback(tick)

    def _rk_run_tick_callbacks(self) -> None:
        """(Loop thread.) The tick callbacks, then again one tick later while any are left."""
        for callback in list(self._rk_tick_callbacks):
            try:
                callback()
            except Exception:
                log.exception("tick callback %r raised", callback)
        with self._rk_start_lock:
            self._rk_ticking = bool(self._rk_tick_callbacks)
            if not self._rk_ticking:
                return
        interval = self.get_node().config.tick_interval
        asyncio.get_running_loop().call_later(interval, self._rk_run_tick_callbacks)

    async def astart(self) -> None:
        """Run the node inside the running asyncio loop (``autoTick=False``);
        then use ``await obj.method.aio(...)``."""
        if self._rk_conf.autoTick:
            raise RuntimeError("astart() needs SyncObjConf(autoTick=False): this node runs its own thread")
        node = self._rk_node
        if node is None:
            raise RuntimeError("astart() called before construction finished")
        with self._rk_start_lock:  # not held across the await: this loop's own callbacks take it
            if node.started or self.__dict__.get("_rk_astarting"):
                raise RuntimeError("the node already started (doTick() or a call before astart())")
            self.__dict__["_rk_astarting"] = True
        await node.astart()
        self._rk_start_ticking()

    async def astop(self) -> None:
        """Stop a node running in this loop; pending calls fail with NodeStoppedError."""
        await asyncio.to_thread(self._rk_stop_admin)  # off this loop: their requests may wait on the node
        if self._rk_node is not None:
            await self._rk_node.astop()
        self._rk_destroy_consumers()

    def destroy(self) -> None:
        """Stop the node: pending calls fail with NodeStoppedError, the thread
        ends, the transport closes, consumers' ``_destroy()`` runs. Idempotent."""
        self._rk_stop_admin()
        node = self.__dict__.get("_rk_node")
        if node is not None and self.__dict__.get("_rk_readonly") and not self.__dict__.get("_rk_left"):
            self.__dict__["_rk_left"] = True
            leave(node, manual=not self._rk_conf.autoTick)
        if node is not None:
            node.stop()
        self._rk_destroy_consumers()

    _destroy = destroy  # noqa: N815 - PySyncObj's name

    def _rk_stop_admin(self) -> None:
        """Stop the admin endpoints, and start none after (``_rk_adopt_admin``)."""
        lock = self.__dict__.get("_rk_start_lock")
        if lock is not None:
            with lock:
                self.__dict__["_rk_admin_closed"] = True
        for name in ("_rk_admin", "_rk_port_admin"):
            admin = self.__dict__.get(name)
            if admin is not None:
                admin.stop()

    def destroy_synchronous(self) -> None:
        """PySyncObj's name: ``destroy()`` already waits for the node's thread."""
        self.destroy()

    def tick_thread_alive(self) -> bool:
        """Whether the node's own thread runs (autoTick) and was not destroyed."""
        node = self.__dict__.get("_rk_node")
        return bool(node is not None and self._rk_conf.autoTick and node.status()["running"])

    def _rk_destroy_consumers(self) -> None:
        if self.__dict__.get("_rk_consumers_destroyed"):
            return  # once, as in PySyncObj
        self.__dict__["_rk_consumers_destroyed"] = True
        for consumer in self.__dict__.get("_rk_consumers", ()):
            try:
                consumer._destroy()
            except Exception:
                log.exception("%s._destroy() raised", type(consumer).__name__)

    def __enter__(self) -> SyncObj:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()
