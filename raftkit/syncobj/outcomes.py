"""How a replicated call's outcome is reported, in PySyncObj's vocabulary
and raftkit's: ``FAIL_REASON`` codes for callbacks, ``CallError`` (an int
code that also carries the exception) and ``SyncObjException`` (so
``except SyncObjException`` still catches raftkit's errors)."""

from __future__ import annotations

import enum
import threading
from typing import Any

from raftkit.errors import (
    CommandTimeoutError,
    LeadershipLostError,
    NodeStoppedError,
    NoLeaderError,
    NotLeaderError,
    ProposalDroppedError,
    QueueFullError,
    RaftkitError,
)
from raftkit.runtime.futures import wait_outcome  # lives in the runtime now; listed here since 0.1

__all__ = [
    "FAIL_REASON",
    "CallError",
    "FailReason",
    "SyncObjException",
    "compat_error",
    "fail_reason",
    "wait_outcome",
]


class FAIL_REASON(enum.IntEnum):  # noqa: N801 - PySyncObj's name
    """Why a call failed, as passed to PySyncObj-style callbacks. Values 0-6
    are PySyncObj's; 7-9 are raftkit's (PySyncObj had no such outcome)."""

    SUCCESS = 0
    QUEUE_FULL = 1  # QueueFullError
    MISSING_LEADER = 2  # NoLeaderError: no leader known before the deadline
    DISCARDED = 3  # LeadershipLostError: another entry took the command's place
    NOT_LEADER = 4  # NotLeaderError
    LEADER_CHANGED = 5  # (PySyncObj's; raftkit reports DISCARDED)
    REQUEST_DENIED = 6  # the leader refused it (e.g. a leadership transfer is running)
    TIMEOUT = 7  # CommandTimeoutError: no outcome in time; it may still be applied
    STOPPED = 8  # NodeStoppedError
    METHOD_RAISED = 9  # the replicated method raised: err.exception is what it raised


FailReason = FAIL_REASON


def fail_reason(exc: BaseException) -> FAIL_REASON:
    """The FAIL_REASON of a raftkit error (METHOD_RAISED for anything else)."""
    if isinstance(exc, QueueFullError):
        return FAIL_REASON.QUEUE_FULL
    if isinstance(exc, NoLeaderError):
        return FAIL_REASON.MISSING_LEADER
    if isinstance(exc, NotLeaderError):
        return FAIL_REASON.NOT_LEADER if exc.leader else FAIL_REASON.MISSING_LEADER
    if isinstance(exc, LeadershipLostError):
        return FAIL_REASON.DISCARDED
    if isinstance(exc, CommandTimeoutError):
        return FAIL_REASON.TIMEOUT
    if isinstance(exc, NodeStoppedError):
        return FAIL_REASON.STOPPED
    if isinstance(exc, (ProposalDroppedError, RaftkitError)):
        return FAIL_REASON.REQUEST_DENIED
    return FAIL_REASON.METHOD_RAISED


_CALL_ERROR_LOCK = threading.Lock()  # not _COMPAT_LOCK: compat_error takes that one


class CallError(int):
    """The ``err`` a callback gets when a call failed. It *is* an int equal
    to its FAIL_REASON code, so PySyncObj code (``err == FAIL_REASON.X``,
    ``if err:``) keeps working, and it carries what raftkit knows:
    ``reason`` (the FAIL_REASON) and ``exception`` (the raftkit error, or
    the exception the replicated method raised)."""

    reason: FAIL_REASON
    _exception: BaseException
    _compat: bool

    def __new__(
        cls, exception: BaseException, reason: FAIL_REASON | None = None, *, compat: bool = False
    ) -> CallError:
        """``compat``: ``exception`` is a raftkit error to be shown as a
        SyncObjException too (``compat_error``), made on first use of
        ``.exception``: most callbacks only compare ``err`` with a
        FAIL_REASON, and a refusal under overload should cost little."""
        reason = fail_reason(exception) if reason is None else reason
        self = int.__new__(cls, reason)  # not super(); call_error() repeats this for the hot paths
        self.reason = reason
        self._exception = exception
        self._compat = compat
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # int's would rebuild it from its value alone (as METHOD_RAISED).
        return type(self), (self._exception, self.reason), dict(self.__dict__)

    @property
    def exception(self) -> BaseException:
        if self._compat:
            with _CALL_ERROR_LOCK:  # two threads reading it at once get the same object
                if self._compat:
                    assert isinstance(self._exception, RaftkitError)
                    self._exception = compat_error(self._exception)
                    self._compat = False
        return self._exception

    @exception.setter
    def exception(self, value: BaseException) -> None:
        with _CALL_ERROR_LOCK:
            self._exception, self._compat = value, False

    def __repr__(self) -> str:
        return f"CallError({self.reason.name}, {self.exception!r})"

    __str__ = __repr__


_new_int = int.__new__


def call_error(exception: BaseException, reason: FAIL_REASON, compat: bool = False) -> CallError:
    """``CallError(exception, reason, compat=compat)`` for half the cost
    (0.22 against 0.48 us here: no class call): a refused call makes one,
    and under overload most calls are refused. Keep the two in step."""
    err = _new_int(CallError, reason)
    err.reason = reason
    err._exception = exception
    err._compat = compat
    return err


class SyncObjException(RaftkitError):
    """PySyncObj's exception type. Every raftkit error a replicated call
    raises is also an instance of it (``except SyncObjException`` keeps
    working) and has PySyncObj's ``errorCode``: ``'Timeout'`` for a
    timeout, else the FAIL_REASON. Exceptions raised by the replicated
    method itself are re-raised unchanged."""

    errorCode: Any  # noqa: N815 - PySyncObj's name

    def __init__(self, errorCode: Any = None, *args: Any) -> None:  # noqa: N803
        super().__init__(errorCode, *args)
        self.errorCode = errorCode


_COMPAT: dict[type, type] = {}
_COMPAT_LOCK = threading.Lock()


def compat_error(exc: RaftkitError) -> RaftkitError:
    """``exc`` as an instance of a subclass of both its type and
    SyncObjException (made once per type), with ``errorCode`` set."""
    if isinstance(exc, SyncObjException):
        return exc
    cls = type(exc)
    with _COMPAT_LOCK:
        both = _COMPAT.get(cls)
        if both is None:
            ns = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
            both = _COMPAT[cls] = type(cls.__name__, (cls, SyncObjException), ns)
    new = both.__new__(both, *exc.args)
    new.args = exc.args
    new.__dict__.update(exc.__dict__)
    new.errorCode = "Timeout" if isinstance(exc, CommandTimeoutError) else fail_reason(exc)
    new.__cause__ = exc.__cause__
    new.__traceback__ = exc.__traceback__
    return new  # type: ignore[no-any-return]
