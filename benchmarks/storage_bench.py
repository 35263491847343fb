"""How many ``LmdbLogStore.save()`` calls per second this machine sustains.

Each save is what a node does once per ``Ready``: a hard state plus a batch
of new entries, in one LMDB transaction. With ``durability="sync"`` every
save is durable before it returns (LMDB flushes data pages, then the meta
page), so the figure is bounded by the disk's flush latency; ``no-sync``
shows the cost without flushes, for comparison only (it is unsafe for a real
cluster). Run::

    .venv/bin/python benchmarks/storage_bench.py [--dir DIR] [--seconds 2]

Put ``--dir`` on the disk the nodes will use: tmpfs or a RAM-backed
directory makes fsync free and the numbers meaningless.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from raftkit.core.types import Entry, HardState
from raftkit.storage.lmdb_log_store import LmdbLogStore


def run(directory: Path, durability: str, batch: int, size: int, seconds: float) -> dict[str, float]:
    """Save batches of ``batch`` entries of ``size`` bytes for ``seconds``;
    return throughput and latency figures."""
    store = LmdbLogStore(directory, durability=durability)  # type: ignore[arg-type]
    data = b"x" * size
    latencies: list[float] = []
    last = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        entries = [Entry(i, 1, data=data) for i in range(last + 1, last + 1 + batch)]
        started = time.perf_counter()
        store.save(HardState(term=1, vote="n1", commit=last), entries)
        latencies.append(time.perf_counter() - started)
        last += batch
        if last >= 200_000:  # keep the log (and the file) small, as a node does
            store.compact(last - 1000)
    store.close()
    total = sum(latencies)
    latencies.sort()
    return {
        "saves_per_s": len(latencies) / total,
        "entries_per_s": len(latencies) * batch / total,
        "p50_us": statistics.median(latencies) * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to create the stores")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each case")
    args = parser.parse_args()
    cases = [("sync", 1), ("sync", 100), ("no-sync", 1), ("no-sync", 100)]
    header = ("durability", "entries/save", "saves/s", "entries/s", "p50 us", "p99 us")
    print("{:<10} {:>12} {:>10} {:>11} {:>8} {:>8}".format(*header))
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="raftkit-bench-") as tmp:
        for n, (durability, batch) in enumerate(cases):
            r = run(Path(tmp) / f"case{n}", durability, batch, 100, args.seconds)
            print(
                f"{durability:<10} {batch:>12} {r['saves_per_s']:>10.0f} {r['entries_per_s']:>11.0f} "
                f"{r['p50_us']:>8.0f} {r['p99_us']:>8.0f}"
            )


if __name__ == "__main__":
    main()
