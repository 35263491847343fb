"""``@replicated`` / ``@replicated_sync``: the decorator that turns a
method into a logged call, and what calling it does.

Calling a decorated method does not run it: it appends ``(target, method
name, args, kwargs)`` to the Raft log of the SyncObj that owns the target
(encoded with the configured serializer), and every node runs it when the
entry commits. A replicated call has exactly one outcome, delivered in one
of four ways:

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

A method name may be defined several times with ``@replicated(ver=N)``
(PySyncObj's code versions, see ``raftkit.syncobj.versions``); the tables
here say which definitions a class has. The decorator never imports
``SyncObj``: a call reaches its owner through ``CallOwner``.

Types. ``ReplicatedMethod`` and ``BoundReplicated`` are generic in the
decorated method's parameters (a ``ParamSpec``) and return type, so a type
checker sees, for ``def add(self, x: int) -> int`` under ``@replicated``:

* ``obj.add(1)`` -> ``None`` (``@replicated_sync`` or ``sync=True`` in the
  decorator: ``int``; ``sync=flag``, a ``bool`` variable: ``int | None``),
  with the arguments checked against ``(x: int)``;
* ``obj.add(1, sync=True)`` -> ``int``; ``sync=False`` or ``callback=`` ->
  ``None``; a ``sync`` that is only known to be a ``bool`` -> ``int | None``;
* ``obj.add.submit(1)`` -> ``Future[int]``; ``await obj.add.aio(1)`` -> ``int``.

PEP 612 cannot add keyword-only parameters (``sync``, ``callback``,
``timeout``) to a ``ParamSpec``'s signature (mypy rejects ``*args: P.args,
sync: bool, **kwargs: P.kwargs``), so the forms that pass one of them are
overloads whose return type is exact but whose other arguments are not
checked. A plain call, ``.submit(...)`` and ``.aio(...)`` without
``timeout=`` are checked in full.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from raftkit.errors import CommandTimeoutError, RaftkitError, SerializationError
from raftkit.runtime.futures import CallbackOutcome, OnOutcome, wait_outcome
from raftkit.runtime.node import Node
from raftkit.syncobj.outcomes import FAIL_REASON, call_error, compat_error, fail_reason
from raftkit.syncobj.versions import check_version, collect, park

__all__ = [
    "BoundReplicated",
    "CallOwner",
    "ReplicatedMethod",
    "replicated",
    "replicated_sync",
]

log = logging.getLogger(__name__)

_SUCCESS = FAIL_REASON.SUCCESS  # a name: an enum member through its class costs 0.1 µs per callback
_WAIT_GRACE = 1.0  # a sync call waits this much past its deadline for the node's own verdict

S = TypeVar("S")  # the class that defines the method (its ``self``)
P = ParamSpec("P")  # the method's parameters after ``self``
R = TypeVar("R")  # what the method returns


class _AsyncDefault:
    """Type-level marker: calls without ``sync=`` return at once (``@replicated``)."""


class _SyncDefault:
    """Type-level marker: calls without ``sync=`` block (``@replicated_sync``)."""


class _EitherDefault:
    """Type-level marker: ``@replicated(sync=flag)`` with a flag only known at run time."""


# Which default a definition has; only checkers see it (never instantiated).
D = TypeVar("D", _AsyncDefault, _SyncDefault, _EitherDefault)

Callback = Callable[[Any, Any], object]
"""PySyncObj's ``callback(result, err)``."""


class CallOwner(Protocol):
    """The SyncObj whose log carries a replicated call (``SyncObj``
    implements it). A call's target names its owner with
    ``_rk_call_owner() -> (owner, consumer index or -1)``."""

    def _rk_node_for_call(self) -> Node: ...

    def _rk_submit(
        self,
        index: int,
        target: Any,
        method: ReplicatedMethod[Any, ..., Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        on_done: OnOutcome | CallbackOutcome | None = None,
    ) -> concurrent.futures.Future[Any] | None: ...


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
    except BaseException as exc:  # the node's error, or cancelled
        return _classify(None, exc)
    return _classify(value, None)


def _failure(value: Any, error: BaseException | None) -> tuple[BaseException, FAIL_REASON, bool] | None:
    """None for a success, else (exception, reason, whether it is a raftkit
    error that callers see in its SyncObjException form)."""
    if error is not None:
        if isinstance(error, RaftkitError):
            return error, fail_reason(error), True
        return error, FAIL_REASON.REQUEST_DENIED, False  # something unexpected
    if isinstance(value, _Raised):
        return value.exception, FAIL_REASON.METHOD_RAISED, False
    return None


def _classify(value: Any, error: BaseException | None) -> tuple[Any, BaseException | None, FAIL_REASON]:
    """(result, exception, reason) of a command's outcome."""
    failure = _failure(value, error)
    if failure is None:
        return value, None, FAIL_REASON.SUCCESS
    exc, reason, compat = failure
    return None, compat_error(exc) if compat and isinstance(exc, RaftkitError) else exc, reason


def _run_callback(callback: Callable[[Any, Any], Any], value: Any, error: BaseException | None) -> None:
    """Hand a command's outcome to a PySyncObj-style ``callback(result, err)``
    (the node calls this directly: no Future in between)."""
    failure = _failure(value, error)
    result: Any = value
    err: Any = FAIL_REASON.SUCCESS
    if failure is not None:  # its SyncObjException form is made only if the callback reads it
        exc, reason, compat = failure
        result, err = None, call_error(exc, reason, compat)
    try:
        callback(result, err)
    except Exception:
        log.exception("replicated call callback %r raised", callback)


class _CallbackOutcome(CallbackOutcome):
    """A PySyncObj ``callback(result, err)`` as the node's outcome sink
    (``Node.submit`` takes it as is): the outcome reaches the callback
    without a ``functools.partial`` and ``_run_callback`` in between."""

    __slots__ = ()

    def set_result(self, result: Any) -> None:
        if self._done:
            return
        self._done = True
        if isinstance(result, _Raised):
            _run_callback(self._fn, result, None)
            return
        fn: Callback = self._fn  # a PySyncObj callback: its err may be a FAIL_REASON
        try:
            fn(result, _SUCCESS)
        except Exception:
            log.exception("replicated call callback %r raised", self._fn)

    def _settle(self, result: Any, exc: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        _run_callback(self._fn, result, exc)


# -- the decorator ----------------------------------------------------------------------


def _positional_range(signature: inspect.Signature) -> tuple[int, float] | None:
    """How many positional arguments (after ``self``) a call may pass when
    it passes no keywords, if that alone decides whether it binds: the
    per-call check then costs a comparison, not ``Signature.bind``. None
    when a keyword-only parameter is required."""
    low, high = 0, 0.0
    for p in list(signature.parameters.values())[1:]:
        if p.kind is p.VAR_POSITIONAL:
            high = float("inf")
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            high += 1
            low += p.default is p.empty
        elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            return None
    return low, high


class ReplicatedMethod(Generic[S, P, R, D]):
    """What ``@replicated`` puts in the class: a descriptor whose bound
    form (``obj.method``) proposes calls instead of running them.

    ``ver`` is the code version this definition belongs to; the class
    attribute that survives the class body knows its same-name siblings
    (``versions``: ver -> definition), collected in ``__set_name__``."""

    versions: dict[int, ReplicatedMethod[Any, ..., Any, Any]]

    def __init__(
        self,
        func: Callable[Concatenate[S, P], R],
        *,
        sync: bool = False,
        timeout: float | None = None,
        ver: int = 0,
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
        self.positional = _positional_range(self.signature)
        self.versions = {self.ver: self}
        # (class, its newest definition) of the latest call (_newest_of); keeps one class alive.
        self.newest_for: tuple[type | None, _AnyMethod | None] = (None, None)
        functools.update_wrapper(self, func)
        park(self)  # until the class exists: a later same-name definition replaces this binding

    def __set_name__(self, owner: type, name: str) -> None:
        if len(self.versions) == 1:  # not grouped yet (the same object may be set in several classes)
            self.versions = collect(self)
        for method in self.versions.values():
            method.name = name
            method.versions = self.versions
        for ver in self.versions:  # PySyncObj's name_v0, name_v1 ...: the same method
            alias = f"{name}_v{ver}"
            if alias not in vars(owner):
                setattr(owner, alias, _VersionAlias(self, self.versions[ver]))

    @overload
    def __get__(self, obj: None, objtype: type[Any] | None = None) -> ReplicatedMethod[S, P, R, D]: ...
    @overload
    def __get__(self, obj: S, objtype: type[Any] | None = None) -> BoundReplicated[P, R, D]: ...
    def __get__(
        self, obj: S | None, objtype: type[Any] | None = None
    ) -> ReplicatedMethod[S, P, R, D] | BoundReplicated[P, R, D]:
        if obj is None:
            return self
        return BoundReplicated(self, obj)

    def __call__(self, obj: S, *args: Any, **kwargs: Any) -> Any:
        """``Class.method(obj, ...)``: the same as ``obj.method(...)``."""
        return BoundReplicated(self, obj)(*args, **kwargs)

    def __repr__(self) -> str:
        ver = f" ver={self.ver}" if self.ver or len(self.versions) > 1 else ""
        return f"<replicated method {self.func.__qualname__}{ver}>"


class _VersionAlias:
    """``obj.name_v1`` (PySyncObj names each definition so): calls the
    replicated method ``name``, which runs the version in force; with
    ``_doApply=True``, runs this very definition here (as PySyncObj does)."""

    __slots__ = ("_method", "_exact")

    def __init__(self, method: _AnyMethod, exact: _AnyMethod) -> None:
        self._method = method
        self._exact = exact

    def __get__(self, obj: Any, objtype: type[Any] | None = None) -> Any:
        return self._method if obj is None else _BoundVersion(self._method, obj, self._exact)


class BoundReplicated(Generic[P, R, D]):
    """``obj.method``: call it (PySyncObj style), ``.submit()`` it for a
    Future, or ``await .aio()`` it."""

    __slots__ = ("_method", "_target")

    def __init__(self, method: ReplicatedMethod[Any, P, R, D], target: Any) -> None:
        # Annotated here, not in the class body, where mypy would take it for a
        # descriptor; mypy 1.8 still checks this assignment as one (ignored).
        self._method: ReplicatedMethod[Any, P, R, D] = method  # type: ignore[assignment, unused-ignore]
        self._target: Any = target

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

    def _newest(self) -> _AnyMethod:
        """The newest definition: its sync=/timeout= defaults are the call's
        (the calling convention of the code being deployed)."""
        return _newest_of(type(self._target), self._method)

    # The overloads, first match wins: a plain call (arguments checked
    # against the method's), then the forms with a reserved keyword, whose
    # other arguments cannot be checked (see the module docstring).
    # mypy 1.8 calls some of them overlapping (later versions do not): the
    # order is deliberate, a literal sync= or a callback= wins over a plain bool.
    @overload
    def __call__(self: BoundReplicated[P, R, _SyncDefault], *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(self: BoundReplicated[P, R, _AsyncDefault], *args: P.args, **kwargs: P.kwargs) -> None: ...
    @overload
    def __call__(
        self: BoundReplicated[P, R, _EitherDefault], *args: P.args, **kwargs: P.kwargs
    ) -> R | None: ...
    @overload
    def __call__(  # type: ignore[overload-overlap, unused-ignore]
        self, *args: Any, sync: Literal[True], callback: None = None, timeout: float | None = None,
        **kwargs: Any,
    ) -> R: ...
    @overload
    def __call__(  # type: ignore[overload-overlap, unused-ignore]
        self, *args: Any, sync: bool | None = None, callback: Callback, timeout: float | None = None,
        **kwargs: Any,
    ) -> None: ...
    @overload
    def __call__(  # type: ignore[overload-overlap, unused-ignore]
        self, *args: Any, sync: Literal[False], callback: None = None, timeout: float | None = None,
        **kwargs: Any,
    ) -> None: ...
    @overload
    def __call__(
        self: BoundReplicated[P, R, _SyncDefault], *args: Any, timeout: float | None, **kwargs: Any
    ) -> R: ...
    @overload
    def __call__(
        self: BoundReplicated[P, R, _AsyncDefault], *args: Any, timeout: float | None, **kwargs: Any
    ) -> None: ...
    @overload
    def __call__(
        self: BoundReplicated[P, R, _EitherDefault], *args: Any, timeout: float | None, **kwargs: Any
    ) -> R | None: ...
    @overload
    def __call__(
        self, *args: Any, sync: bool, callback: None = None, timeout: float | None = None, **kwargs: Any
    ) -> R | None: ...
    # misc: mypy wants the implementation to take every keyword P might hold,
    # but P never holds sync/callback/timeout (ReplicatedMethod refuses them).
    def __call__(  # type: ignore[misc]
        self,
        *args: Any,
        sync: bool | None = None,
        callback: Callback | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        target = self._target
        if kwargs and kwargs.pop("_doApply", False):
            # PySyncObj's hook: run the method here, now, without replicating
            # it (tests and local replays of a battery use it).
            return _newest_of(type(target), self._method).func(target, *args, **kwargs)
        locate = getattr(type(target), "_rk_call_owner", None)  # _owner_of, without a call per call
        owner, index = _owner_of(target) if locate is None else locate(target)
        node = owner._rk_node_for_call()
        if callback is not None:
            refused = node.refusal()
            if refused is not None:
                # Under overload most calls end here: refused before anything
                # is made for them, the caller's thread competes with the loop.
                # (_run_callback's work, for a raftkit error known to be one.)
                try:
                    callback(None, call_error(refused, fail_reason(refused), True))
                except Exception:
                    log.exception("replicated call callback %r raised", callback)
                return None
        m = _newest_of(type(target), self._method)
        if timeout is None:
            timeout = m.timeout_default
        if callback is not None:  # PySyncObj: a callback makes the call asynchronous
            # The common case, kept short: no partial or lambda per call, and
            # the outcome goes straight from the node to ``callback``.
            outcome = _CallbackOutcome(callback)
            try:
                owner._rk_submit(index, target, m, args, kwargs, timeout, outcome)
            except SerializationError as exc:
                raise compat_error(exc) from None
            except RaftkitError as exc:
                outcome.set_exception(exc)
            return None
        return _deliver(
            node, m.name,
            lambda on_done: owner._rk_submit(index, target, m, args, kwargs, timeout, on_done),
            sync=m.sync_default if sync is None else sync, callback=None, timeout=timeout,
        )

    @overload
    def submit(self, *args: P.args, **kwargs: P.kwargs) -> concurrent.futures.Future[R]: ...
    @overload
    def submit(self, *args: Any, timeout: float | None, **kwargs: Any) -> concurrent.futures.Future[R]: ...
    def submit(  # type: ignore[misc]  # P never holds timeout (see __call__)
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> concurrent.futures.Future[R]:
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
        assert raw is not None  # only a call with on_done gets no Future
        out: concurrent.futures.Future[R] = concurrent.futures.Future()

        def transfer(fut: concurrent.futures.Future[Any]) -> None:
            result, exc, _ = _outcome(fut)
            if exc is None:
                out.set_result(result)
            else:
                out.set_exception(exc)

        raw.add_done_callback(transfer)
        return out

    @overload
    async def aio(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    async def aio(self, *args: Any, timeout: float | None, **kwargs: Any) -> R: ...
    async def aio(  # type: ignore[misc]  # P never holds timeout (see __call__)
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> R:
        """``await obj.method.aio(...)``: the outcome, without blocking the
        caller's event loop (which may also be the node's own)."""
        return await asyncio.wrap_future(self.submit(*args, timeout=timeout, **kwargs))


def _deliver(
    node: Node,
    what: str,
    propose: Callable[[OnOutcome | None], concurrent.futures.Future[Any] | None],
    *,
    sync: bool,
    callback: Callable[[Any, Any], Any] | None,
    timeout: float | None,
) -> Any:
    """Propose a logged command and hand its outcome over as the caller
    asked: nothing (fire and forget), ``callback(result, err)``, or (sync)
    the return value / the exception. ``propose(on_done)`` submits it,
    with ``on_done`` in place of a Future when there is a callback."""
    if sync and node._in_loop():
        raise RuntimeError(
            f"{what}(sync=True) from inside the node's own event loop would deadlock; "
            "use callback=, or await .aio() in asyncio code"
        )
    if callback is not None:
        on_done = functools.partial(_run_callback, callback)
        try:
            propose(on_done)
        except RaftkitError as exc:
            if isinstance(exc, SerializationError):
                raise compat_error(exc) from None
            on_done(None, exc)
        return None
    try:
        future = propose(None)
    except RaftkitError as exc:
        raise compat_error(exc) from None
    assert future is not None
    if not sync:
        return None
    limit = (node.config.command_timeout if timeout is None else timeout) + _WAIT_GRACE
    try:
        late = lambda: CommandTimeoutError(f"{what}: no outcome within {limit:.1f}s")  # noqa: E731
        value = wait_outcome(future, limit, late)
    except RaftkitError as exc:
        raise compat_error(exc) from None
    return _unwrap(value)


_Method = Callable[Concatenate[S, P], R]  # a method as written in the class body

# overload-overlap: a literal sync= picks one of the first four on purpose;
# the last two, for a plain bool, only catch what they leave.


@overload
def replicated(  # type: ignore[overload-overlap]
    func: _Method[S, P, R], *, sync: Literal[False] = False, timeout: float | None = None, ver: int = 0
) -> ReplicatedMethod[S, P, R, _AsyncDefault]: ...
@overload
def replicated(  # type: ignore[overload-overlap]
    func: _Method[S, P, R], *, sync: Literal[True], timeout: float | None = None, ver: int = 0
) -> ReplicatedMethod[S, P, R, _SyncDefault]: ...
@overload
def replicated(  # type: ignore[overload-overlap]
    func: None = None, *, sync: Literal[False] = False, timeout: float | None = None, ver: int = 0
) -> Callable[[_Method[S, P, R]], ReplicatedMethod[S, P, R, _AsyncDefault]]: ...
@overload
def replicated(  # type: ignore[overload-overlap]
    func: None = None, *, sync: Literal[True], timeout: float | None = None, ver: int = 0
) -> Callable[[_Method[S, P, R]], ReplicatedMethod[S, P, R, _SyncDefault]]: ...
@overload
def replicated(
    func: _Method[S, P, R], *, sync: bool, timeout: float | None = None, ver: int = 0
) -> ReplicatedMethod[S, P, R, _EitherDefault]: ...
@overload
def replicated(
    func: None = None, *, sync: bool, timeout: float | None = None, ver: int = 0
) -> Callable[[_Method[S, P, R]], ReplicatedMethod[S, P, R, _EitherDefault]]: ...
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


@overload
def replicated_sync(
    func: _Method[S, P, R], *, timeout: float | None = None, ver: int = 0
) -> ReplicatedMethod[S, P, R, _SyncDefault]: ...
@overload
def replicated_sync(
    func: None = None, *, timeout: float | None = None, ver: int = 0
) -> Callable[[_Method[S, P, R]], ReplicatedMethod[S, P, R, _SyncDefault]]: ...
def replicated_sync(
    func: Callable[..., Any] | None = None, *, timeout: float | None = None, ver: int = 0
) -> Any:
    """``@replicated`` whose calls block by default (``sync=False`` still works)."""
    return replicated(func, sync=True, timeout=timeout, ver=ver)


_AnyMethod = ReplicatedMethod[Any, ..., Any, Any]
_Versions = dict[int, _AnyMethod]  # ver -> definition of one method name
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


def _implementations(cls: type, method: _AnyMethod) -> _Versions:
    return _replicated_methods(cls).get(method.name) or method.versions


_NEWEST: weakref.WeakKeyDictionary[type, dict[_AnyMethod, _AnyMethod]] = (
    weakref.WeakKeyDictionary())


class _BoundVersion(BoundReplicated[..., Any, Any]):
    """``obj.name_vN``: ``name`` for calls, definition N for ``_doApply``."""

    __slots__ = ("_exact",)

    def __init__(self, method: _AnyMethod, target: Any, exact: _AnyMethod) -> None:
        super().__init__(method, target)
        self._exact = exact

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.pop("_doApply", False):
            return self._exact.func(self._target, *args, **kwargs)
        return super().__call__(*args, **kwargs)


def _newest_of(cls: type, method: _AnyMethod) -> _AnyMethod:
    """The newest definition of ``method``'s name for ``cls`` (cached: asked per call)."""
    last_cls, last_newest = method.newest_for
    if last_cls is cls and last_newest is not None:  # one class calls, mostly: no weak-keyed lookup
        return last_newest
    by_method = _NEWEST.get(cls)
    if by_method is None:
        by_method = _NEWEST.setdefault(cls, {})
    newest = by_method.get(method)
    if newest is None:
        impls = _implementations(cls, method)
        newest = by_method[method] = impls[max(impls)]
    method.newest_for = (cls, newest)  # one tuple: read whole by any thread
    return newest


def _supported_version(classes: Iterable[type]) -> int:
    """The highest code version these classes' code defines."""
    return max((v for cls in classes for vers in _replicated_methods(cls).values() for v in vers), default=0)


def _owner_of(target: Any) -> tuple[CallOwner, int]:
    # Asked of the target's class: SyncObj and SyncObjConsumer answer (the
    # decorator cannot import them, they import it); anything else is not a target.
    locate = getattr(type(target), "_rk_call_owner", None)
    if locate is None:
        raise TypeError(
            f"replicated methods belong to SyncObj or SyncObjConsumer subclasses, not {type(target)}"
        )
    found: tuple[CallOwner, int] = locate(target)
    return found
