"""Core membership bugs found by the simulation's membership rules, each
pinned by the minimal run that found it (fixed since; kept as regressions).

A leader that demoted or removed itself used to step down as soon as it
applied the change; if the remaining voter had not learned that the change
committed and lacked an entry the old leader appended after it, it still
needed the old leader's vote (refused: the old leader's log was longer) and
no leader was ever elected. Now the removed leader hands leadership to the
most caught-up voter first (Raft._hand_over_after_removal)."""

from __future__ import annotations

from raftkit.testing.sim import SimCluster


def test_leader_that_demotes_itself_leaves_an_electable_cluster() -> None:
    c = SimCluster(3, seed=7, max_entries_per_msg=1)
    c.campaign("n1")
    c.deliver_all()
    assert c.leader() == "n1"
    assert c.demote("n2") is not None  # voters n1, n3
    c.run_until(c.converged, 100)
    conf_index = c.demote("n1")  # voters n3 only
    extra = c.propose("n1", b"after-the-change")
    assert conf_index is not None and extra == conf_index + 1
    # n3 receives and acknowledges the config entry but never the next one;
    # n1 commits the change, applies it and steps down.
    while c.inflight:
        m = c.inflight[0].msg
        if m.src == "n1" and (m.dst != "n3" or any(e.index == extra for e in m.entries)):
            c.drop(0)
        else:
            c.deliver(0)
    assert c.nodes["n1"].raw.raft.log.committed >= conf_index
    assert c.nodes["n3"].raw.raft.log.committed < conf_index
    c.stabilize(max_rounds=500)  # TimeoutError: n3 campaigns forever, n1 refuses its vote
    c.check_converged_and_durable()
