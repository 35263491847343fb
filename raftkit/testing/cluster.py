"""LocalCluster: several real nodes (threads, event loops, timers) in one
process over an in-memory network, for tests and examples of code built on
``Node`` or ``SyncObj``. Unlike ``SimCluster`` it is not deterministic: it
runs the real runtime, so tests wait on conditions with deadlines
(``wait_until``), never on bare sleeps.

::

    with LocalCluster(3) as cluster:
        counters = cluster.add_syncobjs(
            lambda address, partners, transport: Counter(address, partners, fast_conf(), transport=transport)
        )
        leader = cluster.wait_leader()
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from raftkit.builder import NodeBuilder, default_transport_factory
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.node import Node
from raftkit.state_machines.base import StateMachine
from raftkit.syncobj.conf import SyncObjConf
from raftkit.syncobj.facade import SyncObj
from raftkit.transports.memory import MemoryNetwork, MemoryTransport

__all__ = ["LocalCluster", "await_until", "fast_conf", "fast_config", "node_threads", "wait_until"]

T = TypeVar("T")
S = TypeVar("S", bound=SyncObj)

# Fast but not flaky on a loaded 2-core machine: elections in ~0.2-0.5 s.
_FAST = {"tick_interval": 0.01, "election_timeout_min": 0.15, "election_timeout_max": 0.3,
         "heartbeat_interval": 0.03}


def fast_config(**overrides: Any) -> NodeConfig:
    """A NodeConfig with short timers, for in-process clusters."""
    return NodeConfig(**{**_FAST, **overrides})


def fast_conf(**overrides: Any) -> SyncObjConf:
    """A SyncObjConf with the same short timers (PySyncObj's defaults take
    about a second to elect a leader)."""
    return SyncObjConf(
        **{
            "autoTickPeriod": _FAST["tick_interval"],
            "raftMinTimeout": _FAST["election_timeout_min"],
            "raftMaxTimeout": _FAST["election_timeout_max"],
            "appendEntriesPeriod": _FAST["heartbeat_interval"],
            **overrides,
        }
    )


def node_threads() -> list[threading.Thread]:
    """The threads of nodes started with ``start()`` that are still alive
    (a stopped node must leave none)."""
    return [t for t in threading.enumerate() if t.name.startswith("raftkit-")]


def wait_until(
    predicate: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.005, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that;
    raise AssertionError after ``timeout`` seconds (a test failure that
    says what it was waiting for)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


async def await_until(
    predicate: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.005, what: str = ""
) -> T:
    """``wait_until`` for asyncio code: sleeps without blocking the loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(interval)


class LocalCluster:
    """``size`` node addresses (``node1``...) on one auto-delivering
    ``MemoryNetwork``. Add SyncObjs or bare Nodes, find the leader, stop
    and replace nodes; ``close()`` (or leaving the ``with`` block) stops
    everything still running."""

    def __init__(self, size: int = 3, *, prefix: str = "node", seed: int | None = 0) -> None:
        self.network = MemoryNetwork(seed, auto_deliver=True)
        self.addresses = [f"{prefix}{i}" for i in range(1, size + 1)]
        self.objs: dict[str, SyncObj] = {}
        self.nodes: dict[str, Node] = {}

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building -----------------------------------------------------------------

    def transport(self) -> MemoryTransport:
        """A fresh transport on this cluster's network (one per node)."""
        return MemoryTransport(self.network)

    def partners(self, address: str) -> list[str]:
        return [a for a in self.addresses if a != address]

    @contextmanager
    def default_network(self) -> Iterator[None]:
        """Within the block, SyncObjs and builders that would open TCP
        sockets join this in-memory network instead: unchanged PySyncObj
        code (``MyCounter('node1', ['node2', 'node3'])``) runs in-process."""
        with default_transport_factory(lambda node_id, address: self.transport()):
            yield

    def add_syncobj(self, address: str, make: Callable[[str, list[str], MemoryTransport], S]) -> S:
        """``make(address, partners, transport)`` builds one SyncObj, which the
        cluster then tracks (it replaces a stopped one at that address)."""
        obj = make(address, self.partners(address), self.transport())
        self.objs[address] = obj
        self.nodes[address] = obj.get_node()
        return obj

    def add_syncobjs(self, make: Callable[[str, list[str], MemoryTransport], S]) -> list[S]:
        return [self.add_syncobj(address, make) for address in self.addresses]

    def add_node(
        self,
        address: str,
        state_machine: StateMachine,
        config: NodeConfig | None = None,
        start: bool = True,
    ) -> Node:
        """A bare Node (your own StateMachine) at ``address``, started."""
        builder = (
            NodeBuilder(address)
            .partners(self.partners(address))
            .transport(self.transport())
            .config(config or fast_config())
            .state_machine(state_machine)
        )
        node = builder.build()
        self.nodes[address] = node
        if start:
            node.start()
        return node

    # -- observing ------------------------------------------------------------------

    def running(self) -> list[str]:
        return [a for a, n in self.nodes.items() if n.status()["running"]]

    def leader(self) -> str | None:
        """The leader every running node agrees on, or None."""
        running = self.running()
        leaders = {self.nodes[a].leader for a in running}
        if len(leaders) != 1:
            return None
        leader = leaders.pop()
        if leader is None or leader not in running or not self.nodes[leader].is_leader:
            return None
        return leader

    def wait_leader(self, timeout: float = 5.0, exclude: str | None = None) -> str:
        """Wait until the running nodes agree on a leader (other than ``exclude``)."""

        def agreed() -> str | None:
            leader = self.leader()
            return leader if leader != exclude else None

        return wait_until(agreed, timeout, what="the running nodes to agree on a leader")

    def followers(self) -> list[str]:
        leader = self.leader()
        return [a for a in self.running() if a != leader]

    # -- stopping -------------------------------------------------------------------

    def stop(self, address: str) -> None:
        """Stop one node (its SyncObj, if any); the others keep running."""
        obj = self.objs.get(address)
        if obj is not None:
            obj.destroy()
        else:
            self.nodes[address].stop()

    def close(self) -> None:
        for address in list(self.nodes):
            self.stop(address)

    async def astart_all(self, objs: list[SyncObj]) -> None:
        """``await astart()`` every SyncObj (autoTick=False) in this loop."""
        for obj in objs:
            await obj.astart()
