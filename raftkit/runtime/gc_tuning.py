"""The cyclic garbage collector's first threshold, raised while nodes run.

Every command in flight holds a few container objects (its pending record,
its outcome sink, the caller's callback) from ``submit`` until it is
applied: tens to hundreds of milliseconds under load. With CPython's default
first threshold (700 net allocations; 2,000 from 3.13) a busy node runs a
young collection every few milliseconds, so those objects survive several
of them, get promoted, and trigger full collections of the whole heap (about
ten a second at 150,000 commands/s, each 40-70 ms on the 2-core benchmark
machine). Raising the first threshold lets them die young. Measured with
``make bench``'s worker, 3 nodes, 10-byte values, 160,000 calls/s offered:
about 14 instead of 17 µs of CPU per committed command (docs/benchmarks.md).

The setting is process-wide, so it is changed only when it is lower than
``NodeConfig.gc_threshold`` and restored when the last node holding it stops,
unless someone changed it meanwhile. ``gc_threshold=None`` leaves the
collector alone; a threshold raised further by the program is kept.
"""

from __future__ import annotations

import gc
import logging
import threading

log = logging.getLogger(__name__)

_lock = threading.Lock()
_holders = 0
_saved: tuple[int, ...] | None = None  # the thresholds before the first hold
_ours: tuple[int, ...] | None = None  # what the holds set, if they set anything


class CollectorHold:
    """One node's hold on the raised threshold: ``acquire`` when it starts,
    ``release`` when it stops (both idempotent, any thread)."""

    def __init__(self, threshold: int | None) -> None:
        self.threshold = threshold
        self._held = False

    def acquire(self) -> None:
        global _holders, _saved, _ours
        if self.threshold is None or self._held:
            return
        with _lock:
            current = gc.get_threshold()
            if _holders == 0:
                _saved, _ours = current, None
            if current[0] < self.threshold and (_holders == 0 or _ours is None or current == _ours):
                _ours = (self.threshold, *current[1:])
                gc.set_threshold(*_ours)
                log.debug("gc threshold raised from %s to %s while raftkit nodes run", current, _ours)
            _holders += 1
            self._held = True

    def release(self) -> None:
        global _holders, _saved, _ours
        if not self._held:
            return
        with _lock:
            self._held = False
            _holders -= 1
            if _holders == 0:
                if _ours is not None and _saved is not None and gc.get_threshold() == _ours:
                    gc.set_threshold(*_saved)  # nobody changed it meanwhile: put the program's back
                _saved = _ours = None
