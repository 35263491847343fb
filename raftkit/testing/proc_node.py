"""A raftkit node in its own OS process, driven over stdin/stdout.

Used by the real-process tests and the demo: ``ProcessCluster`` starts one
per node and sends JSON lines; each gets exactly one JSON line back.

    {"op": "set", "key": "k", "value": 1}        -> {"ok": true, "result": null}
    {"op": "incr", "by": 1}                      -> {"ok": true, "result": 42}
    {"op": "load", "count": 500, "prefix": "w"}  -> {"ok": true, "acked": [...], "failed": 3}
    {"op": "get", "key": "k"} / {"op": "dump"} / {"op": "status"}

Writes are synchronous replicated calls; ``load`` issues ``count``
asynchronous writes and reports which keys were acknowledged.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from raftkit import SyncObj, SyncObjConf, replicated


class KvCounter(SyncObj):
    """A replicated dict plus a counter: the state the process tests check."""

    def __init__(self, self_addr: str, partners: list[str], conf: SyncObjConf) -> None:
        super().__init__(self_addr, partners, conf)
        self.data: dict[str, Any] = {}
        self.counter = 0

    @replicated
    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    @replicated
    def incr(self, by: int = 1) -> int:
        self.counter += by
        return self.counter


def handle(obj: KvCounter, req: dict[str, Any]) -> dict[str, Any]:
    op = req.get("op")
    timeout = float(req.get("timeout", 10.0))
    try:
        if op == "set":
            return {"ok": True, "result": obj.set(req["key"], req["value"], sync=True, timeout=timeout)}
        if op == "incr":
            return {"ok": True, "result": obj.incr(req.get("by", 1), sync=True, timeout=timeout)}
        if op == "load":
            return _load(obj, int(req["count"]), str(req.get("prefix", "w")), timeout)
        if op == "get":
            return {"ok": True, "result": obj.data.get(req["key"])}
        if op == "dump":
            return {"ok": True, "result": {"data": obj.data, "counter": obj.counter}}
        if op == "status":
            return {"ok": True, "result": obj.getStatus()}
    except Exception as exc:  # reported to the test, which decides what it means
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": False, "error": f"unknown op {op!r}"}


def _load(obj: KvCounter, count: int, prefix: str, timeout: float) -> dict[str, Any]:
    """Issue ``count`` asynchronous writes; report the acknowledged keys."""
    acked: list[str] = []
    failed = [0]
    done = threading.Semaphore(0)
    lock = threading.Lock()

    def callback_for(key: str):
        def callback(result: object, err: object) -> None:
            with lock:
                if err == 0:
                    acked.append(key)
                else:
                    failed[0] += 1
            done.release()

        return callback

    issued = 0
    for i in range(count):
        key = f"{prefix}{i}"
        try:
            obj.set(key, i, callback=callback_for(key), timeout=timeout)
            issued += 1
        except Exception:
            failed[0] += 1
    deadline = time.monotonic() + timeout + 5
    for _ in range(issued):
        if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
    with lock:
        return {"ok": True, "acked": list(acked), "failed": failed[0]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--self", dest="self_addr", required=True)
    ap.add_argument("--partners", default="")
    ap.add_argument("--password", default=None)
    args = ap.parse_args()
    conf = SyncObjConf(password=args.password, dynamicMembershipChange=False)
    partners = [p for p in args.partners.split(",") if p]
    obj = KvCounter(args.self_addr, partners, conf)
    print(json.dumps({"ok": True, "started": args.self_addr}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
        except ValueError as exc:
            print(json.dumps({"ok": False, "error": f"bad request: {exc}"}), flush=True)
            continue
        if req.get("op") == "quit":
            break
        print(json.dumps(handle(obj, req), default=str), flush=True)
    obj.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
