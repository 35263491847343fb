"""A raftkit node in its own OS process, driven over stdin/stdout.

Used by the real-process tests and the demo: ``ProcessCluster`` starts one
per node and sends JSON lines; each gets exactly one JSON line back.

    {"op": "set", "key": "k", "value": 1}        -> {"ok": true, "result": null}
    {"op": "incr", "by": 1}                      -> {"ok": true, "result": 42}
    {"op": "load", "count": 500, "prefix": "w"}  -> {"ok": true, "acked": [...], "failed": 3}
    {"op": "fill", "key": "big", "size": 1000000} -> {"ok": true, "result": null}
    {"op": "snapshot"}                           -> {"ok": true, "result": 1234}  (its index)
    {"op": "get", "key": "k"} / {"op": "dump"} / {"op": "status"}

Writes are synchronous replicated calls; ``load`` issues ``count``
asynchronous writes and reports which keys were acknowledged; ``fill``
stores a ``size``-character string made on the node (big state without
big requests). With ``--data-dir`` the node keeps its log and snapshots on
disk and resumes from them when restarted; a node that cannot start
answers its first line with ``{"ok": false, "error": ...}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from raftkit import SyncObj, SyncObjConf, replicated
from raftkit.syncobj.nodes import TCPNode


class KvCounter(SyncObj):
    """A replicated dict plus a counter: the state the process tests check.

    ``slow_snapshot`` / ``slow_restore`` (seconds) stretch serializing and
    restoring the state, so a test can kill a node in the middle of one
    (with fork snapshots the delay is spent in the child)."""

    def __init__(
        self, self_addr: str, partners: list[str], conf: SyncObjConf,
        slow_snapshot: float = 0.0, slow_restore: float = 0.0,
    ) -> None:
        self._rk_slow = (slow_snapshot, slow_restore)  # _rk_: not replicated state
        super().__init__(self_addr, partners, conf)
        self.data: dict[str, Any] = {}
        self.counter = 0

    def _serialize(self) -> Any:
        if self._rk_slow[0]:
            time.sleep(self._rk_slow[0])  # a stand-in for a big state's serialization
        return super()._serialize()

    def _deserialize(self, data: Any) -> None:
        if self._rk_slow[1]:
            time.sleep(self._rk_slow[1])  # a stand-in for a big state's restore
        super()._deserialize(data)

    @replicated
    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    @replicated
    def incr(self, by: int = 1) -> int:
        self.counter += by
        return self.counter

    @replicated
    def fill(self, key: str, size: int) -> None:
        self.data[key] = "x" * size


class KvCounterV1(KvCounter):
    """The next release of KvCounter, for rolling-upgrade tests: it keeps
    ``set`` version 0 and adds version 1, which also counts its writes. The
    cluster runs version 1 only after ``set_code_version(1)``."""

    @replicated
    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    @replicated(ver=1)  # type: ignore[no-redef]  # a newer version of the same method
    def set(self, key: str, value: Any) -> None:  # noqa: F811 - a newer version of the same method
        self.data[key] = value
        self.counter += 1


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
        if op == "fill":
            return {"ok": True, "result": obj.fill(req["key"], int(req["size"]), sync=True, timeout=timeout)}
        if op == "snapshot":
            meta = obj.force_log_compaction().result(timeout)
            return {"ok": True, "result": None if meta is None else meta.index}
        if op == "get":
            return {"ok": True, "result": obj.data.get(req["key"])}
        if op == "dump":
            return {"ok": True, "result": {"data": obj.data, "counter": obj.counter}}
        if op == "status":
            pysyncobj = {k: str(v) if isinstance(v, TCPNode) else v for k, v in obj.getStatus().items()}
            return {"ok": True, "result": {**obj.status(), **pysyncobj}}
        node = obj.get_node()
        if op == "add":
            node.add_member(req["node"], learner=bool(req.get("learner")), timeout=timeout)
            return {"ok": True, "result": node.members()}
        if op == "remove":
            node.remove_member(req["node"], timeout=timeout)
            return {"ok": True, "result": node.members()}
        if op == "promote":
            node.promote_member(req["node"], timeout=timeout)
            return {"ok": True, "result": node.members()}
        if op == "transfer":
            return {"ok": True, "result": node.transfer_leadership(req.get("to"), timeout=timeout)}
        if op == "members":
            return {"ok": True, "result": node.members()}
        if op == "set_version":
            return {"ok": True, "result": obj.set_code_version(int(req["version"]), timeout=timeout)}
    except Exception as exc:  # reported to the test, which decides what it means
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": False, "error": f"unknown op {op!r}"}


def _load(obj: KvCounter, count: int, prefix: str, timeout: float) -> dict[str, Any]:
    """Issue ``count`` asynchronous writes; report the acknowledged keys."""
    acked: list[str] = []
    failed = [0]
    errors: list[str] = []  # the first few reasons
    done = threading.Semaphore(0)
    lock = threading.Lock()

    def callback_for(key: str) -> Callable[[object, object], None]:
        def callback(result: object, err: object) -> None:
            with lock:
                if err == 0:
                    acked.append(key)
                else:
                    failed[0] += 1
                    if len(errors) < 3:
                        errors.append(f"{err}: {result!r}")
            done.release()

        return callback

    issued = 0
    for i in range(count):
        key = f"{prefix}{i}"
        try:
            obj.set(key, i, callback=callback_for(key), timeout=timeout)
            issued += 1
        except Exception as exc:
            failed[0] += 1
            if len(errors) < 3:
                errors.append(repr(exc))
    deadline = time.monotonic() + timeout + 5
    for _ in range(issued):
        if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
    with lock:
        return {"ok": True, "acked": list(acked), "failed": failed[0], "errors": list(errors)}


def _join(obj: KvCounter) -> None:
    try:
        obj.get_node().join_cluster(timeout=120)
    except Exception:
        logging.getLogger(__name__).exception("could not join the cluster")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--self", dest="self_addr", required=True)
    ap.add_argument("--partners", default="")
    ap.add_argument("--password", default=None)
    ap.add_argument("--data-dir", default=None, help="keep the log and snapshots here (default: memory)")
    ap.add_argument("--compaction-entries", type=int, default=None, help="logCompactionMinEntries")
    ap.add_argument("--compaction-keep", type=int, default=None, help="NodeConfig.log_compaction_keep")
    ap.add_argument("--commands-per-entry", type=int, default=None, help="NodeConfig.commands_per_entry")
    ap.add_argument("--snapshot-mode", default=None, choices=["auto", "fork", "thread", "inline"])
    ap.add_argument("--durability", default=None, choices=["sync", "no-sync"])
    ap.add_argument("--fast", action="store_true", help="short election timeouts (tests)")
    ap.add_argument("--election-timeout", default=None, metavar="MIN:MAX",
                    help="election timeout range in seconds (after --fast, wins over it)")
    ap.add_argument("--slow-snapshot", type=float, default=0.0)
    ap.add_argument("--slow-restore", type=float, default=0.0)
    ap.add_argument("--log-file", default=None, help="append INFO logs here")
    ap.add_argument("--join", action="store_true", help="a new node: ask the partners to add it")
    ap.add_argument("--initial-cluster-state", default=None, choices=["auto", "new", "existing"],
                    help="NodeConfig.initial_cluster_state")
    ap.add_argument("--code", type=int, default=0, choices=[0, 1], help="run release 0 or 1 of the code")
    args = ap.parse_args()
    if args.log_file:
        logging.basicConfig(
            filename=args.log_file, level=logging.INFO,
            format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        )
    options: dict[str, Any] = {"password": args.password, "dynamicMembershipChange": False}
    if args.data_dir is not None:
        options["dataDir"] = args.data_dir
    if args.compaction_entries is not None:
        options["logCompactionMinEntries"] = args.compaction_entries
    if args.compaction_keep is not None:
        options["log_compaction_keep"] = args.compaction_keep
    if args.commands_per_entry is not None:
        options["commands_per_entry"] = args.commands_per_entry
    if args.snapshot_mode is not None:
        options["snapshot_mode"] = args.snapshot_mode
    if args.durability is not None:
        options["durability"] = args.durability
    if args.join:
        options["join"] = True
    if args.initial_cluster_state is not None:
        options["initial_cluster_state"] = args.initial_cluster_state
    if args.fast:
        options.update(autoTickPeriod=0.02, raftMinTimeout=0.3, raftMaxTimeout=0.6, appendEntriesPeriod=0.05)
    if args.election_timeout:
        low, high = (float(x) for x in args.election_timeout.split(":"))
        options.update(raftMinTimeout=low, raftMaxTimeout=high)
    partners = [p for p in args.partners.split(",") if p]
    try:
        obj = (KvCounterV1 if args.code else KvCounter)(
            args.self_addr, partners, SyncObjConf(**options),
            slow_snapshot=args.slow_snapshot, slow_restore=args.slow_restore,
        )
    except Exception as exc:  # e.g. RecoveryError: the test reads why
        logging.getLogger(__name__).exception("cannot start")
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    if args.join:
        # In the background, so requests (status ...) are answered meanwhile.
        threading.Thread(target=_join, args=(obj,), daemon=True).start()
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
        answer = handle(obj, req)
        if "id" in req:
            answer["id"] = req["id"]
        print(json.dumps(answer, default=str), flush=True)
    obj.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
