"""Tables and plots from a results file of ``benchmarks.perf.driver``.

    .venv/bin/python -m benchmarks.perf.report benchmarks/results/<file>.json            # tables + PNGs
    .venv/bin/python -m benchmarks.perf.report --no-plots benchmarks/results/<file>.json  # tables only

Prints Markdown tables (paste-able into docs/benchmarks.md): a summary per
workload and system from the capacity the driver found (or, for files
without one, the best sustained rate): capacity, ×PySyncObj, CPU per command
at capacity, latency at 1,000/s and at half capacity, 2x capacity offered,
leader changes up to 3x; then for every workload and load, the median of
the repetitions with the spread (min–max) in brackets, and the closed-loop
summary with the raftkit/PySyncObj ratios (and, for files without a
capacity list, the best sustained open-loop rate). Writes one PNG
per workload (``<file>-n<nodes>-<size>B.png`` beside the JSON) with
matplotlib, which is imported only here and only when plotting.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.perf.driver import round_rate
from benchmarks.perf.stats import median_spread

BASELINE = "pysyncobj"
PHASE_MARKERS = {"scan": "x", "refine": "+", "load": "s"}  # open-loop runs of the adaptive search
Key = tuple[int, int, str]  # (nodes, size, mode): one workload


def size_label(size: int) -> str:
    return f"{size // 1024} KB" if size >= 1024 and size % 1024 == 0 else f"{size} B"


def fmt(med: float | None, lo: float | None, hi: float | None, scale: float = 1.0, digits: int = 0,
        spread: bool = True) -> str:
    if med is None:
        return "–"
    text = f"{med * scale:,.{digits}f}"
    if spread and lo is not None and hi is not None and hi > lo:
        text += f" ({lo * scale:,.{digits}f}–{hi * scale:,.{digits}f})"
    return text


def stat(runs: list[dict[str, Any]], key: str) -> tuple[float | None, float | None, float | None]:
    return median_spread(r.get(key) for r in runs)


def num(runs: list[dict[str, Any]], key: str, spread: bool = True) -> str:
    """A count or rate: median (min–max)."""
    return fmt(*stat(runs, key), spread=spread)


def ms(runs: list[dict[str, Any]], key: str) -> str:
    """A latency in ms: median (min–max)."""
    return fmt(*stat(runs, key), scale=1000, digits=1)


def group(runs: Iterable[dict[str, Any]]) -> dict[Key, dict[str, dict[float, list[dict[str, Any]]]]]:
    """workload -> system -> load -> repetitions (runs that errored are left out)."""
    out: dict[Key, dict[str, dict[float, list[dict[str, Any]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for r in runs:
        if "error" not in r:
            out[(r["nodes"], r["size"], r["mode"])][r["system"]][r["load"]].append(r)
    return out


def point_table(key: Key, systems: dict[str, dict[float, list[dict[str, Any]]]]) -> list[str]:
    nodes, size, mode = key
    load_head = "offered/s" if mode == "open" else "threads"
    kind = "open loop" if mode == "open" else "closed loop, sync=True"
    lines = [
        f"#### {nodes} nodes, {size_label(size)} values, {kind}",
        "",
        f"| system | {load_head} | offered | committed in window | success | refused / failed / late / never "
        "| p50 ms | p99 ms | CPU µs/cmd | leader changes |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for system in sorted(systems):
        for load in sorted(systems[system]):
            runs = systems[system][load]
            outcomes = ("refused", "failed", "committed_late", "unfinished")
            errs = "/".join(num(runs, k, False) for k in outcomes)
            lines.append(
                f"| {system} | {load:,.0f} | {num(runs, 'offered')} | {num(runs, 'committed')} "
                f"| {fmt(*stat(runs, 'success_ratio'), scale=100, digits=1)} % | {errs} "
                f"| {ms(runs, 'p50')} | {ms(runs, 'p99')} "
                f"| {num(runs, 'cpu_us_per_commit')} | {max(r['leader_changes'] for r in runs)} |"
            )
    return lines + [""]


def best(loads: dict[float, list[dict[str, Any]]], ratio: float) -> tuple[float, list[dict[str, Any]]] | None:
    """The highest load whose median success ratio is sustained (>= ratio)."""
    ok = [load for load, runs in loads.items() if (stat(runs, "success_ratio")[0] or 0) >= ratio]
    return (max(ok), loads[max(ok)]) if ok else None


def ratio_text(runs: list[dict[str, Any]] | None, base: list[dict[str, Any]] | None, key: str) -> str:
    """×(median of runs / median of base), or – when either is missing."""
    if not runs or not base:
        return "–"
    a, b = stat(runs, key)[0], stat(base, key)[0]
    return f"×{a / b:.2f}" if a is not None and b else "–"


def near(loads: dict[float, list[dict[str, Any]]], rate: float) -> list[dict[str, Any]] | None:
    """The runs at ``rate`` (rounded as the driver rounds it), else at the closest
    load within 15 % of it, else None."""
    if rate in loads:
        return loads[rate]
    if round_rate(rate) in loads:
        return loads[round_rate(rate)]
    close = [x for x in loads if abs(x - rate) <= 0.15 * rate]
    return loads[min(close, key=lambda x: abs(x - rate))] if close else None


def capacities(doc: dict[str, Any], grouped: dict[Key, dict[str, dict[float, list[dict[str, Any]]]]],
               ratio: float) -> dict[tuple[int, int, str], float | None]:
    """(nodes, size, system) -> capacity: the driver's ``capacity`` list when the
    file has one (adaptive search), else the highest load whose median is sustained."""
    if "capacity" in doc:
        return {(c["nodes"], c["size"], c["system"]): c["rate"] for c in doc["capacity"]}
    out: dict[tuple[int, int, str], float | None] = {}
    for (nodes, size, mode), systems in grouped.items():
        if mode == "open":
            for s, loads in systems.items():
                pick = best(loads, ratio)
                out[(nodes, size, s)] = pick[0] if pick else None
    return out


def capacity_summary(doc: dict[str, Any]) -> list[str]:
    """Per workload and system: sustained capacity (median success ratio and its
    spread), ×PySyncObj, CPU at capacity, latency at 1,000/s and at half capacity,
    2x capacity offered (goodput as % of capacity, p99 of successful calls,
    refused calls), and the most leader changes of any open-loop run up to 3x."""
    ratio = doc["settings"].get("sustained_ratio", 0.9)
    grouped = group(doc["runs"])
    caps = capacities(doc, grouped, ratio)
    lines = [
        "#### Summary: sustained capacity (highest offered rate with median success >= "
        f"{100 * ratio:.0f} %) and loads relative to it",
        "",
        "| nodes | size | system | capacity /s | success at capacity | ×PySyncObj | CPU µs/cmd at capacity "
        "| p50 / p99 ms at 1,000/s | p99 ms at capacity/2 | goodput at 2x, % of capacity | p99 ms at 2x "
        "| refused at 2x | max leader changes up to 3x |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (nodes, size, mode), systems in sorted(grouped.items()):
        if mode != "open":
            continue
        base_cap = caps.get((nodes, size, BASELINE))
        for s in sorted(systems):
            loads = systems[s]
            cap = caps.get((nodes, size, s))
            head = f"| {nodes} | {size_label(size)} | {s} "
            at1k = near(loads, 1000.0)
            low = f"{ms(at1k, 'p50')} / {ms(at1k, 'p99')}" if at1k else "–"
            if cap is None:
                changes = max((r["leader_changes"] for runs in loads.values() for r in runs), default=0)
                lines.append(head + f"| none | | | | {low} | | | | | {changes} |")
                continue
            at_cap = loads.get(cap) or near(loads, cap) or []
            vs = "–" if s == BASELINE or not base_cap else f"×{cap / base_cap:.2f}"
            half = near(loads, cap / 2)
            double = near(loads, 2 * cap)
            if double:
                good = stat(double, "goodput")
                good_text = fmt(*(None if g is None else g / cap for g in good), scale=100) + " %"
            else:
                good_text = "–"
            changes = max((r["leader_changes"] for load, runs in loads.items() if load <= 3.05 * cap
                           for r in runs), default=0)
            lines.append(
                head + f"| {cap:,.0f} | {fmt(*stat(at_cap, 'success_ratio'), scale=100, digits=1)} % | {vs} "
                f"| {num(at_cap, 'cpu_us_per_commit')} | {low} | {ms(half, 'p99') if half else '–'} "
                f"| {good_text} | {ms(double, 'p99') if double else '–'} "
                f"| {num(double, 'refused') if double else '–'} | {changes} |"
            )
    return lines + [""]


def summary(grouped: dict[Key, dict[str, dict[float, list[dict[str, Any]]]]], ratio: float,
            open_loop: bool = True) -> list[str]:
    """The best sustained open-loop rate per system (``open_loop``) and the
    closed-loop goodput, with ratios to PySyncObj."""
    lines = [
        "#### Summary: best sustained open-loop rate, and closed-loop goodput",
        "",
        "| nodes | size | system | best sustained offered/s | committed/s | p50 ms | p99 ms | CPU µs/cmd "
        "| ×PySyncObj committed/s | ×PySyncObj p50 | ×PySyncObj CPU/cmd |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ] if open_loop else ["#### Summary: closed-loop goodput"]
    for (nodes, size, mode), systems in sorted(grouped.items()):
        if mode != "open" or not open_loop:
            continue
        picks = {s: best(loads, ratio) for s, loads in systems.items()}
        base_pick = picks.get(BASELINE)
        base = base_pick[1] if base_pick and BASELINE in systems else None
        for s in sorted(systems):
            pick = picks[s]
            if pick is None:
                lines.append(f"| {nodes} | {size_label(size)} | {s} | none | | | | | | | |")
                continue
            load, runs = pick
            vs = None if s == BASELINE else base
            lines.append(
                f"| {nodes} | {size_label(size)} | {s} | {load:,.0f} | {num(runs, 'goodput')} "
                f"| {ms(runs, 'p50')} | {ms(runs, 'p99')} | {num(runs, 'cpu_us_per_commit')} "
                f"| {ratio_text(runs, vs, 'goodput')} | {ratio_text(runs, vs, 'p50')} "
                f"| {ratio_text(runs, vs, 'cpu_us_per_commit')} |"
            )
    closed = [(k, v) for k, v in sorted(grouped.items()) if k[2] == "closed"]
    if closed:
        lines += [
            "",
            "| nodes | size | threads | system | committed/s | p50 ms | p99 ms | CPU µs/cmd "
            "| ×PySyncObj committed/s | ×PySyncObj CPU/cmd |",
            "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for (nodes, size, _), systems in closed:
            for th in sorted({t for loads in systems.values() for t in loads}):
                base_runs = systems.get(BASELINE, {}).get(th)
                for s in sorted(systems):
                    runs = systems[s].get(th)
                    if not runs:
                        continue
                    vs = None if s == BASELINE else base_runs
                    lines.append(
                        f"| {nodes} | {size_label(size)} | {th:.0f} | {s} | {num(runs, 'goodput')} "
                        f"| {ms(runs, 'p50')} | {ms(runs, 'p99')} | {num(runs, 'cpu_us_per_commit')} "
                        f"| {ratio_text(runs, vs, 'goodput')} | {ratio_text(runs, vs, 'cpu_us_per_commit')} |"
                    )
    return lines + [""]


def plot(path: Path, nodes: int, size: int, grouped: dict[Key, dict[str, dict[float, list[dict[str, Any]]]]]
         ) -> None:
    """One PNG for a workload: committed vs offered and latency percentiles,
    open loop on top, closed loop below (when measured)."""
    import matplotlib  # lazily: the driver and the tables work without it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [m for m in ("open", "closed") if (nodes, size, m) in grouped]
    fig, axes = plt.subplots(len(rows), 2, figsize=(12, 4.5 * len(rows)), squeeze=False)
    for row, mode in zip(axes, rows, strict=True):
        systems = grouped[(nodes, size, mode)]
        for s in sorted(systems):
            reps = [systems[s][x] for x in sorted(systems[s])]
            xs = [r[0]["load"] for r in reps]  # the nominal rate (calls/s) or thread count
            good = [stat(r, "goodput") for r in reps]
            med = [g[0] for g in good]
            err = [[g[0] - g[1] for g in good], [g[2] - g[0] for g in good]]
            line = row[0].errorbar(xs, med, yerr=err, marker="o", capsize=3, label=s)
            color = line[0].get_color()
            phased = [r for rs in reps for r in rs if r.get("phase") in PHASE_MARKERS]
            for phase, marker in PHASE_MARKERS.items():  # every run, by phase (adaptive search)
                pts = [(r["load"], r["goodput"]) for r in phased if r["phase"] == phase]
                if pts:
                    row[0].scatter(*zip(*pts, strict=True), marker=marker, color=color, alpha=0.5, s=18,
                                   label=f"{s} {phase} runs")
            for key, marker, style in (("p50", "o", "-"), ("p99", "^", "--")):
                ys = [None if (v := stat(r, key)[0]) is None else v * 1000 for r in reps]
                row[1].plot(xs, ys, marker=marker, linestyle=style, color=color, label=f"{s} {key}")
        xlabel = "offered calls/s (cluster)" if mode == "open" else "blocking caller threads (cluster)"
        if mode == "open":
            top = max(max(loads) for loads in systems.values())
            row[0].plot([0, top], [0, top], color="grey", linewidth=0.8, linestyle=":", label="y = x")
        else:
            for ax in row:
                ax.set_xscale("log", base=2)
        row[0].set(xlabel=xlabel, ylabel="committed inside the window /s",
                   title=f"{nodes} nodes, {size_label(size)}, {mode} loop: goodput (median, min–max)")
        row[1].set(xlabel=xlabel, ylabel="latency ms (log)", yscale="log",
                   title=f"{nodes} nodes, {size_label(size)}, {mode} loop: latency percentiles (median)")
        for ax in row:
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a JSON file written by benchmarks.perf.driver")
    ap.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    ap.add_argument("--plots-dir", type=Path, default=None, help="where PNGs go (default: beside the JSON)")
    args = ap.parse_args()

    doc = json.loads(args.results.read_text())
    m, st = doc["machine"], doc["settings"]
    print(f"## {doc['name']}: {doc['started_utc']} UTC, {len(doc['runs'])} runs")
    print()
    print(
        f"{m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']}, "
        f"raftkit {(m['raftkit_commit'] or '?')[:10]}{' (dirty)' if m['raftkit_dirty'] else ''}, "
        f"PySyncObj {m['pysyncobj_version']}; load average at start {m['loadavg_at_start'][0]:.2f}. "
        f"{st['duration_s']:g} s of load per run, successes up to "
        f"{st['grace_s']:g} s later count; {st['reps']} repetition(s): median (min–max)."
    )
    print()
    errors = [r for r in doc["runs"] if "error" in r]
    for r in errors:
        print(f"- run failed: {r['system']} n={r['nodes']} size={r['size']} {r['mode']} {r['load']:g}: "
              f"{r['error'].splitlines()[0]}")
    if errors:
        print()
    grouped = group(doc["runs"])
    for line in capacity_summary(doc):
        print(line)
    # adaptive files: the capacity table replaces the best-rate one (a single scan run could top it)
    for line in summary(grouped, st["sustained_ratio"], open_loop="capacity" not in doc):
        print(line)
    for key in sorted(grouped):
        for line in point_table(key, grouped[key]):
            print(line)
    changes = max((r["leader_changes"] for r in doc["runs"] if "error" not in r), default=0)
    print(f"Leader changes: at most {changes} in any run (expected 0: no faults are injected).")
    if changes:
        print("WARNING: a leader changed without faults; those runs are not comparable.")

    if not args.no_plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("no plots: matplotlib is missing: .venv/bin/pip install -e '.[bench]'", file=sys.stderr)
            return 1
        out_dir = args.plots_dir or args.results.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        for nodes, size in sorted({(k[0], k[1]) for k in grouped}):
            path = out_dir / f"{args.results.stem}-n{nodes}-{size}B.png"
            plot(path, nodes, size, grouped)
            print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
