"""Linearizable reads on the leader (ReadIndex, dissertation §6.4), as a
mixin of ``Raft`` (raftkit.core.raft).

A read is answered at the commit index once a quorum has confirmed, by
acknowledging a heartbeat that carries the read's context, that we still
lead. It touches the replication code only through heartbeats, so it lives
apart from it (etcd-io/raft keeps it apart too, in read_only.go).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from raftkit.core.membership import quorum_vote
from raftkit.core.quorum import VoteResult
from raftkit.core.types import Message, MessageType, NodeId, ReadState, Role
from raftkit.errors import NotLeaderError

if TYPE_CHECKING:
    from raftkit.core.raft_state import RaftState

    _RaftPart = RaftState
else:
    _RaftPart = object  # RaftState (raftkit.core.raft_state) is for type checkers only

__all__ = ["Reads", "ReadRequest"]

MT = MessageType


@dataclass
class ReadRequest:
    """One read waiting for a quorum to confirm our leadership (``acks``)."""

    index: int
    context: bytes
    requester: NodeId
    acks: set[NodeId] = field(default_factory=set)


class Reads(_RaftPart):
    """The ReadIndex part of ``Raft`` (its state, ``reads`` and
    ``reads_waiting_for_commit``, is set up in ``Raft.__init__``)."""

    def read_index(self, context: bytes) -> None:
        """Start a linearizable read (dissertation §6.4). The answer arrives as
        a ReadState in a later Ready."""
        if self.role is Role.LEADER:
            self._handle_read_index(self.id, context)
        elif self.lead is not None:
            self.send(
                Message(type=MT.READ_INDEX, src=self.id, dst=self.lead, term=self.term, context=context)
            )
        else:
            raise NotLeaderError(None)

    def _handle_read_index(self, requester: NodeId, context: bytes) -> None:
        req = ReadRequest(self.log.committed, context, requester)
        if self.log.term_or_zero(self.log.committed) != self.term:
            # A new leader does not know the true commit index until its
            # no-op commits; answer once it has.
            self.reads_waiting_for_commit.append(req)
            return
        self._start_read(req)

    def _start_read(self, req: ReadRequest) -> None:
        req.index = self.log.committed
        req.acks.add(self.id)
        self.reads[req.context] = req
        if quorum_vote(self.conf, dict.fromkeys(req.acks, True)) is VoteResult.WON:
            self._ack_read(req.context, self.id)  # single voter: confirmed already
        else:
            self._bcast_heartbeat(req.context)

    def _release_reads_waiting_for_commit(self) -> None:
        waiting, self.reads_waiting_for_commit = self.reads_waiting_for_commit, []
        for req in waiting:
            self._start_read(req)

    def _ack_read(self, context: bytes, node: NodeId) -> None:
        req = self.reads.get(context)
        if req is None:
            return
        req.acks.add(node)
        if quorum_vote(self.conf, dict.fromkeys(req.acks, True)) is not VoteResult.WON:
            return
        # Confirming this round also confirms every earlier one.
        while self.reads:
            ctx, r = self.reads.popitem(last=False)
            if r.requester == self.id:
                self.read_states.append(ReadState(r.index, r.context))
            else:
                pr = self.progress.get(r.requester)
                if pr is not None and pr.commit_told < r.index:
                    # It waits to apply up to the read's index: tell it the commit now
                    # (the round's heartbeat that did may not have reached it).
                    self._send_append(r.requester, commit_notice=True)
                self.send(
                    Message(
                        type=MT.READ_INDEX_RESP,
                        src=self.id,
                        dst=r.requester,
                        term=self.term,
                        index=r.index,
                        context=r.context,
                    )
                )
            if ctx == context:
                break
