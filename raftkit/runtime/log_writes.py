"""LogWrites: what each Ready asks the log store to keep, written so that
only what Raft needs on disk costs a durable write.

Entries, the term and the vote must be durable before any message of the
same Ready leaves the node, with one exception (``send_ahead``): a leader's
appends may leave while it writes the same entries. The commit index need
not be durable: a node that
restarts with an older one learns the newer one from the leader (or, as
the leader, commits again), and everything up to its snapshot counts as
committed anyway (``RaftLog``). So a Ready that only moves the commit index
writes nothing; that hard state goes to disk with the next write that must
be durable, or when the node stops. On a leader every acknowledgement
moves the commit index: with a durable log store each one was an fsync on
the loop thread, which is what held durable mode to a few thousand
commands per second. When the store's writes wait for the disk, the
committed entries it already holds are applied before the write
(``LogWrites.apply_first``), not after it.

Threads: the node's loop thread only.
"""

from __future__ import annotations

from collections.abc import Sequence

from raftkit.core.raft import Raft
from raftkit.core.types import Entry, HardState, Message, MessageType, NodeId, Ready, Role
from raftkit.storage.log_store import LogStore

__all__ = ["LogWrites", "commit_applied", "send_ahead", "stored_committed"]


class LogWrites:
    def __init__(self, store: LogStore) -> None:
        self._store = store
        stored = store.hard_state()
        self._durable = (stored.term, stored.vote)  # term and vote as the store holds them
        self.unsaved: HardState | None = None  # a hard state whose only news is its commit index
        self._apply_first = store.writes_wait_for_disk

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Persist a Ready's hard state and entries (raises what the store raises)."""
        if not entries and hard_state is not None and (hard_state.term, hard_state.vote) == self._durable:
            self.unsaved = hard_state
            return
        hard_state = hard_state if hard_state is not None else self.unsaved
        if hard_state is None and not entries:
            return
        self._store.save(hard_state, entries)
        if hard_state is not None:
            self._durable = (hard_state.term, hard_state.vote)
        self.unsaved = None

    def send_ahead(self, rd: Ready, raft: Raft) -> list[Message]:
        """``send_ahead`` for this node's Ready (its term and vote as written)."""
        return send_ahead(rd, raft, self._durable)

    def apply_first(self, rd: Ready) -> list[Entry]:
        """The committed entries of ``rd`` to apply before its write: those
        the store already holds (``stored_committed``), when its writes wait
        for the disk; none with a store in memory, where applying first
        would only hold back the Ready's acknowledgements. (A state machine
        that writes to disk itself, LMDB's, moves its own write ahead of the
        log's: acknowledgements wait for it, callers wait one write less.)"""
        return stored_committed(rd) if self._apply_first else []

    def flush(self) -> None:
        """Write the commit index still waiting (the node stops)."""
        if self.unsaved is not None:
            self._store.save(self.unsaved, [])
            self.unsaved = None


def send_ahead(rd: Ready, raft: Raft, durable: tuple[int, NodeId | None]) -> list[Message]:
    """The messages of ``rd`` that may leave before it is written, taken
    out of ``rd.messages``: a leader's appends, when the write holds
    entries but no term or vote other than ``durable`` (as the store holds
    them), and the commit index is below those entries. Its followers then
    write the entries while it does (Raft dissertation §10.2.1), which takes
    one durable write off the path of every command (durable mode, 3 nodes
    at 1,000/s: p50 from about 7.2 to 5.8 ms; docs/benchmarks.md, session
    31). Still safe: the term the appends carry is already durable; no
    acknowledgement is stepped before this write returns (the loop does
    that), so the leader's own write counts before any commit of these
    entries; and the commit index sent ahead covers only entries written
    before (a lone voter, which commits its entries at once, sends its
    learners nothing ahead). If the write fails or the leader crashes
    meanwhile, its followers may keep the entries, as after any leader
    crash (the simulator's ``crash_while_writing`` checks it)."""
    hs = rd.hard_state
    if (
        not rd.entries
        or rd.snapshot is not None
        or raft.role is not Role.LEADER
        or raft.log.committed >= rd.entries[0].index
        or (hs is not None and (hs.term, hs.vote) != durable)
    ):
        return []
    ahead = [m for m in rd.messages if m.type is MessageType.APPEND]
    if ahead:
        rd.messages = [m for m in rd.messages if m.type is not MessageType.APPEND]
    return ahead


def stored_committed(rd: Ready) -> list[Entry]:
    """The committed entries of ``rd`` that the log store already holds:
    those before the first entry ``rd`` writes (its entries are every one
    the store does not hold yet, a replaced suffix included). Applied while
    the write waits for the disk, they reach their callers one fsync
    earlier: a follower's Ready often brings the commit index for entries
    it wrote before together with new entries to write (durable mode,
    3 nodes, 1,000/s; docs/benchmarks.md, session 32). None when ``rd``
    writes no entries (nothing to wait for) or installs a snapshot (the
    state it restores comes first)."""
    committed = rd.committed_entries
    if not rd.entries or not committed or rd.snapshot is not None:
        return []
    first_new = rd.entries[0].index
    if committed[-1].index < first_new:
        return committed
    return [e for e in committed if e.index < first_new]


def commit_applied(store: LogStore, applied: int) -> None:
    """At start, before the core opens ``store``: a durable state machine
    that holds entries past the stored commit index (a commit-only Ready
    wrote nothing before a crash) applied only committed entries of this
    log, so the commit index is raised to them. The core caps what it
    counts as applied at the commit index: without this it would replay
    membership only up to the stored commit, and the config entries in
    between, which the applier skips as already held, would never reach
    the node's applied membership or the snapshots it takes."""
    hs = store.hard_state()
    if hs.commit < applied <= store.last_index():
        store.save(HardState(term=hs.term, vote=hs.vote, commit=applied), [])
