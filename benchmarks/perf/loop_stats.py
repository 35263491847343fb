"""Where a raftkit node's event loop spends its time, by kind of callback.

Opt-in (``driver --loop-stats``), raftkit on asyncio's loop only (uvloop runs
its callbacks in C, where this cannot see them). In the worker process it
wraps asyncio's ``Handle._run`` and the loop's selector, and counts, for the
node's loop thread only and only inside the measured window:

* per kind of callback (the qualified name of the function asyncio runs:
  ``Node._drain``, ``_SelectorSocketTransport._read_ready``, ...): how many
  ran and the loop thread's CPU seconds inside them;
* the loop's turns (one wait in ``select`` each);
* the loop thread's whole CPU in the window, so what the loop's own
  bookkeeping and ``select`` cost is what is left over.

It costs two reads of the thread's CPU clock per callback, so it stays out
of the report's default runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from asyncio import events
from typing import Any

_UNWRAPPED_RUN = events.Handle._run


def kind_of(callback: Any) -> str:
    """A callback's kind: its function's qualified name (bound methods and
    partials by the function inside)."""
    func = getattr(callback, "func", callback)  # functools.partial
    func = getattr(func, "__func__", func)  # a bound method
    name = getattr(func, "__qualname__", None)
    return name if isinstance(name, str) else type(callback).__name__


class LoopStats:
    """Counts one asyncio loop's callbacks and turns while ``measuring``."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[float]] = {}  # kind -> [count, cpu seconds]
        self.turns = 0
        self.measuring = False
        self._thread: int | None = None
        self._clock: int | None = None  # the loop thread's CPU clock
        self._cpu0 = 0.0
        self._selector: Any = None

    def install(self, loop: asyncio.AbstractEventLoop, thread_ident: int) -> bool:
        """Wrap ``loop`` (running on ``thread_ident``); False where it cannot
        be seen (not asyncio's selector loop)."""
        selector = getattr(loop, "_selector", None)
        if selector is None:
            return False
        self._thread = thread_ident
        self._selector = selector
        try:
            self._clock = time.pthread_getcpuclockid(thread_ident)
        except (AttributeError, OSError):
            self._clock = None  # the callbacks are still counted
        stats = self
        select = selector.select

        def counted_select(timeout: float | None = None) -> Any:
            if stats.measuring:
                stats.turns += 1
            return select(timeout)

        selector.select = counted_select  # an instance attribute: ``uninstall`` deletes it

        def counted_run(handle: events.Handle) -> None:
            if not stats.measuring or threading.get_ident() != stats._thread:
                _UNWRAPPED_RUN(handle)
                return
            t0 = time.thread_time()
            try:
                _UNWRAPPED_RUN(handle)
            finally:
                spent = time.thread_time() - t0
                entry = stats.callbacks.get(kind := kind_of(handle._callback))  # type: ignore[attr-defined]
                if entry is None:
                    stats.callbacks[kind] = [1, spent]
                else:
                    entry[0] += 1
                    entry[1] += spent

        events.Handle._run = counted_run  # type: ignore[method-assign]
        return True

    def uninstall(self) -> None:
        """Undo ``install`` (the worker never needs to; tests do)."""
        events.Handle._run = _UNWRAPPED_RUN  # type: ignore[method-assign]
        if self._selector is not None:
            del self._selector.select
            self._selector = None
        self.measuring = False

    def start(self) -> None:
        self.callbacks.clear()
        self.turns = 0
        self._cpu0 = self._thread_cpu()
        self.measuring = True

    def stop(self) -> dict[str, Any]:
        """End the window; what it saw (plain JSON)."""
        self.measuring = False
        cpu = self._thread_cpu() - self._cpu0 if self._clock is not None else None
        return {
            "turns": self.turns,
            "thread_cpu_s": None if cpu is None else round(cpu, 4),
            "callbacks": {k: [int(n), round(s, 4)] for k, (n, s) in sorted(self.callbacks.items())},
        }

    def _thread_cpu(self) -> float:
        return time.clock_gettime(self._clock) if self._clock is not None else 0.0


def summarize(per_node: list[dict[str, Any] | None], committed: int, top: int = 6) -> dict[str, Any] | None:
    """The cluster's loops per committed command: turns, callbacks, CPU
    (all, in callbacks, and the ``top`` kinds by CPU)."""
    seen = [s for s in per_node if s]
    if not seen or committed <= 0:
        return None
    kinds: dict[str, list[float]] = {}
    for s in seen:
        for kind, (n, cpu) in s["callbacks"].items():
            k = kinds.setdefault(kind, [0, 0.0])
            k[0] += n
            k[1] += cpu
    in_callbacks = sum(cpu for _, cpu in kinds.values())
    threads = [s["thread_cpu_s"] for s in seen]
    thread_cpu = None if None in threads else sum(threads)
    ranked = sorted(kinds.items(), key=lambda kv: -kv[1][1])[:top]
    return {
        "nodes": len(seen),
        "turns_per_commit": sum(s["turns"] for s in seen) / committed,
        "callbacks_per_commit": sum(n for n, _ in kinds.values()) / committed,
        "loop_cpu_us_per_commit": None if thread_cpu is None else 1e6 * thread_cpu / committed,
        "callback_cpu_us_per_commit": 1e6 * in_callbacks / committed,
        "top": [
            {"kind": kind, "per_commit": n / committed, "cpu_us_per_commit": 1e6 * cpu / committed,
             "us_each": 1e6 * cpu / n if n else 0.0}
            for kind, (n, cpu) in ranked
        ],
    }


def describe(summary: dict[str, Any]) -> str:
    """One line for the driver's log."""
    loop = summary["loop_cpu_us_per_commit"]
    head = (
        f"loops ({summary['nodes']} nodes), per commit: {summary['turns_per_commit']:.2f} turns, "
        f"{summary['callbacks_per_commit']:.2f} callbacks, "
        + (f"{loop:.1f} us loop-thread CPU, " if loop is not None else "")
        + f"{summary['callback_cpu_us_per_commit']:.1f} us in callbacks"
    )
    parts = [
        f"{t['kind']} {t['per_commit']:.2f}x {t['us_each']:.0f}us = {t['cpu_us_per_commit']:.1f}us"
        for t in summary["top"]
    ]
    return head + "; top: " + ", ".join(parts)
