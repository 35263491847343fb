"""When to take a snapshot and how much log to keep: the log compaction
policy, as pure arithmetic so it is tested without a node or a clock.

PySyncObj compacts when its log reaches ``logCompactionMinEntries`` entries
or ``logCompactionMinTime`` seconds passed since the last compaction. We
count what a snapshot would *cover that the last one did not* (entries and
bytes applied since it), so the trigger does not depend on how many
trailing entries were kept, and a capture that fails is retried only after
more entries arrived *and* a back-off, so a state that cannot be serialized
costs a log line now and then, not a fork per ``Ready``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from raftkit.runtime.config import NodeConfig

__all__ = ["CompactionPolicy", "Progress"]

_RETRY_BACKOFF_MIN = 0.5
_RETRY_BACKOFF_MAX = 60.0


@dataclass
class Progress:
    """What the node applied since its last snapshot (the policy's input)."""

    applied: int  # index of the last applied entry
    applied_bytes: int  # total size of the entries applied since start (a running counter)
    now: float  # monotonic seconds


@dataclass
class CompactionPolicy:
    """Decides when a snapshot is due; remembers the last one and failures."""

    min_entries: int
    min_bytes: int
    min_time: float | None
    min_time_entries: int
    keep: int
    # The byte trigger waits for at least this many times the last
    # snapshot's size: taking a snapshot costs its size, so this bounds
    # snapshot work to a fraction of the log written (0: min_bytes alone).
    size_ratio: float = 0.0
    # The byte threshold is stretched by a factor in [1, 1 + spread), drawn
    # from ``rng`` anew after each snapshot: every node applies the same log,
    # so exact thresholds fork (and stall) all of them at the same index.
    spread: float = 0.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    stretch: float = field(init=False, default=1.0)  # the factor in force (drawn, not given)
    last_size: int = 0  # bytes of the newest snapshot this node took
    last_index: int = 0  # index covered by the newest snapshot (taken or installed)
    last_bytes: int = 0  # applied_bytes when that snapshot was captured
    last_time: float = 0.0  # when it was captured (or when the node started)
    failures: int = 0  # consecutive failed captures
    retry_index: int = 0  # after a failure: not before this applied index...
    retry_time: float = 0.0  # ...and not before this time
    capture_bytes: int = 0  # applied_bytes when the capture in flight started
    capture_time: float = 0.0  # and when

    def __post_init__(self) -> None:
        self._draw()

    @classmethod
    def from_config(
        cls, config: NodeConfig, *, now: float, last_index: int = 0, rng: random.Random | None = None
    ) -> CompactionPolicy:
        return cls(
            min_entries=config.log_compaction_min_entries,
            min_bytes=config.log_compaction_min_bytes,
            min_time=config.log_compaction_min_time,
            min_time_entries=config.log_compaction_min_time_entries,
            keep=config.log_compaction_keep,
            size_ratio=config.log_compaction_size_ratio,
            spread=config.log_compaction_spread,
            rng=rng if rng is not None else random.Random(),
            last_index=last_index,
            last_time=now,
        )

    def _draw(self) -> None:
        self.stretch = 1.0 + self.spread * self.rng.random() if self.spread else 1.0

    @property
    def byte_threshold(self) -> float:
        """Bytes of log since the last snapshot that make the next one due."""
        return max(self.min_bytes, self.size_ratio * self.last_size) * self.stretch

    def due(self, p: Progress) -> str | None:
        """Why a snapshot should be taken now, or None."""
        new = p.applied - self.last_index
        if new <= 0:
            return None
        if self.failures and (p.applied < self.retry_index or p.now < self.retry_time):
            return None
        if new >= self.min_entries:
            return f"{new} entries since the last snapshot"
        if p.applied_bytes - self.last_bytes >= self.byte_threshold:
            return f"{p.applied_bytes - self.last_bytes} bytes of log since the last snapshot"
        age = p.now - self.last_time
        if self.min_time is not None and age >= self.min_time and new >= self.min_time_entries:
            return f"{age:.0f}s since the last snapshot"
        return None

    def started(self, p: Progress) -> None:
        """A capture of the state at ``p.applied`` began."""
        self.capture_bytes, self.capture_time = p.applied_bytes, p.now

    def succeeded(self, index: int, size: int = 0) -> None:
        """The capture started last was committed as a snapshot of ``size``
        bytes at ``index``."""
        if index >= self.last_index:
            self.last_index, self.last_bytes, self.last_time = index, self.capture_bytes, self.capture_time
            self.last_size = size
            self._draw()
        self.failures = 0

    def failed(self, p: Progress) -> float:
        """The capture failed; returns the back-off (seconds) before the next
        automatic attempt, which also waits for ``min_entries`` more entries
        (PySyncObj-sized thresholds can be small, so both are required)."""
        self.failures += 1
        backoff: float = min(_RETRY_BACKOFF_MAX, _RETRY_BACKOFF_MIN * 2 ** (self.failures - 1))
        self.retry_index = p.applied + self.min_entries
        self.retry_time = p.now + backoff
        return backoff

    def installed(self, index: int, p: Progress) -> None:
        """A snapshot from the leader replaced the state: it counts as ours."""
        if index >= self.last_index:
            self.last_index, self.last_bytes, self.last_time = index, p.applied_bytes, p.now
            self._draw()
        self.failures = 0

    def compact_to(self, snapshot_index: int) -> int:
        """The log index up to which the log may be dropped once a snapshot
        at ``snapshot_index`` is durable: ``keep`` entries stay behind it so
        a follower only slightly behind still gets entries, not a snapshot."""
        return max(0, snapshot_index - self.keep)
