"""Unit tests of the core's log view (RaftLog) and per-follower flow control
(Progress, Inflights).

RaftLog is the stable log in a MemoryLogStore plus an unstable tail the
driver has not persisted yet; the tests emulate the driver by saving the
unstable entries to the store and then calling ``stable_to``.
"""

from __future__ import annotations

import pytest

from raftkit.core.log import RaftLog
from raftkit.core.progress import Inflights, Progress, ProgressState
from raftkit.core.types import ENTRY_OVERHEAD, Entry, HardState, SnapshotMeta
from raftkit.errors import LogCompactedError, LogUnavailableError
from raftkit.storage.memory import MemoryLogStore


def ents(terms, start=1, size=0):
    """Entries at consecutive indexes from ``start`` with the given terms;
    each payload is ``size`` bytes (so Entry.size is size + ENTRY_OVERHEAD)."""
    return [Entry(start + i, t, data=bytes([start + i]) * size) for i, t in enumerate(terms)]


def make_log(stable_terms=(), *, commit=0, applied=0, compact=0, size=0):
    store = MemoryLogStore()
    store.save(HardState(term=max(stable_terms, default=0), commit=commit), ents(stable_terms, size=size))
    if compact:
        store.compact(compact)
    return RaftLog(store, applied), store


def persist(log: RaftLog, store: MemoryLogStore) -> None:
    """Do what a driver does with a Ready's entries: save, then acknowledge."""
    if log.unstable:
        store.save(None, list(log.unstable))
        last = log.unstable[-1]
        log.stable_to(last.index, last.term)


def terms_of(log: RaftLog) -> list[int]:
    return [e.term for e in log.entries(log.first_index(), log.last_index() + 1)]


# ---------------------------------------------------------------------------
# RaftLog: construction and bounds
# ---------------------------------------------------------------------------


def test_new_log_starts_unstable_after_the_store():
    """A RaftLog over a store holding 1..5 has nothing unstable: its bounds
    are the store's, and new entries will go at 6."""
    log, _ = make_log([1, 1, 2, 2, 2], commit=3)
    assert (log.first_index(), log.last_index(), log.last_term()) == (1, 5, 2)
    assert log.unstable == [] and log.offset == 6
    assert log.committed == 3


def test_new_log_applied_is_clamped_to_commit_and_raised_to_compaction_boundary():
    """A restarted state machine may claim more than was committed (ignored:
    applied never passes commit), and everything up to the compaction
    boundary counts as committed and applied."""
    log, _ = make_log([1, 1, 1], commit=2, applied=100)
    assert (log.committed, log.applied) == (2, 2)
    log, _ = make_log([1, 1, 1, 1, 1], commit=0, compact=3)
    assert (log.committed, log.applied) == (3, 3)
    assert not log.has_next_committed_entries()


# ---------------------------------------------------------------------------
# RaftLog: term() and entries() across the stable / unstable split
# ---------------------------------------------------------------------------


def test_term_reads_across_stable_unstable_split_and_boundaries():
    """term(i) answers from the store below the unstable offset and from the
    unstable tail at or above it; the compaction boundary still answers;
    below it is LogCompactedError, past the end LogUnavailableError."""
    log, store = make_log([1, 1, 2, 2, 2], compact=2)
    log.append(ents([3, 3], start=6))
    assert log.offset == 6 and [e.index for e in log.unstable] == [6, 7]
    assert [log.term(i) for i in range(2, 8)] == [1, 2, 2, 2, 3, 3]
    assert log.last_index() == 7 and log.last_term() == 3
    with pytest.raises(LogCompactedError):
        log.term(1)
    with pytest.raises(LogUnavailableError):
        log.term(8)
    assert log.term_or_zero(1) == 0 and log.term_or_zero(8) == 0
    assert log.match_term(6, 3) and not log.match_term(6, 2) and not log.match_term(8, 3)


def test_entries_spans_store_and_unstable_tail():
    """entries(lo, hi) stitches the stored prefix and the unstable tail in
    order, and refuses compacted or missing ranges."""
    log, _ = make_log([1, 1, 1, 2], compact=1)
    log.append(ents([3, 3], start=5))
    assert [(e.index, e.term) for e in log.entries(2, 7)] == [(2, 1), (3, 1), (4, 2), (5, 3), (6, 3)]
    assert [e.index for e in log.entries(4, 6)] == [4, 5]
    assert [e.index for e in log.entries(5, 7)] == [5, 6]
    assert log.entries(3, 3) == []
    with pytest.raises(LogCompactedError):
        log.entries(1, 3)
    with pytest.raises(LogUnavailableError):
        log.entries(5, 8)


@pytest.mark.parametrize(
    ("lo", "max_bytes", "expected"),
    [
        (1, 0, [1]),  # a budget smaller than one entry still returns one
        (1, 1, [1]),
        (1, 2 * (10 + ENTRY_OVERHEAD), [1, 2]),  # exactly two entries' worth
        (1, 2 * (10 + ENTRY_OVERHEAD) - 1, [1]),
        (1, 4 * (10 + ENTRY_OVERHEAD), [1, 2, 3, 4]),  # cut inside the unstable tail
        (1, 10_000, [1, 2, 3, 4, 5, 6]),
        (4, 0, [4]),  # starting in the unstable tail: still at least one
        (4, 2 * (10 + ENTRY_OVERHEAD), [4, 5]),
    ],
)
def test_entries_max_bytes_returns_at_least_one_entry(lo, max_bytes, expected):
    """entries(lo, hi, max_bytes) stops before exceeding max_bytes (counting
    Entry.size) on either side of the split, but never returns nothing when
    lo < hi — otherwise one large entry could stall replication forever."""
    log, _ = make_log([1, 1, 1], size=10)
    log.append(ents([2, 2, 2], start=4, size=10))
    assert [e.index for e in log.entries(lo, 7, max_bytes)] == expected


def test_entries_budget_spent_in_store_leaves_nothing_for_unstable_tail():
    """When the stored part alone fills the budget, no unstable entry is
    added (the one-entry minimum applies to the whole answer, not per part)."""
    log, _ = make_log([1, 1], size=100)
    log.append(ents([2], start=3, size=1))
    assert [e.index for e in log.entries(2, 4, 100)] == [2]


# ---------------------------------------------------------------------------
# RaftLog: appends, conflicts and the driver acknowledging persistence
# ---------------------------------------------------------------------------


def test_append_extends_unstable_tail():
    log, _ = make_log([1, 1])
    assert log.append(ents([1, 2], start=3)) == 4
    assert log.append([]) == 4
    assert [e.index for e in log.unstable] == [3, 4] and log.offset == 3


def test_append_replacing_a_suffix_that_is_still_in_the_store():
    """Appending at an index the store already holds (a conflicting suffix
    from a deposed leader) moves the unstable offset back: reads below it
    still come from the store, at and above it from the new entries, and
    the driver's next save truncates the store's stale suffix."""
    log, store = make_log([1, 1, 1, 1, 1])
    assert log.append(ents([2, 2], start=3)) == 4
    assert log.offset == 3 and log.last_index() == 4
    assert [log.term(i) for i in (1, 2, 3, 4)] == [1, 1, 2, 2]
    with pytest.raises(LogUnavailableError):
        log.term(5)  # the store still holds 5, but it is no longer ours
    assert [(e.index, e.term) for e in log.entries(1, 5)] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    persist(log, store)
    assert store.last_index() == 4 and log.unstable == []
    assert terms_of(log) == [1, 1, 2, 2]


def test_append_replacing_part_of_the_unstable_tail():
    """A conflict inside the unstable tail cuts the tail at that index."""
    log, _ = make_log([1])
    log.append(ents([1, 1, 1], start=2))
    log.append(ents([3], start=3))
    assert [(e.index, e.term) for e in log.unstable] == [(2, 1), (3, 3)]
    assert log.last_index() == 3


def test_append_never_overwrites_committed_entries():
    """Committed entries are permanent (Leader Completeness): the log refuses
    to replace one."""
    log, _ = make_log([1, 1, 1], commit=2)
    with pytest.raises(AssertionError):
        log.append(ents([2], start=2))


@pytest.mark.parametrize(
    ("index", "term", "expected"),
    [
        (10, 6, (10, 6)),  # our entry at 10 already has a term <= 6
        (10, 5, (7, 5)),  # skip the whole run of term-6 entries
        (10, 3, (3, 1)),  # skip terms 6, 5 and 4 in one step
        (10, 0, (0, 0)),  # nothing can match a log of term-0 entries
        (15, 6, (10, 6)),  # a probe beyond our log starts from our last entry
        (6, 4, (5, 4)),
    ],
)
def test_find_conflict_by_term_returns_last_entry_at_or_below_term(index, term, expected):
    """Fast backtracking: the largest i <= index with term(i) <= term is the
    furthest point at which our log could still agree with a log whose entry
    at ``index`` has ``term``."""
    log, _ = make_log([1, 1, 1, 4, 4, 5, 5, 6, 6, 6])
    assert log.find_conflict_by_term(index, term) == expected


def test_find_conflict_by_term_stops_at_compacted_prefix():
    """Below the compaction boundary the term is unknown: the search stops
    there and reports term 0 (the leader then falls back to a snapshot)."""
    log, _ = make_log([1, 1, 1, 4, 4, 5, 5, 6, 6, 6], compact=4)
    assert log.find_conflict_by_term(10, 4) == (5, 4)
    assert log.find_conflict_by_term(4, 4) == (4, 4)  # the boundary still answers
    assert log.find_conflict_by_term(10, 3) == (3, 0)


def test_maybe_append_rejects_when_prev_entry_does_not_match():
    """maybe_append is the follower's consistency check: no match at
    (index, log_term) means reject (None) and no change at all."""
    log, _ = make_log([1, 1, 2])
    assert log.maybe_append(3, 1, 3, tuple(ents([3], start=4))) is None
    assert log.maybe_append(4, 2, 3, tuple(ents([3], start=5))) is None
    assert log.unstable == [] and log.committed == 0


def test_maybe_append_appends_only_from_first_conflict_and_bounds_commit():
    """On a match, entries already held are kept, the log is cut at the first
    conflicting one, and commit advances to min(leader commit, last new)."""
    log, _ = make_log([1, 1, 1, 1])
    new = (*ents([1], start=2), *ents([2, 2], start=3))  # 2 matches; 3 and 4 conflict
    assert log.maybe_append(1, 1, 10, new) == 4
    assert [(e.index, e.term) for e in log.unstable] == [(3, 2), (4, 2)]
    assert log.committed == 4
    # A stale, shorter append that matches changes nothing and commits only what it covers.
    log2, _ = make_log([1, 1, 1, 1])
    assert log2.maybe_append(1, 1, 10, tuple(ents([1], start=2))) == 2
    assert log2.unstable == [] and log2.last_index() == 4 and log2.committed == 2


def test_commit_to_never_decreases_and_never_passes_last_index():
    log, _ = make_log([1, 1, 1])
    log.commit_to(2)
    log.commit_to(1)
    assert log.committed == 2
    with pytest.raises(AssertionError):
        log.commit_to(4)


def test_stable_to_moves_persisted_prefix_out_of_unstable():
    """The driver saved the unstable entries up to (index, term): they leave
    the unstable tail and later reads come from the store."""
    log, store = make_log([1])
    log.append(ents([1, 1, 2], start=2))
    store.save(None, list(log.unstable[:2]))
    log.stable_to(3, 1)
    assert [e.index for e in log.unstable] == [4] and log.offset == 4
    assert terms_of(log) == [1, 1, 1, 2]


def test_stable_to_ignores_a_stale_term():
    """An acknowledgement for entries that were since replaced (same index,
    older term) must not drop the replacement from the unstable tail, or it
    would never be persisted."""
    log, store = make_log([1])
    log.append(ents([1, 1], start=2))
    handed_out = list(log.unstable)  # a Ready carries 2 and 3 (term 1) ...
    log.append(ents([2], start=3))  # ... then a new leader replaces 3 before advance
    store.save(None, handed_out)
    log.stable_to(handed_out[-1].index, handed_out[-1].term)
    assert [(e.index, e.term) for e in log.unstable] == [(2, 1), (3, 2)]
    log.stable_to(9, 2)  # beyond the tail: ignored
    log.stable_to(1, 1)  # below the offset: ignored
    assert [(e.index, e.term) for e in log.unstable] == [(2, 1), (3, 2)]
    persist(log, store)
    assert terms_of(log) == [1, 1, 2]


# ---------------------------------------------------------------------------
# RaftLog: snapshots
# ---------------------------------------------------------------------------


def test_restore_from_snapshot_replaces_the_log():
    """Restoring a snapshot discards the log: the snapshot's last index is
    the new boundary (and is committed), unstable entries are gone, and
    nothing below the snapshot is readable; once the driver has installed it
    (store.reset), the store answers the boundary and the state machine
    counts as having applied it."""
    log, store = make_log([1, 1, 1], commit=1)
    log.append(ents([2, 2], start=4))
    meta = SnapshotMeta(index=10, term=3)
    log.restore(meta)
    assert log.pending_snapshot == meta
    assert (log.first_index(), log.last_index(), log.last_term()) == (11, 10, 3)
    assert log.committed == 10 and log.unstable == []
    with pytest.raises(LogCompactedError):
        log.term(9)
    with pytest.raises(LogCompactedError):
        log.entries(10, 11)
    assert log.next_committed_entries(1 << 20) == [] and not log.has_next_committed_entries()
    store.reset(meta.index, meta.term)
    log.snapshot_persisted(meta)
    assert log.pending_snapshot is None and log.applied == 10
    assert log.term(10) == 3
    log.append(ents([3], start=11))
    persist(log, store)
    assert (store.first_index(), store.last_index()) == (11, 11)


def test_committed_entries_for_the_state_machine_are_bounded_and_in_order():
    """next_committed_entries hands out committed, not yet applying entries,
    at least one and within the byte budget; applied_to moves past them."""
    log, _ = make_log([1, 1, 1, 1], commit=3, size=10)
    assert [e.index for e in log.next_committed_entries(1)] == [1]
    assert [e.index for e in log.next_committed_entries(1 << 20)] == [1, 2, 3]
    log.applying = 3
    assert not log.has_next_committed_entries()
    log.applied_to(3)
    log.commit_to(4)
    assert [e.index for e in log.next_committed_entries(1 << 20)] == [4]


# ---------------------------------------------------------------------------
# Inflights
# ---------------------------------------------------------------------------


def test_inflights_window_by_count():
    inf = Inflights(max_count=3, max_bytes=0)
    for last in (5, 7, 9):
        assert not inf.full
        inf.add(last, 10)
    assert inf.full and len(inf) == 3
    inf.free_le(6)
    assert not inf.full and len(inf) == 2
    inf.free_le(9)
    assert len(inf) == 0


def test_inflights_window_by_bytes():
    """The byte window fills when the unacknowledged bytes reach max_bytes,
    whatever the count; max_bytes=0 means no byte limit."""
    inf = Inflights(max_count=100, max_bytes=100)
    inf.add(1, 60)
    assert not inf.full
    inf.add(2, 40)
    assert inf.full
    inf.free_le(1)
    assert not inf.full
    unlimited = Inflights(max_count=100, max_bytes=0)
    unlimited.add(1, 10**9)
    assert not unlimited.full


def test_inflights_free_le_frees_in_order_and_reset_empties():
    inf = Inflights(max_count=10, max_bytes=50)
    for last in (2, 4, 6):
        inf.add(last, 20)
    assert inf.full  # 60 bytes
    inf.free_le(3)  # frees only the append ending at 2
    assert len(inf) == 2 and not inf.full  # 40 bytes
    inf.add(8, 10)
    assert inf.full  # 50 bytes
    inf.free_le(6)
    assert len(inf) == 1 and not inf.full
    inf.reset()
    assert len(inf) == 0 and not inf.full


# ---------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------


def progress(match=0, next=1, state=ProgressState.PROBE, max_count=4, max_bytes=0) -> Progress:
    pr = Progress(match=match, next=next, inflights=Inflights(max_count, max_bytes))
    if state is ProgressState.REPLICATE:
        pr.become_replicate()
    elif state is ProgressState.SNAPSHOT:
        pr.become_snapshot(next)
    return pr


def test_progress_maybe_update_records_acks_and_ignores_stale_ones():
    pr = progress(match=3, next=6)
    assert pr.maybe_update(5)
    assert (pr.match, pr.next) == (5, 6)
    assert not pr.maybe_update(4)  # older ack
    assert (pr.match, pr.next) == (5, 6)


def test_progress_replicate_sends_advance_next_and_fill_window():
    """In REPLICATE state every append moves next past it and occupies the
    window; a full window pauses the follower."""
    pr = progress(match=5, state=ProgressState.REPLICATE, max_count=2)
    assert pr.next == 6 and not pr.is_paused()
    pr.sent_entries(8, 30)
    pr.sent_entries(10, 30)
    assert pr.next == 11 and pr.is_paused()
    pr.maybe_update(8)
    pr.inflights.free_le(8)
    assert not pr.is_paused()


def test_progress_probe_sends_one_at_a_time():
    """In PROBE state an append does not move next; the follower is paused
    until the answer (or a heartbeat response) arrives."""
    pr = progress(match=0, next=6)
    pr.sent_entries(8, 30)
    assert pr.next == 6 and pr.is_paused() and len(pr.inflights) == 0
    pr.maybe_update(5)
    assert not pr.is_paused()


def test_progress_replicate_reject_above_match_falls_back_to_match():
    """REPLICATE: a real reject (for an index past match) falls back to
    match + 1: everything up to match is known good."""
    pr = progress(match=5, state=ProgressState.REPLICATE)
    pr.sent_entries(9, 10)
    assert pr.maybe_decrease_to(9, 7)
    assert (pr.match, pr.next) == (5, 6)


@pytest.mark.parametrize("state", [ProgressState.REPLICATE, ProgressState.PROBE])
def test_progress_follower_that_lost_acknowledged_entries_is_probed_from_its_hint(state):
    """A reject at or below match whose hint is below match means the
    follower no longer has entries it acknowledged (an in-memory node that
    restarted): match drops to the hint so the leader resends from there,
    instead of probing just past the old match forever."""
    pr = progress(match=6, state=state)
    pr.next = 7
    assert pr.maybe_decrease_to(6, 0)
    assert (pr.match, pr.next, pr.probe_sent) == (0, 1, False)


def test_progress_probe_maybe_decrease_ignores_reject_not_for_last_probe():
    """PROBE: only the answer to the probe just sent (for next - 1) counts;
    any other reject is stale and ignored."""
    pr = progress(match=0, next=8)
    pr.sent_entries(8, 10)
    assert not pr.maybe_decrease_to(5, 2)
    assert not pr.maybe_decrease_to(9, 2)
    assert pr.next == 8 and pr.probe_sent


@pytest.mark.parametrize(
    ("match", "rejected", "hint", "expected_next"),
    [
        (0, 7, 3, 4),  # jump to just past the hint
        (0, 7, 10, 7),  # a hint beyond the probe cannot move next forward
        (5, 7, 2, 6),  # never below match + 1
        (0, 7, 0, 1),
    ],
)
def test_progress_probe_maybe_decrease_uses_hint_within_bounds(match, rejected, hint, expected_next):
    pr = progress(match=match, next=rejected + 1)
    pr.sent_entries(rejected + 1, 10)
    assert pr.maybe_decrease_to(rejected, hint)
    assert pr.next == expected_next and not pr.probe_sent


def test_progress_become_probe_after_snapshot_resumes_past_the_snapshot():
    """Leaving SNAPSHOT state, the leader probes just past the snapshot it
    sent (or past match, if the follower is already further)."""
    pr = progress(match=0, next=1)
    pr.become_snapshot(10)
    assert pr.is_paused() and pr.pending_snapshot == 10
    pr.become_probe()
    assert (pr.state, pr.next, pr.pending_snapshot) == (ProgressState.PROBE, 11, 0)
    assert not pr.is_paused()
    ahead = progress(match=12, next=13)
    ahead.become_snapshot(10)
    ahead.become_probe()
    assert ahead.next == 13


def test_progress_become_probe_from_replicate_restarts_at_match_and_clears_window():
    pr = progress(match=4, state=ProgressState.REPLICATE, max_count=1)
    pr.sent_entries(9, 10)
    assert pr.is_paused()
    pr.become_probe()
    assert (pr.state, pr.next, len(pr.inflights)) == (ProgressState.PROBE, 5, 0)
    assert not pr.is_paused()
