"""CPU of a call refused at once (QUEUE_FULL), as the caller's thread pays it:
under overload every refusal takes CPU from the commands being committed.

    .venv/bin/python -m benchmarks.micro_refusal

A one-node SyncObj whose partners never start (no leader, so nothing
commits) and whose queue holds one call; every later ``set(..., callback=)``
is refused. Prints the best of 7 rounds of 50,000 calls, in µs of the
process's CPU per call, for 10-byte and 1 KB values (a refused call is not
encoded: both cost the same). Each refusal yields the CPU once (about 1 µs:
``CommandQueue.room_error``), and whatever the loop thread then does counts too.
"""

from __future__ import annotations

import time
from typing import Any

from raftkit import FAIL_REASON, SyncObj, replicated
from raftkit.testing.cluster import fast_conf
from raftkit.transports.memory import MemoryNetwork, MemoryTransport

CALLS = 50_000
ROUNDS = 7


class Store(SyncObj):
    """A node whose partners never start: no leader, so calls only queue
    (``queue_size`` of them) and the rest are refused."""

    def __init__(self, queue_size: int = 1) -> None:
        conf = fast_conf(commandsQueueSize=queue_size)
        super().__init__("solo", ["absent1", "absent2"], conf, transport=MemoryTransport(MemoryNetwork()))
        self.data: dict[str, str] = {}

    @replicated
    def set(self, key: str, value: str) -> None:
        self.data[key] = value


def main() -> None:
    store = Store()
    refused = [0]

    def callback(result: Any, err: Any) -> None:
        if err == FAIL_REASON.QUEUE_FULL:
            refused[0] += 1

    try:
        # Held for the whole run: no leader will ever take it, and it outlasts the run
        # (the loop thread runs whenever a refusal yields to it, and would time it out).
        store.set("k", "v", callback=callback, timeout=3600)
        for size in (10, 1024):
            value = "x" * size
            best = float("inf")
            for _ in range(ROUNDS):
                before = refused[0]
                started = time.process_time()
                for _ in range(CALLS):
                    store.set("k", value, callback=callback)
                best = min(best, time.process_time() - started)
                assert refused[0] - before == CALLS, "every call must have been refused at once"
            print(f"{size:>5}-byte value: {1e6 * best / CALLS:.2f} µs per refused call")
    finally:
        store.destroy()


if __name__ == "__main__":
    main()
