"""Raft's safety properties, judged from the outside, as a mixin of
``SimCluster`` (raftkit.testing.sim).

The checker keeps its own ground truth and never asks the implementation
which nodes count (a flag such as ``Raft.recovering`` is exactly what a bug
gets wrong):

* **committed**: what the test saw a *leader* commit (its commit index
  moving past an entry of its log), with the lowest term of a leader that
  committed each index. A follower's commit index is only a claim; every
  entry any node applies is checked against this record.
* **acknowledged**: a proposal is acknowledged when the node that accepted it
  applies it at the index and term it was given (``Proposal.acked``).
* **votes**: every granted VOTE_RESP a node sent, with the node's *wipe
  epoch*. A node whose disk the test wiped forgot its votes: its old votes
  may still be in flight or already counted, so they are kept, per
  candidate and term, and a later vote in the same term is not a double
  vote by itself (the hazard is a leader lacking acknowledged writes).
* **amnesiac nodes**: a node the test wiped holds nothing it held before,
  and (a correct node refusing to vote until readmitted) it neither counts
  as lacking an entry nor as a possible voter until the test sees it grant
  a vote again. Its votes from before the wipe still count for the
  candidate that asked for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkit.core.membership import decode_conf, quorum_vote
from raftkit.core.quorum import VoteResult
from raftkit.core.types import ConfState, Entry, EntryKind, NodeId, Role

if TYPE_CHECKING:
    # Only for type checkers: sim.py imports this module at runtime, so
    # importing it back would be a circle (tests/test_layers.py forbids it).
    from raftkit.testing.sim import Proposal, SimNode
    from raftkit.testing.sim_state import StateAgreement


class InvariantViolation(AssertionError):
    """A Raft safety property does not hold; the message says which and where."""


class Invariants:
    """The invariant checks of ``SimCluster`` (state set up in ``_init_truth``)."""

    # The cluster's, declared for type checkers (a mixin's self is not a SimCluster to mypy).
    nodes: dict[NodeId, SimNode]
    agreement: StateAgreement | None
    bootstrap_conf: ConfState
    confs: dict[int, ConfState]
    proposals: dict[bytes, Proposal]
    _bootstrap_voters: list[NodeId]

    if TYPE_CHECKING:  # only there: at runtime these would hide the real ones (MRO)
        def _add_conf(self, index: int, conf: ConfState) -> None: ...
        def conf_at(self, index: int) -> ConfState: ...
        def current_conf(self) -> ConfState: ...
        def members(self) -> frozenset[NodeId]: ...

    def _init_truth(self) -> None:
        self.leaders_by_term: dict[int, NodeId] = {}
        self.committed: dict[int, Entry] = {}  # index -> the entry a leader committed there
        self.committed_by_term: dict[int, int] = {}  # index -> lowest term of a leader that committed it
        # (voter, wipe epoch, term) -> candidate: every granted vote the test saw sent.
        self.votes_granted: dict[tuple[NodeId, int, int], NodeId] = {}
        self._commit_seen: dict[NodeId, int] = {}  # node -> commit index of its last hard state
        # A list here records, instead of raising, what is found as entries are
        # committed and applied: to study liveness after a safety failure.
        self.violations: list[str] | None = None
        self._last_hard: dict[NodeId, tuple[int, int]] = {}
        # What check_invariants last found in order, so it re-checks only changes.
        self._checked_stamp: object = None
        self._checked_logs: dict[NodeId, tuple[int, int]] = {}  # node -> (store version, committed count)
        self._checked_pairs: dict[tuple[NodeId, NodeId], tuple[int, int]] = {}  # -> store versions
        self._checked_confs: dict[NodeId, tuple[int, ConfState, int]] = {}
        self._checked_tails: dict[NodeId, tuple[int, int, int]] = {}  # leader -> (term, last, commit)

    # -- recording the ground truth -------------------------------------------------------

    def _record_leader_commit(self, sn: SimNode, term: int, commit: int) -> None:
        """``sn``, leader of ``term``, persisted commit index ``commit``: every
        entry of its log up to there is committed, in ``term`` at the latest."""
        seen = self._commit_seen.get(sn.id, 0)
        self._commit_seen[sn.id] = max(seen, commit)
        raw = sn.raw
        if raw is None or raw.raft.role is not Role.LEADER or raw.raft.term != term or commit <= seen:
            return
        store = sn.store
        lo = max(seen + 1, store.first_index())
        for e in store.entries(lo, commit + 1) if lo <= commit else []:
            known = self.committed.get(e.index)
            if known is None:
                self.committed[e.index] = e
                if e.kind is EntryKind.CONFIG:
                    self._add_conf(e.index, decode_conf(e.data))
            elif known != e:
                self._violation(
                    f"committed entry {e.index} changed: leader {sn.id} (term {term}) commits {e},"
                    f" but {known} was committed there"
                )
            self.committed_by_term[e.index] = min(self.committed_by_term.get(e.index, term), term)

    def _record_committed(self, sn: SimNode, e: Entry) -> None:
        """State machine safety: a node applies only what a leader committed there."""
        known = self.committed.get(e.index)
        if known is None:
            self._violation(f"state machine safety: {sn.id} applied {e} at {e.index}, never committed there")
        elif known != e:
            self._violation(f"state machine safety: {sn.id} applied {e} at {e.index}, others {known}")

    def _violation(self, message: str) -> None:
        if self.violations is None:
            raise InvariantViolation(message)
        self.violations.append(message)

    def _record_vote(self, voter: SimNode, term: int, candidate: NodeId) -> None:
        # Figure 2: one vote per term, even across crashes (but not across a
        # wipe: that node forgot, which the quorum checks judge).
        other = self.votes_granted.setdefault((voter.id, voter.wipes, term), candidate)
        if other != candidate:
            raise InvariantViolation(f"{voter.id} voted for {other} and {candidate} in term {term}")
        voter.amnesiac = False  # it votes again: from now on it counts as any voter

    def grants(self, candidate: NodeId, term: int) -> frozenset[NodeId]:
        """Voters the test saw grant ``candidate`` their vote in ``term``, in
        any incarnation (a forgotten vote still counts where it arrives)."""
        return frozenset(v for (v, _, t), c in self.votes_granted.items() if t == term and c == candidate)

    # -- checking -------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise InvariantViolation if any Raft safety property is broken.

        The checks are skipped when no store, no node's liveness or applied
        index, no committed entry and no vote changed since the last call
        (they would find the same), and log pairs are compared again only
        when one of the two changed. (A role change with none of these is a
        non-voter's campaign, which ``_send`` catches in its vote requests.)
        With a user state machine, its replicas' agreement is checked first
        (raftkit.testing.sim_state)."""
        if self.agreement is not None:
            self.agreement.check()
        stamp = (
            len(self.committed),
            len(self.votes_granted),
            tuple(
                (sn.store.version, sn.incarnation, sn.raw is not None, sn.applied_index, sn.amnesiac)
                for sn in self.nodes.values()
            ),
        )
        if stamp == self._checked_stamp:
            return
        self._check_membership()
        for sn in self.nodes.values():
            self._check_monotonic(sn)
        logs: dict[NodeId, dict[int, Entry]] = {}
        for i, sn in self.nodes.items():
            key = (sn.store.version, len(self.committed))
            if self._checked_logs.get(i) == key:
                continue
            log = logs[i] = self._durable_log(sn)
            commit = sn.store.hard_state().commit
            for index, e in log.items():
                # A node may still hold a stale entry at an index others
                # committed, but never at one it has itself marked committed.
                c = self.committed.get(index)
                if c is not None and index <= commit and c != e:
                    raise InvariantViolation(f"committed entry {index} changed on {i}: {c} -> {e}")
            self._checked_logs[i] = key
        self._check_log_matching(logs)
        self._check_leader_completeness()
        self._check_committed_in_every_quorum()
        self._check_no_electable_node_lacks_committed()
        self._checked_stamp = stamp

    def _check_monotonic(self, sn: SimNode) -> None:
        hs = sn.store.hard_state()
        prev = self._last_hard.get(sn.id, (0, 0))
        if hs.term < prev[0] or hs.commit < prev[1]:
            raise InvariantViolation(f"{sn.id} went back: term/commit {prev} -> {(hs.term, hs.commit)}")
        self._last_hard[sn.id] = (hs.term, hs.commit)

    @staticmethod
    def _durable_log(sn: SimNode) -> dict[int, Entry]:
        store = sn.store
        return {e.index: e for e in store.entries(store.first_index(), store.last_index() + 1)}

    def _check_log_matching(self, logs: dict[NodeId, dict[int, Entry]]) -> None:
        """``logs`` holds the logs that changed; each is compared with every other."""
        ids = sorted(self.nodes)
        for a_pos, a in enumerate(ids):
            for b in ids[a_pos + 1 :]:
                versions = (self.nodes[a].store.version, self.nodes[b].store.version)
                if self._checked_pairs.get((a, b)) == versions:
                    continue
                if a not in logs:
                    logs[a] = self._durable_log(self.nodes[a])
                if b not in logs:
                    logs[b] = self._durable_log(self.nodes[b])
                la, lb = logs[a], logs[b]
                common = sorted(set(la) & set(lb), reverse=True)
                matched = False
                for index in common:
                    same_term = la[index].term == lb[index].term
                    if matched and la[index] != lb[index]:
                        raise InvariantViolation(f"log matching: {a} and {b} differ at {index}")
                    if same_term and not matched:
                        matched = True
                        if la[index] != lb[index]:
                            raise InvariantViolation(
                                f"log matching: {a}, {b} same term, other entry at {index}"
                            )
                self._checked_pairs[(a, b)] = versions

    def _check_leader_completeness(self) -> None:
        for sn in self.nodes.values():
            raw = sn.raw
            if raw is None or raw.raft.role is not Role.LEADER:
                continue
            log = raw.raft.log
            first = log.first_index()
            for index, e in self.committed.items():
                if index < first or raw.raft.term <= self.committed_by_term[index]:
                    continue  # compacted, or a stale leader from before the commit
                if log.term_or_zero(index) != e.term:
                    raise InvariantViolation(
                        f"leader completeness: leader {sn.id} (term {raw.raft.term})"
                        f" lacks committed entry {index}"
                    )

    def _check_membership(self) -> None:
        for sn in self.nodes.values():
            raw = sn.raw
            if raw is None:
                continue
            raft = raw.raft
            # A node runs with the config committed at the index it applied.
            seen = self._checked_confs.get(sn.id)
            if (
                seen is None
                or seen[0] != sn.applied_index
                or seen[1] is not raft.conf
                or seen[2] != len(self.confs)
            ):
                expected = self.conf_at(sn.applied_index)
                # A node added later starts with no configuration (the
                # bootstrap one is in no log entry) until it applies a config
                # entry or installs a snapshot, which carries the bootstrap one.
                joining = sn.id not in self._bootstrap_voters and raft.conf == ConfState()
                if raft.conf != expected and not (joining and expected is self.bootstrap_conf):
                    raise InvariantViolation(
                        f"membership: {sn.id} applied up to {sn.applied_index} but runs with"
                        f" {_conf_text(raft.conf)}, not the committed {_conf_text(expected)}"
                    )
                self._checked_confs[sn.id] = (sn.applied_index, raft.conf, len(self.confs))
            # A node outside the voters (learner, removed, not yet added) never campaigns;
            # a leader that removed itself may lead only while it hands over.
            handing_over = raft.role is Role.LEADER and raft.lead_transferee is not None
            if (
                raft.role is not Role.FOLLOWER
                and not handing_over
                and sn.id not in raft.conf.voters | raft.conf.voters_outgoing
            ):
                raise InvariantViolation(f"membership: {sn.id} is {raft.role.value} but not a voter")
            # One change at a time: a leader's uncommitted tail holds at most one config entry.
            tail_key = (raft.term, raft.log.last_index(), raft.log.committed)
            if (
                raft.role is Role.LEADER
                and tail_key[1] > tail_key[2]
                and self._checked_tails.get(sn.id) != tail_key
            ):
                self._checked_tails[sn.id] = tail_key  # within a term a leader's log only grows
                tail = raft.log.entries(raft.log.committed + 1, raft.log.last_index() + 1)
                pending = [e.index for e in tail if e.kind is EntryKind.CONFIG]
                if len(pending) > 1:
                    raise InvariantViolation(
                        f"membership: leader {sn.id} (term {raft.term}) has config entries {pending}"
                        f" uncommitted at once (commit {raft.log.committed})"
                    )

    def _holds(self, node_id: NodeId, index: int, term: int) -> bool:
        """Whether the node's disk holds entry ``term/index`` (or a snapshot covering it)."""
        store = self.nodes[node_id].store
        return store.first_index() > index or (store.last_index() >= index and store.term(index) == term)

    def _check_committed_in_every_quorum(self) -> None:
        """The latest committed entry is durable on enough voters of the
        config in force that the voters lacking it could never elect a leader
        on their own. (Holding the latest means holding every earlier one.)
        An amnesiac node neither holds nor lacks: it may not vote."""
        if not self.committed:
            return
        index = max(self.committed)
        term = self.committed[index].term
        conf = self.current_conf()
        lacking = {
            v: True
            for v in conf.all_voters
            if v in self.nodes and not self.nodes[v].amnesiac and not self._holds(v, index, term)
        }
        if lacking and quorum_vote(conf, lacking) is VoteResult.WON:
            raise InvariantViolation(
                f"quorum: committed entry {term}/{index} is missing on {sorted(lacking)},"
                f" a quorum of the config in force {_conf_text(conf)}"
            )

    def _check_no_electable_node_lacks_committed(self) -> None:
        """No node lacking the latest committed entry could still be elected,
        whatever configuration it would campaign with (a lagging node may
        still run an old one): in that configuration, the voters that granted
        it their vote in its current campaign (in any incarnation), together
        with the voters whose logs are no more up to date than its own (those
        that would grant it their vote, once partitioned from everyone else),
        must not form a quorum. Amnesiac nodes would not vote; votes they cast
        before their wipe still count. Granted votes count only for a
        campaign in a later term than the commit (a leader of an earlier term
        is stale and cannot commit)."""
        if not self.committed:
            return
        index = max(self.committed)
        term = self.committed[index].term
        commit_term = self.committed_by_term[index]
        last: dict[NodeId, tuple[int, int]] = {}  # nodes that may vote -> (last term, last index)
        for node_id, sn in self.nodes.items():
            if not sn.amnesiac:
                store = sn.store
                last[node_id] = (store.term(store.last_index()), store.last_index())
        for node_id, sn in self.nodes.items():
            if self._holds(node_id, index, term):
                continue
            raw = sn.raw
            granted: frozenset[NodeId] = frozenset()
            if raw is not None and raw.raft.role is Role.CANDIDATE and raw.raft.term > commit_term:
                granted = self.grants(node_id, raw.raft.term)
            if node_id not in last and not granted:
                continue  # amnesiac: it neither campaigns nor votes until readmitted
            if raw is not None:
                conf = raw.raft.conf
            else:  # what it would run with once restarted and caught up with its own commit index
                conf = self.conf_at(sn.store.hard_state().commit)
            if node_id not in conf.voters and node_id not in conf.voters_outgoing:
                continue  # it would not campaign
            mine = last.get(node_id)
            grantors = {
                v: True
                for v in conf.all_voters
                if v in granted or (mine is not None and v in last and last[v] <= mine)
            }
            if granted:
                grantors[node_id] = True  # a candidate votes for itself
            if quorum_vote(conf, grantors) is VoteResult.WON:
                raise InvariantViolation(
                    f"quorum: {node_id} lacks committed entry {term}/{index} but could still be elected"
                    f" with the votes of {sorted(grantors)} in its config {_conf_text(conf)}"
                    + (f" (granted in term {raw.raft.term}: {sorted(granted)})" if granted and raw else "")
                )

    def check_converged_and_durable(self) -> None:
        """After ``stabilize``: every member of the current configuration
        applied the same entries, and every acknowledged proposal is among
        them. Removed nodes (which may have stopped early) are not checked."""
        reference = None
        members = self.members()
        for sn in self.nodes.values():
            if sn.id not in members:
                continue
            state = [sn.applied[i] for i in sorted(sn.applied)]
            if reference is None:
                reference = state
            elif state[-len(reference) :] != reference[-len(state) :] or sn.applied_index != (
                max(sn.applied) if sn.applied else 0
            ):
                raise InvariantViolation(f"{sn.id} did not converge")
            applied = {e.data for e in state if e.kind is EntryKind.NORMAL}
            lost = [p.data for p in self.proposals.values() if p.acked and p.data not in applied]
            if lost:
                raise InvariantViolation(f"acknowledged proposals missing on {sn.id}: {lost}")


def _conf_text(conf: ConfState) -> str:
    text = "voters=" + ",".join(sorted(conf.voters))
    if conf.learners:
        text += " learners=" + ",".join(sorted(conf.learners))
    if conf.voters_outgoing:
        text += " outgoing=" + ",".join(sorted(conf.voters_outgoing))
    return text
