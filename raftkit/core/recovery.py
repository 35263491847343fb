"""Recovery of a node that restarted without its state, as a mixin of
``Raft`` (raftkit.core.raft).

A node that starts empty (memory mode, a wiped disk) cannot tell a first
start from a restart that lost everything, and it may have voted before. If
it voted again at once it could help elect a leader that lacks committed
entries (PySyncObj's behaviour). So it starts *recovering*:

* it neither votes nor campaigns, and flags its acknowledgements so that
  leaders never count it toward a quorum (``Message.recovering``);
* it asks the leader to readmit it (REJOIN); the leader appends a rejoin
  marker, which can only commit with a quorum that excludes the node; once
  the node applies its marker it votes and counts again. Every later
  election then needs a voter that accepted an entry written after the
  restart, so votes the node forgot can no longer elect a stale leader;
* it probes the members (PROBE / PROBE_RESP, outside the term rules). A
  node whose driver knows it never held state (``RaftConfig.fresh``: no
  restart marker) bootstraps when a majority of voters, itself included,
  report that they never held state either (term 0, no entry, no marker)
  and nobody that answered holds entries: any commit or vote needed a
  majority in a term above 0, which would share a member with this one, so
  nothing was committed. A node that held state never bootstraps; a leader
  readmits it. The first election waits for a majority to have bootstrapped;
* when a majority of voters is recovering while some member holds data, it
  reports ``quorum_lost`` instead of pretending; when every voter holds
  nothing but not a majority of them is fresh (a total wipe after the cluster
  held data), it reports that too (``total_wipe``) and never starts empty on
  its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkit.core.membership import quorum_vote
from raftkit.core.quorum import VoteResult
from raftkit.core.types import Entry, EntryKind, Message, MessageType, NodeId, Role

if TYPE_CHECKING:
    from raftkit.core.raft_state import RaftState

    _RaftPart = RaftState
else:
    _RaftPart = object  # RaftState (raftkit.core.raft_state) is for type checkers only

MT = MessageType


def rejoin_marker(node: NodeId, incarnation: bytes) -> bytes:
    """Payload of the NOOP entry that readmits a recovering ``node``."""
    return b"rejoin\0" + incarnation + b"\0" + node.encode()


class Recovery(_RaftPart):
    """The recovery protocol's part of ``Raft`` (its state is set up in ``Raft.__init__``)."""

    def _age_recovering_peers(self) -> None:
        for node in list(self.recovering_peers):
            self.recovering_peers[node] += 1
            if self.recovering_peers[node] > 2 * self.cfg.election_tick:
                del self.recovering_peers[node]
                self._check_quorum_lost()

    def _tick_recovery(self) -> None:
        if not (self.recovering or self._awaiting_bootstrap()):
            return
        if not self.recovering:
            self.bootstrap_wait += 1  # bootstrapped, waiting for the first election
        self.probe_elapsed += 1
        if self.probe_elapsed < self.cfg.heartbeat_tick:
            return
        self.probe_elapsed = 0
        me = self.cfg.incarnation
        for node in sorted(self.conf.members - {self.id}):
            self.send(Message(type=MT.PROBE, src=self.id, dst=node, context=me, recovering=self.recovering))
        if self.recovering and self.lead is not None and self.id in self.conf.members:
            self.send(Message(type=MT.REJOIN, src=self.id, dst=self.lead, term=self.term, context=me))

    def _heard_leader(self, leader: NodeId) -> None:
        """A recovering node asks a leader it just learned of to readmit it at
        once, not at its next probe round."""
        if self.recovering and leader != self.lead and self.id in self.conf.members:
            me = self.cfg.incarnation
            self.send(Message(type=MT.REJOIN, src=self.id, dst=leader, term=self.term, context=me))

    def _awaiting_bootstrap(self) -> bool:
        return self.bootstrapping and self.term == 0 and self.log.last_index() == 0

    def _step_recovery(self, m: Message) -> None:
        """PROBE / PROBE_RESP / REJOIN: outside the term rules, because a
        recovering node's term means nothing yet."""
        if m.type is MT.PROBE:
            if m.recovering:
                self.recovering_peers[m.src] = 0
                if self.role is Role.LEADER:
                    self._handle_rejoin(m.src, m.context)  # it asks to be readmitted, as REJOIN does
            else:
                self.recovering_peers.pop(m.src, None)
            self._check_quorum_lost()
            self.send(
                Message(
                    type=MT.PROBE_RESP,
                    src=self.id,
                    dst=m.src,
                    commit=self.term,
                    index=self.log.last_index(),
                    reject_hint=1 if self._fresh() else 0,
                    context=m.context,
                    recovering=self.recovering,
                )
            )
        elif m.type is MT.PROBE_RESP:
            if m.context != self.cfg.incarnation or m.src not in self.conf.members:
                return  # an answer to an earlier incarnation of this node
            self.probe_replies[m.src] = m
            if m.recovering:
                self.recovering_peers[m.src] = 0
            else:
                self.recovering_peers.pop(m.src, None)
            self._maybe_bootstrap()
            self._check_quorum_lost()
        elif m.type is MT.REJOIN and self.role is Role.LEADER:
            self._handle_rejoin(m.src, m.context)

    def _fresh(self) -> bool:
        """This node never held state: its driver found no restart marker,
        and it has neither left term 0 nor held an entry since."""
        return self.cfg.fresh and self.term == 0 and self.log.last_index() == 0

    def _fresh_voters(self) -> dict[NodeId, bool] | None:
        """Per voter that answered (and this node): whether it never held
        state. None when some member that answered holds entries."""
        fresh = {self.id: self._fresh()}
        for node, r in self.probe_replies.items():
            if r.index > 0:
                return None  # data exists: a leader will readmit us
            if node in self.conf.all_voters:
                fresh[node] = r.commit == 0 and r.reject_hint == 1
        return fresh

    def _maybe_bootstrap(self) -> None:
        """A first start: this node and a majority of the voters never held
        state, and nobody that answered holds entries. Every commit and every
        vote needed a majority in a term above 0, which would share a member
        with this majority: nothing was committed, no vote is forgotten."""
        if not self.recovering or not self._fresh():
            return
        if self.id not in self.conf.all_voters:
            return  # not one of the founding voters (a joining node knows no membership yet)
        fresh = self._fresh_voters()
        if fresh is not None and quorum_vote(self.conf, fresh) is VoteResult.WON:
            self.recovering = False

    def _bootstrap_majority(self) -> bool:
        """The first election may start: every voter has bootstrapped, or a
        majority has and the others stayed silent for two election timeouts
        (a member down at the first start). Waiting for all while they answer
        spares a slow starter the longer way in (readmission)."""
        ready = {self.id: True}
        for node, r in self.probe_replies.items():
            ready[node] = not r.recovering and r.commit == 0 and r.index == 0
        if quorum_vote(self.conf, ready) is not VoteResult.WON:
            return False
        everyone = all(ready.get(v) for v in self.conf.all_voters)
        return everyone or self.bootstrap_wait >= 2 * self.cfg.election_tick

    def _total_wipe(self) -> list[NodeId] | None:
        """Every voter answered and every one is recovering (none can vote,
        so no leader can be elected), yet too few of them are fresh to
        bootstrap: the cluster held state and lost it everywhere (entries a
        wiped node caught up since were never readmitted). Returns the
        voters that held state (None when this is not the case)."""
        if self.role is Role.LEADER or not self.recovering:
            return None
        voters = self.conf.all_voters
        if self.id not in voters or not voters <= self.probe_replies.keys() | {self.id}:
            return None  # someone has not answered yet: it may hold the data
        if any(not self.probe_replies[v].recovering for v in voters - {self.id}):
            return None  # a voter kept its state (or bootstrapped): a leader can come from it
        fresh = self._fresh_voters()
        if fresh is not None and quorum_vote(self.conf, fresh) is VoteResult.WON:
            return None  # a first start: bootstrapping
        return sorted(n for n in voters if not (fresh or {}).get(n))

    def _check_quorum_lost(self) -> None:
        """A majority of voters restarted empty while some member still holds
        data: entries committed before may now exist nowhere whole. Say so
        (``quorum_lost``) instead of electing a leader that lacks them. Every
        voter empty after some held state (a total wipe) is said too."""
        self.total_wipe = False
        if self.role is Role.LEADER or (self.lead is not None and not self.recovering):
            self.quorum_lost = None  # a working quorum exists
            return
        held = self._total_wipe()
        if held is not None:
            self.total_wipe = True
            self.lead = None  # every voter is recovering: whoever we heard from leads no longer
            self.quorum_lost = (
                f"every voter ({', '.join(sorted(self.conf.all_voters))}) restarted without its state and "
                f"none was readmitted, and {', '.join(held)} held state before: a total wipe, the data the "
                "cluster committed is gone. This node will not start an empty cluster on its own"
            )
            return
        empty = {n for n in self.recovering_peers if n in self.conf.all_voters}
        if self.recovering:
            empty.add(self.id)
        data_somewhere = (self.log.last_index() > 0 and not self.recovering) or any(
            r.index > 0 and not r.recovering for r in self.probe_replies.values()
        )
        lost = data_somewhere and quorum_vote(self.conf, dict.fromkeys(empty, True)) is VoteResult.WON
        self.quorum_lost = (
            f"a majority of voters ({', '.join(sorted(empty))}) restarted without their state, so entries "
            "committed before may exist nowhere whole and no leader will be elected. Bring back nodes that "
            "kept their data (or, to give it up, start a new cluster: docs/operations.md)"
            if lost
            else None
        )

    def _handle_rejoin(self, node: NodeId, incarnation: bytes) -> None:
        """Leader: a member restarted empty. Commit a marker entry without
        counting it; once it applies the marker, it knows that every later
        election needs a log holding entries it acknowledged after its
        restart, so its forgotten votes can no longer matter."""
        pr = self.progress.get(node)
        if pr is None or not incarnation:
            return
        if not (pr.recovering and pr.incarnation == incarnation):
            pr.lost_state(self.request_seq + 1, incarnation)  # see Raft._accept_reply
        marked = self.rejoin_markers.get(node)
        if marked is not None and marked[0] == incarnation and marked[1] >= self.log.first_index():
            return  # already in the log (committed or on its way)
        if self.lead_transferee is not None:
            return
        if marked is None or marked[0] != incarnation:
            # A new incarnation holds nothing it acknowledged before: replicate
            # from the start now rather than probe back from its old match.
            pr.match = 0
            pr.become_probe()
        self._append_entries([Entry(0, 0, EntryKind.NOOP, rejoin_marker(node, incarnation))])
        self.rejoin_markers[node] = (incarnation, self.log.last_index())
        self._bcast_append()

    def marker_applied(self, e: Entry) -> None:
        """A leader committed our rejoin marker without counting us: vote again."""
        if self.recovering and e.data == rejoin_marker(self.id, self.cfg.incarnation):
            self.recovering = False

