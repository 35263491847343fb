"""The node's own asyncio event loop: making one (uvloop when installed)
and closing it without leaving executor threads behind."""

from __future__ import annotations

import asyncio
import os

__all__ = ["LOOP_ENV", "close_loop", "new_event_loop"]


LOOP_ENV = "RAFTKIT_EVENT_LOOP"
"""``asyncio`` or ``uvloop`` forces that loop; unset (or ``auto``): uvloop when installed."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh loop for a node: uvloop's when it is installed (a third less
    CPU per call with three nodes in one process; docs/benchmarks.md), asyncio's otherwise, unless the
    ``RAFTKIT_EVENT_LOOP`` environment variable names one."""
    choice = os.environ.get(LOOP_ENV, "auto")
    if choice not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f"{LOOP_ENV} must be 'auto', 'asyncio' or 'uvloop', got {choice!r}")
    if choice == "asyncio":
        return asyncio.new_event_loop()
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise RuntimeError(f"{LOOP_ENV}=uvloop but uvloop is not installed: "
                               "pip install 'pyraftkit[fast]'") from None
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close a loop the node owns, with the executor threads it may have
    started (a transport resolving names with getaddrinfo): a stopped node
    leaves no thread behind."""
    try:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
