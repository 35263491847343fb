"""CPU of an accepted call, as the caller's thread pays it: the part of a
command's cost that runs before the node's loop sees it (argument checks,
encoding, registration, the hand-over to the loop).

    .venv/bin/python -m benchmarks.micro_accept

A one-node SyncObj whose partners never start (no leader, so nothing is
proposed and the loop only moves calls from its inbox to its queue), with
room for every call (the default 30 s timeout outlasts the run);
``set(key, value, callback=)`` with 10-byte and 1 KB values. Prints the
best of 7 rounds of 50,000 calls, in µs of the caller thread's CPU
(``time.thread_time``) per call.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.micro_refusal import Store

CALLS = 50_000
ROUNDS = 7


def main() -> None:
    store = Store(queue_size=4 * CALLS * ROUNDS)  # room for every call: each is accepted and queued
    outcomes = [0]

    def callback(result: Any, err: Any) -> None:
        outcomes[0] += 1

    try:
        for size in (10, 1024):
            value = "x" * size
            best = float("inf")
            for _ in range(ROUNDS):
                started = time.thread_time()
                for i in range(CALLS):
                    store.set(f"key-{i % 1000}", value, callback=callback)
                best = min(best, time.thread_time() - started)
            if outcomes[0]:
                raise SystemExit(f"{outcomes[0]} calls got an outcome: they were not all accepted and queued")
            print(f"{size:>5}-byte value: {1e6 * best / CALLS:.2f} µs of the caller's CPU per accepted call")
    finally:
        store.destroy()


if __name__ == "__main__":
    main()
