"""CPU of the benchmark worker's own bookkeeping per open-loop call: the
part of ``CPU µs/cmd`` that belongs to neither library.

    .venv/bin/python -m benchmarks.micro_harness

Runs ``benchmarks.perf.worker.open_loop`` for 0.5 s against a ``set`` that
does nothing but call its callback with success, at a rate no caller keeps
up with, then buckets the latencies as the worker does after its window.
Prints the best of 3 rounds, in µs of this process's CPU per call: the
call loop, the key string, the callback closure and the success record (the
no-op ``set`` itself, about 0.2 µs, included).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.perf.worker import Tally, open_loop


class _Succeeds:
    def set(self, key: str, value: str, callback: Any) -> None:
        callback(None, 0)


def main() -> None:
    args = argparse.Namespace(size=10, self_addr="127.0.0.1:9001", rate=10_000_000.0)
    best = float("inf")
    for _ in range(3):
        tally = Tally(window_end=float("inf"))
        start = time.monotonic()
        cpu = time.process_time()
        open_loop(_Succeeds(), tally, {}, args, start, start + 0.5)
        per_call = (time.process_time() - cpu) / max(1, tally.offered)
        assert tally.successes()[0] == tally.offered
        best = min(best, per_call)
    print(f"worker bookkeeping: {best * 1e6:.2f} µs CPU per open-loop call (a no-op set included)")


if __name__ == "__main__":
    main()
