"""The node's own asyncio event loop: making one (uvloop when installed)
and closing it without leaving executor threads behind."""

from __future__ import annotations

import asyncio

__all__ = ["close_loop", "new_event_loop"]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh loop for a node: uvloop's when it is installed (faster I/O),
    asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
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
