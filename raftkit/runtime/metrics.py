"""NodeMetrics: a node's counters, kept cheaply on its loop thread and
readable from any thread (``Node.status()["metrics"]``, the Prometheus
exporter in ``raftkit.runtime.prometheus``).

One writer, lock-free reads: the loop thread updates plain integers and
floats (the command counters that other threads touch are updated under
``PendingCommands``' lock), and a reader copies them. Each figure is
whole; figures read together may be a few events apart, never torn.

What is counted (see docs/metrics.md):

* commands (proposals) submitted on this node, applied here with their
  outcome, or failed (timeout, no leader, leadership lost, node stopped);
* how long an applied command took, submit to outcome, in a histogram
  with the fixed bounds ``LATENCY_BUCKETS`` (seconds);
* log entries applied to the state machine, their bytes, and a rate;
* when each peer was last heard from (a monotonic timestamp).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["LATENCY_BUCKETS", "NodeMetrics"]

# Upper bounds (seconds, inclusive) of the proposal latency histogram; one
# more bucket (+Inf) takes everything slower.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)

_RATE_WINDOW = 10.0  # seconds: the apply rate averages over about this long
_RATE_MIN_STEP = 0.05  # readers closer together than this share a sample


class NodeMetrics:
    """Counters of one node. ``clock`` is monotonic seconds (replaceable in tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.proposals_total = 0  # commands submitted on this node
        self.proposals_applied = 0  # ... that got their outcome (a result or what apply raised)
        self.proposals_failed = 0  # ... that failed before being applied (see pending.py)
        self.last_latency = 0.0  # submit to outcome, of the latest command that got one
        self.applied_total = 0  # log entries applied (commands, config changes, no-ops)
        self.applied_bytes = 0  # their payload bytes
        self._latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, not cumulative
        self._latency_sum = 0.0
        self._last_contact: dict[Any, float] = {}
        self._rate_lock = threading.Lock()
        self._rate_samples: deque[tuple[float, int]] = deque([(self.started, 0)])

    # -- writers (the node's loop thread) ------------------------------------------------

    def contact(self, peer: Any) -> None:
        """A message (or snapshot) from ``peer`` arrived."""
        self._last_contact[peer] = self.clock()

    def proposal_applied(self, started: float) -> None:
        """A command submitted at ``started`` (this clock) got its outcome."""
        latency = self.clock() - started
        if latency < 0.0:
            latency = 0.0
        self.last_latency = latency
        self._latency_counts[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
        self._latency_sum += latency
        self.proposals_applied += 1

    def proposals_applied_at(self, started: list[float]) -> None:
        """``proposal_applied`` for several commands settled at one moment."""
        now = self.clock()
        counts, buckets, total = self._latency_counts, LATENCY_BUCKETS, 0.0
        latency = 0.0
        for t in started:
            latency = now - t if now > t else 0.0
            counts[bisect.bisect_left(buckets, latency)] += 1
            total += latency
        self.last_latency = latency
        self._latency_sum += total
        self.proposals_applied += len(started)

    def entry_applied(self, size: int) -> None:
        self.applied_total += 1
        self.applied_bytes += size

    # -- readers (any thread) ---------------------------------------------------------------

    def last_contact(self, peers: Iterable[Any]) -> dict[Any, float | None]:
        """Seconds since each of ``peers`` was last heard from (None: never)."""
        seen = dict(self._last_contact)
        now = self.clock()
        return {p: (None if p not in seen else max(0.0, now - seen[p])) for p in peers}

    def latency_histogram(self) -> tuple[list[tuple[float, int]], float, int]:
        """``(cumulative buckets, sum, count)``: each bucket is ``(upper bound,
        commands that took at most that long)``, the last bound ``inf``;
        ``count`` equals the last bucket's figure."""
        counts = list(self._latency_counts)
        total = self._latency_sum
        buckets, running = [], 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
            running += n
            buckets.append((bound, running))
        return buckets, total, running

    def latency_quantile(self, q: float) -> float | None:
        """An estimate of the ``q`` quantile of proposal latency (seconds),
        interpolated inside its bucket as Prometheus' ``histogram_quantile``
        does; the largest finite bound if it lies beyond; None before any."""
        buckets, _, count = self.latency_histogram()
        if count == 0:
            return None
        rank = q * count
        lower, below = 0.0, 0
        for bound, cumulative in buckets:
            if cumulative >= rank and cumulative > below:
                if bound == float("inf"):
                    return LATENCY_BUCKETS[-1]
                return lower + (bound - lower) * (rank - below) / (cumulative - below)
            lower, below = bound, cumulative
        return LATENCY_BUCKETS[-1]

    def apply_rate(self) -> float:
        """Entries applied per second over roughly the last ``_RATE_WINDOW``
        seconds, measured between reads: read rarely, it averages over the
        time since the previous read (since the node started, at first)."""
        now, total = self.clock(), self.applied_total
        with self._rate_lock:
            samples = self._rate_samples
            if now - samples[-1][0] >= _RATE_MIN_STEP:
                samples.append((now, total))
            while len(samples) > 2 and now - samples[1][0] >= _RATE_WINDOW:
                samples.popleft()  # keep one sample at least a window old
            then, before = samples[0]
        return (total - before) / (now - then) if now > then else 0.0

    def summary(self) -> dict[str, Any]:
        """The figures of ``status()["metrics"]``."""
        _, latency_sum, count = self.latency_histogram()
        return {
            "proposals_total": self.proposals_total,
            "proposals_applied": self.proposals_applied,
            "proposals_failed": self.proposals_failed,
            "proposal_latency_p50": self.latency_quantile(0.5),
            "proposal_latency_p99": self.latency_quantile(0.99),
            "proposal_latency_count": count,
            "proposal_latency_sum": latency_sum,
            "applied_total": self.applied_total,
            "applied_bytes": self.applied_bytes,
            "apply_rate_per_s": self.apply_rate(),
            "uptime": self.clock() - self.started,
        }

    def add_to_status(self, status: dict[str, Any]) -> None:
        """Add the live figures to a copy of the node's status: each
        leader-side peer entry gets ``last_contact``, ``status["last_contact"]``
        covers every other member (on any role), and ``status["metrics"]``.
        Replaces (never mutates) the shared ``peers`` entries."""
        members = (*status.get("members", ()), *status.get("learners", ()))
        others = [m for m in members if m != status.get("id")]
        peers = status.get("peers", {})
        contact = self.last_contact(dict.fromkeys((*others, *peers)))
        status["peers"] = {p: {**info, "last_contact": contact[p]} for p, info in peers.items()}
        status["last_contact"] = {p: contact[p] for p in others}
        status["metrics"] = self.summary()
