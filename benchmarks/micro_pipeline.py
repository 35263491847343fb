"""The whole path of a replicated call on one node, without a network:
``obj.set(key, value, callback=...)`` from a client thread, the node's loop
proposing, logging, committing and applying it, and the callback. One
single-node SyncObj (it commits alone), in-memory log, 10-byte values.

    .venv/bin/python -m benchmarks.micro_pipeline

Prints the node process's CPU µs per call (all threads: caller and loop),
best of 5 rounds of 50,000 calls on asyncio's loop (``RAFTKIT_EVENT_LOOP=uvloop``
for uvloop's), each round sent keeping at most 20,000
calls in flight. A 3-node cluster pays this on the proposer
plus the apply side on the others, plus the network.
"""

from __future__ import annotations

import os
import socket
import time

from raftkit import SyncObj, SyncObjConf, replicated
from raftkit.runtime.loop import LOOP_ENV

CALLS = 50_000
IN_FLIGHT = 20_000


class _Store(SyncObj):  # type: ignore[misc]
    def __init__(self, address: str) -> None:
        super().__init__(address, [], SyncObjConf(dynamicMembershipChange=False))
        self.data: dict[str, str] = {}

    @replicated
    def set(self, key: str, value: str) -> None:
        self.data[key] = value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def one_round(obj: _Store) -> float:
    # Callbacks run on the node's loop thread, one at a time: a plain
    # counter is enough, and keeps the harness's own cost small.
    finished = [0]
    failures: list[object] = []
    value = "x" * 10

    def callback(result: object, err: object) -> None:
        if err != 0:
            failures.append(err)
        finished[0] += 1

    def wait_below(limit: int) -> None:
        deadline = time.monotonic() + 30
        while sent - finished[0] > limit:  # bounded by the deadline
            if time.monotonic() > deadline:
                raise RuntimeError(f"{sent - finished[0]} calls without an outcome after 30 s")
            time.sleep(0.001)

    started = time.process_time()
    sent = 0
    for i in range(CALLS):
        if sent - finished[0] >= IN_FLIGHT:
            wait_below(IN_FLIGHT // 2)
        obj.set(f"key-{i % 1000}", value, callback=callback)
        sent = i + 1
    wait_below(0)
    spent = time.process_time() - started
    if failures:
        raise RuntimeError(f"{len(failures)} calls failed, e.g. {failures[0]!r}")
    return spent / CALLS


def main() -> None:
    # asyncio's loop, as make bench's "raftkit" system; RAFTKIT_EVENT_LOOP=uvloop for the other.
    os.environ.setdefault(LOOP_ENV, "asyncio")
    obj = _Store(f"127.0.0.1:{_free_port()}")
    try:
        deadline = time.monotonic() + 30
        while not obj._isReady():
            if time.monotonic() > deadline:
                raise RuntimeError("the single node did not become ready in 30 s")
            time.sleep(0.01)
        best = min(one_round(obj) for _ in range(5))
        print(f"pipeline: {best * 1e6:.2f} µs CPU per call (one node, 10-byte values, "
              f"{os.environ[LOOP_ENV]} loop)")
    finally:
        obj.destroy()


if __name__ == "__main__":
    main()
