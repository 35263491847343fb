"""The core's side of leader leases (issue 10, item 4), on the simulator.

A lease read is safe only while every follower that confirmed it refuses to
vote for anyone else (raftkit.runtime.lease). These tests check the refusal from the
outside, by whether another node can be elected: a follower that restarts
with its state must keep refusing for one election timeout after it starts
(it may have confirmed a lease just before stopping), while a brand-new
cluster's first election is not delayed and a fully restarted cluster still
elects a leader. The late-TIMEOUT_NOW half (the old leader stops trusting
its lease once it sent one) is in tests/runtime/test_reads.py, where the
lease itself is computed.
"""

from __future__ import annotations

from raftkit.core.types import Role
from raftkit.testing.sim import SimCluster

ET = 8  # election ticks, as NodeConfig() derives them (0.4 s / 0.05 s)


def _leader_with_lagging_third(seed: int) -> SimCluster:
    """n1 leads n2; n3 was cut off and has no leader (so it would vote at once)."""
    c = SimCluster(3, seed=seed, election_tick=ET, heartbeat_tick=2)
    c.campaign("n1")
    c.deliver_all()
    c.propose("n1", b"x0")
    c.deliver_all()
    assert c.leader() == "n1"
    c.partition(["n1", "n2"], ["n3"])
    for _ in range(3 * ET):
        c.tick("n3")
        c.deliver_all()
    c.heal()
    # n1 heartbeats; n2 hears it (and would confirm a lease round), then n1 is cut off.
    c.tick("n1")
    c.tick("n1")
    c.deliver_all()
    c.partition(["n1"], ["n2", "n3"])
    return c


def _ticks_until_another_leader(c: SimCluster, restarted: str, candidate: str, limit: int) -> int | None:
    """Tick ``restarted`` one tick at a time, ``candidate`` campaigning after
    each; the number of ticks after which a leader other than n1 exists."""
    for k in range(limit + 1):
        if k:
            c.tick(restarted)
            c.deliver_all()
        c.campaign(candidate)
        c.deliver_all()
        if c.leader() not in (None, "n1"):
            return k
    return None


def test_a_follower_restarted_with_its_state_refuses_votes_for_one_election_timeout() -> None:
    c = _leader_with_lagging_third(seed=7)
    c.crash("n2")
    c.restart("n2")  # disk intact: it may have confirmed n1's lease just before
    assert c.nodes["n2"].raw.raft.lead is None
    ticks = _ticks_until_another_leader(c, "n2", "n3", limit=4 * ET)
    # A new leader needs n2's vote (or n2 itself campaigning): neither before
    # n2's ET-th tick after starting, as if it had just heard from n1.
    assert ticks == ET


def test_a_follower_that_heard_its_leader_refuses_votes_for_one_election_timeout() -> None:
    """The same count without a restart: what the lease formula rests on."""
    c = _leader_with_lagging_third(seed=7)
    assert _ticks_until_another_leader(c, "n2", "n3", limit=4 * ET) == ET


def test_a_brand_new_cluster_elects_at_once() -> None:
    """The restart guard applies only to nodes that had a term: fresh nodes
    grant votes straight away, so a new cluster's first election is not delayed."""
    c = SimCluster(3, seed=3, election_tick=ET)
    c.campaign("n1")
    c.deliver_all()
    assert c.leader() == "n1"


def test_a_cluster_restarted_all_at_once_elects_a_leader_and_keeps_its_writes() -> None:
    c = SimCluster(3, seed=5, election_tick=ET)
    lead = c.run_until_value(c.leader, 300)
    for i in range(3):
        c.propose(lead, f"w{i}".encode())
    c.run_until(c.converged, 300)
    for node in c.ids:
        c.crash(node)
    for node in c.ids:
        c.restart(node)
    # Every node waits out its guard (one election timeout), then they elect.
    c.run_until(lambda: c.leader() is not None, 20 * ET)
    c.run_until(c.converged, 300)
    c.check_converged_and_durable()


def test_a_forced_vote_from_a_live_transfer_still_passes_the_guard() -> None:
    """Leadership transfer forces votes past the refusal (that is its point),
    even right after a restart; the old leader then serves no lease reads."""
    c = SimCluster(3, seed=9, election_tick=ET)
    lead = c.run_until_value(c.leader, 300)
    c.run_until(c.converged, 300)
    other = [i for i in c.ids if i != lead]
    c.crash(other[1])
    c.restart(other[1])
    c.transfer_leadership(lead, other[0])
    c.run_until(lambda: c.leader() == other[0], 50)
    assert c.nodes[other[0]].raw.raft.role is Role.LEADER
