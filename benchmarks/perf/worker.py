"""One node process of a benchmark run: raftkit or PySyncObj, the same code.

Started by ``benchmarks.perf.driver``; it prints one line ``RESULT {json}``
and then waits for the driver to close its stdin before exiting (so the
driver can still read ``/proc/<pid>/stat`` after the last call finished).

Timeline (all on CLOCK_MONOTONIC, which every process on the machine shares):

    ready -> start (from the driver's go file)
    [start, end)              calls are offered (end = start + duration)
    [end, end + grace]        calls offered in time may still commit "inside the window"
    (end + grace, + drain]    late outcomes are still collected, then the rest are "never finished"

Workloads, each a replicated ``set(key, value)``:

* open-loop: ``--rate`` calls/s from this node with ``callback=``, whatever
  the cluster's state (a call is never held back waiting for earlier ones),
  the nodes' schedules staggered so that together their calls are evenly
  spaced (``first_call_at``);
* closed-loop: ``--threads`` threads on this node, each calling
  ``set(..., sync=True)`` again as soon as its previous call returned.
"""

from __future__ import annotations

import argparse
import array
import gc
import json
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks.perf.loop_stats import LoopStats
from benchmarks.perf.stats import bucket_of

QUEUE_FULL = 1  # FAIL_REASON.QUEUE_FULL in both libraries


class Tally:
    """Outcomes of this node's calls, each call counted exactly once.

    A success costs one ``array.append`` of its latency (atomic under the
    GIL, no lock, no object kept: tuples per call cost the node processes
    extra garbage collections), in the window's array or the late one; the
    harness runs inside the node processes, so its own CPU is billed to the
    library being measured. Latencies are bucketed after the window closes."""

    def __init__(self, window_end: float) -> None:
        self.lock = threading.Lock()  # for the failure counts and ``offered``
        self.window_end = window_end
        self.offered = 0
        self.ok_in_window = array.array("d")  # latency (s) of each success inside the window
        self.ok_late = array.array("d")  # ... and of each one after it
        self.refused: dict[str, int] = {}  # refused at once (queue full), by reason
        self.failed: dict[str, int] = {}  # an error outcome after the call was accepted

    def success(self, started: float, done: float) -> None:
        (self.ok_in_window if done <= self.window_end else self.ok_late).append(done - started)

    def failure(self, reason: str, at_once: bool) -> None:
        with self.lock:
            into = self.refused if at_once else self.failed
            into[reason] = into.get(reason, 0) + 1

    def finished(self) -> int:
        with self.lock:
            return len(self.ok_in_window) + len(self.ok_late) + sum(self.refused.values()) + sum(
                self.failed.values())

    def successes(self) -> tuple[int, int, dict[int, int]]:
        """(in the window, late, latency histogram) of the successes so far."""
        in_window, late = self.ok_in_window[:], self.ok_late[:]  # copies: late callbacks may still append
        hist: dict[int, int] = {}
        for latency in (*in_window, *late):
            b = bucket_of(latency)
            hist[b] = hist.get(b, 0) + 1
        return len(in_window), len(late), hist


def reason_name(code: Any, names: dict[int, str]) -> str:
    try:
        name = names.get(int(code))
    except (TypeError, ValueError):
        return str(code)  # e.g. the 'Timeout' string of a sync call
    # str() only when there is no name: raftkit's codes are ints with a
    # Python __repr__, which would otherwise bill every refusal for it.
    return name if name is not None else str(code)


def make_node(lib: str, self_addr: str, partners: list[str], data_dir: str | None,
              queue_size: int | None) -> tuple[Any, dict[int, str]]:
    """The benchmark's SyncObj and the names of the library's FAIL_REASON codes."""
    if lib == "raftkit":
        from raftkit import FAIL_REASON, SyncObj, SyncObjConf, replicated
    else:
        try:
            from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
        except ImportError:
            sys.exit("PySyncObj is not installed: run  .venv/bin/pip install -e '.[bench]'")

    conf: dict[str, Any] = {"dynamicMembershipChange": False}
    if data_dir is not None:
        if lib != "raftkit":
            sys.exit("--data-dir (durable mode) is raftkit only")
        conf["dataDir"] = data_dir  # LMDB log, one fsynced transaction per Ready (group commit)
    if queue_size is not None:
        conf["commandsQueueSize"] = queue_size  # both libraries refuse calls past it (QUEUE_FULL)

    class Bench(SyncObj):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__(self_addr, partners, SyncObjConf(**conf))
            self.data: dict[str, str] = {}

        @replicated
        def set(self, key: str, value: str) -> None:
            self.data[key] = value

    # raftkit's FAIL_REASON is an IntEnum, PySyncObj's a class of int attributes.
    codes = {v: k for k, v in vars(FAIL_REASON).items() if isinstance(v, int) and k.isupper()}
    return Bench(), codes


def gc_collections() -> list[int]:
    """Collections of each generation of the cyclic garbage collector so far."""
    return [g["collections"] for g in gc.get_stats()]


def wait_for(pred: Callable[[], bool], limit: float, step: float) -> bool:
    """Poll ``pred`` until true or ``limit`` seconds passed (bounded in time)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def stable_leader(obj: Any, settle: float, limit: float) -> bool:
    """Wait until this node has seen the same leader for ``settle`` s (at most
    ``limit`` s), so an election still settling at start-up is not counted
    as a leader change of the measured window."""
    deadline = time.monotonic() + limit
    leader, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now_leader = obj._getLeader()
        if now_leader != leader:
            leader, since = now_leader, time.monotonic()
        elif leader is not None and time.monotonic() - since >= settle:
            return True
        time.sleep(0.05)
    return False


def watch_leader(obj: Any, start: float, until: float, period: float, out: dict[str, Any]) -> None:
    """Sample the leader this node sees every ``period`` s until ``until``;
    a change is a known leader that differs from the last known one."""
    get_leader = obj._getLeader
    last = get_leader()
    changes = leaderless = samples = 0
    when: list[float] = []  # seconds after start, to tell start-up from mid-run
    while True:
        now = time.monotonic()
        if now >= until:
            break
        time.sleep(min(period, until - now))
        leader = get_leader()
        samples += 1
        if leader is None:
            leaderless += 1
        elif leader != last:
            changes += 1
            when.append(round(time.monotonic() - start, 2))
            last = leader
    out.update(leader_changes=changes, leader_change_at_s=when, leaderless_samples=leaderless,
               leader_samples=samples)


def first_call_at(start: float, rate: float, self_addr: str, partners: str) -> float:
    """When this node's first open-loop call is due (then one each 1/rate s).
    The nodes' schedules are staggered by 1/(nodes * rate) so that together
    they offer calls evenly spaced in time; in step, every node's k-th call
    fell due at the same instant, a burst of one call per node at a time."""
    nodes = sorted({self_addr, *(p for p in partners.split(",") if p)})
    return start + nodes.index(self_addr) / (len(nodes) * rate)


def open_loop(obj: Any, tally: Tally, names: dict[int, str], args: argparse.Namespace,
              start: float, end: float) -> None:
    value = "x" * args.size
    tag = args.self_addr
    # A callback run on this thread ran inside a call (this thread runs nothing
    # else): the refusal came at once. Asked only on failure, so a success costs nothing.
    caller = threading.get_ident()
    in_window, late = tally.ok_in_window.append, tally.ok_late.append
    monotonic = time.monotonic

    def make_callback(started: float) -> Callable[[Any, Any], None]:
        def callback(result: Any, err: Any) -> None:
            if err == 0:
                done = monotonic()
                (in_window if done <= tally.window_end else late)(done - started)
            else:
                tally.failure(reason_name(err, names), at_once=threading.get_ident() == caller)

        return callback

    first = first_call_at(start, args.rate, args.self_addr, args.partners)
    sent = 0
    call = obj.set
    while True:  # bounded: ends at `end`
        now = monotonic()
        if now >= end:
            break
        due = int((now - first) * args.rate) if now >= first else 0
        while sent < due:
            t0 = monotonic()
            if t0 >= end:  # callers that fell behind do not catch up after the window
                break
            try:
                call(f"{tag}-{sent % 1000}", value, callback=make_callback(t0))
            except Exception as exc:  # raftkit may raise an immediate refusal instead of calling back
                code = getattr(exc, "errorCode", type(exc).__name__)
                tally.failure(reason_name(code, names), at_once=True)
            sent += 1
        # Until the next call is due (or the end), at least 1 ms: at low
        # rates a fixed 1 ms nap woke this thread up to hundreds of times per
        # call, CPU the node process (so the library measured) was billed for.
        time.sleep(max(0.001, min(end, first + (sent + 1) / args.rate) - monotonic()))
    with tally.lock:
        tally.offered = sent


def closed_loop(obj: Any, tally: Tally, names: dict[int, str], args: argparse.Namespace,
                end: float) -> tuple[list[threading.Thread], list[int]]:
    """Start the callers; returns them and their per-thread call counts
    (final once every caller stopped)."""
    value = "x" * args.size
    counts = [0] * args.threads

    def caller(i: int) -> None:
        n = 0
        while time.monotonic() < end:  # bounded: ends at `end` (each call by its timeout)
            t0 = time.monotonic()
            counts[i] += 1
            try:
                obj.set(f"{args.self_addr}-{i}-{n % 100}", value, sync=True, timeout=args.call_timeout)
            except Exception as exc:
                code = getattr(exc, "errorCode", type(exc).__name__)
                # A sync call cannot tell "refused at once" from "failed later";
                # QUEUE_FULL is the refusal in both libraries.
                tally.failure(reason_name(code, names), at_once=code == QUEUE_FULL)
            else:
                tally.success(t0, time.monotonic())
            n += 1

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(args.threads)]
    for t in threads:
        t.start()
    return threads, counts


def install_loop_stats(obj: Any) -> LoopStats | None:
    """LoopStats on a raftkit node's loop (None for PySyncObj, or a loop it cannot see)."""
    node = getattr(obj, "_rk_node", None)
    loop = getattr(node, "_loop", None)
    thread = getattr(loop, "_thread_id", None)  # set by asyncio while the loop runs
    if loop is None or thread is None:
        return None
    stats = LoopStats()
    return stats if stats.install(loop, thread) else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lib", choices=["raftkit", "pysyncobj"], required=True)
    p.add_argument("--self", dest="self_addr", required=True)
    p.add_argument("--partners", required=True, help="comma-separated addresses")
    p.add_argument("--barrier", required=True, help="directory for the ready files and the driver's go file")
    p.add_argument("--mode", choices=["open", "closed"], default="open")
    p.add_argument("--rate", type=float, default=0.0, help="open-loop: calls per second from this node")
    p.add_argument("--threads", type=int, default=0, help="closed-loop: blocking callers on this node")
    p.add_argument("--duration", type=float, default=5.0, help="seconds during which calls are offered")
    p.add_argument("--grace", type=float, default=1.0, help="a success up to this long after the end counts")
    p.add_argument("--drain", type=float, default=3.0, help="then wait this long for late outcomes")
    p.add_argument("--call-timeout", type=float, default=5.0, help="closed-loop: timeout= of each sync call")
    p.add_argument("--size", type=int, default=10, help="value size in bytes")
    p.add_argument("--data-dir", default=None, help="raftkit only: durable mode (LMDB log, fsync per Ready)")
    p.add_argument("--queue-size", type=int, default=None, help="commandsQueueSize (default: the library's)")
    p.add_argument("--loop-stats", action="store_true",
                   help="raftkit on asyncio: count the node loop's turns and callbacks in the window")
    args = p.parse_args()

    partners = args.partners.split(",")
    obj, names = make_node(args.lib, args.self_addr, partners, args.data_dir, args.queue_size)

    if not stable_leader(obj, 1.0, 30):
        sys.exit(f"{args.lib} node {args.self_addr}: no stable leader after 30 s")
    open(os.path.join(args.barrier, "ready-" + args.self_addr.replace(":", "_")), "w").close()
    go = os.path.join(args.barrier, "go")
    if not wait_for(lambda: os.path.exists(go) and os.path.getsize(go) > 0, 60, 0.005):
        sys.exit(f"{args.self_addr}: the driver never said go")
    with open(go) as f:
        start = float(f.read())
    loop_stats = install_loop_stats(obj) if args.loop_stats else None
    time.sleep(max(0.0, start - time.monotonic()))
    if loop_stats is not None:
        loop_stats.start()
    loop_seen: list[dict[str, Any]] = []

    end = start + args.duration
    window_end = end + args.grace
    tally = Tally(window_end)
    was_leader = bool(obj._isLeader())
    term0 = obj.getStatus().get("raft_term")
    cpu0 = time.process_time()  # this process, every thread
    gc0 = gc_collections()
    cpu_at_window_end: list[float] = []
    gc_at_window_end: list[list[int]] = []
    leader_info: dict[str, Any] = {}

    def watcher() -> None:
        watch_leader(obj, start, window_end, 0.05, leader_info)
        if loop_stats is not None:
            loop_seen.append(loop_stats.stop())
        cpu_at_window_end.append(time.process_time())
        gc_at_window_end.append(gc_collections())

    wt = threading.Thread(target=watcher, daemon=True)
    wt.start()

    threads: list[threading.Thread] = []
    counts: list[int] = []
    if args.mode == "open":
        open_loop(obj, tally, names, args, start, end)
    else:
        threads, counts = closed_loop(obj, tally, names, args, end)
    drain_end = window_end + args.drain
    for t in threads:
        t.join(max(0.0, drain_end - time.monotonic()))
    if args.mode == "closed":
        with tally.lock:
            tally.offered = sum(counts)  # a caller still stuck in a call counted it: "never finished"
    wait_for(lambda: tally.finished() >= tally.offered, max(0.0, drain_end - time.monotonic()), 0.01)
    wt.join(max(0.0, window_end + 5 - time.monotonic()))
    term1 = obj.getStatus().get("raft_term")

    gc_window_end = gc_at_window_end[0] if gc_at_window_end else gc_collections()
    ok_in_window, ok_late, hist = tally.successes()
    with tally.lock:
        finished = ok_in_window + ok_late + sum(tally.refused.values()) + sum(tally.failed.values())
        result = {
            "lib": args.lib,
            "addr": args.self_addr,
            "mode": args.mode,
            "was_leader": was_leader,
            "offered": tally.offered,
            "ok_in_window": ok_in_window,
            "ok_late": ok_late,
            "refused": tally.refused,
            "failed": tally.failed,
            "unfinished": max(0, tally.offered - finished),
            "hist": hist,
            "cpu_process_time": (cpu_at_window_end[0] if cpu_at_window_end else time.process_time()) - cpu0,
            "gc_collections": [b - a for a, b in zip(gc0, gc_window_end, strict=True)],
            "term_start": term0,
            "term_end": term1,
            "loop_stats": loop_seen[0] if loop_seen else None,
            **leader_info,
        }
    print("RESULT " + json.dumps(result), flush=True)
    # Stay alive until the driver has read our /proc entry and closes stdin (bounded).
    select.select([sys.stdin], [], [], 120)
    os._exit(0)  # skip slow interpreter teardown of the library's threads


if __name__ == "__main__":
    sys.exit(main())
