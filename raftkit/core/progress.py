"""What a leader knows about each follower's log, and how much it may send.

A follower is in one of three states (etcd-raft's names):

* PROBE: we do not know where its log matches ours; send one append at a
  time and wait for the answer before sending the next.
* REPLICATE: the logs match up to ``match``; stream appends optimistically,
  bounded by an in-flight window counted in messages and bytes.
* SNAPSHOT: it needs a snapshot; send nothing until the driver reports how
  the transfer went.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass
class Inflights:
    """Appends sent but not yet acknowledged: a FIFO of (last index, bytes)."""

    max_count: int
    max_bytes: int
    _items: deque[tuple[int, int]] = field(default_factory=deque)
    _bytes: int = 0

    def add(self, last_index: int, size: int) -> None:
        self._items.append((last_index, size))
        self._bytes += size

    def free_le(self, index: int) -> None:
        """Forget every append whose last entry is at or before ``index``."""
        while self._items and self._items[0][0] <= index:
            _, size = self._items.popleft()
            self._bytes -= size

    def free_first_one(self) -> None:
        if self._items:
            _, size = self._items.popleft()
            self._bytes -= size

    def reset(self) -> None:
        self._items.clear()
        self._bytes = 0

    @property
    def full(self) -> bool:
        return len(self._items) >= self.max_count or (self.max_bytes > 0 and self._bytes >= self.max_bytes)

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Progress:
    match: int
    next: int
    inflights: Inflights
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False  # PROBE: an append is outstanding, wait for it
    pending_snapshot: int = 0  # SNAPSHOT: the index of the snapshot in flight
    recent_active: bool = True  # heard from within the last election timeout
    recovering: bool = False  # it restarted without its state: its acks do not count
    is_learner: bool = False
    # Replies echoing a request number below this answer requests sent before
    # we learned the node lost its state: they are ignored (see Raft._accept_reply).
    seq_floor: int = 0
    incarnation: bytes = b""  # of the recovering node we last learned of
    # Commit notices (Replication._notify_commit): the highest commit index
    # sent to it, and the last entry holding commands it forwarded (its
    # callers wait for those to apply there).
    commit_told: int = 0
    commit_wanted: int = 0

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            # Resume probing just past what the snapshot covered.
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = index

    def lost_state(self, seq_floor: int, incarnation: bytes) -> None:
        """The node restarted without its state (as ``incarnation``): nothing
        it acknowledged before holds any more, so forget its match and probe
        it from the start; ignore replies to requests numbered below
        ``seq_floor``."""
        self._reset_state(ProgressState.PROBE)
        self.recovering = True
        self.incarnation = incarnation
        self.seq_floor = seq_floor
        self.match = 0
        self.next = 1

    def maybe_update(self, index: int) -> bool:
        """Record an acknowledgement up to ``index``; False if it is stale."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def sent_entries(self, last_index: int, size: int) -> None:
        """Account for an append carrying entries up to ``last_index``."""
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflights.add(last_index, size)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """Handle a rejected append for index ``rejected``; the follower's
        hint says its log may match up to ``match_hint``. False if stale."""
        if rejected <= self.match and match_hint < self.match:
            # The follower no longer holds entries it acknowledged: it restarted
            # without its log (in-memory mode). Start again from what it has,
            # or it would be probed just past its old match forever. (A reject
            # delayed from before it caught up looks the same; resending is the
            # harmless price.)
            self.match = match_hint
            self.next = match_hint + 1
            self.probe_sent = False
            return True
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # an old reject, overtaken by a later success
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # not an answer to the probe we last sent
        self.next = max(min(rejected, match_hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full
        return True
