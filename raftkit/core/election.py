"""Elections and votes (§5.2, §5.4, pre-vote of dissertation §9.6), as a
mixin of ``Raft`` (raftkit.core.raft).

Holds how a node stands (``hup``, ``_campaign``), how it counts votes, when it
grants one (one per term, to a log at least as up to date, never inside a
leader's lease or the restart guard: raftkit.runtime.lease) and what a
refused candidate may learn from a refusal (the commit hint). Role changes
and the message dispatch stay in raft.py; this is the voting logic they call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkit.core.bounds import CEILING
from raftkit.core.membership import quorum_vote
from raftkit.core.quorum import VoteResult
from raftkit.core.transfer import TRANSFER_CONTEXT
from raftkit.core.types import EntryKind, Message, MessageType, NodeId, Role
from raftkit.errors import LogCompactedError

if TYPE_CHECKING:
    from raftkit.core.raft_state import RaftState

    _RaftPart = RaftState
else:
    _RaftPart = object  # RaftState (raftkit.core.raft_state) is for type checkers only

__all__ = ["Election"]

MT = MessageType


class Election(_RaftPart):
    """The voting part of ``Raft`` (its state, ``vote`` and ``votes``, is set up in ``Raft.__init__``)."""

    def hup(self, transfer: bool = False) -> None:
        """Start an election (after a timeout, a ``campaign()`` call, or TimeoutNow)."""
        if self.role is Role.LEADER or not self.promotable or self.recovering:
            return
        if self.term >= CEILING:
            return  # never in practice (raftkit.core.bounds); a term must stay encodable
        if self._awaiting_bootstrap() and not self._bootstrap_majority():
            return
        if self._has_unapplied_conf():
            return  # our view of membership may be about to change
        if self.cfg.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _has_unapplied_conf(self) -> bool:
        lo, hi = self.log.applied + 1, self.log.committed + 1
        if lo >= hi:
            return False
        try:
            return any(e.kind is EntryKind.CONFIG for e in self.log.entries(lo, hi))
        except LogCompactedError:
            return False

    def _campaign(self, pre: bool, transfer: bool) -> None:
        self.won_by_transfer = transfer
        if pre:
            self.become_pre_candidate()
            vote_type, term = MT.PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            vote_type, term = MT.VOTE, self.term
        if self._record_vote(self.id, True) is VoteResult.WON:
            # Single-voter cluster: we win at once.
            if pre:
                self._campaign(pre=False, transfer=transfer)
            else:
                self.become_leader()
            return
        ctx = TRANSFER_CONTEXT if transfer else b""
        for node in sorted(self.conf.all_voters - {self.id}):
            self.send(
                Message(
                    type=vote_type,
                    src=self.id,
                    dst=node,
                    term=term,
                    index=self.log.last_index(),
                    log_term=self.log.last_term(),
                    context=ctx,
                )
            )

    def _record_vote(self, node: NodeId, granted: bool) -> VoteResult:
        self.votes.setdefault(node, granted)
        return quorum_vote(self.conf, self.votes)

    def _in_lease(self) -> bool:
        return (
            self.cfg.check_quorum
            and (self.lead is not None or self.restart_guard)
            and self.election_elapsed < self.cfg.election_tick
        )

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.src
            or (self.vote is None and self.lead is None)
            or (m.type is MT.PRE_VOTE and m.term > self.term)
        )
        resp = MT.VOTE_RESP if m.type is MT.VOTE else MT.PRE_VOTE_RESP
        if can_vote and not self.recovering and self.log.is_up_to_date(m.index, m.log_term):
            # §5.2/§5.4: grant at most one vote per term, and only to a
            # candidate whose log is at least as up to date as ours.
            self._reply(m, resp, term=m.term)
            if m.type is MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.src
        else:
            self._reply(m, resp, term=self.term, reject=True, **self._commit_hint(m))

    def _commit_hint(self, m: Message) -> dict[str, int]:
        """What a refused candidate may learn from us: the last entry we know
        committed, up to its last entry (``commit``, with its term in
        ``log_term``; fields a vote response leaves unused, so peers of
        earlier releases ignore them).

        Configurations take effect when applied, so a voter of a new
        configuration that has not learned it committed may still need the
        votes of voters it removed. Those have applied their removal (they
        never campaign) and may refuse, holding entries that can never
        commit. Only a leader spreads the commit index, and none can be
        elected: the knowledge must reach the candidate another way
        (tests/core/test_joint_liveness.py)."""
        if self.recovering:
            return {}  # what we know is being rebuilt (raftkit.core.recovery)
        index = min(self.log.committed, m.index)
        term = self.log.term_or_zero(index)
        return {"commit": index, "log_term": term} if index and term else {}

    def _learn_commit(self, index: int, term: int) -> None:
        """A peer knows (index, term) committed. If we hold that very entry,
        Log Matching makes our log up to it the committed one: commit it. A
        leader learns its commit index from its own quorum only."""
        if self.role is Role.LEADER or self.recovering or index <= self.log.committed:
            return
        if self.log.match_term(index, term):
            self.log.commit_to(index)
