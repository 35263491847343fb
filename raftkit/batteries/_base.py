"""What every battery shares.

* ``Battery``: a ``SyncObjConsumer`` whose getters all go through one hook,
  ``_rk_read(mode, fn)``: ``"local"`` (the default; possibly stale on a
  follower, as in PySyncObj), ``"linearizable"`` (ReadIndex) or ``"lease"``
  (see docs/api.md, "Consistent reads").
* ``@reader``: marks a getter. ``obj.get(k)`` reads, ``obj.get(k,
  read=...)`` picks the consistency per call, ``await obj.get.aio(k)`` is
  the asyncio form.
* ``with_aio``: gives a client-side method (the lock manager's) an
  ``obj.method.aio(...)`` form, like replicated methods have.
* ``stable_key``: a total order that does not depend on hashing, for
  choices that must be the same on every node (``ReplSet.pop``).
"""

from __future__ import annotations

import functools
import reprlib
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

from raftkit.syncobj.consumer import SyncObjConsumer

__all__ = ["READ_MODES", "Battery", "ReadMode", "reader", "short_repr", "stable_key", "with_aio"]

T = TypeVar("T")
S = TypeVar("S")  # the battery class that defines a getter
P = ParamSpec("P")  # a getter's parameters after ``self``
R = TypeVar("R")  # what it returns
A = TypeVar("A")  # what the coroutine form of a ``with_aio`` method returns

ReadMode = Literal["local", "linearizable", "lease"]
READ_MODES: tuple[str, ...] = ("local", "linearizable", "lease")


def check_read_mode(mode: str) -> str:
    if mode not in READ_MODES:
        raise ValueError(f"read must be one of {', '.join(map(repr, READ_MODES))}; got {mode!r}")
    return mode


class Battery(SyncObjConsumer):
    """Base of raftkit's batteries: a consumer whose reads go through
    ``_rk_read`` (the single place where read consistency is decided)."""

    def __init__(self, *, read: ReadMode = "local") -> None:
        super().__init__()
        self._rk_read_mode = check_read_mode(read)

    def _rk_consumer_owner(self) -> Any:
        owner = self.__dict__.get("_rk_owner")
        if owner is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a SyncObj: no consistent reads")
        return owner

    def _rk_read(self, mode: str | None, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the local state once ``mode`` (or this battery's
        default) is satisfied: local reads need nothing; linearizable and
        lease reads first wait until this node has applied the leader's read
        index (``Node.read_barrier``)."""
        mode = self._rk_read_mode if mode is None else check_read_mode(mode)
        if mode != "local":
            self._rk_consumer_owner().read_barrier(lease=mode == "lease")
        return fn()

    async def _rk_aread(self, mode: str | None, fn: Callable[[], T]) -> T:
        """``_rk_read`` for asyncio callers: awaits the read index instead
        of blocking the loop."""
        mode = self._rk_read_mode if mode is None else check_read_mode(mode)
        if mode != "local":
            await self._rk_consumer_owner().aread_barrier(lease=mode == "lease")
        return fn()


class _Reader(Generic[S, P, R]):
    """Descriptor made by ``@reader``."""

    def __init__(self, func: Callable[Concatenate[S, P], R]) -> None:
        self.func = func
        functools.update_wrapper(self, func)  # type: ignore[arg-type, unused-ignore]  # not a callable

    @overload
    def __get__(self, obj: None, objtype: type[Any] | None = None) -> _Reader[S, P, R]: ...
    @overload
    def __get__(self, obj: S, objtype: type[Any] | None = None) -> _BoundReader[P, R]: ...
    def __get__(
        self, obj: S | None, objtype: type[Any] | None = None
    ) -> _Reader[S, P, R] | _BoundReader[P, R]:
        if obj is None:
            return self
        return _BoundReader(self.func, obj)


class _BoundReader(Generic[P, R]):
    __slots__ = ("_func", "_obj")

    def __init__(self, func: Callable[..., R], obj: Any) -> None:
        self._func = func
        self._obj: Battery = obj

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self._func.__doc__

    # A call without read= is checked against the getter's parameters; with
    # read= only the return type is (PEP 612 cannot add a keyword to P).
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(self, *args: Any, read: ReadMode | None, **kwargs: Any) -> R: ...
    def __call__(self, *args: Any, read: str | None = None, **kwargs: Any) -> R:  # type: ignore[misc]  # P never holds read
        return self._obj._rk_read(read, lambda: self._func(self._obj, *args, **kwargs))

    @overload
    async def aio(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    async def aio(self, *args: Any, read: ReadMode | None, **kwargs: Any) -> R: ...
    async def aio(self, *args: Any, read: str | None = None, **kwargs: Any) -> R:  # type: ignore[misc]  # as above
        """The read, awaitable from asyncio code."""
        return await self._obj._rk_aread(read, lambda: self._func(self._obj, *args, **kwargs))

    def __repr__(self) -> str:
        return f"<battery read {self._func.__qualname__} of {self._obj!r}>"


def reader(func: Callable[Concatenate[S, P], R]) -> _Reader[S, P, R]:
    """Mark a battery getter: it reads local state through ``_rk_read``,
    takes ``read=`` (reserved for the consistency mode) and has ``.aio``."""
    return _Reader(func)


class _WithAio(Generic[S, P, R, A]):
    def __init__(self, func: Callable[Concatenate[S, P], R], afunc: Callable[..., Awaitable[A]]) -> None:
        self.func = func
        self.afunc = afunc
        functools.update_wrapper(self, func)  # type: ignore[arg-type, unused-ignore]  # not a callable

    @overload
    def __get__(self, obj: None, objtype: type[Any] | None = None) -> _WithAio[S, P, R, A]: ...
    @overload
    def __get__(self, obj: S, objtype: type[Any] | None = None) -> _BoundWithAio[P, R, A]: ...
    def __get__(
        self, obj: S | None, objtype: type[Any] | None = None
    ) -> _WithAio[S, P, R, A] | _BoundWithAio[P, R, A]:
        if obj is None:
            return self
        return _BoundWithAio(self, obj)


class _BoundWithAio(Generic[P, R, A]):
    __slots__ = ("_method", "_obj")

    def __init__(self, method: _WithAio[Any, P, R, A], obj: Any) -> None:
        self._method = method
        self._obj = obj

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self._method.func.__doc__

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._method.func(self._obj, *args, **kwargs)

    def aio(self, *args: Any, **kwargs: Any) -> Awaitable[A]:
        """The call, awaitable from asyncio code (never blocks the loop)."""
        return self._method.afunc(self._obj, *args, **kwargs)


def with_aio(
    afunc: Callable[..., Awaitable[A]],
) -> Callable[[Callable[Concatenate[S, P], R]], _WithAio[S, P, R, A]]:
    """Pair a blocking-or-callback method with its coroutine form:
    ``obj.method(...)`` runs the method, ``await obj.method.aio(...)`` the coroutine."""
    return lambda func: _WithAio(func, afunc)


def stable_key(value: Any) -> tuple[Any, ...]:
    """A sort key that orders any mix of the values a serializer carries the
    same way in every process (``set`` iteration order depends on the
    per-process hash seed, so it cannot pick "an arbitrary element")."""
    if value is None:
        return (0,)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, (int, float)):
        return (2, 1) if value != value else (2, 0, value)  # NaN sorts after every number
    if isinstance(value, str):
        return (3, value)
    if isinstance(value, (bytes, bytearray)):
        return (4, bytes(value))
    if isinstance(value, tuple):
        return (5, tuple(stable_key(v) for v in value))
    if isinstance(value, frozenset):
        return (6, tuple(sorted(stable_key(v) for v in value)))
    return (7, type(value).__module__, type(value).__qualname__, repr(value))


def short_repr(value: Any) -> str:
    """A repr short enough for an error message."""
    return reprlib.repr(value)
