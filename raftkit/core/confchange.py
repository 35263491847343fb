"""Membership changes as ``Raft`` makes them (dissertation §4), as a mixin of
``Raft`` (raftkit.core.raft).

Holds proposing a change (one at a time, only transitions whose quorums
overlap, never leaving too few voters that kept their state), forwarding a
request to the leader, applying a configuration once its entry is applied
(progress, a removed leader's hand-over, a removed candidate's step-down),
leaving a joint configuration, and the configurations a node knows of
(raftkit.core.admission). raftkit.core.membership holds the pure functions
on ``ConfState`` these use; this is the part that needs a node's state.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING

from raftkit.core.admission import known_voters
from raftkit.core.membership import (
    changed,
    decode_change,
    decode_conf,
    encode_conf,
    quorum_vote,
    validate_conf,
)
from raftkit.core.quorum import VoteResult
from raftkit.core.types import ConfState, Entry, EntryKind, Message, NodeId, Role
from raftkit.errors import (
    CodecError,
    LogCompactedError,
    LogUnavailableError,
    MembershipError,
    NotLeaderError,
    ProposalDroppedError,
)

if TYPE_CHECKING:
    from raftkit.core.raft_state import RaftState

    _RaftPart = RaftState
else:
    _RaftPart = object  # RaftState (raftkit.core.raft_state) is for type checkers only

__all__ = ["ConfChange"]


class ConfChange(_RaftPart):
    """The membership part of ``Raft`` (its state, ``conf``, ``startup_conf``,
    ``pending_conf_index`` and ``forced_conf``, is set up in ``Raft.__init__``)."""

    def _replay_conf_from_log(self) -> None:
        """A restarted node's membership is the last config entry it applied."""
        first, applied = self.log.first_index(), self.log.applied
        if applied >= first:
            for e in self.log.entries(first, applied + 1):
                if e.kind is EntryKind.CONFIG:
                    self.conf = decode_conf(e.data)

    def _known_voters(self) -> frozenset[NodeId]:
        """The voters of every configuration we know (raftkit.core.admission),
        recomputed only when the log, the applied index or a membership changed."""
        key = (self.log.version, self.log.applied, self.conf, self.startup_conf, self.snapshot)
        cached = self._known_voters_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        voters = known_voters(self.conf, self.startup_conf, self.snapshot, self._unapplied_confs())
        self._known_voters_cache = (key, voters)
        return voters

    def _unapplied_confs(self) -> list[ConfState]:
        """The config entries of our log after the applied index (few)."""
        confs = []
        for e in self._unapplied_entries():
            if e.kind is EntryKind.CONFIG:
                with contextlib.suppress(CodecError):
                    confs.append(decode_conf(e.data))
        return confs

    def _unapplied_entries(self) -> list[Entry]:
        """The entries of our log after the applied index."""
        lo, hi = max(self.log.applied + 1, self.log.first_index()), self.log.last_index() + 1
        try:
            return self.log.entries(lo, hi)
        except (LogCompactedError, LogUnavailableError):
            return []

    def propose_conf_change(self, conf: ConfState) -> int:
        """Propose a new membership. One change at a time; a new leader must
        first commit an entry of its own term (dissertation §4.1 / the bug
        found in single-server changes)."""
        validate_conf(conf)
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.lead)
        if self.pending_conf_index > self.log.applied:
            raise ProposalDroppedError("a membership change is already in progress")
        if self.conf.joint:
            raise ProposalDroppedError("the cluster is still leaving a joint configuration")
        if self.log.term_or_zero(self.log.committed) != self.term:
            raise ProposalDroppedError("the new leader has not committed an entry of its term yet")
        self._check_transition(conf)
        # Voters that restarted without their state do not count until
        # readmitted: a change must leave a quorum of voters that kept theirs.
        lost = {n for n, pr in self.progress.items() if pr.recovering}
        holding = {v: True for v in conf.all_voters - lost}
        if lost & conf.all_voters and quorum_vote(conf, holding) is not VoteResult.WON:
            raise ProposalDroppedError(
                f"the new membership would leave too few voters holding their state "
                f"({', '.join(sorted(lost & conf.all_voters))} restarted without it); retry once readmitted"
            )
        index = self._propose([Entry(0, 0, EntryKind.CONFIG, encode_conf(conf))])
        self.pending_conf_index = index
        return index

    def _check_transition(self, conf: ConfState) -> None:
        """Only transitions whose every pair of quorums overlaps: one voter
        more or less, or a joint configuration that leaves the current voters
        (dissertation §4.2 / §4.3). Anything else could let two leaders be
        elected in one term, one by each configuration."""
        old = self.conf.voters
        if conf.joint:
            if conf.voters_outgoing != old:
                raise MembershipError(
                    f"a joint configuration must leave the current voters {sorted(old)}, "
                    f"but its outgoing voters are {sorted(conf.voters_outgoing)}; "
                    "set voters_outgoing to the current voters"
                )
        elif len(conf.voters ^ old) > 1:
            raise MembershipError(
                f"changing the voters from {sorted(old)} to {sorted(conf.voters)} adds or removes more "
                "than one voter at once; change one voter at a time, or go through a joint configuration "
                "(voters_outgoing = the current voters)"
            )

    def force_conf(self, conf: ConfState) -> None:
        """Take ``conf`` as the membership whatever the log says (a survivor
        of a lost quorum restarting as a new cluster); written to the log as
        soon as this node leads."""
        validate_conf(conf)
        self.conf = conf
        self.startup_conf = conf  # the operator's word replaces the member list we were started with
        self.forced_conf = True
        # The config entries our log holds past the applied index say what
        # the operator overrides: once committed they must not be applied
        # over ``conf`` (same index and term: the same entry, anywhere).
        self.superseded_confs = frozenset(
            (e.index, e.term) for e in self._unapplied_entries() if e.kind is EntryKind.CONFIG
        )
        self.become_follower(self.term, None)
        self._maybe_bootstrap()

    def _handle_conf_change_request(self, m: Message) -> None:
        """A membership change asked by an operator (on any member) or by a
        joining node: the leader proposes it when it can; otherwise it is
        forwarded to the leader, or dropped (the requester retries)."""
        if self.role is not Role.LEADER:
            if self.lead is not None and self.lead != m.src and m.dst == self.id:
                self.send(dataclasses.replace(m, src=self.id, dst=self.lead, term=self.term))
            return
        with contextlib.suppress(ProposalDroppedError, ValueError, CodecError):
            self.request_conf_change(m.context)

    def request_conf_change(self, request: bytes) -> int | None:
        """Propose the single-server change ``request`` (membership.encode_change)
        on this leader. Returns the config entry's index, None if the change
        already holds; raises ProposalDroppedError when it must wait (another
        change in flight, a learner not caught up) and ValueError when it
        makes no sense."""
        op, node, address = decode_change(request)
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.lead)
        new = changed(self.conf, op, node, address)
        if new is None:
            return None
        if op in ("promote", "add_voter") and node in self.conf.learners:
            pr = self.progress.get(node)
            # Caught up: within a message's worth of the commit, and not
            # still waiting for entries that only a snapshot can give it.
            if (
                pr is None
                or pr.match < self.log.first_index() - 1
                or pr.match + self.cfg.max_entries_per_msg < self.log.committed
            ):
                raise ProposalDroppedError(f"{node} has not caught up yet; promote it once it has")
        return self.propose_conf_change(new)

    def _apply_conf(self, conf: ConfState) -> None:
        """Make ``conf`` the active membership (called when its entry is applied)."""
        self.conf = conf
        last = self.log.last_index()
        for node in list(self.progress):
            if node not in conf.members:
                del self.progress[node]
        for node in conf.members:
            if node not in self.progress:
                self.progress[node] = self._new_progress(node, last)
                self.progress[node].recent_active = True  # a new member gets a grace period
            self.progress[node].is_learner = node in conf.learners
        if self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE) and self.id not in conf.all_voters:
            # A candidate may learn a commit from refused votes (_learn_commit)
            # and so apply its own removal: a non-voter stands for nothing.
            self.become_follower(self.term, None)
            return
        if self.role is not Role.LEADER:
            return
        if self.id not in conf.all_voters:
            # We were removed (or demoted). Stepping down at once can leave
            # nobody electable: a remaining voter that has not yet learned the
            # change committed still counts on our vote, which our longer log
            # refuses. So hand over first (quorums exclude us already), and
            # step down once that is done or has timed out.
            self._hand_over_after_removal()
            return
        if self.lead_transferee is not None and self.lead_transferee not in conf.voters:
            self.lead_transferee = None
            self._release_held_proposals()
        if self._maybe_commit():
            self._bcast_append()  # a smaller quorum may commit more now

    def maybe_leave_joint(self) -> None:
        """A leader leaves a joint configuration as soon as it has applied it,
        whether it proposed it or inherited it from a previous leader. This is
        internal, so it goes ahead even while a leadership transfer refuses
        client proposals."""
        if self.role is not Role.LEADER or not self.conf.joint or self.pending_conf_index > self.log.applied:
            return
        leave = ConfState(voters=self.conf.voters, learners=self.conf.learners)
        self._append_entries([Entry(0, 0, EntryKind.CONFIG, encode_conf(leave))])
        self.pending_conf_index = self.log.last_index()
        self._bcast_append()
