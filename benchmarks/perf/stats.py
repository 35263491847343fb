"""Latency histograms and small statistics shared by worker, driver and report.

Workers send log-bucketed latency histograms instead of raw samples so the
driver can merge the nodes of a cluster into one distribution exactly (up to
the bucket width) without shipping hundreds of thousands of floats.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping

BUCKETS_PER_DECADE = 50  # bucket edges 10**(1/50) apart: a percentile is off by < 5 %


def bucket_of(seconds: float) -> int:
    """Histogram bucket of a latency (bucket 0 holds everything under 1 µs)."""
    us = seconds * 1e6
    return 0 if us < 1.0 else int(math.log10(us) * BUCKETS_PER_DECADE) + 1


def bucket_upper_s(bucket: int) -> float:
    """The upper edge of a bucket, in seconds (what a percentile reports)."""
    return 10 ** (bucket / BUCKETS_PER_DECADE) / 1e6


def merge(histograms: Iterable[Mapping[str | int, int]]) -> dict[int, int]:
    """Sum histograms (JSON turns the int keys into strings; accept both)."""
    out: dict[int, int] = {}
    for h in histograms:
        for k, n in h.items():
            out[int(k)] = out.get(int(k), 0) + n
    return out


def percentile(hist: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0 < q < 1) of a merged histogram, in seconds, or None if empty."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return bucket_upper_s(bucket)
    return bucket_upper_s(max(hist))


def median_spread(values: Iterable[float | None]) -> tuple[float | None, float | None, float | None]:
    """(median, min, max) of the values that are not None."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)
