"""The simulator's checker judges from its own ground truth (what leaders
committed, which votes were sent, which nodes the test wiped), and its
late-message fault rules deliver what they say."""

from __future__ import annotations

import pytest

from raftkit.core.types import Entry, EntryKind, HardState, MessageType, Role
from raftkit.testing.sim import GHOSTS_PER_NODE, MAX_GHOSTS, InvariantViolation, SimCluster

MT = MessageType


def _converged(seed: int = 5, **kw: object) -> tuple[SimCluster, str, str, str]:
    c = SimCluster(3, seed=seed, **kw)  # type: ignore[arg-type]
    lead = c.run_until_value(c.leader, 300)
    c.run_until(c.converged, 300)
    a, b = sorted(i for i in c.ids if i != lead)
    return c, lead, a, b


def _raft(c: SimCluster, node: str):  # noqa: ANN202
    raw = c.nodes[node].raw
    assert raw is not None
    return raw.raft


def test_an_entry_no_leader_committed_is_caught_on_the_node_that_applies_it() -> None:
    """The first node to apply an index does not define what was committed
    there: a leader's commit does."""
    c, lead, a, _ = _converged()
    c.crash(a)
    store = c.nodes[a].store
    hs = store.hard_state()
    fake = Entry(store.last_index() + 1, hs.term, EntryKind.NORMAL, b"NEVER-COMMITTED")
    store.save(HardState(hs.term, hs.vote, fake.index), [fake])  # a disk claiming it committed
    with pytest.raises(InvariantViolation, match=f"{a} applied .*NEVER-COMMITTED.* never committed"):
        c.restart(a)


def test_the_checker_judges_a_wiped_node_by_what_it_does_not_by_its_flag() -> None:
    """A wiped node neither holds nor lacks entries while it keeps out of
    elections, whatever its core's ``recovering`` flag says; once it grants
    a vote, its empty log counts."""
    c, lead, a, b = _converged(pre_vote=False)
    c.isolate(b)  # b lags behind
    for i in range(3):
        c.propose(lead, f"w{i}".encode())
    c.run_until(lambda: all(p.acked for p in c.proposals.values()), 100)
    c.wipe(a)
    c.restart(a)
    _raft(c, a).recovering = False  # as if a bug cleared the flag
    c.check_invariants()  # a has not voted: nothing to judge yet
    c.heal()
    c.partition([a, b])
    c.campaign(b)
    with pytest.raises(InvariantViolation, match="quorum"):
        for _ in range(20):
            pos = next((i for i, e in enumerate(c.inflight) if e.msg.dst == a), None)
            if pos is None:
                break
            c.deliver(pos)
    assert not c.nodes[a].amnesiac  # it granted a vote with an empty log


def test_a_vote_forgotten_in_a_wipe_still_counts_for_its_candidate() -> None:
    """A candidate holding a vote granted before the voter lost its state is
    one step from leading: if it lacks what was committed since, the
    checker says so before any wrong leader exists."""
    c, lead, a, b = _converged(pre_vote=False)
    term = _raft(c, lead).term
    c.isolate(b)
    c.campaign(b)  # a candidate of the next term, cut off for now
    assert _raft(c, b).role is Role.CANDIDATE and _raft(c, b).term == term + 1
    c.votes_granted[(a, 0, term + 1)] = b  # a's grant, sent before a lost its state, still on its way
    c.partition([b])
    with pytest.raises(InvariantViolation, match=rf"{b} lacks committed entry .*granted in term {term + 1}"):
        c.propose(lead, b"after")
        c.run_until(lambda: c.proposals[b"after"].acked, 100)


def test_two_votes_in_a_term_across_a_wipe_are_not_a_double_vote() -> None:
    """A wiped node forgot its vote; voting again in that term is judged by
    its consequences (a leader lacking writes, two leaders), not as such."""
    c = SimCluster(3, seed=2, pre_vote=False)
    c.campaign("n1")
    pos = next(i for i, e in enumerate(c.inflight) if e.msg.type is MT.VOTE and e.msg.dst == "n3")
    c.deliver(pos)
    c.inflight.clear()
    c.wipe("n3")
    c.restart("n3")
    _raft(c, "n3").recovering = False  # as if it were readmitted (or never guarded)
    c.campaign("n2")
    pos = next(i for i, e in enumerate(c.inflight) if e.msg.type is MT.VOTE and e.msg.dst == "n3")
    c.deliver(pos)  # no "voted for n1 and n2"
    assert c.grants("n1", 1) == c.grants("n2", 1) == {"n3"}


def test_two_votes_in_a_term_across_a_crash_are_a_double_vote() -> None:
    c = SimCluster(3, seed=2, pre_vote=False)
    c.campaign("n1")
    pos = next(i for i, e in enumerate(c.inflight) if e.msg.type is MT.VOTE and e.msg.dst == "n3")
    c.deliver(pos)
    c.inflight.clear()
    c.crash("n3")
    c.nodes["n3"].store.save(HardState(1, None, 0), [])  # a disk that forgot the vote
    c.restart("n3")
    c.campaign("n2")
    pos = next(i for i, e in enumerate(c.inflight) if e.msg.type is MT.VOTE and e.msg.dst == "n3")
    with pytest.raises(InvariantViolation, match="n3 voted for n1 and n2 in term 1"):
        c.deliver(pos)


def test_messages_of_an_earlier_incarnation_come_back_late_and_repeatedly() -> None:
    c, lead, a, _ = _converged()
    c.tick(lead)  # heartbeats in flight
    sent = [e.msg for e in c.inflight if e.msg.src == lead]
    assert sent
    c.crash(lead)
    assert [g.msg for g in c.ghosts][-len(sent) :] == sent[-GHOSTS_PER_NODE:]
    c.inflight.clear()
    for _ in range(2):  # a duplicate each time; the ghost stays
        env = c.replay_ghost(len(c.ghosts) - 1, deliver=False)
        assert env is not None and c.inflight[-1] is env and env.msg == c.ghosts[-1].msg
    c.restart(lead)
    before = len(c.inflight)
    c.replay_ghost(len(c.ghosts) - 1)  # delivered at once, to a node of the current cluster
    assert any("old incarnation: " in line for line in c.trace)
    assert len(c.inflight) >= before
    for node in c.ids * (MAX_GHOSTS // GHOSTS_PER_NODE + 1):
        c.tick(node)
        c.crash(node)
        c.restart(node)
    assert len(c.ghosts) <= MAX_GHOSTS


def test_a_timeout_now_can_be_delivered_after_its_transfer_gave_up() -> None:
    c, lead, a, _ = _converged()
    c.transfer_leadership(lead, a)
    [pos] = [i for i, e in enumerate(c.inflight) if e.msg.type is MT.TIMEOUT_NOW]
    c.drop(pos)
    c.run(12)  # the transfer expires
    env = c.replay_timeout_now(0, deliver=False)
    assert env is not None and env.msg.type is MT.TIMEOUT_NOW and env.msg.dst == a and c.inflight[-1] is env


def test_a_parked_message_waits_outside_the_network() -> None:
    c, lead, a, _ = _converged()
    c.propose(lead, b"held")
    pos = next(i for i, e in enumerate(c.inflight) if e.msg.type is MT.APPEND and e.msg.dst == a)
    env = c.park(pos)
    assert env is not None and env not in c.inflight
    c.run(3)
    assert env in c.parked
    assert c.unpark(c.parked.index(env), deliver=False) is env and env in c.inflight


# -- a node that dies inside a write (SimCluster.crash_while_writing) ---------------------------


def test_a_follower_that_dies_while_writing_acknowledged_nothing_and_nothing_is_lost() -> None:
    """The leader sends its appends ahead of its own write; a follower must
    not. Here the one follower that can complete a majority dies inside its
    write of ``w``; the leader then dies too, and the others elect. Had the
    follower acknowledged ``w`` ahead, the leader would have committed it and
    the new leader, which never held it, would overwrite it: the checker
    raises. Correct, ``w`` was never acknowledged and nothing is lost."""
    c, lead, a, b = _converged(pre_vote=False)
    c.isolate(b)  # only a can make a majority with the leader
    c.crash_while_writing(a)
    c.propose(lead, b"w")
    c.run_until(lambda: not c.nodes[a].alive, 50)  # a died writing w
    c.run(5)  # whatever a sent ahead reaches the leader
    assert not c.proposals[b"w"].acked
    c.crash(lead)
    c.heal()
    c.restart(a)
    c.run_until(lambda: c.leader() in (a, b), 300)  # checked on every step
    c.propose(c.leader() or a, b"after")
    c.run_until(lambda: c.proposals[b"after"].acked, 300)
    c.stabilize()  # the old leader comes back: every log agrees


def test_a_leader_that_dies_while_writing_loses_no_acknowledged_entry() -> None:
    """Its appends left before its write, which never happens: followers
    may hold ``w`` and commit it under the next leader, or drop it; either
    way every acknowledged entry survives (the checker runs every step)."""
    c, lead, a, b = _converged()
    c.propose(lead, b"before")
    c.run_until(lambda: c.proposals[b"before"].acked, 100)
    c.crash_while_writing(lead)
    c.propose(lead, b"w")
    assert not c.nodes[lead].alive  # it died inside that very write
    assert any(e.msg.type is MT.APPEND and e.msg.src == lead for e in c.inflight)  # sent ahead
    c.run_until(lambda: c.leader() in (a, b), 300)
    c.restart(lead)
    c.stabilize()
    assert all(any(e.data == b"before" for e in c.nodes[n].applied.values()) for n in c.ids)
