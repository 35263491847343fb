"""Run the benchmark matrix and write ``benchmarks/results/<timestamp>-<name>.json``.

    .venv/bin/python -m benchmarks.perf.driver --preset quick            # ~2 minutes
    .venv/bin/python -m benchmarks.perf.driver --preset full             # the whole report (hours)
    .venv/bin/python -m benchmarks.perf.driver --systems raftkit --nodes 5 --sizes 10 \\
        --rates 2000,4000 --threads 8 --duration 2 --reps 1 --name try

Each *point* (system, nodes, value size, load) is run ``--reps`` times; the
repetitions of all systems are interleaved at each load so that drift on a
shared machine hits them alike. Open-loop rates rise until two in a row are
not sustained (median success ratio < 90 %) for that system. Every
repetition is one fresh cluster of node processes on 127.0.0.1.

Systems: ``raftkit`` (in memory, asyncio's event loop), ``raftkit-uvloop``
(in memory, uvloop's), ``raftkit-durable`` (LMDB log, one fsynced
transaction per Ready: group commit) and ``pysyncobj`` (from PyPI, defaults).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.perf.stats import merge, percentile

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SYSTEMS = ("raftkit", "raftkit-uvloop", "raftkit-durable", "pysyncobj")
# raftkit's node loop in each system (RAFTKIT_EVENT_LOOP); uvloop comes with the bench extra.
EVENT_LOOP = {"raftkit": "asyncio", "raftkit-uvloop": "uvloop", "raftkit-durable": "asyncio"}
SUSTAINED = 0.90  # the definition: >= 90 % of offered calls committed inside the window
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Open-loop ladders (calls/s offered across the cluster): roughly x1.4 steps.
LADDER_SMALL = [1000, 2000, 3000, 5000, 7000, 10000, 14000, 20000, 28000, 40000, 56000, 80000, 112000]
# Values of 8 KB and more:
LADDER_LARGE = [200, 400, 700, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 11000, 16000]

PRESETS: dict[str, dict[str, Any]] = {
    "full": dict(nodes=[3, 5, 7], sizes=[10, 1024, 20480], systems=list(SYSTEMS), reps=3,
                 rates=None, threads=[1, 8, 64], duration=5.0),
    # ~2 minutes: 3 nodes, both libraries in memory, one repetition, a few rates.
    "quick": dict(nodes=[3], sizes=[10, 1024], systems=["raftkit", "pysyncobj"], reps=1,
                  rates=[2000, 6000, 12000], threads=[8], duration=3.0),
}


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
        "success_ratio": ok / offered if offered else 0.0,
        "sustained": offered > 0 and ok >= SUSTAINED * offered,
        "goodput": ok / args.duration,
        "p50": percentile(hist, 0.50),
        "p90": percentile(hist, 0.90),
        "p99": percentile(hist, 0.99),
        "max": percentile(hist, 1.0),
        "cpu_s_per_node": cpu_proc,
        "cpu_children_s_per_node": cpu_children,
        "cpu_process_time_s_per_node": [round(o["cpu_process_time"], 3) for o in outs],
        "cpu_us_per_commit": 1e6 * cpu_sum / ok if ok and cpu_sum is not None else None,
        "leader_changes": max(o.get("leader_changes", 0) for o in outs),
        "leader_change_at_s": sorted({t for o in outs for t in o.get("leader_change_at_s", [])}),
        "leaderless_samples": max(o.get("leaderless_samples", 0) for o in outs),
        "term_changes": (max(terms_end) - min(terms_start)) if terms_start and terms_end else None,
        "callers_on_leader": sum(t for t, o in zip(per_node_threads, outs, strict=False) if o["was_leader"]),
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
    return (
        f"{head} committed {r['committed']:>6}/{r['offered']:<6} ({100 * r['success_ratio']:5.1f}%)"
        f" refused {r['refused']} failed {r['failed']} late {r['committed_late']} never {r['unfinished']}"
        f"  p50 {ms(r['p50'])} p99 {ms(r['p99'])} ms  cpu {cpu} us/cmd  leader changes {r['leader_changes']}"
    )


def ladder(size: int) -> list[float]:
    return [float(x) for x in (LADDER_LARGE if size >= 8192 else LADDER_SMALL)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="full")
    ap.add_argument("--name", default=None, help="the file name's suffix (default: the preset)")
    ap.add_argument("--nodes", help="comma-separated cluster sizes")
    ap.add_argument("--sizes", help="comma-separated value sizes in bytes")
    ap.add_argument("--systems", help=f"comma-separated, of {','.join(SYSTEMS)}")
    ap.add_argument("--rates", help="open-loop calls/s in total (default: a ladder per size); '' for none")
    ap.add_argument("--threads", help="closed-loop caller threads in total; '' for none")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--duration", type=float, help="seconds of offered load per repetition")
    ap.add_argument("--grace", type=float, default=1.0, help="successes this long after the load still count")
    ap.add_argument("--drain", type=float, default=3.0, help="then late outcomes are collected for this long")
    ap.add_argument("--queue-size", type=int, default=None,
                    help="commandsQueueSize of every node (default: each library's own, 100,000 in both)")
    ap.add_argument("--data-root", default=None, help="where durable nodes keep LMDB (default: the temp dir)")
    ap.add_argument("--out", default=None, help="write the JSON here instead of benchmarks/results/")
    args = ap.parse_args()

    preset = PRESETS[args.preset]

    def ints(text: str | None, default: list[int]) -> list[int]:
        return default if text is None else [int(x) for x in text.split(",") if x]

    nodes = ints(args.nodes, preset["nodes"])
    sizes = ints(args.sizes, preset["sizes"])
    systems = preset["systems"] if args.systems is None else args.systems.split(",")
    bad = [s for s in systems if s not in SYSTEMS]
    if bad:
        ap.error(f"unknown system(s) {bad}; choose from {SYSTEMS}")
    fixed_rates = None if args.rates is None else [float(x) for x in args.rates.split(",") if x]
    if fixed_rates is None and preset["rates"] is not None:
        fixed_rates = [float(x) for x in preset["rates"]]
    threads = ints(args.threads, preset["threads"])
    reps = args.reps or preset["reps"]
    args.duration = args.duration or preset["duration"]
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
        },
        "runs": [],
    }

    def record(r: dict[str, Any], rep: int) -> dict[str, Any]:
        r["rep"] = rep
        doc["runs"].append(r)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(out)  # rewritten after every run: an interrupted matrix keeps what it measured
        print(describe(r) + f"  [rep {rep + 1}/{reps}]", flush=True)
        return r

    t0 = time.monotonic()
    print(f"writing {out}", flush=True)
    for n in nodes:
        for size in sizes:
            rates = fixed_rates if fixed_rates is not None else ladder(size)
            print(f"{n} nodes, {size}-byte values, open loop:", flush=True)
            misses = dict.fromkeys(systems, 0)
            for rate in rates:
                active = [s for s in systems if misses[s] < 2]  # two misses in a row: past capacity
                if not active:
                    break
                ratios: dict[str, list[float]] = {s: [] for s in active}
                for rep in range(reps):
                    for s in active:
                        r = record(run_once(Point(s, n, size, "open", rate), args), rep)
                        ratios[s].append(r.get("success_ratio", 0.0))
                for s in active:
                    med = statistics.median(ratios[s])
                    misses[s] = 0 if med >= SUSTAINED else misses[s] + 1
            if threads:
                print(f"{n} nodes, {size}-byte values, closed loop (sync=True):", flush=True)
            for th in threads:
                for rep in range(reps):
                    for s in systems:
                        record(run_once(Point(s, n, size, "closed", th), args), rep)
    doc["finished_utc"] = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    doc["elapsed_s"] = round(time.monotonic() - t0, 1)
    out.write_text(json.dumps(doc, indent=1))
    print(f"{len(doc['runs'])} runs in {doc['elapsed_s']:.0f} s; results: {out}", flush=True)
    print(f"report: .venv/bin/python -m benchmarks.perf.report {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
