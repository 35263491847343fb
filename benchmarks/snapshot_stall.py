"""How long does taking a snapshot stall a node's event loop?

A single node holds a replicated dict of many small entries (the shape that
makes serialization slow); while it snapshots, a probe on the node's loop
measures how late a 5 ms timer fires. An election needs the loop to miss a
whole election timeout (150 ms in the fast test settings, 400 ms by
default), so the worst lateness is the number that matters::

    .venv/bin/python benchmarks/snapshot_stall.py --mb 20
    .venv/bin/python benchmarks/snapshot_stall.py --mb 20 --dir /tmp/snaps   # FileSnapshotter
    .venv/bin/python benchmarks/snapshot_stall.py --mb 60 --value-bytes 20480 --modes fork
    .venv/bin/python benchmarks/snapshot_stall.py --mb 3 --value-bytes 1024 --modes auto --snapshots 3

Modes: ``fork``, ``thread`` (non-fork-safe state machines), ``inline``
(what PySyncObj does, and raftkit before fork snapshots) and ``auto`` (the
default: the first snapshot forks, each later one forks or uses a thread,
whichever measured less; ``--snapshots`` takes several in a row, and the
row says which ran).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import threading
import time
from pathlib import Path

from raftkit import NodeBuilder
from raftkit.runtime.node import Node
from raftkit.storage.file_snapshotter import FileSnapshotter
from raftkit.testing.cluster import fast_config
from raftkit.testing.kv import KeyValueStateMachine, set_command
from raftkit.transports.memory import MemoryNetwork, MemoryTransport


def measure(mode: str, megabytes: int, directory: Path | None, value_bytes: int = 80,
            snapshots: int = 1) -> list[dict[str, float | str]]:
    sm = KeyValueStateMachine()
    builder = (
        NodeBuilder("bench")
        .partners([])
        .transport(MemoryTransport(MemoryNetwork(auto_deliver=True)))
        .config(fast_config(snapshot_mode=mode, log_compaction_min_entries=10**9))
        .state_machine(sm)
    )
    if directory is not None:
        target = directory / mode
        shutil.rmtree(target, ignore_errors=True)
        builder.snapshotter(FileSnapshotter(target))
    node = builder.build().start()
    try:
        node.wait_ready(10)
        node.propose(set_command("a", 1))
        value = "v" * value_bytes
        sm.data = {f"key-{i:08d}": [i, value] for i in range(megabytes * 1_000_000 // (value_bytes + 20))}
        results = []
        for n in range(snapshots):
            if n:
                node.propose(set_command("a", n + 1))  # something new to snapshot
            results.append(_probe(node))
        return results
    finally:
        node.stop()


def _probe(node: Node) -> dict[str, float | str]:
    running = threading.Event()

    async def probe(stop: asyncio.Event) -> float:
        worst = 0.0
        running.set()
        while not stop.is_set():
            t = time.monotonic()
            await asyncio.sleep(0.005)
            worst = max(worst, time.monotonic() - t - 0.005)
        return worst

    loop = node._require_loop()
    stop = asyncio.Event()
    fut = asyncio.run_coroutine_threadsafe(probe(stop), loop)
    running.wait(10)  # the probe must be running before the snapshot starts
    t0 = time.monotonic()
    cpu0 = time.process_time()  # the node's process, all threads; a fork child's CPU is not in it
    node.request_log_compaction().result(300)
    took = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    loop.call_soon_threadsafe(stop.set)
    worst = fut.result(30)
    status = node.status()["snapshot"]
    last = status["last"] or {}
    return {"stall_ms": worst * 1000, "snapshot_s": took, "cpu_s": cpu, "bytes": float(last.get("bytes", 0)),
            "ran": str(last.get("mode", "?")), **{k: v or 0.0 for k, v in status["measured"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=20, help="approximate serialized state size in MB")
    ap.add_argument("--dir", type=Path, default=None, help="write snapshots to files under this directory")
    ap.add_argument("--modes", default="fork,thread,inline")
    ap.add_argument("--value-bytes", type=int, default=80,
                    help="bytes per value: 80 (many small entries, slow to serialize) or e.g. 20480 "
                         "(few large ones: the copies dominate)")
    ap.add_argument("--snapshots", type=int, default=1, help="snapshots in a row per mode")
    args = ap.parse_args()
    where = f"FileSnapshotter under {args.dir}" if args.dir is not None else "MemorySnapshotter"
    print(f"snapshots kept by {where}")
    print(f"{'mode':12} {'state MB':>9} {'snapshot s':>11} {'worst loop stall ms':>20} {'node CPU s':>11}")
    for mode in args.modes.split(","):
        for r in measure(mode, args.mb, args.dir, args.value_bytes, args.snapshots):
            ran = mode if r["ran"] == mode else f"{mode}:{r['ran']}"
            fork_ms, serialize_ms = (float(r.get(k, 0.0)) * 1000 for k in ("fork_s", "serialize_s"))
            measured = "" if "fork_s" not in r else (  # what auto compares for the next snapshot
                f"   fork {fork_ms:.1f} ms, serialize {serialize_ms:.1f} ms")
            print(f"{ran:12} {float(r['bytes']) / 1e6:9.1f} {r['snapshot_s']:11.2f} {r['stall_ms']:20.1f}"
                  f" {r['cpu_s']:11.2f}{measured}")


if __name__ == "__main__":
    main()
