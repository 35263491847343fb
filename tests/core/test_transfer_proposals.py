"""Proposals forwarded to a leader while it hands leadership over are not
dropped: the old leader passes them to the new one (they were appended
nowhere, so no command can apply twice)."""

from __future__ import annotations

from raftkit.core.types import Entry, Message, MessageType
from raftkit.testing.sim import SimCluster


def forwarded(src: str, dst: str, term: int, data: bytes) -> Message:
    return Message(MessageType.PROPOSE, src=src, dst=dst, term=term, entries=(Entry(0, 0, data=data),))


def test_proposals_forwarded_during_a_transfer_reach_the_next_leader() -> None:
    c = SimCluster(3, seed=31)
    lead = c.run_until_value(c.leader, 300)
    c.run_until(c.converged, 300)
    target, other = (i for i in c.ids if i != lead)
    raw = c.nodes[lead].raw
    assert raw is not None
    c.isolate(target)  # so the transfer stays in progress for a while
    raw.transfer_leadership(target)
    assert raw.raft.lead_transferee == target
    raw.step(forwarded(other, lead, raw.raft.term, b"x"))
    assert raw.raft.held_proposals  # not appended, not dropped
    c.heal()
    c.run_until(lambda: c.leader() == target, 300)
    c.run_until(lambda: any(e.data == b"x" for e in c.nodes[target].applied.values()), 300)
    c.run_until(c.converged, 300)
    assert sum(e.data == b"x" for e in c.nodes[other].applied.values()) == 1


def test_proposals_held_by_an_aborted_transfer_are_appended_by_the_same_leader() -> None:
    c = SimCluster(3, seed=37)
    lead = c.run_until_value(c.leader, 300)
    c.run_until(c.converged, 300)
    target, other = (i for i in c.ids if i != lead)
    raw = c.nodes[lead].raw
    assert raw is not None
    c.crash(target)  # the transfer cannot finish: it is abandoned after an election timeout
    raw.transfer_leadership(target)
    raw.step(forwarded(other, lead, raw.raft.term, b"y"))
    c.run_until(lambda: any(e.data == b"y" for e in c.nodes[lead].applied.values()), 300)
    assert c.leader() == lead
