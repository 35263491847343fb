"""The benchmark driver's adaptive open-loop search and the report's summary,
without clusters: a fake ``run`` gives each (system, rate) a success ratio."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.perf import report
from benchmarks.perf.driver import (
    SCAN_LARGE,
    SCAN_SMALL,
    AdaptiveSearch,
    Point,
    aggregate,
    estimate,
    round_rate,
    scan_ladder,
)
from benchmarks.perf.worker import Tally, first_call_at, open_loop

ROOT = Path(__file__).resolve().parents[1]


class Fake:
    """Records every run; ``ratio(system, rate, rep)`` decides its success ratio."""

    def __init__(self, ratio: Callable[[str, float, int], float]) -> None:
        self.ratio = ratio
        self.calls: list[tuple[str, float, str, int]] = []

    def __call__(self, system: str, rate: float, phase: str, rep: int) -> float:
        self.calls.append((system, rate, phase, rep))
        return self.ratio(system, rate, rep)

    def rates(self, system: str, phase: str) -> list[float]:
        return [rate for s, rate, p, _ in self.calls if s == system and p == phase]

    def reps_at(self, system: str, rate: float) -> int:
        return sum(1 for s, r, _, _ in self.calls if s == system and r == rate)


def capacity_of(cap: float) -> Callable[[str, float, int], float]:
    return lambda system, rate, rep: 1.0 if rate <= cap else 0.5


def test_round_rate() -> None:
    assert round_rate(125219.6) == 125000
    assert round_rate(62500) == 62500
    assert round_rate(2236.07) == 2240
    assert round_rate(420000) == 420000


def test_capacity_137000_finds_the_miss_and_refines_between() -> None:
    fake = Fake(capacity_of(137000))
    search = AdaptiveSearch(["raftkit"], scan_ladder(10), fake, reps=3)
    caps = search.search()
    # scan: every rung up to 140,000 (the first miss), then 160,000 (second miss), then stop
    assert fake.rates("raftkit", "scan") == SCAN_SMALL[: SCAN_SMALL.index(160000) + 1]
    # refine: R=112,000 and M=140,000 get 2 more reps, the midpoint 125,000 gets 3
    assert sorted(set(fake.rates("raftkit", "refine"))) == [112000, 125000, 140000]
    for rate in (112000, 125000, 140000):
        assert search.median("raftkit", rate) is not None
        assert len(search.ratios["raftkit"][rate]) == 3
    assert fake.rates("raftkit", "refine").count(125000) == 3
    assert caps["raftkit"].rate == 125000
    assert caps["raftkit"].reps == 3
    assert caps["raftkit"].median_success_ratio == 1.0
    # load points: 1,000/s brought to 3 reps (its scan run and 2 more), half
    # (62,500) and 2x (250,000) x 3 reps, 3x (375,000) once
    load = fake.rates("raftkit", "load")
    assert sorted(set(load)) == [1000, 62500, 250000, 375000]
    assert load.count(1000) == 2 and len(search.ratios["raftkit"][1000]) == 3
    assert load.count(62500) == 3 and load.count(375000) == 1
    assert fake.reps_at("raftkit", 250000) == 3
    # every run of a rate got its own repetition index, 0, 1, 2
    assert [rep for s, r, _, rep in fake.calls if r == 125000] == [0, 1, 2]


def test_failing_everything_stops_after_two_scan_misses() -> None:
    fake = Fake(lambda s, rate, rep: 0.0)
    caps = AdaptiveSearch(["pysyncobj"], scan_ladder(10), fake, reps=3).search()
    assert fake.calls == [("pysyncobj", 1000, "scan", 0), ("pysyncobj", 5000, "scan", 0)]
    assert caps["pysyncobj"].rate is None and caps["pysyncobj"].reps == 0


def test_systems_interleaved_and_stop_independently() -> None:
    caps_by = {"raftkit": 137000, "pysyncobj": 31000}
    fake = Fake(lambda s, rate, rep: 1.0 if rate <= caps_by[s] else 0.2)
    search = AdaptiveSearch(["raftkit", "pysyncobj"], scan_ladder(10), fake, reps=3, load_systems=["raftkit"])
    caps = search.search()
    scan = [(s, r) for s, r, p, _ in fake.calls if p == "scan"]
    assert scan[:4] == [("raftkit", 1000), ("pysyncobj", 1000), ("raftkit", 5000), ("pysyncobj", 5000)]
    assert fake.rates("pysyncobj", "scan")[-2:] == [40000, 56000]  # two misses, then no more scans
    assert caps["pysyncobj"].rate == 30000  # mid sqrt(30000*40000) = 34,600 misses
    assert sorted(set(fake.rates("pysyncobj", "refine"))) == [30000, 34600, 40000]
    assert fake.rates("pysyncobj", "load") == []  # the baseline gets no load points
    assert caps["raftkit"].rate == 125000
    # refine repetitions interleave the systems: rep 1 of both before rep 2 of either
    refine = [(s, rep) for s, _, p, rep in fake.calls if p == "refine"]
    first_rep2 = next(i for i, (_, rep) in enumerate(refine) if rep == 2)
    assert {s for s, rep in refine[:first_rep2] if rep == 1} == {"raftkit", "pysyncobj"}


def test_noisy_best_rate_steps_down() -> None:
    # 80,000 passes its scan run by luck and fails its refine runs; 56,000 holds
    def noisy(system: str, rate: float, rep: int) -> float:
        if rate <= 56000:
            return 0.99
        if rate == 80000:
            return 0.95 if rep == 0 else 0.6
        return 0.3

    fake = Fake(noisy)
    search = AdaptiveSearch(["raftkit"], scan_ladder(10), fake, reps=3, load_systems=[])
    caps = search.search()
    assert sorted(set(fake.rates("raftkit", "refine"))) == [56000, 80000, 94700, 112000]
    assert caps["raftkit"].rate == 56000
    assert len(search.ratios["raftkit"][56000]) == 3  # 1 scan + 2 refine


def test_step_down_is_bounded() -> None:
    # the scan's runs succeed, every later repetition fails: two rungs down, then give up
    fake = Fake(lambda s, rate, rep: 1.0 if rep == 0 and rate <= 20000 else 0.0)
    caps = AdaptiveSearch(["raftkit"], scan_ladder(10), fake, reps=3, load_systems=[]).search()
    assert caps["raftkit"].rate is None
    assert sorted(set(fake.rates("raftkit", "refine"))) == [5000, 10000, 20000, 24500, 30000]


def test_large_values_use_the_large_ladder() -> None:
    assert scan_ladder(20480) == [float(x) for x in SCAN_LARGE]
    assert scan_ladder(1024) == [float(x) for x in SCAN_SMALL]


def test_full_preset_estimate_fits() -> None:
    expected, worst = estimate([3, 5, 7], [10, 1024, 20480], ["raftkit", "raftkit-durable", "pysyncobj"], 3,
                               [1, 8, 64], [3], [3], None)
    assert expected < worst
    assert worst * 9 / 60 < 105  # minutes at ~9 s a run: the budget in the driver's docstring


def test_plan_runs_nothing() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.perf.driver", "--plan"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert "scan (1 rep" in out and "estimate:" in out


def synthetic_run(system: str, load: float, ratio: float, phase: str, rep: int, **extra: float) -> dict:
    committed = int(load * 5 * ratio)
    return {
        "system": system, "nodes": 3, "size": 10, "mode": "open", "load": load, "rep": rep, "phase": phase,
        "offered": int(load * 5), "committed": committed, "committed_late": 0, "refused": 0, "failed": 0,
        "unfinished": 0, "success_ratio": ratio, "sustained": ratio >= 0.9, "goodput": committed / 5,
        "p50": 0.002, "p90": 0.004, "p99": 0.008, "max": 0.02, "cpu_us_per_commit": 14.0,
        "leader_changes": 0, **extra,
    }


def synthetic_doc() -> dict:
    runs = [synthetic_run(s, 1000, 1.0, "scan", 0) for s in ("raftkit", "pysyncobj")]
    for rep in range(3):
        runs += [synthetic_run("raftkit", 125000, 0.97 + rep / 100, "refine", rep),
                 synthetic_run("pysyncobj", 30000, 0.95, "refine", rep),
                 synthetic_run("raftkit", 62500, 1.0, "load", rep, p99=0.005),
                 synthetic_run("raftkit", 250000, 0.6, "load", rep, refused=1234, p99=0.05)]
    runs.append(synthetic_run("raftkit", 375000, 0.4, "load", 0, leader_changes=1))
    return {
        "format": "raftkit-bench/1", "name": "synthetic", "started_utc": "20261205-000000",
        "machine": {"cpu_count": 2, "cpu_model": "test", "python": "3.11", "raftkit_commit": "abc",
                    "raftkit_dirty": False, "pysyncobj_version": "0.3.17", "loadavg_at_start": [0.0]},
        "settings": {"duration_s": 5.0, "grace_s": 1.0, "reps": 3, "sustained_ratio": 0.9},
        "runs": runs,
        "capacity": [
            {"system": "raftkit", "nodes": 3, "size": 10, "rate": 125000.0, "median_success_ratio": 0.98,
             "reps": 3},
            {"system": "pysyncobj", "nodes": 3, "size": 10, "rate": 30000.0, "median_success_ratio": 0.95,
             "reps": 3},
        ],
    }


def test_report_summary_has_capacity_and_ratio(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.json"
    path.write_text(json.dumps(synthetic_doc()))
    out = subprocess.run([sys.executable, "-m", "benchmarks.perf.report", "--no-plots", str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=30, check=True).stdout
    lines = report.capacity_summary(synthetic_doc())
    text = "\n".join(lines)
    assert text in out
    row = next(ln for ln in lines if ln.startswith("| 3 | 10 B | raftkit |"))
    assert "125,000" in row and "×4.17" in row  # 125,000 / 30,000
    assert "120 %" in row  # goodput at 2x: 0.6 x 250,000 = 150,000/s, 120 % of 125,000
    assert "1,234" in row
    assert "| 1 |" in row  # the leader change at 3x is counted
    base = next(ln for ln in lines if ln.startswith("| 3 | 10 B | pysyncobj |"))
    assert "30,000" in base


def test_report_handles_files_without_phase(tmp_path: Path) -> None:
    doc = synthetic_doc()
    del doc["capacity"]
    for r in doc["runs"]:
        del r["phase"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc))
    out = subprocess.run([sys.executable, "-m", "benchmarks.perf.report", "--no-plots", str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert "best sustained open-loop rate" in out


def worker_out(offered: int, ok: int) -> dict:
    """One node's RESULT as the worker prints it (only what aggregate reads)."""
    return {
        "offered": offered, "ok_in_window": ok, "ok_late": 0, "refused": {}, "failed": {}, "unfinished": 0,
        "hist": {}, "cpu_process_time": 1.0, "gc_collections": [0, 0, 0], "term_start": 1, "term_end": 1,
        "was_leader": False,
    }


def test_open_loop_success_counts_the_calls_the_rate_asks_for_not_only_those_made() -> None:
    """Callers that fell behind made 60 % of the calls 1,000/s asks for in 5 s and
    every one committed: that is 60 % success, not 100 %, so not sustained."""
    args = argparse.Namespace(duration=5.0)
    open_point = Point("raftkit", 3, 10, "open", 1000.0)
    outs = [worker_out(1000, 1000) for _ in range(3)]  # 3,000 of the 5,000 asked
    r = aggregate(open_point, args, outs, [None] * 3, [None] * 3, [0] * 3)
    assert (r["offered"], r["asked"], r["committed"]) == (3000, 5000, 3000)
    assert r["success_ratio"] == 0.6 and not r["sustained"]
    kept_up = aggregate(open_point, args, [worker_out(1667, 1600)] * 3, [None] * 3, [None] * 3, [0] * 3)
    assert kept_up["asked"] == 5001 and kept_up["sustained"]  # offered a call more: the calls made count
    closed = aggregate(Point("raftkit", 3, 10, "closed", 8), args, outs, [None] * 3, [None] * 3, [0] * 3)
    assert closed["asked"] == 3000 and closed["success_ratio"] == 1.0  # closed loop: the calls made


def test_open_loop_schedules_of_the_nodes_interleave_evenly() -> None:
    """Three nodes at 100 calls/s each: their first calls fall due 1/300 s
    apart, so together they offer one call every 1/300 s, not three at once."""
    nodes = ["127.0.0.1:3", "127.0.0.1:1", "127.0.0.1:2"]
    firsts = sorted(first_call_at(10.0, 100.0, n, ",".join(m for m in nodes if m != n)) for n in nodes)
    assert firsts == pytest.approx([10.0, 10.0 + 1 / 300, 10.0 + 2 / 300])
    due = sorted(f + k / 100.0 for f in firsts for k in range(50))
    assert [b - a for a, b in zip(due, due[1:], strict=False)] == pytest.approx([1 / 300] * 149)
    assert first_call_at(10.0, 100.0, "n1", "") == 10.0  # alone: at the start


def test_open_loop_callers_that_fall_behind_make_no_call_after_the_window() -> None:
    """A call takes 1 ms and the rate asks for 10,000/s: the caller falls behind
    at once. It stops at the end of its window instead of catching up after it."""
    calls: list[float] = []

    class Slow:
        def set(self, key: str, value: str, callback: Any) -> None:
            calls.append(time.monotonic())
            time.sleep(0.001)
            callback(None, 0)

    args = argparse.Namespace(size=10, self_addr="n1", partners="", rate=10_000.0)
    start = time.monotonic()
    end = start + 0.2
    tally = Tally(window_end=end + 1.0)
    open_loop(Slow(), tally, {}, args, start, end)
    assert calls and max(calls) < end
    assert tally.offered == len(calls) == tally.successes()[0] < 2_000  # fewer than the rate asked for


def test_open_loop_tells_refusals_at_once_from_later_failures_and_late_successes() -> None:
    """A callback run inside the call is a refusal at once; one run later from
    another thread is a failure; a success after the window's end is late."""
    later: list[Any] = []

    class Mixed:
        n = 0

        def set(self, key: str, value: str, callback: Any) -> None:
            self.n += 1
            if self.n % 3 == 0:
                callback(None, 1)  # QUEUE_FULL, inside the call
            else:
                later.append((callback, 0 if self.n % 3 == 1 else 2))

    args = argparse.Namespace(size=10, self_addr="n1", partners="", rate=1_000.0)
    start = time.monotonic()
    end = start + 0.05
    tally = Tally(window_end=end + 1.0)
    open_loop(Mixed(), tally, {1: "QUEUE_FULL", 2: "NOT_LEADER"}, args, start, end)
    half = len(later) // 2
    settle = threading.Thread(target=lambda: [cb(None, err) for cb, err in later[:half]])
    settle.start()
    settle.join(5)
    tally.window_end = time.monotonic()  # the rest settle after the window
    settle = threading.Thread(target=lambda: [cb(None, err) for cb, err in later[half:]])
    settle.start()
    settle.join(5)
    in_window, late, hist = tally.successes()
    oks = [i for i, (_, err) in enumerate(later) if err == 0]
    assert tally.refused == {"QUEUE_FULL": tally.offered // 3}
    assert tally.failed == {"NOT_LEADER": len(later) - len(oks)}
    assert (in_window, late) == (sum(i < half for i in oks), sum(i >= half for i in oks))
    assert sum(hist.values()) == len(oks) and tally.finished() == tally.offered > 0
