"""Future plumbing: waiting for a command's future without mistaking its own
TimeoutError for the wait's, handing a future's (or a function's) outcome to
another future, and ``CallbackOutcome``, the cheap stand-in for a future
when the caller only wants a callback."""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any, TypeVar, Union

__all__ = ["CallbackOutcome", "OnOutcome", "chain", "in_turn", "settle", "wait_outcome"]

log = logging.getLogger(__name__)
T = TypeVar("T")

OnOutcome = Callable[[Any, "BaseException | None"], Any]
"""``fn(result, exception)``: a command's outcome, one of them None."""


class CallbackOutcome:
    """Where a command's outcome goes when its caller gave a function
    instead of waiting on a Future: ``fn(result, None)`` or ``fn(None,
    exception)``, called once, by whichever thread settles the command
    (the node's loop thread, but for a submit racing the node's stop). A
    ``concurrent.futures.Future`` builds a Condition and an RLock and takes
    them three times per command: at tens of thousands of commands a second
    that was a third of the node's CPU."""

    __slots__ = ("_fn", "_done")

    def __init__(self, fn: OnOutcome) -> None:
        self._fn = fn
        self._done = False

    @classmethod
    def of(cls, fn: OutcomeSink | None) -> CallbackOutcome | None:
        """``fn``'s outcome sink: None for None, a ``CallbackOutcome`` as is."""
        return fn if fn is None or isinstance(fn, CallbackOutcome) else cls(fn)

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any) -> None:
        self._settle(result, None)

    def set_exception(self, exc: BaseException) -> None:
        self._settle(None, exc)

    def _settle(self, result: Any, exc: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._fn(result, exc)
        except Exception:  # the caller's code: it must not take the node's loop down
            log.exception("a command's callback %r raised", self._fn)


# What ``Node.submit(callback=...)`` takes: a function, or a sink made already.
OutcomeSink = Union[OnOutcome, CallbackOutcome]  # noqa: UP007  # OnOutcome is a typing alias


def wait_outcome(
    future: concurrent.futures.Future[Any], limit: float | None, on_timeout: Callable[[], BaseException]
) -> Any:
    """Block up to ``limit`` seconds for ``future``'s outcome and return its
    result or raise its own exception; raise ``on_timeout()`` only when the
    wait itself runs out. Since Python 3.11 ``concurrent.futures.TimeoutError``
    is the builtin ``TimeoutError``, which ``CommandTimeoutError`` (and any
    TimeoutError a state machine raises) also is: catching it alone would
    replace a command's own error and message with the wait's."""
    try:
        return future.result(limit)
    except concurrent.futures.TimeoutError:
        if not future.done():
            raise on_timeout() from None
    return future.result(0)  # the outcome's own exception (or a result that landed just now)


def chain(src: concurrent.futures.Future[Any], dst: concurrent.futures.Future[Any]) -> None:
    """Copy ``src``'s outcome (done) to ``dst`` unless ``dst`` already has one."""
    if dst.done():
        return
    exc = src.exception()
    if exc is not None:
        dst.set_exception(exc)
    else:
        dst.set_result(src.result())


def settle(future: concurrent.futures.Future[T], fn: Callable[[], T]) -> None:
    """Run ``fn`` and give ``future`` its result or its exception (any, even
    SystemExit: it is the waiting caller's to see, not the loop's to die of)."""
    try:
        future.set_result(fn())
    except BaseException as exc:
        future.set_exception(exc)


def in_turn(*calls: Callable[[], object]) -> None:
    """Call each of ``calls`` in order: one callback that does several things
    (a lambda making a tuple of their None results does not type-check)."""
    for call in calls:
        call()
