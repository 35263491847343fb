"""SyncObj: PySyncObj's replicated-object API, running on a raftkit Node.

A class inherits from ``SyncObj`` and marks the methods that change its
state with ``@replicated``; calling such a method does not run it, it
appends ``(target, method name, args, kwargs)`` to the Raft log (encoded
with the configured serializer), and every node runs it when the entry
commits. Batteries-style objects (``SyncObjConsumer``) passed as
``consumers=[...]`` share one SyncObj's log.

A replicated call has exactly one outcome, delivered in one of four ways:

* ``obj.method(*args)``: returns at once; the outcome is dropped
  (immediate refusals such as ``QueueFullError`` are still raised);
* ``obj.method(*args, sync=True, timeout=None)``: blocks and returns the
  method's return value, or raises the exception the method raised
  (deterministically, on every node), or a raftkit error saying why the
  call got no outcome;
* ``obj.method(*args, callback=fn)``: ``fn(result, err)`` as in PySyncObj,
  where ``err`` equals ``FAIL_REASON.SUCCESS`` (0) or is a ``CallError``:
  an int equal to a ``FAIL_REASON`` code that also carries ``.exception``;
* ``obj.method.submit(*args)`` returns a ``concurrent.futures.Future`` and
  ``await obj.method.aio(*args)`` awaits the outcome from asyncio code.

Reserved keyword names: ``sync``, ``callback`` and ``timeout`` belong to
the call, never to the method (as in PySyncObj).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import logging
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from raftkit.builder import NodeBuilder
from raftkit.errors import CodecError, CommandTimeoutError, NoLeaderError, RaftkitError, SerializationError
from raftkit.node import Node
from raftkit.outcomes import FAIL_REASON, CallError, FailReason, SyncObjException, compat_error, fail_reason
from raftkit.serializers.base import Serializer
from raftkit.state_machine import SnapshotWriter, StateMachine
from raftkit.storage.log_store import LogStore
from raftkit.storage.snapshotter import Snapshotter
from raftkit.syncobj_conf import SyncObjConf, pysyncobj_state
from raftkit.transports.base import Transport

__all__ = [
    "FAIL_REASON",
    "CallError",
    "FailReason",
    "SyncObj",
    "SyncObjConf",
    "SyncObjConsumer",
    "SyncObjException",
    "fail_reason",
    "replicated",
    "replicated_sync",
]

log = logging.getLogger(__name__)

_INTERNAL = "_rk_"  # attributes with this prefix are raftkit's, never replicated state
_WAIT_GRACE = 1.0  # a sync call waits this much past its deadline for the node's own verdict


# -- outcomes ----------------------------------------------------------------------------


class _Raised:
    """The outcome of a replicated method that raised: kept apart from
    raftkit's own errors so callers can tell "your method raised X" from
    "the cluster could not run it"."""

    __slots__ = ("exception",)

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception


def _unwrap(value: Any) -> Any:
    if isinstance(value, _Raised):
        raise value.exception
    return value


def _outcome(fut: concurrent.futures.Future[Any]) -> tuple[Any, BaseException | None, FAIL_REASON]:
    """(result, exception, reason) of a finished node future."""
    try:
        value = fut.result()
    except RaftkitError as exc:
        return None, compat_error(exc), fail_reason(exc)
    except BaseException as exc:  # cancelled, or something unexpected
        return None, exc, FAIL_REASON.REQUEST_DENIED
    if isinstance(value, _Raised):
        return None, value.exception, FAIL_REASON.METHOD_RAISED
    return value, None, FAIL_REASON.SUCCESS


def _run_callback(callback: Callable[[Any, Any], Any], fut: concurrent.futures.Future[Any]) -> None:
    result, exc, reason = _outcome(fut)
    err: Any = FAIL_REASON.SUCCESS if exc is None else CallError(exc, reason)
    try:
        callback(result, err)
    except Exception:
        log.exception("replicated call callback %r raised", callback)


# -- the decorator ----------------------------------------------------------------------


class ReplicatedMethod:
    """What ``@replicated`` puts in the class: a descriptor whose bound
    form (``obj.method``) proposes calls instead of running them."""

    def __init__(self, func: Callable[..., Any], *, sync: bool = False, timeout: float | None = None) -> None:
        if not callable(func):
            raise TypeError(f"@replicated decorates a method, got {type(func).__name__}")
        self.func = func
        self.name = func.__name__
        self.sync_default = sync
        self.timeout_default = timeout
        self.signature = inspect.signature(func)
        reserved = {"sync", "callback", "timeout"} & set(self.signature.parameters)
        if reserved:
            raise TypeError(
                f"replicated method {func.__qualname__} has parameter(s) {sorted(reserved)}, which are "
                "reserved for the call itself (sync=, callback=, timeout=); rename them"
            )
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return BoundReplicated(self, obj)

    def __call__(self, obj: Any, *args: Any, **kwargs: Any) -> Any:
        """``Class.method(obj, ...)``: the same as ``obj.method(...)``."""
        return BoundReplicated(self, obj)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<replicated method {self.func.__qualname__}>"


class BoundReplicated:
    """``obj.method``: call it (PySyncObj style), ``.submit()`` it for a
    Future, or ``await .aio()`` it."""

    __slots__ = ("_method", "_target")

    def __init__(self, method: ReplicatedMethod, target: Any) -> None:
        self._method = method
        self._target = target

    @property
    def __name__(self) -> str:
        return self._method.name

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self._method.func.__doc__

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return self._method.func

    def __repr__(self) -> str:
        return f"<bound replicated method {self._method.func.__qualname__} of {self._target!r}>"

    def __call__(
        self,
        *args: Any,
        sync: bool | None = None,
        callback: Callable[[Any, Any], Any] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        m = self._method
        sync = m.sync_default if sync is None else sync
        timeout = m.timeout_default if timeout is None else timeout
        if callback is not None:
            sync = False  # PySyncObj: a callback makes the call asynchronous
        owner, index = _owner_of(self._target)
        node = owner._rk_node_for_call()
        if sync and node._in_loop():
            raise RuntimeError(
                f"{m.name}(sync=True) from inside the node's own event loop would deadlock; "
                "use callback=, or await .aio() in asyncio code"
            )
        try:
            future = owner._rk_submit(index, m, args, kwargs, timeout)
        except RaftkitError as exc:
            if callback is None or isinstance(exc, SerializationError):
                raise compat_error(exc) from None
            failed: concurrent.futures.Future[Any] = concurrent.futures.Future()
            failed.set_exception(exc)
            _run_callback(callback, failed)
            return None
        if callback is not None:
            future.add_done_callback(functools.partial(_run_callback, callback))
            return None
        if not sync:
            return None
        limit = (node.config.command_timeout if timeout is None else timeout) + _WAIT_GRACE
        try:
            value = future.result(limit)
        except concurrent.futures.TimeoutError:
            raise compat_error(CommandTimeoutError(f"{m.name}: no outcome within {limit:.1f}s")) from None
        except RaftkitError as exc:
            raise compat_error(exc) from None
        return _unwrap(value)

    def submit(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        """Propose the call; the Future gets the method's return value, the
        exception it raised, or a raftkit error. Immediate refusals
        (QueueFullError, NodeStoppedError, SerializationError) raise here."""
        if "sync" in kwargs or "callback" in kwargs:
            raise TypeError("submit() and aio() take neither sync= nor callback=")
        m = self._method
        owner, index = _owner_of(self._target)
        owner._rk_node_for_call()
        try:
            raw = owner._rk_submit(index, m, args, kwargs, m.timeout_default if timeout is None else timeout)
        except RaftkitError as exc:
            raise compat_error(exc) from None
        out: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def transfer(fut: concurrent.futures.Future[Any]) -> None:
            result, exc, _ = _outcome(fut)
            if exc is None:
                out.set_result(result)
            else:
                out.set_exception(exc)

        raw.add_done_callback(transfer)
        return out

    async def aio(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """``await obj.method.aio(...)``: the outcome, without blocking the
        caller's event loop (which may also be the node's own)."""
        return await asyncio.wrap_future(self.submit(*args, timeout=timeout, **kwargs))


def replicated(
    func: Callable[..., Any] | None = None, *, sync: bool = False, timeout: float | None = None
) -> Any:
    """Mark a method that changes replicated state: ``@replicated`` or
    ``@replicated(sync=True, timeout=5)`` (defaults for its calls)."""
    if func is None:
        return lambda f: ReplicatedMethod(f, sync=sync, timeout=timeout)
    return ReplicatedMethod(func, sync=sync, timeout=timeout)


def replicated_sync(func: Callable[..., Any] | None = None, *, timeout: float | None = None) -> Any:
    """``@replicated`` whose calls block by default (``sync=False`` still works)."""
    return replicated(func, sync=True, timeout=timeout)


_METHODS: weakref.WeakKeyDictionary[type, dict[str, ReplicatedMethod]] = weakref.WeakKeyDictionary()


def _replicated_methods(cls: type) -> dict[str, ReplicatedMethod]:
    """Name -> replicated method for ``cls``, honouring overrides: only these
    names may be run from the log (a command cannot call anything else)."""
    found = _METHODS.get(cls)
    if found is None:
        found = {}
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                if isinstance(attr, ReplicatedMethod):
                    found[name] = attr
                else:
                    found.pop(name, None)
        _METHODS[cls] = found
    return found


def _owner_of(target: Any) -> tuple[SyncObj, int]:
    if isinstance(target, SyncObj):
        return target, -1
    if isinstance(target, SyncObjConsumer):
        owner = target.__dict__.get("_rk_owner")
        if owner is None:
            raise RuntimeError(
                f"{type(target).__name__} is not attached to a SyncObj: pass it in "
                "SyncObj(..., consumers=[...]) before calling its replicated methods"
            )
        return owner, target.__dict__["_rk_index"]
    raise TypeError(f"replicated methods belong to SyncObj or SyncObjConsumer subclasses, not {type(target)}")


# -- replicated state ------------------------------------------------------------------


def _public_state(obj: Any, exclude: Iterable[str] = ()) -> dict[str, Any]:
    skip = set(exclude)
    return {k: v for k, v in vars(obj).items() if not k.startswith(_INTERNAL) and k not in skip}


def _replace_state(obj: Any, data: dict[str, Any], exclude: Iterable[str] = ()) -> None:
    """Make ``obj``'s replicated attributes exactly ``data``."""
    if not isinstance(data, dict):
        raise TypeError(f"{type(obj).__name__} state must be a dict, got {type(data).__name__}")
    skip = set(exclude)
    bad = [k for k in data if not isinstance(k, str) or k.startswith(_INTERNAL) or k in skip]
    if bad:
        raise ValueError(f"{type(obj).__name__} state names attributes that are not replicable: {bad!r}")
    for name in list(_public_state(obj, exclude)):
        if name not in data:
            delattr(obj, name)
    for name, value in data.items():
        setattr(obj, name, value)


class SyncObjConsumer:
    """Base of objects that keep replicated state inside another SyncObj's
    log (PySyncObj's batteries: counters, dicts, locks). Mark mutating
    methods with ``@replicated`` and pass instances as
    ``SyncObj(..., consumers=[...])``. Override ``_serialize`` /
    ``_deserialize`` when the state is not simply the instance's attributes."""

    def __init__(self) -> None:
        self._rk_owner: SyncObj | None = None
        self._rk_index = -1
        self._syncObj: SyncObj | None = None  # noqa: N815 - PySyncObj's attribute

    def _rk_attach(self, owner: SyncObj, index: int) -> None:
        if self.__dict__.get("_rk_owner") is not None:
            raise ValueError(f"{type(self).__name__} is already attached to another SyncObj")
        self.__dict__["_rk_owner"] = owner
        self.__dict__["_rk_index"] = index
        self.__dict__["_syncObj"] = owner

    def _serialize(self) -> Any:
        """This consumer's part of a snapshot: by default its attributes."""
        return _public_state(self, exclude=("_syncObj",))

    def _deserialize(self, data: Any) -> None:
        """Replace the state with one made by ``_serialize`` on some node."""
        _replace_state(self, data, exclude=("_syncObj",))

    def _rk_state_machine(self) -> StateMachine | None:
        """A consumer whose state is a (durable) StateMachine of its own
        returns it: SyncObj then streams its snapshot (``write_snapshot`` /
        ``restore_from``) instead of ``_serialize``/``_deserialize``, and its
        replicated methods see their entry's index (``current_entry_index``)."""
        return None

    def _destroy(self) -> None:
        """Called once the owning SyncObj is destroyed (after its node
        stopped), as in PySyncObj: stop helper threads, release resources."""


_ENTRY_INDEX: contextvars.ContextVar[int | None] = contextvars.ContextVar("raftkit_entry_index", default=None)
_CONTAINER_MAGIC = b"RKSYNCOBJ\x01"
_U32 = struct.Struct(">I")


def current_entry_index() -> int | None:
    """The log index of the entry whose replicated call is running (None
    outside one): a durable consumer hands it to its own state machine's
    ``apply_entry`` so the call is applied exactly once across restarts."""
    return _ENTRY_INDEX.get()


class _ObjectStateMachine(StateMachine):
    """Runs logged calls on the SyncObj and its consumers; snapshots them."""

    def __init__(self, owner: SyncObj, serializer: Serializer) -> None:
        self._owner = owner
        self._serializer = serializer

    def _target(self, index: Any) -> Any:
        if index == -1:
            return self._owner
        consumers = self._owner._rk_consumers
        if not isinstance(index, int) or not 0 <= index < len(consumers):
            raise LookupError(f"command for consumer #{index!r}, but there are {len(consumers)} consumers")
        return consumers[index]

    @property  # type: ignore[override]
    def fork_safe(self) -> bool:
        """A fork child must not touch a consumer's files (an LMDB environment)."""
        return all(getattr(c, "fork_safe", True) for c in self._owner._rk_consumers)

    def apply_entry(self, index: int, command: bytes) -> Any:
        token = _ENTRY_INDEX.set(index)
        try:
            return self.apply(command)
        finally:
            _ENTRY_INDEX.reset(token)

    def apply(self, command: bytes) -> Any:
        try:
            return self._call(command)
        except Exception as exc:  # the call's outcome, the same on every node
            log.debug("replicated call raised %r", exc)
            return _Raised(exc)

    def _call(self, command: bytes) -> Any:
        decoded = self._serializer.loads(command)
        if not isinstance(decoded, (list, tuple)) or len(decoded) != 4:
            raise CodecError("malformed replicated call: expected (target, method, args, kwargs)")
        index, name, args, kwargs = decoded
        target = self._target(index)
        method = _replicated_methods(type(target)).get(name) if isinstance(name, str) else None
        if method is None:
            raise LookupError(f"{type(target).__name__} has no replicated method {name!r}")
        return method.func(target, *args, **kwargs)

    def snapshot(self) -> bytes:
        owner = self._owner
        state = {"self": owner._serialize(), "consumers": [c._serialize() for c in owner._rk_consumers]}
        return self._serializer.dumps(state)

    def restore(self, data: bytes) -> None:
        state = self._serializer.loads(data)
        self._check_count(state)
        self._owner._deserialize(state["self"])
        for consumer, part in zip(self._owner._rk_consumers, state["consumers"], strict=True):
            consumer._deserialize(part)

    def _check_count(self, state: Any) -> None:
        consumers = self._owner._rk_consumers
        if not isinstance(state, dict) or len(state.get("consumers", ())) != len(consumers):
            raise ValueError(
                "snapshot does not match this object: it was taken with "
                f"{len(state.get('consumers', ())) if isinstance(state, dict) else '?'} consumers, "
                f"this one has {len(consumers)}"
            )

    def _durable(self) -> dict[int, StateMachine]:
        found = {i: c._rk_state_machine() for i, c in enumerate(self._owner._rk_consumers)}
        return {i: sm for i, sm in found.items() if sm is not None}

    def write_snapshot(self, out: SnapshotWriter) -> None:
        """With durable consumers: every view is fixed first (their read
        transactions opened, the rest serialized), then written: magic |
        u32 length | the in-memory parts | each durable consumer's stream
        as u32-length-prefixed chunks ending with a zero length."""
        durable = self._durable()
        if not durable:
            out.write(self.snapshot())
            return
        views = {i: sm.open_snapshot() if hasattr(sm, "open_snapshot") else sm.snapshot()
                 for i, sm in durable.items()}
        try:
            owner = self._owner
            state = {
                "self": owner._serialize(),
                "consumers": [
                    None if i in durable else c._serialize() for i, c in enumerate(owner._rk_consumers)
                ],
                "applied": {i: getattr(v, "applied_index", 0) for i, v in views.items()},
            }
            head = self._serializer.dumps(state)
            out.write(_CONTAINER_MAGIC + _U32.pack(len(head)) + head)
            framed = _Framed(out)
            for i in sorted(views):
                view = views[i]
                if isinstance(view, bytes):
                    framed.write(view)
                else:
                    view.write_to(framed)
                framed.end()
        finally:
            for view in views.values():
                if not isinstance(view, bytes):
                    view.close()

    def restore_from(self, chunks: Iterable[bytes]) -> None:
        reader = _ChunkReader(chunks)
        magic = reader.read(len(_CONTAINER_MAGIC), allow_short=True)
        if magic != _CONTAINER_MAGIC:
            self.restore(magic + reader.rest())  # a snapshot without durable consumers
            return
        state = self._serializer.loads(reader.read(_U32.unpack(reader.read(4))[0]))
        self._check_count(state)
        durable = self._durable()
        for i in sorted(durable):
            sm = durable[i]
            segment = reader.segment()
            held, taken = sm.applied_index, state["applied"].get(i, 0)
            if taken and held >= taken:
                for _ in segment:  # this consumer already holds as much: keep it, skip the bytes
                    pass
                continue
            sm.restore_from(segment)
            for _ in segment:
                pass
        self._owner._deserialize(state["self"])
        for i, (consumer, part) in enumerate(zip(self._owner._rk_consumers, state["consumers"], strict=True)):
            if i not in durable:
                consumer._deserialize(part)


class _Framed:
    """``out`` as seen by one durable consumer: length-prefixed chunks."""

    def __init__(self, out: SnapshotWriter) -> None:
        self._out = out

    def write(self, data: bytes) -> None:
        if data:
            self._out.write(_U32.pack(len(data)) + bytes(data))

    def end(self) -> None:
        self._out.write(_U32.pack(0))


class _ChunkReader:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = b""

    def read(self, n: int, allow_short: bool = False) -> bytes:
        while len(self._buf) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                if allow_short:
                    break
                raise CodecError("the SyncObj snapshot is truncated")
            self._buf += bytes(chunk)
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def rest(self) -> bytes:
        return self._buf + b"".join(bytes(c) for c in self._chunks)

    def segment(self) -> Iterator[bytes]:
        while True:
            (n,) = _U32.unpack(self.read(4))
            if n == 0:
                return
            yield self.read(n)


# -- SyncObj ------------------------------------------------------------------------------


def _pick(old_name: str, old: Any, new_name: str, new: Any) -> Any:
    if old is not None and new is not None:
        raise TypeError(f"give {old_name} or {new_name}, not both")
    return new if old is None else old


class SyncObj:
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
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
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
        cls.__init__ = __init__  # type: ignore[misc]

    def __init__(
        self,
        selfNode: str | None = None,  # noqa: N803 - PySyncObj's names
        otherNodes: Iterable[str] | None = None,  # noqa: N803
        conf: SyncObjConf | None = None,
        consumers: Iterable[SyncObjConsumer] | None = None,
        *,
        self_address: str | None = None,
        partner_addresses: Iterable[str] | None = None,
        transport: Transport | None = None,
        log_store: LogStore | None = None,
        snapshotter: Snapshotter | None = None,
    ) -> None:
        if self.__dict__.get("_rk_args") is not None:
            raise RuntimeError("SyncObj.__init__ ran twice on the same object")
        address = _pick("selfNode", selfNode, "self_address", self_address)
        partners = _pick("otherNodes", otherNodes, "partner_addresses", partner_addresses)
        if address is None:
            raise TypeError("SyncObj needs this node's address (selfNode / self_address); "
                            "read-only nodes are not supported")
        if partners is None:
            raise TypeError("SyncObj needs the other nodes' addresses (otherNodes / partner_addresses); "
                            "[] for a single-node cluster")
        conf = SyncObjConf() if conf is None else conf
        if not isinstance(conf, SyncObjConf):
            raise TypeError(f"conf must be a SyncObjConf, got {type(conf).__name__}")
        conf.validate()
        self._rk_conf = conf
        self._rk_address: str = address
        self._rk_partners: list[str] = list(partners)
        self._rk_consumers: list[SyncObjConsumer] = []
        for i, consumer in enumerate(consumers or ()):
            if not isinstance(consumer, SyncObjConsumer) and callable(getattr(consumer, "_consumer", None)):
                consumer = consumer._consumer()  # PySyncObj: a wrapper (ReplLockManager) hands over its part
            if not isinstance(consumer, SyncObjConsumer):
                raise TypeError(f"consumers must be SyncObjConsumer instances, got {type(consumer).__name__}")
            consumer._rk_attach(self, i)
            self._rk_consumers.append(consumer)
        self._rk_args = {"transport": transport, "log_store": log_store, "snapshotter": snapshotter}
        self._rk_node: Node | None = None
        self._rk_start_lock = threading.Lock()
        self._rk_started_at = time.monotonic()
        if self.__dict__.get("_rk_init_depth", 0) == 0:
            self._rk_finish_init()

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
        builder = (
            NodeBuilder(self._rk_address)
            .partners(self._rk_partners)
            .config(conf.node_config())
            .serializer(serializer)
            .state_machine(_ObjectStateMachine(self, serializer))
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
        if conf.autoTick:
            node.start()
        self._rk_node = node

    # -- calls ---------------------------------------------------------------------------

    def _rk_node_for_call(self) -> Node:
        node = self.__dict__.get("_rk_node")
        if node is None:
            raise RuntimeError(
                f"{type(self).__name__} is still being constructed: replicated methods can be called once "
                "__init__ returns (set initial state by plain assignment in __init__)"
            )
        if not node.started:
            with self._rk_start_lock:
                if not node.started:
                    node.start_manual()  # autoTick=False: PySyncObj queues calls until doTick()
        return node

    def _rk_submit(
        self, index: int, method: ReplicatedMethod, args: tuple[Any, ...], kwargs: dict[str, Any],
        timeout: float | None,
    ) -> concurrent.futures.Future[Any]:
        try:
            method.signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{method.func.__qualname__}(): {exc}") from None
        try:
            command = self._rk_serializer.dumps((index, method.name, args, kwargs))
        except SerializationError as exc:
            raise SerializationError(
                f"cannot replicate the call {method.func.__qualname__}(...): {exc}"
            ) from exc
        node = self._rk_node_for_call()
        if not self._rk_conf.commandsWaitLeader and node.leader is None:
            raise NoLeaderError("no leader is known and commandsWaitLeader is False")
        return node.submit(command, timeout)

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

    async def astart(self) -> None:
        """Run the node inside the running asyncio loop (``autoTick=False``);
        then use ``await obj.method.aio(...)``."""
        if self._rk_conf.autoTick:
            raise RuntimeError("astart() needs SyncObjConf(autoTick=False): this node runs its own thread")
        node = self._rk_node
        if node is None:
            raise RuntimeError("astart() called before construction finished")
        with self._rk_start_lock:
            if node.started:
                raise RuntimeError("the node already started (doTick() or a call before astart())")
            await node.astart()

    async def astop(self) -> None:
        """Stop a node running in this loop; pending calls fail with NodeStoppedError."""
        if self._rk_node is not None:
            await self._rk_node.astop()
        self._rk_destroy_consumers()

    def destroy(self) -> None:
        """Stop the node: pending calls fail with NodeStoppedError, the thread
        ends, the transport closes, consumers' ``_destroy()`` runs. Idempotent."""
        node = self.__dict__.get("_rk_node")
        if node is not None:
            node.stop()
        self._rk_destroy_consumers()

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

    # -- state of the node ----------------------------------------------------------------

    def get_node(self) -> Node:
        """The raftkit Node underneath (for status, metrics, leadership transfer)."""
        node = self.__dict__.get("_rk_node")
        if node is None:
            raise RuntimeError(f"{type(self).__name__} is still being constructed: it has no node yet")
        return node

    def status(self) -> dict[str, Any]:
        """raftkit's status dict (role, term, leader, indexes, peers...)."""
        node = self.get_node()
        status = node.status()
        status["self"] = self._rk_address
        status["partners"] = list(self._rk_partners)
        status["ready"] = self.is_ready()
        return status

    def getStatus(self) -> dict[str, Any]:  # noqa: N802 - PySyncObj's name
        """``status()`` plus PySyncObj's key names (state as 0/1/2, log_len...)."""
        s = self.status()
        s.update(
            {
                "state": pysyncobj_state(s["role"]),
                "has_quorum": s["leader"] is not None,
                "partner_nodes_count": len(self._rk_partners),
                "log_len": s["log_last_index"] - s["log_first_index"] + 1,
                "last_applied": s["applied_index"],
                "commit_idx": s["commit_index"],
                "raft_term": s["term"],
                "uptime": int(time.monotonic() - self._rk_started_at),
            }
        )
        return s

    get_status = getStatus

    def printStatus(self) -> None:  # noqa: N802 - PySyncObj's name
        for key, value in sorted(self.getStatus().items()):
            print(f"{key}: {value}")

    def get_leader(self) -> str | None:
        """The address of the leader this node knows, or None."""
        node = self.get_node()
        leader = node.leader
        return None if leader is None else node.peers.get(leader, leader)

    getLeader = _getLeader = get_leader  # noqa: N815 - PySyncObj's names

    def is_leader(self) -> bool:
        return self.get_node().is_leader

    _isLeader = is_leader  # noqa: N815

    def is_ready(self) -> bool:
        """True once this node has known a leader (PySyncObj's onReady moment)."""
        return self.get_node().wait_ready(0)

    isReady = _isReady = is_ready  # noqa: N815

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until ready; False on timeout."""
        return self.get_node().wait_ready(timeout)

    def waitReady(self, timeout: float | None = None) -> bool:  # noqa: N802
        return self.wait_ready(timeout)

    def waitBinded(self) -> None:  # noqa: N802 - PySyncObj's name
        """PySyncObj compatibility: the port is bound once the node started."""

    async def await_ready(self, timeout: float | None = None) -> bool:
        """``wait_ready`` for asyncio code: polls without blocking the loop."""
        node = self.get_node()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not node.wait_ready(0):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(node.config.tick_interval)
        return True

    def read_barrier(self, timeout: float | None = None, *, lease: bool = False) -> int:
        """Block until a read of this object's local state is linearizable:
        the leader confirmed its commit index (ReadIndex; ``lease=True``: a
        leader with a valid lease skips the round) and this node applied it.
        Returns that index; raises NoLeaderError, CommandTimeoutError or
        NodeStoppedError. Not from inside the node's own loop."""
        node = self.get_node()
        if node._in_loop():
            raise RuntimeError("a blocking read_barrier in the node's loop would deadlock: use aread_barrier")
        limit = node.config.command_timeout if timeout is None else timeout
        try:
            return node.read_barrier(limit, lease=lease).result(limit + 1.0)
        except concurrent.futures.TimeoutError:
            raise CommandTimeoutError(f"no read index within {limit:.1f}s") from None

    async def aread_barrier(self, timeout: float | None = None, *, lease: bool = False) -> int:
        """``read_barrier`` for asyncio code (never blocks the loop)."""
        return await self.get_node().aread_barrier(timeout, lease=lease)

    def force_log_compaction(self) -> concurrent.futures.Future[None]:
        """Snapshot now and compact the log; the Future completes when done."""
        return self.get_node().request_log_compaction()

    forceLogCompaction = force_log_compaction  # noqa: N815

    def addNodeToCluster(self, nodeName: str, callback: Any = None) -> None:  # noqa: N802, N803
        raise NotImplementedError("dynamic membership changes are not available yet, see issue: membership")

    removeNodeFromCluster = addNodeToCluster  # noqa: N815
