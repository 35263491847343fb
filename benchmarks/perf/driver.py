"""Run the benchmark matrix and write ``benchmarks/results/<timestamp>-<name>.json``.

    .venv/bin/python -m benchmarks.perf.driver --preset quick            # ~2 minutes
    .venv/bin/python -m benchmarks.perf.driver --preset full             # the whole report (~90 min)
    .venv/bin/python -m benchmarks.perf.driver --plan                    # what full would run, and how long
    .venv/bin/python -m benchmarks.perf.driver --systems raftkit --nodes 5 --sizes 10 \\
        --rates 2000,4000 --threads 8 --duration 2 --reps 1 --name try

Open loop, ``--preset full`` (no ``--rates``): an adaptive search per
workload (``AdaptiveSearch``), every run tagged with its ``phase``:

* ``scan``: a coarse ladder (``SCAN_SMALL``, or ``SCAN_LARGE`` for values of
  8 KB and more), one repetition per rate, all systems at each rate before the
  next, each system stopping after two misses in a row (success < 90 %);
* ``refine``: per system its best sustained scan rate R, the first missed rate
  M above it and their geometric mean, each to ``--reps`` repetitions (systems
  interleaved per repetition); capacity = the highest whose median is
  sustained, else up to ``STEP_DOWN`` rungs below R; written to ``capacity``;
* ``load``: for raftkit's systems, 1,000/s (``LOW_RATE``, the issue's fixed
  latency point: its scan run plus ``--reps`` - 1 more), capacity/2 and 2x
  capacity (``--reps`` each) and 3x capacity (one repetition, for leader
  changes).

The full preset runs raftkit, raftkit-durable and PySyncObj (raftkit-uvloop
only with ``--systems``); closed loop (1, 8, 64 threads, phase ``closed``)
only at 3 nodes (``--closed-nodes``); and raftkit-durable only at 3 nodes
(``--durable-nodes``), because with it in all nine workloads the worst case
is ~132 minutes (~97 expected), over a 105-minute budget; so restricted,
~76 minutes expected, at most ~103. ``--plan`` prints the ladders, phases and
this estimate without running anything.

With ``--rates`` (or ``--preset quick``) the rates are a fixed ladder instead
(phase ``ladder``): each *point* (system, nodes, value size, load) is run
``--reps`` times, the repetitions of all systems interleaved at each load so
that drift on a shared machine hits them alike, rates rising until two in a
row are not sustained (median success ratio < 90 %) for that system. Every
repetition is one fresh cluster of node processes on 127.0.0.1.

Systems: ``raftkit`` (in memory, asyncio's event loop), ``raftkit-uvloop``
(in memory, uvloop's), ``raftkit-durable`` (LMDB log, one fsynced
transaction per Ready: group commit) and ``pysyncobj`` (from PyPI, defaults).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.perf import loop_stats
from benchmarks.perf.stats import merge, percentile

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SYSTEMS = ("raftkit", "raftkit-uvloop", "raftkit-durable", "pysyncobj")
# raftkit's node loop in each system (RAFTKIT_EVENT_LOOP); uvloop comes with the bench extra.
EVENT_LOOP = {"raftkit": "asyncio", "raftkit-uvloop": "uvloop", "raftkit-durable": "asyncio"}
SUSTAINED = 0.90  # the definition: >= 90 % of offered calls committed inside the window
# (open loop: of the calls the rate asks for, rate x duration, even if the callers made fewer)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Fixed open-loop ladders (calls/s offered across the cluster) for explicit
# runs without --rates: roughly x1.4 steps.
LADDER_SMALL = [1000, 2000, 3000, 5000, 7000, 10000, 14000, 20000, 28000, 40000, 56000, 80000, 112000]
# Values of 8 KB and more:
LADDER_LARGE = [200, 400, 700, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 11000, 16000]
# The adaptive search's coarse scan ladders (--preset full): one repetition per
# rate, then the refine phase closes in on the capacity between two rungs.
SCAN_SMALL = [1000, 5000, 10000, 20000, 30000, 40000, 56000, 80000, 112000, 140000, 160000, 200000, 250000]
SCAN_LARGE = [200, 500, 1000, 2000, 3000, 4000, 6000, 8000, 11000, 16000, 22000, 30000]
LARGE = 8192  # values of this size and more use the large ladders
LOW_RATE = 1000  # the latency point (p50 <= 5 ms, p99 <= 20 ms at 1,000/s)
STEP_DOWN = 2  # refine: at most this many rungs below the scan's best when none of R, mid, M holds
RUN_WALL_S = 4.0  # a run's wall time beyond --duration (start-up, grace, drain, teardown): for estimates
# Capacities (calls/s) seen at 3 nodes on the 2-core machine (docs/benchmarks.md), 20 KB
# guessed; at 5 and 7 nodes scaled by 0.6 and 0.45. Only for the --plan / start-up estimate.
HINT_3_NODES = {
    ("raftkit", False): 140000, ("raftkit", True): 8000,
    ("raftkit-uvloop", False): 140000, ("raftkit-uvloop", True): 8000,
    ("raftkit-durable", False): 112000, ("raftkit-durable", True): 6000,
    ("pysyncobj", False): 30000, ("pysyncobj", True): 3000,
}
HINT_NODE_SCALE = {3: 1.0, 5: 0.6, 7: 0.45}

PRESETS: dict[str, dict[str, Any]] = {
    # The whole report (make bench), about 76 minutes: the adaptive open-loop
    # search (scan, refine, load points; rates=None) for every workload, closed
    # loop only at 3 nodes. raftkit-uvloop is left out (--systems adds it).
    # raftkit-durable runs only in 3-node workloads (durable_nodes): with it in
    # all nine workloads the estimate exceeds 105 minutes (--durable-nodes 3,5,7
    # puts it back).
    "full": dict(nodes=[3, 5, 7], sizes=[10, 1024, 20480],
                 systems=["raftkit", "raftkit-durable", "pysyncobj"], reps=3, rates=None,
                 threads=[1, 8, 64], duration=5.0, closed_nodes=[3], durable_nodes=[3]),
    # ~2 minutes: 3 nodes, both libraries in memory, one repetition, a few rates.
    "quick": dict(nodes=[3], sizes=[10, 1024], systems=["raftkit", "pysyncobj"], reps=1,
                  rates=[2000, 6000, 12000], threads=[8], duration=3.0,
                  closed_nodes=None, durable_nodes=None),
}


def round_rate(x: float) -> float:
    """A rate rounded to three significant figures (125,219 -> 125,000; 62,500 stays)."""
    if x <= 0:
        return 0.0
    digits = 3 - len(str(int(x)))
    return float(round(x, digits)) if digits < 0 else float(round(x))


def scan_ladder(size: int) -> list[float]:
    return [float(x) for x in (SCAN_LARGE if size >= LARGE else SCAN_SMALL)]


# run(system, rate, phase, rep) -> success ratio of that run (0.0 for a failed run)
RunFn = Callable[[str, float, str, int], float]


@dataclass
class Capacity:
    system: str
    rate: float | None  # None: not even the lowest rate tried was sustained
    median_success_ratio: float | None
    reps: int


class AdaptiveSearch:
    """The open-loop search of one workload (nodes, size), for all its systems.

    Driven by ``run`` (one repetition of one rate for one system, giving its
    success ratio), so it can be tested without clusters:

    * scan: the coarse ``ladder``, one repetition per rate, every active system
      at each rate before the next; a system stops after two misses in a row;
    * refine, per system: R = its highest sustained scan rate, M = the first
      rate tried above R (missed), mid = their geometric mean (rounded); each
      brought to ``reps`` repetitions, systems interleaved per repetition.
      Capacity = the highest of them whose median is sustained; if none is,
      up to ``step_down`` rungs below R are brought to ``reps`` in turn;
    * load, for ``load_systems``: ``LOW_RATE`` when below capacity/2 (to ``reps``
      repetitions: one run of a latency point says little on a busy
      machine), capacity/2 and 2x capacity (``reps`` each) and 3x capacity
      (one repetition: it counts leader changes).
    """

    def __init__(self, systems: list[str], ladder: list[float], run: RunFn, reps: int = 3,
                 load_systems: list[str] | None = None, step_down: int = STEP_DOWN,
                 ratio: float = SUSTAINED) -> None:
        self.systems = list(systems)
        self.ladder = sorted(ladder)
        self.run = run
        self.reps = reps
        chosen = load_systems if load_systems is not None else systems
        self.load_systems = [s for s in chosen if s in systems]
        self.step_down = step_down
        self.ratio = ratio
        self.ratios: dict[str, dict[float, list[float]]] = {s: {} for s in systems}
        self.scanned: dict[str, list[float]] = {s: [] for s in systems}
        self.capacity: dict[str, Capacity] = {}

    def _run(self, system: str, rate: float, phase: str) -> float:
        got = self.ratios[system].setdefault(rate, [])
        r = self.run(system, rate, phase, len(got))
        got.append(r)
        return r

    def median(self, system: str, rate: float) -> float | None:
        got = self.ratios[system].get(rate)
        return statistics.median(got) if got else None

    def sustained(self, system: str, rate: float) -> bool:
        m = self.median(system, rate)
        return m is not None and m >= self.ratio

    def bring_to(self, wanted: dict[str, list[tuple[float, int]]], phase: str) -> None:
        """Run each system's (rate, repetitions wanted) until it has that many,
        repetition by repetition with the systems interleaved."""
        top = max((n for pairs in wanted.values() for _, n in pairs), default=0)
        for rep in range(top):
            for s in self.systems:
                for rate, n in wanted.get(s, []):
                    if rep < n and len(self.ratios[s].get(rate, [])) <= rep:
                        self._run(s, rate, phase)

    def scan(self) -> None:
        misses = dict.fromkeys(self.systems, 0)
        for rate in self.ladder:
            active = [s for s in self.systems if misses[s] < 2]  # two misses in a row: past capacity
            if not active:
                break
            for s in active:
                ok = self._run(s, rate, "scan") >= self.ratio
                self.scanned[s].append(rate)
                misses[s] = 0 if ok else misses[s] + 1

    def refine_candidates(self, system: str) -> list[float]:
        """R, mid, M of a system after the scan (fewer when the scan found no R or no M)."""
        tried = self.scanned[system]
        held = [r for r in tried if self.sustained(system, r)]
        if not held:
            return []
        best = max(held)
        above = [r for r in tried if r > best]
        if not above:
            return [best]
        miss = min(above)
        mid = round_rate(math.sqrt(best * miss))
        return sorted({best, mid, miss}) if best < mid < miss else [best, miss]

    def refine(self) -> None:
        cands = {s: self.refine_candidates(s) for s in self.systems}
        self.bring_to({s: [(r, self.reps) for r in rates] for s, rates in cands.items()}, "refine")
        for s in self.systems:
            held = [r for r in cands[s] if self.sustained(s, r)]
            if not held and cands[s]:
                below = [r for r in self.ladder if r < min(cands[s])][::-1][: self.step_down]
                for r in below:  # bounded step down, one rung at a time
                    self.bring_to({s: [(r, self.reps)]}, "refine")
                    if self.sustained(s, r):
                        held = [r]
                        break
            if held:
                rate = max(held)
                self.capacity[s] = Capacity(s, rate, self.median(s, rate), len(self.ratios[s][rate]))
            else:
                self.capacity[s] = Capacity(s, None, None, 0)

    def load_rates(self, system: str) -> list[tuple[float, int]]:
        cap = self.capacity.get(system)
        if cap is None or cap.rate is None:
            return []
        low = [(LOW_RATE, self.reps)] if cap.rate / 2 > LOW_RATE else []
        return low + [(round_rate(cap.rate / 2), self.reps), (round_rate(2 * cap.rate), self.reps),
                      (round_rate(3 * cap.rate), 1)]

    def load(self) -> None:
        self.bring_to({s: self.load_rates(s) for s in self.load_systems}, "load")

    def search(self) -> dict[str, Capacity]:
        self.scan()
        self.refine()
        self.load()
        return self.capacity


@dataclass(frozen=True)
class Point:
    system: str
    nodes: int
    size: int
    mode: str  # "open" or "closed"
    load: float  # open: calls/s offered across the cluster; closed: blocking caller threads in total


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def proc_cpu(pid: int) -> tuple[float, float] | None:
    """(own, waited-for children) CPU seconds of a process from /proc/<pid>/stat:
    utime+stime of all its threads, and cutime+cstime of children it reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK


def split_threads(total: int, nodes: int) -> list[int]:
    """Blocking callers per node: round-robin from node 0 (1 caller: only node 0)."""
    return [total // nodes + (1 if i < total % nodes else 0) for i in range(nodes)]


def run_once(point: Point, args: argparse.Namespace) -> dict[str, Any]:
    """One repetition of a point: a fresh cluster, one window; aggregated results."""
    addrs = [f"127.0.0.1:{p}" for p in free_ports(point.nodes)]
    lib = "pysyncobj" if point.system == "pysyncobj" else "raftkit"
    per_node_threads = split_threads(int(point.load), point.nodes) if point.mode == "closed" else []
    work = tempfile.mkdtemp(prefix="raftkit-bench-", dir=args.data_root)
    barrier = os.path.join(work, "barrier")
    os.makedirs(barrier)
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    error: str | None = None
    outs: dict[int, dict[str, Any]] = {}
    cpu0: dict[int, tuple[float, float] | None] = {}
    cpu1: dict[int, tuple[float, float] | None] = {}
    spawned = time.monotonic()
    ready_after = None
    env = {**os.environ, "RAFTKIT_EVENT_LOOP": EVENT_LOOP.get(point.system, "auto"),
           # in-memory nodes' restart markers: removed with the run's folder, not left in /tmp
           "RAFTKIT_STATE_MARKER_DIR": os.path.join(work, "markers")}
    try:
        for i, a in enumerate(addrs):
            cmd = [
                sys.executable, "-m", "benchmarks.perf.worker",
                "--lib", lib, "--self", a,
                "--partners", ",".join(x for x in addrs if x != a),
                "--barrier", barrier, "--mode", point.mode, "--size", str(point.size),
                "--duration", str(args.duration), "--grace", str(args.grace), "--drain", str(args.drain),
            ]  # fmt: skip
            if point.mode == "open":
                cmd += ["--rate", str(point.load / point.nodes)]
            else:
                cmd += ["--threads", str(per_node_threads[i])]
            if args.queue_size is not None:
                cmd += ["--queue-size", str(args.queue_size)]
            if args.loop_stats and lib == "raftkit":
                cmd += ["--loop-stats"]
            if point.system == "raftkit-durable":
                cmd += ["--data-dir", os.path.join(work, "data-" + a.replace(":", "_"))]
            log = open(os.path.join(work, f"worker-{i}.log"), "wb")  # noqa: SIM115 - closed in finally
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env
                )
            )
        ready_by = time.monotonic() + 60
        while time.monotonic() < ready_by:
            if len(os.listdir(barrier)) >= point.nodes or any(p.poll() is not None for p in procs):
                break
            time.sleep(0.02)
        if len(os.listdir(barrier)) < point.nodes:
            raise RuntimeError("the cluster did not get ready (no leader, or a worker died)")
        ready_after = round(time.monotonic() - spawned, 2)
        start = time.monotonic() + 0.3
        tmp = os.path.join(work, "go.tmp")
        with open(tmp, "w") as f:
            f.write(repr(start))
        os.rename(tmp, os.path.join(barrier, "go"))  # atomic: workers never read half a number
        time.sleep(max(0.0, start - time.monotonic()))
        cpu0 = {p.pid: proc_cpu(p.pid) for p in procs}
        window_end = start + args.duration + args.grace
        time.sleep(max(0.0, window_end - time.monotonic()))
        cpu1 = {p.pid: proc_cpu(p.pid) for p in procs}
        outs = read_results(procs, window_end + args.drain + 30)
        if len(outs) < len(procs):
            raise RuntimeError(f"{len(procs) - len(outs)} worker(s) reported nothing")
    except RuntimeError as exc:
        error = str(exc)
    finally:
        reported = len(outs) == len(procs)
        for p in procs:  # only the processes this function started
            try:
                if p.stdin:
                    p.stdin.close()  # tells a worker that reported to exit
            except OSError:
                pass
            if not reported and p.poll() is None:
                p.kill()  # a failed or interrupted run: no point waiting for the rest
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
        if error is not None:
            tails = []
            for i in range(len(procs)):
                text = Path(work, f"worker-{i}.log").read_text(errors="replace").strip().splitlines()
                tails.append(f"    worker {i}: " + (" | ".join(text[-3:]) if text else "(no stderr)"))
            error += "\n" + "\n".join(tails)
        shutil.rmtree(work, ignore_errors=True)
    if error is not None:
        return {**asdict(point), "error": error}
    r = aggregate(point, args, [outs[p.pid] for p in procs], [cpu0[p.pid] for p in procs],
                  [cpu1[p.pid] for p in procs], per_node_threads)
    r["ready_after_s"] = ready_after  # start-up: spawn to every node ready (not measured)
    r["wall_s"] = round(time.monotonic() - spawned, 2)  # the whole repetition, for planning
    return r


def read_results(procs: list[subprocess.Popen[bytes]], deadline: float) -> dict[int, dict[str, Any]]:
    """The ``RESULT {...}`` line of every worker, reading all pipes until ``deadline``."""
    sel = selectors.DefaultSelector()
    bufs: dict[int, bytes] = {}
    for p in procs:
        assert p.stdout is not None
        sel.register(p.stdout, selectors.EVENT_READ, p.pid)
        bufs[p.pid] = b""
    outs: dict[int, dict[str, Any]] = {}
    while len(outs) < len(procs) and time.monotonic() < deadline and sel.get_map():
        for key, _ in sel.select(timeout=max(0.0, min(1.0, deadline - time.monotonic()))):
            pid = key.data
            chunk = os.read(key.fd, 65536)
            if not chunk:  # the worker exited
                sel.unregister(key.fileobj)
                continue
            bufs[pid] += chunk
            for line in bufs[pid].split(b"\n"):
                if line.startswith(b"RESULT "):
                    outs[pid] = json.loads(line[len(b"RESULT "):])
                    sel.unregister(key.fileobj)
                    break
    sel.close()
    return outs


def aggregate(point: Point, args: argparse.Namespace, outs: list[dict[str, Any]],
              cpu0: list[tuple[float, float] | None], cpu1: list[tuple[float, float] | None],
              per_node_threads: list[int]) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(o[key] for o in outs)

    def by_reason(key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in outs:
            for reason, n in o[key].items():
                out[reason] = out.get(reason, 0) + n
        return out

    hist = merge(o["hist"] for o in outs)
    offered, ok = total("offered"), total("ok_in_window")
    # Open loop: success counts against the calls the rate asks for, not only those
    # made. Callers that fall behind (their process's CPU is full) make fewer calls,
    # and a rate they could not even offer is not sustained.
    asked = max(offered, round(point.load * args.duration)) if point.mode == "open" else offered
    cpu_proc = [
        None if a is None or b is None else round(b[0] - a[0], 3) for a, b in zip(cpu0, cpu1, strict=True)
    ]
    cpu_children = [
        None if a is None or b is None else round(b[1] - a[1], 3) for a, b in zip(cpu0, cpu1, strict=True)
    ]
    cpu_sum = None if None in cpu_proc else sum(c for c in cpu_proc if c is not None)
    refused, failed = by_reason("refused"), by_reason("failed")
    terms_start = [o["term_start"] for o in outs if o["term_start"] is not None]
    terms_end = [o["term_end"] for o in outs if o["term_end"] is not None]
    return {
        **asdict(point),
        "offered": offered,
        "committed": ok,  # successes completed by end of offering + grace
        "committed_late": total("ok_late"),
        "refused": sum(refused.values()),
        "refused_by_reason": refused,
        "failed": sum(failed.values()),
        "failed_by_reason": failed,
        "unfinished": total("unfinished"),
        "asked": asked,
        "success_ratio": ok / asked if asked else 0.0,
        "sustained": asked > 0 and ok >= SUSTAINED * asked,
        "goodput": ok / args.duration,
        "p50": percentile(hist, 0.50),
        "p90": percentile(hist, 0.90),
        "p99": percentile(hist, 0.99),
        "max": percentile(hist, 1.0),
        "cpu_s_per_node": cpu_proc,
        "cpu_children_s_per_node": cpu_children,
        "cpu_process_time_s_per_node": [round(o["cpu_process_time"], 3) for o in outs],
        "gc_collections_per_node": [o.get("gc_collections") for o in outs],
        "cpu_us_per_commit": 1e6 * cpu_sum / ok if ok and cpu_sum is not None else None,
        "leader_changes": max(o.get("leader_changes", 0) for o in outs),
        "leader_change_at_s": sorted({t for o in outs for t in o.get("leader_change_at_s", [])}),
        "leaderless_samples": max(o.get("leaderless_samples", 0) for o in outs),
        "term_changes": (max(terms_end) - min(terms_start)) if terms_start and terms_end else None,
        "callers_on_leader": sum(t for t, o in zip(per_node_threads, outs, strict=False) if o["was_leader"]),
        "loop_stats": loop_stats.summarize([o.get("loop_stats") for o in outs], ok),  # --loop-stats
    }


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    model = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "loadavg_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "raftkit_commit": git("rev-parse", "HEAD"),
        "raftkit_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "raftkit_version": version("pyraftkit"),
        "pysyncobj_version": version("pysyncobj"),
        "data_root": args.data_root or tempfile.gettempdir(),
    }


def describe(r: dict[str, Any]) -> str:
    load = f"{r['load']:>6.0f}/s" if r["mode"] == "open" else f"{r['load']:>3.0f} thr "
    head = f"  {r['system']:15} n={r['nodes']} size={r['size']:<5} {r['mode']:6} {load}"
    if "error" in r:
        return f"{head}  ERROR {r['error']}"

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x * 1000:.1f}"

    cpu = "-" if r["cpu_us_per_commit"] is None else f"{r['cpu_us_per_commit']:.0f}"
    loops = "" if not r.get("loop_stats") else "\n    " + loop_stats.describe(r["loop_stats"])
    return (
        f"{head} committed {r['committed']:>6}/{r['offered']:<6} ({100 * r['success_ratio']:5.1f}%)"
        f" refused {r['refused']} failed {r['failed']} late {r['committed_late']} never {r['unfinished']}"
        f"  p50 {ms(r['p50'])} p99 {ms(r['p99'])} ms  cpu {cpu} us/cmd  leader changes {r['leader_changes']}"
        + loops
    )


def ladder(size: int) -> list[float]:
    return [float(x) for x in (LADDER_LARGE if size >= LARGE else LADDER_SMALL)]


def workload_systems(systems: list[str], n: int, durable_nodes: list[int] | None) -> list[str]:
    """The systems of an n-node workload: raftkit-durable only where durable_nodes allows."""
    return [s for s in systems if s != "raftkit-durable" or durable_nodes is None or n in durable_nodes]


def load_systems(systems: list[str]) -> list[str]:
    """The systems that get load points (half, 2x, 3x capacity): raftkit's, not the baseline."""
    return [s for s in systems if s.startswith("raftkit")]


def estimate(nodes: list[int], sizes: list[int], systems: list[str], reps: int, threads: list[int],
             closed_nodes: list[int] | None, durable_nodes: list[int] | None,
             fixed_rates: list[float] | None) -> tuple[int, int]:
    """(expected, worst-case) number of runs. Expected: each system's scan stops two
    rungs past HINT_3_NODES, no step down. Worst case: every system scans the whole
    ladder and every step down is taken (a fixed ladder: every rate, every rep)."""
    expected = worst = 0
    for n in nodes:
        for size in sizes:
            here = workload_systems(systems, n, durable_nodes)
            if closed_nodes is None or n in closed_nodes:
                expected += len(threads) * reps * len(here)
                worst += len(threads) * reps * len(here)
            if fixed_rates is not None:
                expected += len(fixed_rates) * reps * len(here)
                worst += len(fixed_rates) * reps * len(here)
                continue
            rungs = scan_ladder(size)
            for s in here:
                hint = HINT_3_NODES.get((s, size >= LARGE), 0) * HINT_NODE_SCALE.get(n, 3 / n)
                load = 3 * reps if s in load_systems(here) else 0  # 1,000/s: reps - 1 beyond its scan run
                refine = 3 * reps - 2  # R and M have their scan run; mid starts from none
                expected += min(len(rungs), sum(r <= hint for r in rungs) + 2) + refine + load
                worst += len(rungs) + refine + STEP_DOWN * (reps - 1) + load
    return expected, worst


def mmss(seconds: float) -> str:
    return f"{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="full")
    ap.add_argument("--name", default=None, help="the file name's suffix (default: the preset)")
    ap.add_argument("--nodes", help="comma-separated cluster sizes")
    ap.add_argument("--sizes", help="comma-separated value sizes in bytes")
    ap.add_argument("--systems", help=f"comma-separated, of {','.join(SYSTEMS)}")
    ap.add_argument("--rates", help="open-loop calls/s in total, a fixed ladder (default: the preset's, or "
                                    "the adaptive search: scan, refine, load points); '' for none")
    ap.add_argument("--threads", help="closed-loop caller threads in total; '' for none")
    ap.add_argument("--closed-nodes", help="closed loop only for these cluster sizes (default: the preset's; "
                                           "full: 3)")
    ap.add_argument("--durable-nodes", help="raftkit-durable only for these cluster sizes (default: the "
                                            "preset's; full: 3)")
    ap.add_argument("--reps", type=int, help="repetitions of a point (adaptive: of refine and load points)")
    ap.add_argument("--duration", type=float, help="seconds of offered load per repetition")
    ap.add_argument("--grace", type=float, default=1.0, help="successes this long after the load still count")
    ap.add_argument("--drain", type=float, default=3.0, help="then late outcomes are collected for this long")
    ap.add_argument("--queue-size", type=int, default=None,
                    help="commandsQueueSize of every node (default: each library's own, 100,000 in both)")
    ap.add_argument("--data-root", default=None, help="where durable nodes keep LMDB (default: the temp dir)")
    ap.add_argument("--loop-stats", action="store_true",
                    help="raftkit on asyncio: per run, the node loops' turns, callbacks and CPU per "
                         "committed command, by kind of callback (benchmarks/perf/loop_stats.py)")
    ap.add_argument("--out", default=None, help="write the JSON here instead of benchmarks/results/")
    ap.add_argument("--plan", action="store_true", help="print the ladders, phases and estimate; run nothing")
    args = ap.parse_args()

    preset = PRESETS[args.preset]

    def ints(text: str | None, default: list[int] | None) -> list[int] | None:
        return default if text is None else [int(x) for x in text.split(",") if x]

    nodes = ints(args.nodes, preset["nodes"]) or []
    sizes = ints(args.sizes, preset["sizes"]) or []
    systems = preset["systems"] if args.systems is None else args.systems.split(",")
    bad = [s for s in systems if s not in SYSTEMS]
    if bad:
        ap.error(f"unknown system(s) {bad}; choose from {SYSTEMS}")
    fixed_rates = None if args.rates is None else [float(x) for x in args.rates.split(",") if x]
    if fixed_rates is None and preset["rates"] is not None:
        fixed_rates = [float(x) for x in preset["rates"]]
    threads = ints(args.threads, preset["threads"]) or []
    closed_nodes = ints(args.closed_nodes, preset.get("closed_nodes"))
    durable_nodes = ints(args.durable_nodes, preset.get("durable_nodes"))
    reps = args.reps or preset["reps"]
    args.duration = args.duration or preset["duration"]
    run_wall = args.duration + RUN_WALL_S
    expected, worst = estimate(nodes, sizes, systems, reps, threads, closed_nodes, durable_nodes, fixed_rates)
    estimate_text = (f"estimate: ~{expected} runs, ~{expected * run_wall / 60:.0f} min expected; "
                     f"at most {worst} runs, {worst * run_wall / 60:.0f} min (~{run_wall:.0f} s a run)")
    if args.plan:
        for n in nodes:
            for size in sizes:
                here = workload_systems(systems, n, durable_nodes)
                print(f"{n} nodes, {size}-byte values: {', '.join(here)}")
                if fixed_rates is not None:
                    rates_text = ", ".join(f"{r:,.0f}" for r in fixed_rates)
                    print(f"  open loop, fixed rates x {reps} reps: {rates_text}")
                else:
                    print(f"  scan (1 rep, until 2 misses in a row): "
                          f"{', '.join(f'{r:,.0f}' for r in scan_ladder(size))}")
                    print(f"  refine: R, geometric mid, M to {reps} reps (then up to {STEP_DOWN} rungs down)")
                    if load_systems(here):
                        print(f"  load ({', '.join(load_systems(here))}): {LOW_RATE:,}/s, capacity/2 and 2x "
                              f"x {reps} reps, 3x x 1 rep")
                if threads and (closed_nodes is None or n in closed_nodes):
                    print(f"  closed loop: {', '.join(map(str, threads))} threads x {reps} reps")
        print(estimate_text)
        return 0
    if "pysyncobj" in systems:
        try:
            importlib.metadata.version("pysyncobj")
        except importlib.metadata.PackageNotFoundError:
            sys.exit("PySyncObj is not installed: run  .venv/bin/pip install -e '.[bench]'  (or make bench)")

    if args.data_root is not None and not os.access(args.data_root, os.W_OK):
        ap.error(f"--data-root {args.data_root}: not a writable directory")

    name = args.name or args.preset
    started = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = Path(args.out) if args.out else RESULTS / f"{started}-{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "format": "raftkit-bench/1",
        "name": name,
        "started_utc": started,
        "machine": machine_info(args),
        "settings": {
            "preset": args.preset, "nodes": nodes, "sizes": sizes, "systems": systems, "reps": reps,
            "rates": fixed_rates, "threads": threads, "duration_s": args.duration, "grace_s": args.grace,
            "drain_s": args.drain, "sustained_ratio": SUSTAINED, "queue_size": args.queue_size,
            "closed_nodes": closed_nodes, "durable_nodes": durable_nodes,
            "search": None if fixed_rates is not None else "adaptive",
        },
        "runs": [],
    }
    if fixed_rates is None:
        doc["capacity"] = []
    t0 = time.monotonic()

    def record(r: dict[str, Any], rep: int, phase: str, of: int | None) -> dict[str, Any]:
        r["rep"] = rep
        r["phase"] = phase
        doc["runs"].append(r)
        save()
        print(describe(r) + f"  [{phase} rep {rep + 1}{'' if of is None else f'/{of}'}]", flush=True)
        return r

    def save() -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(out)  # rewritten after every run: an interrupted matrix keeps what it measured

    def go(point: Point) -> dict[str, Any]:
        print(f"[{len(doc['runs'])} runs done, elapsed {mmss(time.monotonic() - t0)}]", flush=True)
        return run_once(point, args)

    print(f"writing {out}", flush=True)
    print(estimate_text, flush=True)
    for n in nodes:
        for size in sizes:
            here = workload_systems(systems, n, durable_nodes)
            if fixed_rates is not None:
                print(f"{n} nodes, {size}-byte values, open loop:", flush=True)
                misses = dict.fromkeys(here, 0)
                for rate in fixed_rates:
                    active = [s for s in here if misses[s] < 2]  # two misses in a row: past capacity
                    if not active:
                        break
                    ratios: dict[str, list[float]] = {s: [] for s in active}
                    for rep in range(reps):
                        for s in active:
                            r = record(go(Point(s, n, size, "open", rate)), rep, "ladder", reps)
                            ratios[s].append(r.get("success_ratio", 0.0))
                    for s in active:
                        med = statistics.median(ratios[s])
                        misses[s] = 0 if med >= SUSTAINED else misses[s] + 1
            else:
                print(f"{n} nodes, {size}-byte values, open loop, adaptive search:", flush=True)

                def run(s: str, rate: float, phase: str, rep: int, n: int = n, size: int = size) -> float:
                    # rep counts this system's runs at this rate over all phases (3x: one)
                    r = record(go(Point(s, n, size, "open", rate)), rep, phase, None)
                    return float(r.get("success_ratio", 0.0))

                search = AdaptiveSearch(here, scan_ladder(size), run, reps=reps,
                                        load_systems=load_systems(here))
                for cap in search.search().values():
                    doc["capacity"].append({"nodes": n, "size": size, **asdict(cap)})
                    save()
                    got = "none sustained" if cap.rate is None else (
                        f"{cap.rate:,.0f}/s (median success {100 * (cap.median_success_ratio or 0):.1f} %)")
                    print(f"  capacity {cap.system} n={n} size={size}: {got}", flush=True)
            if threads and (closed_nodes is None or n in closed_nodes):
                print(f"{n} nodes, {size}-byte values, closed loop (sync=True):", flush=True)
                for th in threads:
                    for rep in range(reps):
                        for s in here:
                            record(go(Point(s, n, size, "closed", th)), rep, "closed", reps)
    doc["finished_utc"] = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    doc["elapsed_s"] = round(time.monotonic() - t0, 1)
    out.write_text(json.dumps(doc, indent=1))
    print(f"{len(doc['runs'])} runs in {doc['elapsed_s']:.0f} s; results: {out}", flush=True)
    print(f"report: .venv/bin/python -m benchmarks.perf.report {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
