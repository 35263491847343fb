"""The three ways to run a node: its own thread (the other test modules),
inside the caller's asyncio loop, and stepped by hand with doTick()."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from raftkit import FAIL_REASON, CommandTimeoutError, SyncObj, SyncObjConf, replicated
from raftkit.testing.cluster import LocalCluster, await_until, fast_conf, node_threads, wait_until
from raftkit.transports.memory import MemoryNetwork, MemoryTransport


class Log(SyncObj):
    def __init__(self, address: str, partners: list[str], conf: SyncObjConf, **kw: Any) -> None:
        super().__init__(address, partners, conf, **kw)
        self.items: list[str] = []

    @replicated
    def append(self, item: str) -> int:
        self.items.append(item)
        return len(self.items)


def manual(address: str, partners: list[str], transport: Any) -> Log:
    return Log(address, partners, fast_conf(autoTick=False), transport=transport)


def test_asyncio_mode_runs_every_node_inside_the_callers_loop() -> None:
    async def main() -> None:
        with LocalCluster(3) as cluster:
            objs = cluster.add_syncobjs(manual)
            await cluster.astart_all(objs)
            assert not node_threads()  # all three nodes live in this one loop
            assert await objs[0].await_ready(5.0)
            await await_until(cluster.leader, what="a leader")

            results = await asyncio.gather(*(o.append.aio(f"x{i}") for i, o in enumerate(objs)))
            assert sorted(results) == [1, 2, 3]
            # A blocking call here would stop the very loop that must answer it.
            with pytest.raises(RuntimeError, match="deadlock"):
                objs[1].append("never", sync=True)
            seen: list[tuple[Any, Any]] = []
            objs[2].append("cb", callback=lambda r, e: seen.append((r, e)))
            await await_until(lambda: seen, what="the callback")
            assert seen == [(4, FAIL_REASON.SUCCESS)]
            # Membership and transfer have async forms for code in the node's loop.
            node = objs[0].get_node()
            with pytest.raises(RuntimeError, match="async forms"):
                node.transfer_leadership()
            leader = cluster.leader()
            target = next(a for a in cluster.addresses if a != leader)
            assert await cluster.nodes[leader].atransfer_leadership(target) == target
            await await_until(lambda: all(len(o.items) == 4 for o in objs), what="4 items everywhere")
            assert len({tuple(o.items) for o in objs}) == 1
            for obj in objs:
                await obj.astop()
            assert not any(o.status()["running"] for o in objs)

    asyncio.run(main())


def test_astart_needs_auto_tick_off() -> None:
    obj = Log("solo", [], fast_conf(), transport=MemoryTransport(MemoryNetwork()))
    try:
        with pytest.raises(RuntimeError, match="autoTick=False"):
            asyncio.run(obj.astart())
    finally:
        obj.destroy()


def run_until(objs: list[Log], predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Step every node by hand until ``predicate`` holds (PySyncObj's doTick loop)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out stepping the nodes"
        for obj in objs:
            obj.doTick(0.002)
    return value


def test_manual_mode_steps_nodes_with_do_tick() -> None:
    with LocalCluster(3) as cluster:
        objs = cluster.add_syncobjs(manual)
        seen: list[tuple[Any, Any]] = []
        objs[1].append("first", callback=lambda r, e: seen.append((r, e)))  # queued before any tick
        run_until(objs, lambda: seen)
        assert seen == [(1, FAIL_REASON.SUCCESS)]
        objs[2].append("second")
        run_until(objs, lambda: all(o.items == ["first", "second"] for o in objs))
        assert not node_threads()  # nothing runs unless we tick
        objs[0].on_tick(0.0)  # the snake_case name
    for obj in objs:
        with pytest.raises(Exception, match="stopped"):
            obj.doTick(0.0)


def test_a_sync_call_nobody_ticks_times_out_with_pysyncobjs_error_code() -> None:
    obj = Log("solo", [], fast_conf(autoTick=False), transport=MemoryTransport(MemoryNetwork()))
    try:
        started = time.monotonic()
        with pytest.raises(CommandTimeoutError) as info:
            obj.append("x", sync=True, timeout=0.05)
        assert info.value.errorCode == "Timeout"  # PySyncObj's SyncObjException('Timeout')
        assert time.monotonic() - started < 3.0
    finally:
        obj.destroy()


def test_do_tick_is_only_for_manual_mode() -> None:
    obj = Log("solo", [], fast_conf(), transport=MemoryTransport(MemoryNetwork()))
    try:
        with pytest.raises(RuntimeError, match="autoTick=False"):
            obj.doTick(0.0)
        assert obj.append("x", sync=True) == 1  # a single node elects itself
    finally:
        obj.destroy()
    wait_until(lambda: not node_threads(), what="no thread")
