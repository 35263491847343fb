"""What the batteries rely on: PySyncObj's consumer protocol (a wrapper's
``_consumer()``, the ``_destroy()`` hook) and the reserved ``read=`` option
of every getter."""

from __future__ import annotations

import asyncio

import pytest
from battery_harness import single_node

from raftkit import SyncObj, SyncObjConsumer, replicated
from raftkit.batteries import ReplDict, ReplList
from raftkit.testing.cluster import fast_conf
from raftkit.transports.memory import MemoryNetwork, MemoryTransport


class Part(SyncObjConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.value = 0
        self.destroyed = 0

    @replicated
    def bump(self) -> int:
        self.value += 1
        return self.value

    def _serialize(self) -> int:
        return self.value

    def _deserialize(self, data: int) -> None:
        self.value = data

    def _destroy(self) -> None:
        self.destroyed += 1


class Wrapper:
    """Not a consumer itself: hands over its replicated part, as PySyncObj's ReplLockManager does."""

    def __init__(self) -> None:
        self.part = Part()

    def _consumer(self) -> Part:
        return self.part


def test_a_wrapper_hands_over_its_consumer_and_destroy_reaches_it(no_new_threads: None) -> None:
    wrapper = Wrapper()
    with single_node(wrapper) as obj:
        assert obj._rk_consumers == [wrapper.part]
        assert wrapper.part.bump(sync=True) == 1
        obj.destroy()
        obj.destroy()
        assert wrapper.part.destroyed == 1  # once, however often destroy() is called
    with pytest.raises(TypeError, match="SyncObjConsumer"):
        transport = MemoryTransport(MemoryNetwork())
        SyncObj("x", [], fast_conf(autoTick=False), consumers=[object()], transport=transport)


def test_astop_destroys_consumers_too(no_new_threads: None) -> None:
    part = Part()

    async def main() -> None:
        transport = MemoryTransport(MemoryNetwork(auto_deliver=True))
        obj = SyncObj("solo", [], fast_conf(autoTick=False), consumers=[part], transport=transport)
        await obj.astart()
        assert await part.bump.aio() == 1
        await obj.astop()

    asyncio.run(main())
    assert part.destroyed == 1


def test_read_option_picks_the_consistency() -> None:
    d, lst = ReplDict(), ReplList()
    assert d.get("k", "default", read="local") == "default"
    assert len(lst) == lst.len(read="local") == 0
    with pytest.raises(RuntimeError, match="not attached to a SyncObj"):
        d.get("k", read="linearizable")  # a consistent read needs a node
    with pytest.raises(ValueError, match="read must be one of"):
        d.keys(read="eventually")
    assert ReplDict(read="lease")._rk_read_mode == "lease"
    assert asyncio.run(d.get.aio("k", "x")) == "x"
