"""SimCluster itself: reproducible from a seed, and converging under every
kind of network fault it can inject."""

from __future__ import annotations

import pytest

from raftkit.testing.sim import InvariantViolation, SimCluster


def story(seed: int) -> list[str]:
    c = SimCluster(5, seed=seed)
    c.trace_messages = True
    c.run(30, drop_rate=0.1, duplicate_rate=0.1, delay_rate=0.2, reorder=True)
    lead = c.leader()
    if lead is not None:
        c.propose(lead, b"x")
    c.run(10, drop_rate=0.1, reorder=True)
    return c.trace


def test_same_seed_same_run_event_for_event() -> None:
    assert story(11) == story(11)


def test_different_seeds_give_different_runs() -> None:
    assert story(11) != story(12)


@pytest.mark.parametrize(
    "faults",
    [
        {"drop_rate": 0.3},
        {"duplicate_rate": 0.5},
        {"delay_rate": 0.5, "max_delay": 8},
        {"reorder": True},
        {"drop_rate": 0.2, "duplicate_rate": 0.2, "delay_rate": 0.3, "reorder": True},
    ],
)
def test_converges_and_stays_safe_under_network_faults(faults: dict) -> None:
    c = SimCluster(5, seed=3)
    c.run_until(lambda: c.leader() is not None, 500, **faults)
    for i in range(30):
        lead = c.leader()
        if lead is not None:
            c.propose(lead, f"w{i}".encode())
        c.run(2, **faults)
    c.stabilize()
    c.check_converged_and_durable()
    assert sum(p.acked for p in c.proposals.values()) > 0


def test_one_way_cut_isolates_in_one_direction_only() -> None:
    c = SimCluster(3, seed=5)
    lead = c.run_until_value(c.leader, 300)
    c.run_until(c.converged, 300)  # followers in replicate state: appends stream
    other = next(i for i in c.ids if i != lead)
    c.cut(other, lead)  # the leader still reaches `other`, but hears nothing back
    index = c.propose(lead, b"one-way")
    assert index is not None
    c.run(5)
    assert c.nodes[other].store.last_index() >= index  # it received the entry
    c.heal()
    c.stabilize()
    c.check_converged_and_durable()


def test_invariant_violation_names_the_problem() -> None:
    c = SimCluster(3, seed=1)
    c.leaders_by_term[1] = "someone-else"
    with pytest.raises(InvariantViolation, match="election safety"):
        c.run_until(lambda: c.leader() is not None, 300)


def test_follower_restarted_without_its_log_catches_up_under_the_same_leader() -> None:
    """An in-memory follower that restarts empty must be re-sent the log
    (or a snapshot) even though the leader recorded it as matching."""
    c = SimCluster(3, seed=9)
    lead = c.run_until_value(c.leader, 300)
    for i in range(5):
        c.propose(lead, f"before{i}".encode())
    c.run_until(c.converged, 300)
    follower = next(i for i in c.ids if i != lead)
    c.wipe(follower)
    c.restart(follower)
    c.propose(lead, b"after")
    c.run_until(c.converged, 300)
    assert c.leader() == lead
    applied = [e.data for e in c.nodes[follower].applied.values()]
    assert b"before0" in applied and b"after" in applied


# -- membership ----------------------------------------------------------------------


def _cluster_with_leader(n: int = 3, seed: int = 21, **kw: object) -> tuple[SimCluster, str]:
    c = SimCluster(n, seed=seed, **kw)  # type: ignore[arg-type]
    lead = c.run_until_value(c.leader, 300)
    c.run_until(c.converged, 300)
    return c, lead


def test_new_learner_catches_up_by_snapshot_and_is_promoted() -> None:
    c, lead = _cluster_with_leader()
    for i in range(5):
        c.propose(lead, f"early{i}".encode())
    c.run_until(c.converged, 300)
    assert c.compact(lead) is not None  # the new node cannot get the early entries from the log
    assert c.add_learner("n4") is not None
    c.run_until(lambda: c.converged() and "n4" in c.members(), 300)
    assert c.current_conf().learners == {"n4"}
    assert any("n4 installed snapshot" in line for line in c.trace)
    assert b"early0" in {e.data for e in c.nodes["n4"].applied.values()}
    assert c.promote("n4") is not None
    c.run_until(lambda: c.converged() and "n4" in c.current_conf().voters, 300)
    c.propose(c.leader(), b"after")  # type: ignore[arg-type]
    c.run_until(c.converged, 300)
    c.check_converged_and_durable()


def test_a_learner_that_still_needs_the_snapshot_is_not_promoted() -> None:
    """The leader's catch-up rule before a learner may vote: within a
    message's worth of entries of the commit index is not enough when the
    entries it lacks are gone from the log. Before, an empty learner of a
    compacted log (match 0, commit 8) passed the rule and became a voter with
    no state, leaving a 4-node cluster that needs 3 acknowledgements with
    only 3 nodes that could give them until the snapshot arrived."""
    from raftkit.core.membership import encode_change
    from raftkit.errors import ProposalDroppedError

    c, lead = _cluster_with_leader()
    for i in range(5):
        c.propose(lead, f"early{i}".encode())
    c.run_until(c.converged, 300)
    assert c.compact(lead) is not None
    c.add_node("n4")
    c.isolate("n4")  # it hears nothing: no snapshot, no entries
    assert c.add_learner("n4") is not None
    c.run_until(lambda: all("n4" in c.nodes[i].raw.raft.conf.learners for i in c.ids if i != "n4"), 300)
    raft = c.nodes[lead].raw.raft  # type: ignore[union-attr]
    assert raft.progress["n4"].match == 0 < raft.log.first_index() - 1
    with pytest.raises(ProposalDroppedError, match="has not caught up"):
        raft.request_conf_change(encode_change("promote", "n4", None))
    c.heal()
    c.run_until(lambda: c.converged() and "n4" in c.members(), 300)
    assert any("n4 installed snapshot" in line for line in c.trace)
    assert raft.request_conf_change(encode_change("promote", "n4", None)) is not None
    c.run_until(lambda: c.converged() and "n4" in c.current_conf().voters, 300)
    c.check_converged_and_durable()


def test_demoted_voter_stays_as_a_learner() -> None:
    c, lead = _cluster_with_leader()
    other = next(i for i in c.ids if i != lead)
    assert c.demote(other) is not None
    c.run_until(lambda: c.converged() and other in c.current_conf().learners, 300)
    assert c.current_conf().voters == set(c.ids) - {other}
    assert c.nodes[other].raw.raft.conf == c.current_conf()  # type: ignore[union-attr]
    c.campaign(other)  # a learner never campaigns
    assert c.leader() == lead


@pytest.mark.parametrize("learned", [True, False], ids=["knows-it-was-removed", "never-heard"])
def test_removed_node_keeps_running_without_disrupting(learned: bool) -> None:
    """A removed node keeps ticking and campaigning (if it never heard of its
    removal); the leader and the term stay as they are (check-quorum, no pre-vote)."""
    c, lead = _cluster_with_leader(pre_vote=False)
    gone = next(i for i in c.ids if i != lead)
    if not learned:
        c.isolate(gone)
    assert c.remove_member(gone) is not None
    c.run_until(lambda: c.converged() and gone not in c.members(), 300)
    c.heal()
    term = c.nodes[lead].raw.raft.term  # type: ignore[union-attr]
    for _ in range(5):
        c.campaign(gone)
        c.run(20)
    assert c.leader() == lead and c.nodes[lead].raw.raft.term == term  # type: ignore[union-attr]
    removed = c.nodes[gone].raw.raft  # type: ignore[union-attr]
    if learned:
        assert removed.conf == c.current_conf()  # it applied its removal and stopped campaigning
    else:
        assert gone in removed.conf.voters and removed.term > term  # it campaigned, in vain
    c.propose(lead, b"still-working")
    c.run_until(c.converged, 300)
    c.check_converged_and_durable()


def test_two_voters_swapped_through_a_joint_config() -> None:
    c, lead = _cluster_with_leader()
    for new in ("n4", "n5"):
        assert c.add_learner(new) is not None
        c.run_until(lambda new=new: c.converged() and new in c.members(), 300)
    assert c.change_voters({lead, "n4", "n5"}) is not None
    assert c.nodes[lead].raw.raft.conf.joint is False  # type: ignore[union-attr]  # applies on commit
    c.run_until(lambda: c.converged() and c.current_conf().voters == {lead, "n4", "n5"}, 300)
    assert any(conf.joint for conf in c.confs.values())
    assert not c.current_conf().joint and not c.current_conf().learners
    c.propose(lead, b"after-the-swap")
    c.run_until(c.converged, 300)
    c.check_converged_and_durable()


def test_membership_invariant_catches_a_second_pending_change() -> None:
    c, lead = _cluster_with_leader()
    c.isolate(lead)  # nothing commits
    assert c.add_learner("n4") is not None
    assert c.add_learner("n5") is None  # the core refuses: one change at a time
    c.nodes[lead].raw.raft.pending_conf_index = 0  # type: ignore[union-attr]  # break the rule
    with pytest.raises(InvariantViolation, match="uncommitted at once"):
        c.add_learner("n5")
