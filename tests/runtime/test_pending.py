"""PendingCommands: each command leaves the table exactly once, with the
right reason, whatever the log reveals about it."""

from __future__ import annotations

import threading

import pytest

from raftkit.core.types import Entry, SnapshotMeta
from raftkit.errors import CommandTimeoutError, LeadershipLostError, NodeStoppedError
from raftkit.runtime.metrics import NodeMetrics
from raftkit.runtime.pending import PendingCommands


def test_resolve_delivers_a_result_or_the_exception_once() -> None:
    table = PendingCommands()
    (a, fa), (b, fb) = table.register(1.0), table.register(1.0)
    table.resolve(a, result=42)
    table.resolve(b, error=KeyError("k"))
    table.resolve(a, result=0)  # a second outcome is ignored
    assert fa.result() == 42 and isinstance(fb.exception(), KeyError) and len(table) == 0


def test_resolve_entry_settles_an_entrys_commands_like_resolve_one_by_one() -> None:
    """The applier settles a packed entry's commands together: each gets its
    outcome once, the entry's index is forgotten, the latency metrics count
    each command, and commands already settled or unknown are skipped."""
    now = [10.0]
    metrics = NodeMetrics(clock=lambda: now[0])
    table = PendingCommands(metrics)
    (a, fa), (b, fb), (c, fc), (d, fd) = (table.register(99.0) for _ in range(4))
    for seq in (a, b, c):
        table.mark_proposed([seq], index=7, term=1)
    table.mark_proposed([d], index=8, term=1)
    table.fail(c, LeadershipLostError("gone"))  # settled before the entry applied
    now[0] = 10.5
    table.resolve_entry([a, b, c, 12345], [(1, None), (None, KeyError("k")), (3, None), (4, None)])
    assert fa.result() == 1 and isinstance(fb.exception(), KeyError)
    assert isinstance(fc.exception(), LeadershipLostError)
    assert len(table) == 1 and not fd.done()
    assert set(table._by_index) == {8}  # entry 7's commands are all settled
    assert metrics.proposals_applied == 2 and metrics.last_latency == 0.5
    with pytest.raises(ValueError):  # one outcome per command, or the applier has a bug
        table.resolve_entry([d], [])


def test_close_fails_everything_and_refuses_new_commands() -> None:
    table = PendingCommands()
    _, future = table.register(1.0)
    table.close(NodeStoppedError("the node was stopped"))
    assert isinstance(future.exception(), NodeStoppedError)
    with pytest.raises(NodeStoppedError, match="was stopped"):
        table.register(1.0)


def test_close_races_registration_without_losing_a_command() -> None:
    table = PendingCommands()
    futures = []
    refused = 0

    def register_many() -> None:
        nonlocal refused
        for _ in range(2000):
            try:
                futures.append(table.register(1.0)[1])
            except NodeStoppedError:
                refused += 1

    worker = threading.Thread(target=register_many)
    worker.start()
    table.close(NodeStoppedError("stop"))
    worker.join()
    assert len(futures) + refused == 2000
    assert all(isinstance(f.exception(0), NodeStoppedError) for f in futures)


def test_a_newer_term_in_the_log_ends_older_proposals_and_forwards() -> None:
    table = PendingCommands()
    (led, f_led), (fwd, f_fwd), (queued, f_queued), (now, f_now) = (table.register(1.0) for _ in range(4))
    table.mark_proposed([led], index=7, term=2)
    table.mark_forwarded([fwd], term=2)
    table.mark_forwarded([now], term=3)
    table.term_over(3)
    for future in (f_led, f_fwd):
        assert isinstance(future.exception(0), LeadershipLostError)
    assert not f_queued.done() and not f_now.done()  # never proposed / still possible
    assert queued in table and now in table


def test_a_forwarded_command_outlives_a_handover_by_one_term() -> None:
    """A leader handing over passes what it was sent on to its successor,
    whose no-op says so: the command may still be appended in that term."""
    table = PendingCommands()
    (fwd, f_fwd), (led, f_led) = table.register(1.0), table.register(1.0)
    table.mark_forwarded([fwd], term=2)
    table.mark_proposed([led], index=7, term=2)
    table.term_over(3, handed_over=True)
    assert not f_fwd.done()
    assert isinstance(f_led.exception(0), LeadershipLostError)  # appended in term 2, never committed
    table.term_over(4)
    assert isinstance(f_fwd.exception(0), LeadershipLostError)


def test_an_entry_in_our_slot_from_another_term_replaces_ours() -> None:
    table = PendingCommands()
    seq, future = table.register(1.0)
    table.mark_proposed([seq], index=5, term=2)
    table.entry_overwritten(Entry(index=5, term=2))  # our own slot, our term: nothing lost
    assert not future.done()
    table.entry_overwritten(Entry(index=5, term=3))
    assert isinstance(future.exception(0), LeadershipLostError)


def test_after_a_snapshot_the_outcome_of_covered_commands_is_unknown() -> None:
    table = PendingCommands()
    (old, f_old), (same, f_same) = table.register(1.0), table.register(1.0)
    table.mark_forwarded([old], term=1)
    table.mark_forwarded([same], term=4)
    table.snapshot_installed(SnapshotMeta(index=100, term=4))
    assert isinstance(f_old.exception(0), CommandTimeoutError)  # maybe applied, maybe not
    assert not f_same.done()  # it may still come after the snapshot
    table.term_over(5)
    assert "outcome unknown" in str(f_same.exception(0))


def test_expired_yields_each_overdue_pending_command_once_in_deadline_order() -> None:
    table = PendingCommands()
    late, _ = table.register(30.0)
    early, _ = table.register(10.0)
    done, _ = table.register(5.0)
    table.resolve(done, "ok")  # finished before its deadline: never reported
    assert table.expired(1.0) == []
    assert table.expired(20.0) == [early]
    assert table.expired(20.0) == []  # reported once
    assert table.expired(40.0) == [late]


def test_only_the_command_in_the_overwritten_slot_fails() -> None:
    table = PendingCommands()
    futures = {}
    for index in range(1, 1001):
        seq, futures[index] = table.register(60.0)
        table.mark_proposed([seq], index=index, term=2)
    table.entry_overwritten(Entry(index=500, term=3))
    assert isinstance(futures[500].exception(0), LeadershipLostError)
    assert sum(f.done() for f in futures.values()) == 1


def test_oldest_wait_follows_the_oldest_command_still_in_flight() -> None:
    now = [100.0]
    pending = PendingCommands(NodeMetrics(clock=lambda: now[0]))
    assert pending.oldest_wait() == 0.0
    seqs = []
    for started in (100.0, 101.0, 102.0):
        now[0] = started
        seqs.append(pending.register(deadline=1e9)[0])
    now[0] = 110.0
    assert pending.oldest_wait() == 10.0
    pending.resolve(seqs[0])
    assert pending.oldest_wait() == 9.0
    pending.fail(seqs[2], RuntimeError("x"))  # a later one finishing changes nothing
    assert pending.oldest_wait() == 9.0
    pending.resolve(seqs[1])
    assert pending.oldest_wait() == 0.0


def test_finished_commands_are_not_remembered_for_oldest_wait() -> None:
    """Bounded memory: the submission-order record keeps only what can
    still be the oldest (it is pruned on every registration)."""
    pending = PendingCommands()
    for _ in range(10_000):
        seq, _ = pending.register(deadline=1e9)
        pending.resolve(seq)
    assert len(pending._order) <= 1


def test_expired_is_right_whatever_order_the_deadlines_come_in() -> None:
    """Deadlines in submission order take a queue, the others a heap: both
    are reported, once each, in deadline order, unless finished first."""
    table = PendingCommands()
    deadlines = [10.0, 20.0, 20.0, 5.0, 30.0, 15.0, 1e9, 25.0, 40.0, 12.0]
    seqs = [table.register(d)[0] for d in deadlines]
    table.resolve(seqs[2], "ok")  # finished: never reported
    table.fail(seqs[5], RuntimeError("gone"))
    reported: list[int] = []
    for now in (0.0, 5.0, 11.0, 12.0, 24.0, 35.0, 100.0, 1e10):
        got = table.expired(now)
        assert [deadlines[seqs.index(s)] for s in got] == sorted(deadlines[seqs.index(s)] for s in got)
        assert all(deadlines[seqs.index(s)] <= now for s in got)
        reported += got
    assert sorted(reported) == sorted(s for i, s in enumerate(seqs) if i not in (2, 5))
    assert table.expired(2e10) == []  # each once, though none was failed
    later = table.register(50.0)[0]  # the queue emptied: it starts again at any deadline
    assert table.expired(49.0) == [] and table.expired(50.0) == [later]


def test_start_times_grow_with_submission_order_even_when_a_thread_stalls_reading_the_clock() -> None:
    """The overload check takes the oldest command in flight to be the one
    that started first. A thread that stalled between reading the clock and
    registering once got a later seq than a command started after it."""
    now = [1000.0]
    inside, release = threading.Event(), threading.Event()
    stall_next = [True]

    def clock() -> float:
        read = now[0]
        if stall_next[0] and threading.current_thread().name == "stalling":
            stall_next[0] = False  # stalls once, after reading the time (a lost GIL, a preemption)
            inside.set()
            release.wait(5.0)
        return read

    pending = PendingCommands(NodeMetrics(clock=clock))
    stalled = threading.Thread(target=lambda: pending.register(deadline=2000.0), name="stalling")
    stalled.start()
    assert inside.wait(5.0)
    now[0] += 0.05
    other = threading.Thread(target=lambda: pending.register(deadline=2000.0))
    other.start()
    other.join(0.3)  # with the clock read outside the lock this one registered now, ahead of the stalled one
    release.set()
    stalled.join(5.0)
    other.join(5.0)
    starts = [p.started for _, p in sorted(pending._items.items())]
    assert len(starts) == 2 and starts == sorted(starts)


def test_an_entrys_commands_are_marked_together_and_a_settled_one_is_left_out() -> None:
    """``propose`` hands the table one entry's commands at once: those with
    no outcome yet are kept in order, each gets the entry's index and term
    (a later replacement of that slot fails exactly them), and a command
    settled meanwhile is neither proposed nor remembered under the index."""
    table = PendingCommands(NodeMetrics(clock=lambda: 1.0))
    (a, _), (b, fb), (c, fc) = (table.register(99.0) for _ in range(3))
    table.fail(b, CommandTimeoutError("late"))
    assert table.still_pending([(a, b"x"), (b, b"y"), (c, b"z")]) == [(a, b"x"), (c, b"z")]
    table.mark_proposed([a, b, c], index=4, term=2)
    assert (table.get(a).index, table.get(a).term, table.get(a).last_term) == (4, 2, 2)  # type: ignore[union-attr]
    table.entry_overwritten(Entry(term=3, index=4, data=b""))
    assert isinstance(fb.exception(), CommandTimeoutError)  # its own outcome, not the slot's
    assert isinstance(fc.exception(), LeadershipLostError) and len(table) == 0
    (d, _), (e, _) = (table.register(99.0) for _ in range(2))
    table.mark_forwarded([d, e], term=5)
    assert [(table.get(s).term, table.get(s).last_term) for s in (d, e)] == [(5, 6), (5, 6)]  # type: ignore[union-attr]
