"""The cyclic garbage collector's first threshold, raised while nodes run.

Every command in flight holds a few container objects (its pending record,
its outcome sink, the caller's callback) from ``submit`` until it is
applied: tens to hundreds of milliseconds under load. With CPython's default
first threshold (700 net allocations; 2,000 from 3.13) a busy node runs a
young collection every few milliseconds, so those objects survive several
of them, get promoted, and trigger full collections of the whole heap (8 to
11 in a 7 s run at 150,000 commands/s, the longest 40-70 ms, on the 2-core
benchmark machine). Raising the first threshold lets them die young (docs/operations.md,
"The garbage collector").

The setting is process-wide, so it is changed only when it is lower than
``NodeConfig.gc_threshold`` (and not 0, which turns automatic collection
off), and restored when the last node holding it stops, unless the program
changed it meanwhile. ``gc_threshold=None`` leaves the collector alone.
"""

from __future__ import annotations

import gc
import logging
import threading

log = logging.getLogger(__name__)

_lock = threading.Lock()
_holders = 0
_saved: tuple[int, ...] | None = None  # the program's own setting
_ours: tuple[int, ...] | None = None  # what the holds set, if they set anything

_FRESH, _HELD, _DONE = "fresh", "held", "done"


class CollectorHold:
    """One node's hold on the raised threshold: ``acquire`` once it runs,
    ``release`` when it stops. Any thread; each takes effect at most once,
    and a release that comes first (the node stopped while starting) makes
    the later acquire do nothing."""

    def __init__(self, threshold: int | None) -> None:
        self.threshold = threshold
        self._state = _FRESH

    def acquire(self) -> None:
        global _holders, _saved, _ours
        if self.threshold is None:
            return
        with _lock:
            if self._state != _FRESH:
                return
            current = gc.get_threshold()
            if _holders == 0 or current != (_ours or _saved):
                _saved, _ours = current, None  # the program's setting, new or changed meanwhile
            if 0 < current[0] < self.threshold:
                _ours = (self.threshold, *current[1:])
                gc.set_threshold(*_ours)
                log.debug("gc threshold raised from %s to %s while raftkit nodes run", current, _ours)
            _holders += 1
            self._state = _HELD

    def release(self) -> None:
        global _holders, _saved, _ours
        with _lock:
            held, self._state = self._state == _HELD, _DONE
            if not held:
                return
            _holders -= 1
            if _holders == 0:
                if _ours is not None and _saved is not None and gc.get_threshold() == _ours:
                    gc.set_threshold(*_saved)  # nobody changed it meanwhile: put the program's back
                _saved = _ours = None
