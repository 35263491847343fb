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
