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

Zero-downtime upgrades (PySyncObj's code versions): a method name may be
defined several times with ``@replicated(ver=N)``; the cluster's code
version is replicated state changed by ``set_code_version(N)`` (logged like
a call), and each call runs the implementation with the highest
``ver <= `` the version in force at its log index (see ``raftkit.syncobj.versions``).
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
from raftkit.runtime.futures import wait_outcome
from raftkit.runtime.node import Node
from raftkit.serializers.base import Serializer
from raftkit.state_machines.base import SnapshotWriter, StateMachine
from raftkit.storage.log_store import LogStore
from raftkit.storage.snapshotter import Snapshotter
from raftkit.syncobj.conf import SyncObjConf, pysyncobj_state
from raftkit.syncobj.outcomes import (
    FAIL_REASON,
    CallError,
    FailReason,
    SyncObjException,
    compat_error,
    fail_reason,
)
from raftkit.syncobj.versions import (
    CodeVersionError,
    UnsupportedCodeVersionError,
    check_version,
    collect,
    discard_strays,
    park,
    select_version,
)
from raftkit.transports.base import Transport

__all__ = [
    "FAIL_REASON",
    "CallError",
    "CodeVersionError",
    "FailReason",
    "SyncObj",
    "SyncObjConf",
    "SyncObjConsumer",
    "SyncObjException",
    "UnsupportedCodeVersionError",
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
    form (``obj.method``) proposes calls instead of running them.

    ``ver`` is the code version this definition belongs to; the class
    attribute that survives the class body knows its same-name siblings
    (``versions``: ver -> definition), collected in ``__set_name__``."""

    def __init__(
        self, func: Callable[..., Any], *, sync: bool = False, timeout: float | None = None, ver: int = 0
    ) -> None:
        if not callable(func):
            raise TypeError(f"@replicated decorates a method, got {type(func).__name__}")
        self.func = func
        self.name = func.__name__
        self.ver = check_version(ver, f"@replicated(ver=...) of {getattr(func, '__qualname__', self.name)}")
        self.sync_default = sync
        self.timeout_default = timeout
        self.signature = inspect.signature(func)
        reserved = {"sync", "callback", "timeout"} & set(self.signature.parameters)
        if reserved:
            raise TypeError(
                f"replicated method {func.__qualname__} has parameter(s) {sorted(reserved)}, which are "
                "reserved for the call itself (sync=, callback=, timeout=); rename them"
            )
        self.versions: dict[int, ReplicatedMethod] = {self.ver: self}
        functools.update_wrapper(self, func)  # type: ignore[arg-type]
        park(self)  # until the class exists: a later same-name definition replaces this binding

    def __set_name__(self, owner: type, name: str) -> None:
        if len(self.versions) == 1:  # not grouped yet (the same object may be set in several classes)
            self.versions = collect(self)
        for method in self.versions.values():
            method.name = name
            method.versions = self.versions

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return BoundReplicated(self, obj)

    def __call__(self, obj: Any, *args: Any, **kwargs: Any) -> Any:
        """``Class.method(obj, ...)``: the same as ``obj.method(...)``."""
        return BoundReplicated(self, obj)(*args, **kwargs)

    def __repr__(self) -> str:
        ver = f" ver={self.ver}" if self.ver or len(self.versions) > 1 else ""
        return f"<replicated method {self.func.__qualname__}{ver}>"


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

    def _newest(self) -> ReplicatedMethod:
        """The newest definition: its sync=/timeout= defaults are the call's
        (the calling convention of the code being deployed)."""
        impls = _implementations(type(self._target), self._method)
        return impls[max(impls)]

    def __call__(
        self,
        *args: Any,
        sync: bool | None = None,
        callback: Callable[[Any, Any], Any] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        m = self._newest()
        sync = m.sync_default if sync is None else sync
        timeout = m.timeout_default if timeout is None else timeout
        if callback is not None:
            sync = False  # PySyncObj: a callback makes the call asynchronous
        owner, index = _owner_of(self._target)
        node = owner._rk_node_for_call()
        return _deliver(
            node, m.name, lambda: owner._rk_submit(index, self._target, m, args, kwargs, timeout),
            sync=sync, callback=callback, timeout=timeout,
        )

    def submit(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        """Propose the call; the Future gets the method's return value, the
        exception it raised, or a raftkit error. Immediate refusals
        (QueueFullError, NodeStoppedError, SerializationError) raise here."""
        if "sync" in kwargs or "callback" in kwargs:
            raise TypeError("submit() and aio() take neither sync= nor callback=")
        m = self._newest()
        owner, index = _owner_of(self._target)
        owner._rk_node_for_call()
        try:
            raw = owner._rk_submit(
                index, self._target, m, args, kwargs, m.timeout_default if timeout is None else timeout
            )
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


def _deliver(
    node: Node,
    what: str,
    propose: Callable[[], concurrent.futures.Future[Any]],
    *,
    sync: bool,
    callback: Callable[[Any, Any], Any] | None,
    timeout: float | None,
) -> Any:
    """Propose a logged command and hand its outcome over as the caller
    asked: nothing (fire and forget), ``callback(result, err)``, or (sync)
    the return value / the exception."""
    if sync and node._in_loop():
        raise RuntimeError(
            f"{what}(sync=True) from inside the node's own event loop would deadlock; "
            "use callback=, or await .aio() in asyncio code"
        )
    try:
        future = propose()
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
        late = lambda: CommandTimeoutError(f"{what}: no outcome within {limit:.1f}s")  # noqa: E731
        value = wait_outcome(future, limit, late)
    except RaftkitError as exc:
        raise compat_error(exc) from None
    return _unwrap(value)


def replicated(
    func: Callable[..., Any] | None = None, *, sync: bool = False, timeout: float | None = None, ver: int = 0
) -> Any:
    """Mark a method that changes replicated state: ``@replicated`` or
    ``@replicated(sync=True, timeout=5)`` (defaults for its calls).

    ``ver=N`` (an int >= 0, default 0) makes this definition the method's
    implementation from cluster code version N on: define the same name
    again with a higher ``ver`` to change what it does in a rolling upgrade,
    then switch with ``SyncObj.set_code_version(N)``."""
    check_version(ver, "@replicated(ver=...)")  # at decoration time, not at the first call
    if func is None:
        return lambda f: ReplicatedMethod(f, sync=sync, timeout=timeout, ver=ver)
    return ReplicatedMethod(func, sync=sync, timeout=timeout, ver=ver)


def replicated_sync(
    func: Callable[..., Any] | None = None, *, timeout: float | None = None, ver: int = 0
) -> Any:
    """``@replicated`` whose calls block by default (``sync=False`` still works)."""
    return replicated(func, sync=True, timeout=timeout, ver=ver)


_Versions = dict[int, ReplicatedMethod]  # ver -> definition of one method name
_METHODS: weakref.WeakKeyDictionary[type, dict[str, _Versions]] = weakref.WeakKeyDictionary()


def _replicated_methods(cls: type) -> dict[str, _Versions]:
    """Name -> {ver: definition} for ``cls``: only these names may be run
    from the log (a command cannot call anything else). A subclass's
    definitions replace its bases' of the same ver and add new vers (so
    ``class V1(V0)`` can add ``@replicated(ver=1)`` implementations); a
    plain attribute of that name removes the method."""
    found = _METHODS.get(cls)
    if found is None:
        found = {}
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                if isinstance(attr, ReplicatedMethod):
                    found[name] = {**found.get(name, {}), **attr.versions}
                else:
                    found.pop(name, None)
        _METHODS[cls] = found
    return found


def _implementations(cls: type, method: ReplicatedMethod) -> _Versions:
    return _replicated_methods(cls).get(method.name) or method.versions


def _supported_version(classes: Iterable[type]) -> int:
    """The highest code version these classes' code defines."""
    return max((v for cls in classes for vers in _replicated_methods(cls).values() for v in vers), default=0)


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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        discard_strays(cls)

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


_SYSTEM = -2  # the target of raftkit's own logged commands (set_code_version)
_SET_CODE_VERSION = "set_code_version"


class _ObjectStateMachine(StateMachine):
    """Runs logged calls on the SyncObj and its consumers; snapshots them.

    It also holds the cluster's code version (replicated state: changed by
    logged ``set_code_version`` entries, carried in snapshots) and refuses
    to apply anything once that version is beyond this process's code."""

    def __init__(self, owner: SyncObj, serializer: Serializer) -> None:
        self._owner = owner
        self._serializer = serializer
        self.serializer = serializer  # declared: the node checks it against the transport
        self.code_version = 0
        self.supported = _supported_version([type(owner), *(type(c) for c in owner._rk_consumers)])
        self.version_error: str | None = None  # set once this process cannot follow the cluster
        self._applied_mark = 0

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

    @property  # type: ignore[override]
    def applied_index(self) -> int:
        """The last entry ``apply_entry`` finished. Reporting it is what lets
        this state machine stop the node's applying: an ``apply_entry`` that
        raises without advancing it is "not applied", so the node keeps the
        entry and retries it (``raftkit.runtime.applier``) instead of moving on.
        It is 0 at start-up, as the state lives in memory."""
        return self._applied_mark

    def apply_entry(self, index: int, command: bytes) -> Any:
        token = _ENTRY_INDEX.set(index)
        try:
            result = self.apply(command)
        finally:
            _ENTRY_INDEX.reset(token)
        self._applied_mark = index
        return result

    def apply(self, command: bytes) -> Any:
        self._check_runnable()
        try:
            return self._call(command)
        except UnsupportedCodeVersionError:
            raise  # not an outcome: this replica must stop here rather than diverge
        except Exception as exc:  # the call's outcome, the same on every node
            log.debug("replicated call raised %r", exc)
            return _Raised(exc)

    def _call(self, command: bytes) -> Any:
        decoded = self._serializer.loads(command)
        if not isinstance(decoded, (list, tuple)) or len(decoded) != 4:
            raise CodecError("malformed replicated call: expected (target, method, args, kwargs)")
        index, name, args, kwargs = decoded
        if index == _SYSTEM:
            return self._system(name, args)
        target = self._target(index)
        impls = _replicated_methods(type(target)).get(name) if isinstance(name, str) else None
        if not impls:
            raise LookupError(f"{type(target).__name__} has no replicated method {name!r}")
        method = select_version(impls, self.code_version)
        if method is None:  # every definition is newer than the cluster: the same verdict on every node
            raise LookupError(
                f"{type(target).__name__}.{name} has no implementation for code version {self.code_version} "
                f"(it is defined for ver {', '.join(map(str, impls))}); switch the cluster with "
                f"set_code_version({min(impls)}) once every node runs that code"
            )
        return method.func(target, *args, **kwargs)

    # -- code versions ---------------------------------------------------------------------

    def _system(self, name: Any, args: Any) -> Any:
        if name != _SET_CODE_VERSION or not isinstance(args, (list, tuple)) or len(args) != 1:
            raise LookupError(f"unknown raftkit command {name!r}")
        version = check_version(args[0], "code version")
        if version > self.supported:
            raise self._unsupported(version)  # nothing changed: the node keeps this entry and retries it
        old = self.code_version
        if version < old:  # two racing switches: the later, lower one loses, on every node alike
            raise CodeVersionError(
                f"the cluster already runs code version {old}; it cannot go back to {version}"
            )
        if version != old:
            self.code_version = version
            log.info("%s: cluster code version %d -> %d", self._owner._rk_address, old, version)
            self._owner._rk_code_version_changed(old, version)
        return version

    def _unsupported(self, version: int) -> UnsupportedCodeVersionError:
        """The error that stops this replica (the node shows it in
        status()["error"]); logged once, not at every retry."""
        exc = UnsupportedCodeVersionError(version, self.supported)
        if self.version_error is None:
            self.version_error = str(exc)
            log.error("%s: %s", self._owner._rk_address, exc)
        return exc

    def _check_runnable(self) -> None:
        if self.code_version > self.supported:  # a snapshot brought the newer version
            raise self._unsupported(self.code_version)

    def _restore_version(self, state: dict[str, Any]) -> None:
        """Take the snapshot's code version. A version beyond this code is
        accepted (the state itself is right) but nothing more is applied."""
        self.code_version = check_version(state.get("code_version", 0), "the snapshot's code version")
        if self.code_version > self.supported:
            self._unsupported(self.code_version)

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        owner = self._owner
        state = {
            "self": owner._serialize(),
            "consumers": [c._serialize() for c in owner._rk_consumers],
            "code_version": self.code_version,
        }
        return self._serializer.dumps(state)

    def restore(self, data: bytes) -> None:
        state = self._serializer.loads(data)
        self._check_count(state)
        self._owner._deserialize(state["self"])
        for consumer, part in zip(self._owner._rk_consumers, state["consumers"], strict=True):
            consumer._deserialize(part)
        self._restore_version(state)

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
                "code_version": self.code_version,
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
        self._restore_version(state)


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
        self._rk_sm = _ObjectStateMachine(self, serializer)
        builder = (
            NodeBuilder(self._rk_address)
            .partners(self._rk_partners)
            .config(conf.node_config())
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
        self,
        index: int,
        target: Any,
        method: ReplicatedMethod,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> concurrent.futures.Future[Any]:
        self._rk_check_arguments(target, method, args, kwargs)
        try:
            command = self._rk_serializer.dumps((index, method.name, args, kwargs))
        except SerializationError as exc:
            raise SerializationError(
                f"cannot replicate the call {method.func.__qualname__}(...): {exc}"
            ) from exc
        return self._rk_propose(command, timeout)

    def _rk_check_arguments(
        self, target: Any, method: ReplicatedMethod, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Refuse at once arguments that no implementation the cluster may
        still run accepts: the one in force at this node's code version, or
        a newer one (the cluster may have switched already; it never goes
        back). The call itself carries only the name: the version in force
        where it lands in the log picks the implementation."""
        impls = _implementations(type(target), method)
        sm: _ObjectStateMachine = self._rk_sm
        current = select_version(impls, sm.code_version)
        floor = current.ver if current is not None else -1
        candidates = [impls[v] for v in sorted(impls, reverse=True) if v >= floor]
        first_error: TypeError | None = None
        for impl in candidates:
            try:
                impl.signature.bind(None, *args, **kwargs)
                return
            except TypeError as exc:
                first_error = first_error or exc
        shown = current or candidates[0]
        versions = f" (ver {shown.ver}, code version {sm.code_version})" if len(impls) > 1 else ""
        raise TypeError(f"{shown.func.__qualname__}(){versions}: {first_error}") from None

    def _rk_propose(self, command: bytes, timeout: float | None) -> concurrent.futures.Future[Any]:
        node = self._rk_node_for_call()
        if not self._rk_conf.commandsWaitLeader and node.leader is None:
            raise NoLeaderError("no leader is known and commandsWaitLeader is False")
        return node.submit(command, timeout)

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
        command = self._rk_serializer.dumps((_SYSTEM, _SET_CODE_VERSION, [version], {}))
        return _deliver(
            node, f"set_code_version({version})", lambda: self._rk_propose(command, timeout),
            sync=sync, callback=callback, timeout=timeout,
        )

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
        admin = self.__dict__.get("_rk_admin")
        if admin is not None:
            admin.stop()
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

    # -- cluster operations (raftkit.runtime.membership_ops; docs/operations.md) -----------------------

    def addNodeToCluster(  # noqa: N802 - PySyncObj's name
        self, nodeName: str, callback: Callable[[Any, Any], Any] | None = None  # noqa: N803
    ) -> None:
        """Add ``nodeName`` (its address): as a learner first, a voter once it
        has caught up. Start the new node with every member as its partners.
        With ``callback(None, err)`` it runs in the background, as in
        PySyncObj; without, it blocks and raises on failure."""
        self._rk_cluster_op(lambda: self.get_node().add_member(nodeName), callback)

    def removeNodeFromCluster(  # noqa: N802 - PySyncObj's name
        self, nodeName: str, callback: Callable[[Any, Any], Any] | None = None  # noqa: N803
    ) -> None:
        """Remove ``nodeName`` from the cluster (see ``addNodeToCluster``)."""
        self._rk_cluster_op(lambda: self.get_node().remove_member(nodeName), callback)

    add_node_to_cluster = addNodeToCluster
    remove_node_from_cluster = removeNodeFromCluster

    def transfer_leadership(self, to: str | None = None, *, timeout: float = 10.0) -> str:
        """Hand leadership to ``to`` (None: the most up-to-date voter); returns the new leader."""
        return self.get_node().transfer_leadership(to, timeout=timeout)

    def _rk_cluster_op(self, op: Callable[[], None], callback: Callable[[Any, Any], Any] | None) -> None:
        if callback is None:
            op()
            return

        def run() -> None:
            try:
                op()
            except RaftkitError as exc:
                callback(None, fail_reason(exc))
            else:
                callback(None, FAIL_REASON.SUCCESS)

        threading.Thread(target=run, name="raftkit-membership", daemon=True).start()

    def serve_admin(
        self, address: str, *, password: str | None = None, ssl_context: Any = None
    ) -> Any:
        """Serve ``raftkit admin`` on ``address`` (``"host:port"``), with the
        cluster password (default: this object's ``SyncObjConf.password``) or
        a TLS server context requiring client certificates. Besides status,
        membership, transfer and snapshot, it serves ``set-version``. Stopped
        by ``destroy()``. Returns the started ``raftkit.admin.AdminServer``."""
        from raftkit.admin.server import AdminServer  # only for objects that serve it

        password = password if password is not None else self._rk_conf.password
        server = AdminServer(
            self.get_node(),
            address,
            password=password,
            ssl_context=ssl_context,
            handlers={"set-version": self._rk_admin_set_version},
        )
        server.start()
        self._rk_admin = server
        return server

    def _rk_admin_set_version(self, args: dict[str, Any]) -> dict[str, Any]:
        version = self.set_code_version(int(args["version"]), timeout=float(args.get("timeout", 30.0)))
        return {"code_version": version}

    def status(self) -> dict[str, Any]:
        """raftkit's status dict (role, term, leader, indexes, peers...)."""
        node = self.get_node()
        status = node.status()
        status["self"] = self._rk_address
        status["partners"] = list(self._rk_partners)
        status["ready"] = self.is_ready()
        sm: _ObjectStateMachine = self._rk_sm
        status["code_version"] = sm.code_version
        status["code_version_supported"] = sm.supported
        if sm.version_error is not None and not status.get("error"):
            status["error"] = sm.version_error  # e.g. restored at a newer version, nothing to apply yet
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
                "self_code_version": s["code_version_supported"],
                "enabled_code_version": s["code_version"],
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
        return wait_outcome(
            node.read_barrier(limit, lease=lease),
            limit + 1.0,
            lambda: CommandTimeoutError(f"no read index within {limit:.1f}s"),
        )

    async def aread_barrier(self, timeout: float | None = None, *, lease: bool = False) -> int:
        """``read_barrier`` for asyncio code (never blocks the loop)."""
        return await self.get_node().aread_barrier(timeout, lease=lease)

    def force_log_compaction(self) -> concurrent.futures.Future[None]:
        """Snapshot now and compact the log; the Future completes when done."""
        return self.get_node().request_log_compaction()

    forceLogCompaction = force_log_compaction  # noqa: N815

