"""``await battery.method.aio(...)`` for every battery: replicated calls,
reads and the lock manager, from a foreign event loop (the node in its own
thread) and from the loop the node itself runs in."""

from __future__ import annotations

import asyncio
import queue
from typing import Any

import pytest

from raftkit import SyncObj
from raftkit.batteries import (
    ReplCounter,
    ReplDict,
    ReplList,
    ReplLockManager,
    ReplPriorityQueue,
    ReplQueue,
    ReplSet,
)
from raftkit.testing.cluster import LocalCluster, fast_conf

pytestmark = pytest.mark.usefixtures("no_new_threads")


def batteries() -> dict[str, Any]:
    return {
        "counter": ReplCounter(),
        "list": ReplList(),
        "dict": ReplDict(),
        "set": ReplSet(),
        "queue": ReplQueue(maxsize=1),
        "pqueue": ReplPriorityQueue(),
        "locks": ReplLockManager(autoUnlockTime=5),
    }


async def exercise(b: dict[str, Any]) -> None:
    assert await b["counter"].add.aio(5) == 5
    assert await b["counter"].get.aio() == 5
    await b["list"].extend.aio([3, 1, 2])
    await b["list"].sort.aio()
    assert await b["list"].pop.aio(0) == 1 and await b["list"].index.aio(3) == 1
    with pytest.raises(IndexError, match="out of range"):  # the method's exception, awaited
        await b["list"].pop.aio(9)
    await b["dict"].set.aio("k", "v")
    assert await b["dict"].get.aio("k") == "v" and await b["dict"].setdefault.aio("k", "other") == "v"
    await b["set"].update.aio({"x", "y"})
    assert await b["set"].pop.aio() == "x" and await b["set"].contains.aio("y")
    assert await b["queue"].put.aio("first") is True and await b["queue"].put.aio("second") is False
    with pytest.raises(queue.Full):
        await b["queue"].put_nowait.aio("second")
    assert await b["queue"].get.aio() == "first" and await b["queue"].empty.aio()
    results = await asyncio.gather(*(b["pqueue"].put.aio(n) for n in (3, 1, 2)))
    assert results == [True, True, True] and await b["pqueue"].get.aio() == 1
    locks = b["locks"]
    assert await locks.tryAcquire.aio("L") is True and await locks.isAcquired.aio("L")
    assert await locks.release.aio("L") is True and not await locks.is_acquired.aio("L")


def test_aio_from_a_foreign_loop() -> None:
    with LocalCluster(3) as cluster:
        parts: dict[str, dict[str, Any]] = {}

        def make(address: str, partners: list[str], transport: Any) -> SyncObj:
            parts[address] = batteries()
            consumers = list(parts[address].values())
            return SyncObj(address, partners, fast_conf(), consumers=consumers, transport=transport)

        cluster.add_syncobjs(make)
        follower = next(a for a in cluster.addresses if a != cluster.wait_leader())
        asyncio.run(exercise(parts[follower]))


def test_aio_inside_the_nodes_own_loop() -> None:
    async def main() -> None:
        b = batteries()
        conf = fast_conf(autoTick=False)
        obj = SyncObj("localhost:1", [], conf, consumers=list(b.values()), transport=_memory())
        try:
            await obj.astart()
            assert await obj.await_ready(timeout=5)
            await exercise(b)
            with pytest.raises(RuntimeError, match="deadlock"):
                b["locks"].tryAcquire("M", sync=True)  # blocking in the node's own loop
        finally:
            await obj.astop()  # stops the lock manager's keeper too

    asyncio.run(main())


def _memory() -> Any:
    from raftkit.transports.memory import MemoryNetwork, MemoryTransport

    return MemoryTransport(MemoryNetwork(auto_deliver=True))
