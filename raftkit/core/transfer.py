"""Leadership transfer (dissertation §3.10) and the hand-over of proposals
that follows it, as a mixin of ``Raft`` (raftkit.core.raft).

A leader hands over by bringing a voter up to date and sending it
TIMEOUT_NOW; the voter campaigns at once, its votes marked with
``TRANSFER_CONTEXT`` so that followers' leases do not refuse them. Commands
forwarded to the old leader meanwhile are held and passed on, once, to the
successor (``PASSED_ON``), whose no-op says it won by a transfer
(``HANDED_OVER``), so drivers can tell a lost command from a late one
(raftkit.runtime.pending). Kept apart from elections and replication because
it spans both and has state of its own (``lead_transferee``, ``handover``,
``held_proposals``, ``timeout_now_term``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from raftkit.core.types import Message, MessageType, NodeId, Role, proposable
from raftkit.errors import NotLeaderError, ProposalDroppedError

if TYPE_CHECKING:
    from raftkit.core.raft_state import RaftState

    _RaftPart = RaftState
else:
    _RaftPart = object  # RaftState (raftkit.core.raft_state) is for type checkers only

__all__ = ["HANDED_OVER", "PASSED_ON", "TRANSFER_CONTEXT", "Transfer"]

MT = MessageType
TRANSFER_CONTEXT = b"transfer"  # marks votes forced by a leadership transfer
PASSED_ON = b"passed-on"  # marks proposals a transferring leader handed to its successor
HANDED_OVER = b"handed-over"  # the no-op of a leader elected by a transfer (TimeoutNow)


class Transfer(_RaftPart):
    """The leadership-transfer part of ``Raft`` (its state is set up in ``Raft.__init__``)."""

    def transfer_leadership(self, to: NodeId) -> None:
        if self.role is not Role.LEADER:
            if self.lead is None:
                raise NotLeaderError(None)
            self.send(
                Message(
                    type=MT.TRANSFER_LEADER, src=self.id, dst=self.lead, term=self.term, context=to.encode()
                )
            )
            return
        if not to:  # anyone: the most up-to-date voter
            voters = self.conf.voters - {self.id}
            best = [(pr.match, n) for n, pr in self.progress.items() if n in voters]
            if not best:
                return
            to = max(best)[1]
        if to == self.id or to not in self.conf.voters or to not in self.progress:
            return  # nothing to do, or not a voter we could hand over to
        self.lead_transferee = to
        self.handover = (self.term, to)
        self.election_elapsed = 0  # the transfer must finish within one election timeout
        if self.progress[to].match == self.log.last_index():
            self._send_timeout_now(to)
        else:
            self._send_append(to)

    def _send_timeout_now(self, to: NodeId) -> None:
        self.timeout_now_term = self.term
        self.send(Message(type=MT.TIMEOUT_NOW, src=self.id, dst=to, term=self.term))

    def _handed_over_to_leader(self) -> bool:
        """We led the previous term and handed it to the current leader."""
        return self.lead is not None and self.handover == (self.term - 1, self.lead)

    def _late_proposal(self, m: Message) -> None:
        """A PROPOSE sent to us as the previous term's leader arrived after we
        handed over: pass it to the successor (or keep it until we know it)."""
        if m.context == PASSED_ON or self.handover is None or self.handover[0] != m.term:
            return
        if self.lead is None:
            self.held_proposals.extend(m.entries)
        elif self._handed_over_to_leader():
            self.held_proposals.extend(m.entries)
            self._release_held_proposals()

    def _release_held_proposals(self) -> None:
        held, self.held_proposals = self.held_proposals, []
        if self.role is Role.LEADER:
            with contextlib.suppress(ProposalDroppedError):
                self._propose([proposable(e) for e in held])
        elif self._handed_over_to_leader():
            # Only to the successor we handed over to, in the very next term:
            # its no-op says HANDED_OVER, and senders then expect forwarded
            # commands until that term ends, never later (raftkit.runtime.pending),
            # so they can tell a lost command from a late one.
            to, entries = self.lead, tuple(held)
            assert to is not None  # _handed_over_to_leader() said so
            self.send(Message(MT.PROPOSE, self.id, to, term=self.term, entries=entries, context=PASSED_ON))

    def _hand_over_after_removal(self) -> None:
        self.lead_transferee = None
        self.transfer_leadership("")  # the most up-to-date voter
        if self.lead_transferee is None:
            self.become_follower(self.term, None)  # nobody to hand over to
