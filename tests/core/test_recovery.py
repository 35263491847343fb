"""A node that restarts without its state (memory mode, a wiped disk) must not
vote or count toward a quorum until a leader has readmitted it; a cluster
whose majority lost its state must say so. Run on the deterministic
simulator, with its invariants (one vote per node per term, leader
completeness, state machine safety ...) checked after every step."""

from __future__ import annotations

import pytest

from raftkit.core.membership import encode_change
from raftkit.core.types import Message, MessageType, Role
from raftkit.errors import ProposalDroppedError
from raftkit.testing.sim import InvariantViolation, SimCluster


def lose_state(c: SimCluster, node: str) -> None:
    c.wipe(node)
    c.restart(node)


def status(c: SimCluster, node: str):  # noqa: ANN201 - RawNode Status
    raw = c.nodes[node].raw
    assert raw is not None
    return raw.status()


def test_a_node_restarted_empty_is_readmitted_and_then_votes_again() -> None:
    c = SimCluster(3, seed=3)
    lead = c.run_until_value(c.leader, 300)
    for i in range(5):
        c.propose(lead, f"w{i}".encode())
    c.run_until(c.converged, 300)
    follower = next(i for i in c.ids if i != lead)
    lose_state(c, follower)
    assert status(c, follower).recovering
    c.run_until(lambda: not status(c, follower).recovering, 300)
    c.run_until(c.converged, 300)
    # The readmitted node is a full voter again: it can be elected.
    c.transfer_leadership(lead, follower)
    c.run_until(lambda: c.leader() == follower, 300)
    c.check_converged_and_durable()


def test_pysyncobj_failure_an_empty_node_cannot_elect_a_leader_without_committed_entries() -> None:
    """PySyncObj's bug: n2 held committed entries with n1, restarted empty,
    then voted for the stale n3, which overwrote them."""
    c = SimCluster(3, seed=5)
    lead = c.run_until_value(c.leader, 300)
    a, b = (i for i in c.ids if i != lead)
    c.isolate(b)  # b misses everything that follows
    for i in range(5):
        c.propose(lead, f"w{i}".encode())
    c.run_until(lambda: all(p.acked for p in c.proposals.values()), 300)
    # a held the committed entries, loses them; the leader dies.
    lose_state(c, a)
    c.crash(lead)
    c.heal()
    # b is the only node with a past; a refuses to vote for it.
    c.run(150)
    assert c.leader() is None
    assert status(c, a).recovering
    # The old leader (with the entries) comes back and nothing was lost.
    c.restart(lead)
    c.run_until(c.converged, 600)
    c.check_converged_and_durable()
    assert not status(c, a).recovering


def test_without_recovery_the_same_story_loses_committed_entries() -> None:
    """The control experiment: the simulator catches the loss when the
    recovering flag is switched off (as in PySyncObj)."""
    c = SimCluster(3, seed=5)
    lead = c.run_until_value(c.leader, 300)
    a, b = (i for i in c.ids if i != lead)
    c.isolate(b)
    for i in range(5):
        c.propose(lead, f"w{i}".encode())
    c.run_until(lambda: all(p.acked for p in c.proposals.values()), 300)
    c.wipe(a)
    c.nodes[a].lost_state = False  # restart empty but trusted, as PySyncObj does
    c.restart(a)
    c.crash(lead)
    c.heal()
    lost = "leader completeness|lost|state machine safety|committed entry"
    with pytest.raises(InvariantViolation, match=lost):
        c.run_until(lambda: c.leader() is not None, 300)
        c.restart(lead)
        c.run_until(c.converged, 600)
        c.check_converged_and_durable()


def test_a_recovering_node_does_not_vote_twice_in_a_term() -> None:
    c = SimCluster(3, seed=11)
    lead = c.run_until_value(c.leader, 300)
    c.run_until(c.converged, 300)
    term = status(c, lead).term
    voter, other = (i for i in c.ids if i != lead)
    lose_state(c, voter)
    vote = Message(MessageType.VOTE, src=other, dst=voter, term=term, index=10**6, log_term=term)
    raw = c.nodes[voter].raw
    assert raw is not None
    raw.step(vote)
    rd = raw.ready()
    [resp] = [m for m in rd.messages if m.type is MessageType.VOTE_RESP]
    assert resp.reject
    raw.advance(rd)


def test_acknowledgements_of_a_recovering_node_do_not_commit() -> None:
    c = SimCluster(3, seed=13)
    lead = c.run_until_value(c.leader, 300)
    c.run_until(c.converged, 300)
    a, b = (i for i in c.ids if i != lead)
    c.crash(b)
    lose_state(c, a)
    index = c.propose(lead, b"needs-a-real-quorum")
    assert index is not None
    c.run(60)
    assert status(c, lead).commit < index  # a's acks alone would have committed it
    assert status(c, a).recovering
    c.restart(b)
    c.run_until(lambda: c.proposals[b"needs-a-real-quorum"].acked, 600)
    c.run_until(lambda: not status(c, a).recovering, 600)
    c.run_until(c.converged, 600)
    c.check_converged_and_durable()


def test_rapid_one_at_a_time_state_loss_never_loses_an_acknowledged_write() -> None:
    # A fixed schedule, so the seed decides whether three of the five lose
    # their state before any catches up, which no recovery survives (16 of
    # seeds 0-39 do, before and after commit notices changed the messages).
    c = SimCluster(5, seed=5)
    lead = c.run_until_value(c.leader, 300)
    written = 0
    for round_ in range(12):
        for _ in range(3):
            lead = c.leader()
            if lead is not None and c.propose(lead, f"r{round_}-{written}".encode()) is not None:
                written += 1
            c.run(3)
        victim = c.ids[round_ % len(c.ids)]
        lose_state(c, victim)
        c.run(8)  # the next loss follows before the victim has necessarily caught up
    c.run_until(lambda: not any(status(c, i).recovering for i in c.ids), 2000)
    c.run_until(c.converged, 2000)
    c.check_converged_and_durable()
    assert written > 10


def test_a_cluster_started_empty_bootstraps_by_probing() -> None:
    c = SimCluster(3, seed=19)
    for node in c.ids:
        lose_state(c, node)  # every node starts as an in-memory node does
    lead = c.run_until_value(c.leader, 400)
    c.propose(lead, b"first")
    c.run_until(c.converged, 300)
    assert not any(status(c, i).recovering for i in c.ids)
    # One node restarting empty later is a minority: nobody reports a lost quorum.
    lose_state(c, next(i for i in c.ids if i != lead))
    for _ in range(30):
        c.run(1)
        assert all(status(c, i).quorum_lost is None for i in c.ids)


def test_a_majority_that_lost_its_state_says_so_and_elects_nobody() -> None:
    c = SimCluster(3, seed=23)
    lead = c.run_until_value(c.leader, 300)
    c.propose(lead, b"precious")
    c.run_until(c.converged, 300)
    a, b = (i for i in c.ids if i != lead)
    lose_state(c, a)
    lose_state(c, b)
    c.crash(lead)
    c.restart(lead)
    c.run(200)
    assert c.leader() is None
    for node in c.ids:
        message = status(c, node).quorum_lost
        assert message is not None and "majority of voters" in message, node
    # Every node restarting empty is a total wipe, not a first start: each
    # node's restart marker says it held state, so nobody starts empty.
    for node in c.ids:
        lose_state(c, node)
    c.run(300)
    assert c.leader() is None
    for node in c.ids:
        message = status(c, node).quorum_lost
        assert message is not None and "total wipe" in message, (node, message)
        assert status(c, node).recovering
    # The operator's step (delete the markers) starts a new cluster cleanly (a
    # new history: the simulator's records of the old cluster no longer apply).
    for record in (c.votes_granted, c.leaders_by_term, c.committed, c.committed_by_term, c.proposals):
        record.clear()
    for node in c.ids:
        c.wipe(node, forget_marker=True)
        c.restart(node)
    c.run_until(lambda: c.leader() is not None, 600)
    assert all(status(c, i).quorum_lost is None for i in c.ids)


def test_a_cluster_wiped_everywhere_after_committing_never_restarts_empty() -> None:
    """The issue's total wipe: one-at-a-time losses until no node holds the
    data; every voter then reports an empty log in term 0, and the cluster
    used to bootstrap a fresh, empty history (acknowledged writes gone)."""
    c = SimCluster(3, seed=31)
    lead = c.run_until_value(c.leader, 300)
    c.propose(lead, b"precious")
    c.run_until(c.converged, 300)
    c.check_every_step = False  # the scenario itself loses committed data
    for node in c.ids:  # each killed before anyone readmits it
        lose_state(c, node)
    c.run(400)
    assert c.leader() is None
    assert all(status(c, i).recovering for i in c.ids)
    for node in c.ids:
        message = status(c, node).quorum_lost
        assert message is not None and "total wipe" in message, (node, message)


def test_a_brand_new_cluster_starts_with_a_majority() -> None:
    """A first start (no node ever held state) with one member down: the
    two others bootstrap, elect a leader and commit; the third, started
    later, is readmitted rather than bootstrapping on its own."""
    c = SimCluster(3, seed=37)
    for node in c.ids:
        lose_state(c, node)  # every node starts as an in-memory node does
    c.crash("n3")
    lead = c.run_until_value(c.leader, 600)
    c.propose(lead, b"first")
    c.run_until(lambda: c.proposals[b"first"].acked, 300)
    c.restart("n3")  # no marker: it never held state
    c.run_until(lambda: not status(c, "n3").recovering and c.converged(), 600)
    c.check_converged_and_durable()


def test_a_wiped_node_does_not_bootstrap_from_removed_members() -> None:
    """The e-repro schedule: voters changed from {n1,n2,n3} to {n1,n4,n5};
    the removed n2 and n3 restart empty and so does n1, which knows only its
    start-up peers. n1 held state, so it stays recovering, and the lagging
    voter cannot be elected with its vote."""
    c = SimCluster(3, seed=5, election_tick=5)
    c.campaign("n1")
    c.deliver_all()
    for n in ("n4", "n5"):
        assert c.add_learner(n) is not None
        c.run(40)
        assert c.promote(n) is not None
        c.run(40)
    for n in ("n2", "n3"):
        assert c.remove_member(n) is not None
        c.run(40)
    assert sorted(c.current_conf().voters) == ["n1", "n4", "n5"]
    for n in ("n2", "n3"):
        lose_state(c, n)
    c.run(10)
    lead = c.leader()
    assert lead is not None
    other = "n4" if lead == "n1" else ({"n4", "n5"} - {lead}).pop()
    c.isolate(other)
    c.propose(lead, b"E")
    c.run(5)
    assert c.proposals[b"E"].acked
    lose_state(c, "n1")
    c.heal()
    c.partition(["n1", "n2", "n3", other])
    for _ in range(3):
        c.tick("n1")
        c.deliver_all()
    assert status(c, "n1").recovering
    for _ in range(15):
        c.tick(other)
        c.deliver_all()
    assert status(c, other).role is not Role.LEADER  # invariants checked after every step too


def test_membership_change_requests_reach_the_leader_from_any_member() -> None:
    c = SimCluster(3, seed=29)
    lead = c.run_until_value(c.leader, 300)
    c.run_until(c.converged, 300)
    follower = next(i for i in c.ids if i != lead)
    c.add_node("n4")
    raw = c.nodes[follower].raw
    assert raw is not None
    assert raw.request_conf_change(encode_change("add_learner", "n4", "127.0.0.1:9")) is None
    c._process(c.nodes[follower])
    c.run_until(lambda: "n4" in status(c, lead).conf.learners, 300)
    assert status(c, lead).conf.address_book == {"n4": "127.0.0.1:9"}
    c.run_until(lambda: status(c, "n4").applied == status(c, lead).commit, 300)
    lead_raw = c.nodes[lead].raw
    assert lead_raw is not None
    assert lead_raw.request_conf_change(encode_change("promote", "n4")) is not None
    c._process(c.nodes[lead])
    c.run_until(lambda: "n4" in status(c, "n4").conf.voters, 300)
    # A retried request that already holds is a no-op.
    assert lead_raw.request_conf_change(encode_change("promote", "n4")) is None
    with pytest.raises(ValueError, match="not a learner"):
        lead_raw.request_conf_change(encode_change("promote", "stranger"))
    assert status(c, lead).role is Role.LEADER


def test_the_leader_refuses_a_change_that_leaves_too_few_voters_holding_their_state() -> None:
    c = SimCluster(3, seed=41)
    lead = c.run_until_value(c.leader, 300)
    c.run_until(c.converged, 300)
    a, b = (i for i in c.ids if i != lead)
    c.crash(b)  # b is down, so a cannot be readmitted: it stays recovering
    lose_state(c, a)
    c.run(5)  # the leader hears a's flagged acknowledgements
    raw = c.nodes[lead].raw
    assert raw is not None and raw.raft.progress[a].recovering
    with pytest.raises(ProposalDroppedError, match="too few voters holding their state"):
        raw.request_conf_change(encode_change("demote", b))  # voters {lead, a}: a majority lost
    c.restart(b)
    c.run_until(lambda: not raw.raft.progress[a].recovering, 600)  # readmitted, and the leader knows
    assert raw.request_conf_change(encode_change("demote", b)) is not None


def test_a_wiped_node_that_knows_no_membership_does_not_bootstrap_alone() -> None:
    """Found by the Hypothesis lose_state rule: a node added after the start
    (it boots with no membership) was taken for a one-voter cluster and
    stopped recovering at once, then helped elect a leader lacking entries."""
    c = SimCluster(3, seed=47)
    lead = c.run_until_value(c.leader, 300)
    c.run_until(c.converged, 300)
    assert c.add_learner("n4") is not None
    c.run_until(lambda: "n4" in status(c, lead).conf.learners and c.converged(), 300)
    lose_state(c, "n4")
    assert status(c, "n4").recovering  # until the leader readmits it
    c.run_until(lambda: not status(c, "n4").recovering, 300)


def test_a_wiped_node_is_readmitted_within_a_few_rounds() -> None:
    """The readmission window (one more crash in it halts an in-memory
    cluster) has no avoidable waits: the node probes on its first tick, the
    leader takes a PROBE flagged recovering as a request to readmit, and it
    replicates the whole log at once instead of probing back from the node's
    old match. It used to take 7 rounds here (heartbeat every 2 ticks)."""
    rounds = []
    for seed in range(5):
        c = SimCluster(3, seed=seed, heartbeat_tick=2)
        lead = c.run_until_value(c.leader, 300)
        for i in range(50):
            c.propose(lead, b"w%d" % i)
        c.run_until(c.converged, 300)
        victim = next(i for i in c.ids if i != lead)
        lose_state(c, victim)
        for n in range(1, 21):
            c.run(1)
            if not status(c, victim).recovering:
                rounds.append(n)
                break
    assert len(rounds) == 5 and max(rounds) <= 5, rounds
    c.run_until(c.converged, 300)
    c.check_converged_and_durable()
