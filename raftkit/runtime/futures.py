"""Future plumbing: waiting for a command's future without mistaking its own
TimeoutError for the wait's, and handing one future's outcome to another."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

__all__ = ["chain", "wait_outcome"]


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
