"""The core's view of the Raft log: stable entries (in the LogStore) plus the
unstable tail (appended but not yet persisted by the driver), and the commit
and applied positions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkit.core.types import Entry, SnapshotMeta
from raftkit.errors import LogCompactedError, LogUnavailableError

if TYPE_CHECKING:
    from raftkit.storage.log_store import LogStore


class RaftLog:
    def __init__(self, store: LogStore, applied: int) -> None:
        self.store = store
        self.unstable: list[Entry] = []
        self.offset = store.last_index() + 1  # index of unstable[0]
        self.pending_snapshot: SnapshotMeta | None = None  # received, not yet persisted
        first = store.first_index()
        # Everything up to the compaction boundary is committed by definition.
        self.committed = max(store.hard_state().commit, first - 1)
        # A state machine restored from a snapshot has applied at least the
        # snapshot; a durable one may have applied more (but never past commit).
        self.applied = max(first - 1, min(applied, self.committed))
        self.applying = self.applied  # handed to the driver, not yet advanced
        self.version = 0  # bumped whenever entries are appended or replaced (for caches)

    # -- bounds ---------------------------------------------------------------

    def first_index(self) -> int:
        if self.pending_snapshot is not None:
            return self.pending_snapshot.index + 1
        return self.store.first_index()

    def last_index(self) -> int:
        if self.unstable:
            return self.unstable[-1].index
        if self.pending_snapshot is not None:
            return self.pending_snapshot.index
        return min(self.store.last_index(), self.offset - 1)

    def last_term(self) -> int:
        return self.term(self.last_index())

    def term(self, index: int) -> int:
        """Term at ``index``; raises LogCompactedError / LogUnavailableError."""
        if index >= self.offset:
            pos = index - self.offset
            if pos < len(self.unstable):
                return self.unstable[pos].term
            raise LogUnavailableError(index, self.last_index())
        snap = self.pending_snapshot
        if snap is not None:
            if index == snap.index:
                return snap.term
            raise LogCompactedError(index, snap.index + 1)
        if index < self.store.first_index() - 1:
            raise LogCompactedError(index, self.store.first_index())
        return self.store.term(index)

    def term_or_zero(self, index: int) -> int:
        try:
            return self.term(index)
        except (LogCompactedError, LogUnavailableError):
            return 0

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term(index) == term
        except (LogCompactedError, LogUnavailableError):
            return False

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a log ending at (last_index, last_term) at least as
        up to date as ours?"""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    # -- reads ----------------------------------------------------------------

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries lo <= i < hi, at least one if lo < hi, within ``max_bytes``."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise LogCompactedError(lo, self.first_index())
        if hi > self.last_index() + 1:
            raise LogUnavailableError(hi - 1, self.last_index())
        out: list[Entry] = []
        if lo < self.offset:
            out = self.store.entries(lo, min(hi, self.offset), max_bytes)
            if len(out) < min(hi, self.offset) - lo:
                return out  # the byte limit cut the stable part short
        if hi > self.offset:
            start = max(lo, self.offset) - self.offset
            budget = None if max_bytes is None else max_bytes - sum(e.size for e in out)
            for e in self.unstable[start : hi - self.offset]:
                if budget is not None and out and e.size > budget:
                    break
                out.append(e)
                if budget is not None:
                    budget -= e.size
        return out

    def next_committed_entries(self, max_bytes: int) -> list[Entry]:
        lo = max(self.applying + 1, self.first_index())
        hi = self.committed + 1
        if lo >= hi:
            return []
        return self.entries(lo, hi, max_bytes)

    def has_next_committed_entries(self) -> bool:
        return self.committed > max(self.applying, self.first_index() - 1)

    # -- writes ---------------------------------------------------------------

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> int:
        """Append (replacing any conflicting suffix); returns the last index."""
        if not entries:
            return self.last_index()
        self.version += 1
        after = entries[0].index
        assert after > self.committed, f"cannot overwrite committed entry {after} <= {self.committed}"
        end = self.offset + len(self.unstable)
        if after == end:
            self.unstable.extend(entries)
        elif after <= self.offset:
            # Replacing (part of) the stable log: the driver's next write
            # truncates the store's suffix from ``after``.
            self.offset = after
            self.unstable = list(entries)
        else:
            del self.unstable[after - self.offset :]
            self.unstable.extend(entries)
        return self.last_index()

    def find_conflict(self, entries: tuple[Entry, ...]) -> int:
        """Index of the first entry whose term differs from ours (or that we
        lack); 0 if we already hold all of them."""
        for e in entries:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest (i, term(i)) with i <= index and term(i) <= term: the
        furthest point at which our log could still match a log whose entry at
        ``index`` has ``term`` (fast backtracking, etcd's findConflictByTerm)."""
        index = min(index, self.last_index())
        while index > 0:
            try:
                t = self.term(index)
            except LogCompactedError:
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    def maybe_append(self, index: int, log_term: int, commit: int, entries: tuple[Entry, ...]) -> int | None:
        """Follower side of AppendEntries; None when the consistency check
        fails, else the index of the last entry now known to match."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            assert conflict > self.committed, f"entry {conflict} conflicts with committed {self.committed}"
            self.append(entries[conflict - index - 1 :])
        self.commit_to(min(commit, last_new))
        return last_new

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            assert index <= self.last_index(), f"commit {index} beyond last index {self.last_index()}"
            self.committed = index

    def restore(self, snap: SnapshotMeta) -> None:
        self.version += 1
        self.pending_snapshot = snap
        self.unstable = []
        self.offset = snap.index + 1
        self.committed = snap.index

    # -- acknowledgements from the driver ---------------------------------------

    def stable_to(self, index: int, term: int) -> None:
        """The driver persisted unstable entries up to (index, term)."""
        if not self.unstable or index < self.offset:
            return
        pos = index - self.offset
        if pos < len(self.unstable) and self.unstable[pos].term == term:
            del self.unstable[: pos + 1]
            self.offset = index + 1

    def snapshot_persisted(self, snap: SnapshotMeta) -> None:
        if self.pending_snapshot == snap:
            self.pending_snapshot = None
            self.applied = max(self.applied, snap.index)
            self.applying = max(self.applying, snap.index)

    def applied_to(self, index: int) -> None:
        if index > self.applied:
            self.applied = index
        self.applying = max(self.applying, self.applied)
