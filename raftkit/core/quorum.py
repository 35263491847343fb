"""Quorum maths as small pure functions, for majority and joint configurations.

A *majority configuration* is a set of voter ids; a *joint configuration* is a
pair (incoming, outgoing) of majority configurations and needs agreement from
both (Raft dissertation §4.3). An empty outgoing half means "not joint".
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

from raftkit.core.types import NodeId


class VoteResult(enum.Enum):
    PENDING = "pending"  # not decided yet: outstanding votes could swing it
    WON = "won"
    LOST = "lost"


def majority_committed_index(voters: Collection[NodeId], match: Mapping[NodeId, int]) -> int:
    """The largest index acknowledged by a majority of ``voters``.

    ``match`` maps a voter to the highest index it has durably stored; missing
    voters count as 0. An empty configuration has no constraint, which we
    express as an unbounded index so a joint config with one empty half
    reduces to the other half.
    """
    if not voters:
        return _UNBOUNDED
    acked = sorted((match.get(v, 0) for v in voters), reverse=True)
    return acked[len(acked) // 2]


def majority_vote_result(voters: Collection[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """Outcome of an election among ``voters`` given the ``votes`` seen so
    far (True = granted, False = rejected, absent = not yet answered)."""
    if not voters:
        return VoteResult.WON
    need = len(voters) // 2 + 1
    granted = sum(1 for v in voters if votes.get(v) is True)
    missing = sum(1 for v in voters if v not in votes)
    if granted >= need:
        return VoteResult.WON
    if granted + missing >= need:
        return VoteResult.PENDING
    return VoteResult.LOST


def committed_index(
    incoming: Collection[NodeId], outgoing: Collection[NodeId], match: Mapping[NodeId, int]
) -> int:
    """Largest index committed in a (possibly joint) configuration: both
    halves must have it. Returns 0 for an entirely empty configuration."""
    idx = min(majority_committed_index(incoming, match), majority_committed_index(outgoing, match))
    return 0 if idx == _UNBOUNDED else idx


def vote_result(
    incoming: Collection[NodeId], outgoing: Collection[NodeId], votes: Mapping[NodeId, bool]
) -> VoteResult:
    """Election outcome in a (possibly joint) configuration: won only if both
    halves are won, lost if either half is lost."""
    a = majority_vote_result(incoming, votes)
    b = majority_vote_result(outgoing, votes)
    if a is b:
        return a
    if VoteResult.LOST in (a, b):
        return VoteResult.LOST
    return VoteResult.PENDING


_UNBOUNDED = 1 << 62
