"""Log throttles, so a peer stuck in a reconnect loop or a stranger spraying
garbage at our port cannot flood the log."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class OncePerKey:
    """Say something once per key until the condition clears: used for
    failures that repeat on every retry (unreachable, wrong password)."""

    def __init__(self) -> None:
        self._said: set[Hashable] = set()

    def first(self, key: Hashable) -> bool:
        """True the first time ``key`` is seen since it was last cleared."""
        if key in self._said:
            return False
        self._said.add(key)
        return True

    def clear(self, key: Hashable) -> None:
        """The condition for ``key`` is over; the next failure is news again."""
        self._said.discard(key)


class RateLimit:
    """At most ``burst`` messages per key in any ``period`` seconds; the next
    one allowed reports how many were held back."""

    def __init__(self, burst: int = 5, period: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.burst = burst
        self.period = period
        self._clock = clock
        self._windows: dict[Hashable, tuple[float, int, int]] = {}  # start, shown, suppressed

    def allow(self, key: Hashable) -> tuple[bool, int]:
        """``(may_log, suppressed_since_last_shown)``."""
        now = self._clock()
        start, shown, suppressed = self._windows.get(key, (now, 0, 0))
        if now - start >= self.period:
            start, shown = now, 0
        if shown < self.burst:
            self._windows[key] = (start, shown + 1, 0)
            return True, suppressed
        self._windows[key] = (start, shown, suppressed + 1)
        if len(self._windows) > 4096:  # a scan from many addresses: forget the oldest windows
            for old in list(self._windows)[:1024]:
                del self._windows[old]
        return False, 0
