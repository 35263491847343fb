"""How long a new node takes to catch up on a large LMDB state, and how much
memory the leader and the new node need for it.

Three node processes on 127.0.0.1 (TCP), each an ``LmdbDictStateMachine``
with an ``LmdbLogStore`` and a ``FileSnapshotter`` in its own directory:

1. n1 and n2 start (a majority); the leader applies ``--mb`` MiB of state
   (1 MiB entries of 16 values of 64 KiB) and both compact their logs;
2. n3 starts empty and catches up, necessarily through a snapshot: the
   leader streams its LMDB read transaction into a snapshot file, sends it,
   and n3 streams it into a fresh environment (``restore_from``);
3. the table reports the catch-up time (from n3's node being up to its
   state holding the leader's last applied index, contents checked equal by
   digest) and, per process: VmHWM (peak RSS, from /proc of the processes
   this script started) and the peak RssAnon sampled during the catch-up.
   VmHWM counts LMDB's memory-mapped file pages too (page cache, reclaimable),
   RssAnon only heap and stacks: the memory the streaming keeps bounded.

Run::

    .venv/bin/python benchmarks/replicate_large_state.py --mb 64
    .venv/bin/python benchmarks/replicate_large_state.py            # 1024 MiB

A node process is this same file run with ``--worker`` (JSON lines on
stdin/stdout).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

MIB = 1 << 20


# -- the node process ---------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> int:
    """One node; answers one JSON line per request line."""
    import logging

    from raftkit import NodeBuilder, NodeConfig
    from raftkit.batteries.lmdb_dict import LmdbDictStateMachine
    from raftkit.storage import FileSnapshotter, LmdbLogStore

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")

    class TimedDict(LmdbDictStateMachine):
        """Measures how long streaming a received snapshot into LMDB takes."""

        restore_seconds: float | None = None

        def restore_from(self, chunks: Any) -> None:
            started = time.monotonic()
            super().restore_from(chunks)
            self.restore_seconds = time.monotonic() - started

    data = Path(args.dir)
    sm = TimedDict(data / "state", durability=args.durability, map_size=256 * MIB)
    wanted = {  # never snapshot on its own: only when the driver asks (fields of this build only)
        "log_compaction_min_entries": 10**12, "log_compaction_min_bytes": 1 << 60,
        "log_compaction_min_time": None, "log_compaction_keep": 0, "snapshot_timeout": 3600.0,
        "command_timeout": 120.0,
        "state_marker_dir": str(data / "marker"),  # the restart marker stays with the run's files
    }
    names = {f.name for f in dataclasses.fields(NodeConfig)}
    config = NodeConfig(**{k: v for k, v in wanted.items() if k in names})
    peers = dict(item.split("=", 1) for item in args.peers.split(","))
    node = (
        NodeBuilder(args.id, peers[args.id])
        .peers(peers)
        .config(config)
        .log_store(LmdbLogStore(data / "log", durability=args.durability))
        .snapshotter(FileSnapshotter(data / "snapshots"))
        .state_machine(sm)
        .build()
        .start()
    )
    reply({"ok": True, "pid": os.getpid()})
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        try:
            if op == "quit":
                break
            if op == "status":
                s = node.status()
                reply({"ok": True, "role": s["role"], "leader": s["leader"], "applied": s["applied_index"],
                       "sm_applied": sm.applied_index, "restore_s": sm.restore_seconds})
            elif op == "load":
                reply({"ok": True, "seconds": load(node, sm, req["mb"])})
            elif op == "compact":
                started = time.monotonic()
                node.request_log_compaction().result(3600)
                size = sum(p.stat().st_size for p in (data / "snapshots").glob("*.snap"))
                reply({"ok": True, "seconds": time.monotonic() - started, "snapshot_bytes": size})
            elif op == "digest":
                h = hashlib.blake2b()
                for key, value in sm.raw_items():
                    h.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value)
                reply({"ok": True, "digest": h.hexdigest(), "items": len(sm)})
            else:
                reply({"ok": False, "error": f"unknown op {op!r}"})
        except Exception as exc:
            reply({"ok": False, "error": repr(exc)})
    try:
        node.stop()
    except Exception:
        logging.exception("stopping the node raised")
    sm.close()
    return 0


def load(node: Any, sm: Any, mb: int) -> float:
    """Propose ``mb`` entries of 1 MiB, keeping a window of them in flight."""
    rng = random.Random(7)
    started = time.monotonic()
    window: deque[Any] = deque()
    for batch in range(mb):
        values = {f"k{batch:06d}-{i:02d}": rng.randbytes(64 * 1024) for i in range(16)}
        window.append(node.submit(sm.update_command(values), timeout=120))
        if len(window) >= 8:
            window.popleft().result(180)
    for fut in window:
        fut.result(180)
    return time.monotonic() - started


def reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# -- the driver -----------------------------------------------------------------------------------


class Proc:
    """A node process we started (signalled only by its PID)."""

    def __init__(self, node_id: str, peers: str, directory: Path, durability: str) -> None:
        self.id = node_id
        directory.mkdir(parents=True, exist_ok=True)
        self.log = open(directory.parent / f"{node_id}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--id", node_id, "--peers", peers, "--dir", str(directory),
             "--durability", durability],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1,
        )
        self.started = self.read()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.id} exited ({self.proc.wait()}); see {self.log.name}")
        return json.loads(line)

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        answer = self.read()
        if not answer.get("ok"):
            raise RuntimeError(f"{self.id} {op}: {answer.get('error')}")
        return answer

    def memory(self) -> dict[str, int]:
        """VmHWM, VmRSS and RssAnon in bytes, from /proc/<our child's pid>/status."""
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS", "RssAnon"):
                    out[key] = int(rest.split()[0]) * 1024
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class AnonSampler(threading.Thread):
    """Peak RssAnon of some processes, sampled every 20 ms until stopped."""

    def __init__(self, procs: list[Proc]) -> None:
        super().__init__(daemon=True)
        self.procs = procs
        self.peak = {p.id: 0 for p in procs}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            for p in self.procs:
                with contextlib.suppress(OSError, KeyError):
                    self.peak[p.id] = max(self.peak[p.id], p.memory()["RssAnon"])


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    done = threading.Event()
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        done.wait(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def run(mb: int, base: Path, durability: str) -> None:
    from raftkit.testing.process_cluster import free_ports

    ports = free_ports(3)
    peers = ",".join(f"n{i}=127.0.0.1:{port}" for i, port in enumerate(ports, 1))
    procs: dict[str, Proc] = {}
    try:
        for node_id in ("n1", "n2"):
            procs[node_id] = Proc(node_id, peers, base / node_id, durability)
        leader_id = wait_for(
            lambda: next((p.id for p in procs.values() if p.ask("status")["role"] == "leader"), None),
            30, "a leader",
        )
        leader = procs[leader_id]
        print(f"loading {mb} MiB through {leader_id} ...", flush=True)
        load_s = leader.ask("load", mb=mb)["seconds"]
        compact = {p.id: p.ask("compact") for p in procs.values()}
        target = leader.ask("status")["applied"]
        spawned = time.monotonic()
        procs["n3"] = new = Proc("n3", peers, base / "n3", durability)
        up = time.monotonic()
        sampler = AnonSampler(list(procs.values()))
        sampler.start()
        wait_for(lambda: new.ask("status")["applied"] >= target, 3600, "n3 to catch up")
        caught_up = time.monotonic()
        sampler.done.set()
        sampler.join()
        memory = {p.id: p.memory() for p in procs.values()}
        restore_s = new.ask("status")["restore_s"]
        digests = {p.id: p.ask("digest") for p in (leader, new)}
        assert digests[leader.id] == digests["n3"], digests
        report(mb, load_s, compact[leader_id], caught_up - up, caught_up - spawned, restore_s,
               digests["n3"]["items"])
        print(f"{'process':<18}{'VmHWM MiB':>11}{'VmRSS MiB':>11}{'peak RssAnon MiB':>18}")
        for p in procs.values():
            role = "leader" if p is leader else ("new follower" if p is new else "follower")
            m = memory[p.id]
            print(f"{p.id + ' ' + role:<18}{m['VmHWM'] / MIB:>11.0f}{m['VmRSS'] / MIB:>11.0f}"
                  f"{sampler.peak[p.id] / MIB:>18.0f}")
    finally:
        for p in procs.values():
            p.stop()


def report(mb: int, load_s: float, compact: dict[str, Any], catch_up: float, from_spawn: float,
           restore_s: float | None, items: int) -> None:
    snap = compact["snapshot_bytes"] / MIB
    print(f"\nstate {mb} MiB in {items} items; loaded in {load_s:.1f} s ({mb / load_s:.0f} MiB/s); "
          f"leader snapshot {snap:.1f} MiB written in {compact['seconds']:.2f} s")
    print(f"n3 caught up {catch_up:.2f} s after its node was up ({from_spawn:.2f} s after spawn), "
          f"contents identical to the leader's; of that, restore_from (parse, write LMDB, fsync, swap) "
          f"took {restore_s or 0:.2f} s ({snap / (restore_s or 1):.0f} MiB/s)\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="MiB of state to build (default 1024)")
    parser.add_argument("--dir", help="where the nodes keep their data (default: a temporary directory)")
    parser.add_argument("--durability", choices=["sync", "no-sync"], default="no-sync",
                        help="of the log stores and states while loading (default no-sync: the load is "
                             "not what is measured; a restore always fsyncs before its swap)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--id", help=argparse.SUPPRESS)
    parser.add_argument("--peers", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.dir:
        run(args.mb, Path(args.dir), args.durability)
    else:
        with tempfile.TemporaryDirectory(prefix="raftkit-large-state-") as tmp:
            run(args.mb, Path(tmp), args.durability)
    return 0


if __name__ == "__main__":
    sys.exit(main())
