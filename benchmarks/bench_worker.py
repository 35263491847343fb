"""One node of a throughput benchmark, for raftkit or PySyncObj (same code).

Started by benchmarks/throughput.py; prints one JSON line with what it
measured. The workload: a replicated ``set(key, value)`` called
asynchronously at a fixed offered rate, each call's latency measured from
the call to its callback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--lib", choices=["raftkit", "pysyncobj"], required=True)
    p.add_argument("--self", dest="self_addr", required=True)
    p.add_argument("--partners", required=True, help="comma-separated addresses")
    p.add_argument("--rate", type=float, required=True, help="calls per second issued by this node")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--size", type=int, default=10, help="value size in bytes")
    p.add_argument("--grace", type=float, default=3.0, help="seconds allowed for the last calls to finish")
    p.add_argument("--data-dir", default=None, help="raftkit only: durable mode (LMDB log, fsync per Ready)")
    args = p.parse_args()

    if args.lib == "raftkit":
        from raftkit import SyncObj, SyncObjConf, replicated
    else:
        from pysyncobj import SyncObj, SyncObjConf, replicated

    class Bench(SyncObj):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__(
                args.self_addr, args.partners.split(","), SyncObjConf(dynamicMembershipChange=False)
            )
            self.data: dict[str, str] = {}

        @replicated
        def set(self, key: str, value: str) -> None:
            self.data[key] = value

    obj = Bench()
    deadline = time.monotonic() + 30
    get_leader = getattr(obj, "_getLeader", None) or obj.getLeader
    while time.monotonic() < deadline and get_leader() is None:
        time.sleep(0.05)
    # Announce readiness and wait until every node is ready (a file barrier).
    barrier = os.environ["BENCH_BARRIER"]
    open(os.path.join(barrier, args.self_addr.replace(":", "_")), "w").close()
    n_nodes = len(args.partners.split(",")) + 1
    while time.monotonic() < deadline and len(os.listdir(barrier)) < n_nodes:
        time.sleep(0.01)

    value = "x" * args.size
    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]

    def make_callback(started: float):
        def callback(result: object, err: object) -> None:
            done = time.monotonic()
            with lock:
                if err == 0:
                    latencies.append(done - started)
                else:
                    failures[0] += 1

        return callback

    sent = 0
    cpu_start = time.process_time()  # this process, every thread
    start = time.monotonic()
    end = start + args.duration
    tag = args.self_addr
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) * args.rate)
        while sent < due:
            obj.set(f"{tag}-{sent % 1000}", value, callback=make_callback(time.monotonic()))
            sent += 1
        time.sleep(0.001)
    finish_by = end + args.grace
    while time.monotonic() < finish_by:
        with lock:
            if len(latencies) + failures[0] >= sent:
                break
        time.sleep(0.01)
    cpu = time.process_time() - cpu_start
    with lock:
        lat = sorted(latencies)
        result = {
            "cpu": cpu,
            "sent": sent,
            "ok": len(lat),
            "failed": failures[0],
            "p50": lat[len(lat) // 2] if lat else None,
            "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
            "duration": args.duration,
        }
    print(json.dumps(result), flush=True)
    os._exit(0)  # skip slow interpreter teardown of the library's threads


if __name__ == "__main__":
    sys.exit(main())
