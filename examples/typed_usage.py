"""A typed user program: what a type checker sees of raftkit's public API.

    python examples/typed_usage.py

Runs a one-node cluster in this process over the in-memory transport (no
sockets): a SyncObj subclass with ``@replicated`` methods, two batteries,
and a Node built with NodeBuilder. ``tests/test_typing.py`` runs it and
checks it with ``mypy --strict``. An ``Any`` would pass ``x: int = ...``,
so ``assert_type`` (a no-op at run time) pins what the checker must infer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
from typing import TYPE_CHECKING, Any

from raftkit import NodeBuilder, SyncObj, replicated, replicated_sync
from raftkit.batteries import ReplCounter, ReplDict
from raftkit.state_machines.kv import KvStateMachine
from raftkit.testing.cluster import fast_conf, fast_config  # short timers: one node leads at once
from raftkit.transports.memory import MemoryNetwork, MemoryTransport

if TYPE_CHECKING:  # typing.assert_type is 3.11+; mypy always brings typing_extensions
    from typing_extensions import assert_type
else:

    def assert_type(value: Any, expected: Any) -> Any:
        return value


class Tally(SyncObj):
    """Named counts, replicated."""

    def __init__(self, address: str, transport: MemoryTransport, counter: ReplCounter, names: ReplDict) -> None:
        super().__init__(address, [], fast_conf(), consumers=[counter, names], transport=transport)
        self.counts: dict[str, int] = {}

    @replicated
    def add(self, name: str, by: int = 1) -> int:
        """Add ``by`` to ``name``'s count; returns the new count."""
        self.counts[name] = self.counts.get(name, 0) + by
        return self.counts[name]

    @replicated_sync
    def reset(self, name: str) -> bool:
        """Forget ``name``; True if it was counted."""
        return self.counts.pop(name, None) is not None

    def get_count(self, name: str) -> int:
        return self.counts.get(name, 0)


def run_tally(network: MemoryNetwork) -> tuple[int, int, bool, int, int]:
    counter, names = ReplCounter(), ReplDict()
    tally = Tally("tally", MemoryTransport(network), counter, names)
    try:
        if not tally.wait_ready(30.0):
            sys.exit("the one-node cluster elected no leader")
        assert_type(tally.add("apples"), None)  # fire and forget
        after = assert_type(tally.add("apples", 2, sync=True, timeout=10.0), int)
        future = assert_type(tally.add.submit("pears", by=5), concurrent.futures.Future[int])
        pears = assert_type(future.result(timeout=10.0), int)
        was_counted = assert_type(tally.reset("pears"), bool)  # @replicated_sync: blocks by default

        done = threading.Event()
        seen: list[int | None] = []

        def on_done(result: int | None, err: object) -> None:
            seen.append(result)
            done.set()

        assert_type(tally.add("plums", callback=on_done), None)
        if not done.wait(10.0):
            sys.exit("the callback did not run")
        assert seen == [1], seen

        async def with_asyncio() -> int:
            return assert_type(await tally.add.aio("plums", 10), int)

        plums = asyncio.run(with_asyncio())

        counter.set(40, sync=True)
        total = assert_type(counter.add(2, sync=True), int)
        assert_type(counter.get(), int)
        assert_type(counter.get(read="local"), int)
        names.set("best", "apples", sync=True)
        best = names.get("best")
        assert total == counter.get() == 42 and best == "apples"
        return after, pears, was_counted, plums, total
    finally:
        tally.destroy()


def run_node(network: MemoryNetwork) -> int | None:
    kv = KvStateMachine()
    node = (
        NodeBuilder("kv")
        .partners([])
        .config(fast_config())
        .transport(MemoryTransport(network))
        .state_machine(kv)
        .build()
    )
    node.start()
    try:
        if not node.wait_ready(30.0):
            sys.exit("the node elected no leader")
        node.propose(KvStateMachine.set_command("hits", 1), timeout=10.0)
        hits: int | None = node.propose(KvStateMachine.incr_command("hits", 2), timeout=10.0)
        return hits
    finally:
        node.stop()


def main() -> None:
    network = MemoryNetwork(auto_deliver=True)
    after, pears, was_counted, plums, total = run_tally(network)
    hits = run_node(network)
    print(f"apples={after} pears={pears} reset={was_counted} plums={plums} counter={total} hits={hits}")


if __name__ == "__main__":
    main()
