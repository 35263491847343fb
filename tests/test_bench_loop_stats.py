"""benchmarks/perf/loop_stats.py: the node loop's turns and callbacks, counted
on a real asyncio loop in its own thread, and the per-commit summary."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.perf import loop_stats
from benchmarks.perf.driver import describe
from benchmarks.perf.loop_stats import LoopStats, kind_of, summarize


class _Worker:
    def busy(self, seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:  # bounded: burns `seconds` of this thread's CPU
            pass


def _plain() -> None:
    pass


class _Callable:
    def __call__(self) -> None:
        pass


def test_kind_of_names_the_function_inside() -> None:
    w = _Worker()
    assert kind_of(w.busy) == "_Worker.busy"
    assert kind_of(functools.partial(w.busy, 0.0)) == "_Worker.busy"
    assert kind_of(_plain) == "_plain"
    assert kind_of(_Callable()) == "_Callable"
    assert kind_of(lambda: None).endswith("<lambda>")


@pytest.fixture
def loop_in_thread() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not loop.is_running():  # bounded by the deadline
        assert time.monotonic() < deadline, "the loop did not start"
        time.sleep(0.001)
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    t.join(10)
    loop.close()


def _run_in(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> None:
    """Schedule fn(*args) from this thread and wait until it ran."""
    done = threading.Event()

    def go() -> None:
        fn(*args)
        done.set()

    loop.call_soon_threadsafe(go)
    assert done.wait(10)


def test_counts_the_loop_threads_callbacks_only_inside_the_window(
    loop_in_thread: asyncio.AbstractEventLoop,
) -> None:
    loop = loop_in_thread
    w = _Worker()
    stats = LoopStats()
    assert stats.install(loop, loop._thread_id)  # type: ignore[attr-defined]
    try:
        for _ in range(3):
            loop.call_soon_threadsafe(w.busy, 0.0)  # before the window: not counted
        _run_in(loop, _plain)
        stats.start()
        for _ in range(4):
            loop.call_soon_threadsafe(w.busy, 0.02)
        _run_in(loop, _plain)
        seen = stats.stop()
        loop.call_soon_threadsafe(w.busy, 0.0)  # after it: not counted
        _run_in(loop, _plain)
        assert stats.stop()["callbacks"]["_Worker.busy"][0] == 4
    finally:
        stats.uninstall()
    calls = seen["callbacks"]
    assert calls["_Worker.busy"][0] == 4
    assert 0.07 <= calls["_Worker.busy"][1] < 1.0  # 4 x 20 ms of the loop thread's CPU
    assert seen["turns"] >= 1
    if hasattr(time, "pthread_getcpuclockid"):  # POSIX: the loop thread's own CPU clock
        assert seen["thread_cpu_s"] >= calls["_Worker.busy"][1] * 0.9
    else:
        assert seen["thread_cpu_s"] is None
    # uninstall put asyncio back
    assert asyncio.events.Handle._run is loop_stats._UNWRAPPED_RUN
    assert "select" not in vars(loop._selector)  # type: ignore[attr-defined]


def test_only_the_named_thread_is_counted(loop_in_thread: asyncio.AbstractEventLoop) -> None:
    stats = LoopStats()
    assert stats.install(loop_in_thread, threading.get_ident())  # this thread, not the loop's
    try:
        stats.start()
        _run_in(loop_in_thread, _plain)
        seen = stats.stop()
    finally:
        stats.uninstall()
    assert seen["callbacks"] == {}


def test_a_loop_without_a_selector_is_refused() -> None:
    class NoSelector:
        pass

    assert LoopStats().install(NoSelector(), threading.get_ident()) is False  # type: ignore[arg-type]


def test_summary_is_per_committed_command() -> None:
    a = {"turns": 30, "thread_cpu_s": 0.5, "callbacks": {"Node._drain": [10, 0.1], "X.read": [20, 0.3]}}
    b = {"turns": 10, "thread_cpu_s": 0.3, "callbacks": {"X.read": [20, 0.1]}}
    s = summarize([a, None, b], committed=1000, top=1)
    assert s is not None
    assert s["nodes"] == 2
    assert s["turns_per_commit"] == pytest.approx(0.04)
    assert s["callbacks_per_commit"] == pytest.approx(0.05)
    assert s["loop_cpu_us_per_commit"] == pytest.approx(800.0)
    assert s["callback_cpu_us_per_commit"] == pytest.approx(500.0)
    assert s["top"] == [
        {"kind": "X.read", "per_commit": pytest.approx(0.04), "cpu_us_per_commit": pytest.approx(400.0),
         "us_each": pytest.approx(10_000.0)}
    ]
    text = loop_stats.describe(s)
    assert "0.04 turns" in text and "800.0 us loop-thread CPU" in text and "X.read 0.04x" in text
    # a node whose thread clock was unreadable: no loop-thread total, the rest stands
    s2 = summarize([a, {**b, "thread_cpu_s": None}], committed=1000)
    assert s2 is not None and s2["loop_cpu_us_per_commit"] is None
    assert "loop-thread CPU" not in loop_stats.describe(s2)
    assert summarize([None, None], committed=1000) is None
    assert summarize([a], committed=0) is None


def test_driver_prints_the_loop_line_only_when_measured() -> None:
    run = {
        "system": "raftkit", "nodes": 3, "size": 10, "mode": "open", "load": 1000.0, "committed": 10,
        "offered": 10, "success_ratio": 1.0, "refused": 0, "failed": 0, "committed_late": 0,
        "unfinished": 0, "p50": 0.001, "p99": 0.002, "cpu_us_per_commit": 100.0, "leader_changes": 0,
        "loop_stats": None,
    }
    assert "loops (" not in describe(run)
    run["loop_stats"] = summarize([{"turns": 5, "thread_cpu_s": 0.001, "callbacks": {"A.b": [5, 0.001]}}], 10)
    assert "\n    loops (1 nodes), per commit: 0.50 turns" in describe(run)
