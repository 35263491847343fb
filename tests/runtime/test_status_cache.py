"""``status()``'s dict is rebuilt when it is read after a change, not after
every Ready (raftkit.runtime.status.StatusCache): a reader on another thread
waits for the loop to rebuild it, a busy or stopped loop costs it at most
``WAIT``, and a node that only serves commands rebuilds it at its ticks.
Judged by counting the builds and by what the dict says."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from raftkit.runtime.status import StatusCache
from raftkit.testing.cluster import LocalCluster, fast_config, wait_until
from raftkit.testing.kv import KeyValueStateMachine, set_command


class Counted:
    """A build function that returns how often it ran."""

    def __init__(self) -> None:
        self.builds = 0

    def __call__(self) -> dict[str, Any]:
        self.builds += 1
        return {"build": self.builds}


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    wait_until(loop.is_running, 5)
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def on_loop(loop: asyncio.AbstractEventLoop, fn: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(_call(fn), loop).result(5)


async def _call(fn: Any) -> Any:
    return fn()


def test_a_reader_gets_the_dict_rebuilt_once_after_a_change(loop: asyncio.AbstractEventLoop) -> None:
    build = Counted()
    cache = StatusCache(build, lambda: loop)
    on_loop(loop, cache.refresh)
    assert cache.current() == {"build": 1}
    assert cache.current() == {"build": 1} and build.builds == 1  # nothing changed: no rebuild
    on_loop(loop, cache.changed)
    on_loop(loop, cache.changed)
    assert cache.current() == {"build": 2}  # rebuilt for this reader, on the loop
    assert cache.current() == {"build": 2} and build.builds == 2


def test_a_busy_loop_costs_a_reader_the_wait_then_the_last_dict(loop: asyncio.AbstractEventLoop) -> None:
    build = Counted()
    cache = StatusCache(build, lambda: loop)
    cache.WAIT = 0.05
    on_loop(loop, cache.refresh)
    busy, release = threading.Event(), threading.Event()

    def block() -> None:
        cache.changed()
        busy.set()
        release.wait(10)  # the loop runs nothing else meanwhile

    loop.call_soon_threadsafe(block)
    assert busy.wait(5)
    try:
        assert cache.current() == {"build": 1}  # returned while the loop is still blocked
    finally:
        release.set()
    wait_until(lambda: build.builds == 2, 5)  # the rebuild it asked for ran once the loop was free
    assert cache.current() == {"build": 2}


def test_a_build_that_fails_raises_to_the_reader_and_the_loop_goes_on(
    loop: asyncio.AbstractEventLoop,
) -> None:
    build = Counted()
    failing = [True]

    def flaky() -> dict[str, Any]:
        if failing[0]:
            raise RuntimeError("cannot read the store")
        return build()

    cache = StatusCache(flaky, lambda: loop)
    with pytest.raises(RuntimeError, match="cannot read the store"):
        cache.current()
    assert cache.stale and loop.is_running()
    failing[0] = False
    assert cache.current() == {"build": 1}


def test_a_stopped_loop_gives_the_last_dict_without_waiting() -> None:
    build = Counted()
    loop = asyncio.new_event_loop()
    try:
        cache = StatusCache(build, lambda: loop)
        cache.refresh()
        cache.changed()
        assert cache.current() == {"build": 1} and build.builds == 1
    finally:
        loop.close()


def test_on_the_loop_thread_it_rebuilds_in_place(loop: asyncio.AbstractEventLoop) -> None:
    build = Counted()
    cache = StatusCache(build, lambda: loop)

    def read_after_change() -> dict[str, Any]:
        cache.refresh()
        cache.changed()
        return cache.current()

    assert on_loop(loop, read_after_change) == {"build": 2}


def test_commands_do_not_rebuild_the_status_but_the_next_read_sees_them() -> None:
    with LocalCluster(1) as cluster:
        # Ticks rebuild a changed dict: a long tick keeps them out of the count.
        config = fast_config(tick_interval=0.2, heartbeat_interval=0.4, election_timeout_min=0.6,
                             election_timeout_max=1.0)
        node = cluster.add_node(cluster.addresses[0], KeyValueStateMachine(), config=config)
        wait_until(lambda: node.is_leader, 10)
        build = Counted()
        real = node._status._build
        node._status._build = lambda: (build(), real())[1]
        for i in range(200):  # one Ready (at least) each
            node.propose(set_command(f"k{i}", i), timeout=10)
        assert build.builds < 50
        assert node.status()["applied_index"] == node.raw.raft.log.committed >= 200
