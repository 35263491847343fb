"""How far a follower that is far behind has come in catching up the log,
as its leader sees it: ``status()["catch_up"]`` and an INFO line every few
seconds.

Only the leader knows both ends: its own last index and each peer's
``match`` (the highest index the peer acknowledged). A follower knows only
what it was sent so far, so it reports nothing here. A peer catches up when
it is ``min_entries`` or more behind the leader's last index; it begins only
while the leader hears from the peer (one that is down is not catching up;
the flag may drop for a moment later, as a busy peer answers late, which
does not end it). A peer being sent a snapshot is left to ``snapshot_sends``. The figures count entries, not
bytes (the leader would have to read the entries to size them):

* ``entries_behind``: the leader's last index minus ``match``, now;
* ``rate_entries_per_s``: the growth of ``match`` since the catch-up began;
* ``eta_s``: ``entries_behind`` over the rate at which the gap shrank since
  then (None while it does not shrink: new entries come as fast as the
  peer takes them).

``observe`` runs where ``StatusCache.refresh`` does (the loop thread, when
status() is read after a Ready, and at each tick); the figures are worked
out when read, from any thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from raftkit.core.types import NodeId

__all__ = ["CatchUpProgress", "catch_up_text"]

log = logging.getLogger("raftkit.runtime.node")

MIN_ENTRIES = 100
"""How far behind a peer must be to count as catching up (fewer is the
normal lag of entries in flight)."""

LOG_EVERY_S = 5.0


class _CatchUp:
    __slots__ = ("started", "match0", "gap0", "match", "gap", "last", "next_log")

    def __init__(self, now: float, match: int, gap: int, log_every: float) -> None:
        self.started, self.match0, self.gap0 = now, match, gap
        self.match, self.gap, self.last = match, gap, now
        self.next_log = now + log_every


class CatchUpProgress:
    def __init__(
        self,
        node_id: NodeId,
        *,
        clock: Callable[[], float] = time.monotonic,
        log_every: float = LOG_EVERY_S,
        min_entries: int = MIN_ENTRIES,
    ) -> None:
        self._id = node_id
        self._clock = clock
        self.log_every = log_every
        self.min_entries = min_entries
        self._lock = threading.Lock()
        self._peers: dict[NodeId, _CatchUp] = {}
        self._last_index = 0

    def observe(self, status: dict[str, Any]) -> dict[str, Any]:
        """Note each peer's ``match`` from a fresh status dict (returned as it
        is, so the node can wrap its status refresh in this call)."""
        last = int(status.get("log_last_index") or 0)
        leading = status.get("role") == "leader"
        if not leading and not self._peers:  # a follower's every Ready: nothing to track or forget
            self._last_index = last
            return status
        now = self._clock()
        due: list[NodeId] = []
        with self._lock:
            self._last_index = last
            seen = set()
            for peer, info in (status.get("peers") or {}).items() if leading else ():
                match = int(info.get("match") or 0)
                gap = max(0, last - match)
                if info.get("state") == "snapshot" or gap < self.min_entries:
                    continue
                entry = self._peers.get(peer)
                if entry is None and info.get("active") is False:
                    continue
                seen.add(peer)
                if entry is None or match < entry.match:
                    # New, or it fell back (restarted without its log, or a lost
                    # state: replicated from the start): its catch-up begins again.
                    entry = self._peers[peer] = _CatchUp(now, match, gap, self.log_every)
                entry.match, entry.gap, entry.last = match, gap, now
                if now >= entry.next_log:
                    entry.next_log = now + self.log_every
                    due.append(peer)
            for peer in [p for p in self._peers if p not in seen]:
                del self._peers[peer]
        if due:
            view = self.status()
            for peer in due:
                if peer in view:
                    log.info("%s: %s", self._id, catch_up_text(view[peer]))
        return status

    def status(self) -> dict[NodeId, dict[str, Any]]:
        """``status()["catch_up"]``: each peer catching up the log. Any thread."""
        now = self._clock()
        with self._lock:
            entries = [(p, e.started, e.match0, e.gap0, e.match, e.gap) for p, e in self._peers.items()]
            last = self._last_index
        out: dict[NodeId, dict[str, Any]] = {}
        for peer, started, match0, gap0, match, gap in entries:
            elapsed = max(0.0, now - started)
            rate = (match - match0) / elapsed if elapsed > 0 else 0.0
            closing = (gap0 - gap) / elapsed if elapsed > 0 else 0.0
            out[peer] = {
                "peer": peer,
                "match": match,
                "leader_last_index": last,
                "entries_behind": gap,
                "entries_done": match - match0,
                "rate_entries_per_s": round(rate, 1),
                "eta_s": round(gap / closing, 1) if closing > 0 else None,
                "started_s_ago": round(elapsed, 1),
            }
        return out


def catch_up_text(p: dict[str, Any]) -> str:
    """One line, e.g. "n3 catching up the log: 3400 entries behind (match 1600
    of 5000), 800 entries/s, about 4 s left"."""
    eta = p.get("eta_s")
    return (
        f"{p.get('peer')} catching up the log: {p.get('entries_behind')} entries behind "
        f"(match {p.get('match')} of {p.get('leader_last_index')}), "
        f"{p.get('rate_entries_per_s') or 0:.0f} entries/s, "
        + ("time left unknown" if eta is None else f"about {eta:.0f} s left")
    )
