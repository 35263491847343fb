"""The Raft protocol as a deterministic state machine (no I/O, no clock).

Inputs arrive as method calls (``tick``, ``step``, ``propose`` ...); outputs
accumulate in ``msgs`` / ``read_states`` and in the log, and ``RawNode``
packages them into a ``Ready``. Section numbers refer to the Raft paper
("In Search of an Understandable Consensus Algorithm") and Ongaro's
dissertation; structure and names follow etcd-io/raft where that helps
readers who know it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from raftkit.core.admission import refused_from_non_member
from raftkit.core.bounds import MAX_TERM, check_message, only_term_too_far
from raftkit.core.confchange import ConfChange
from raftkit.core.election import Election
from raftkit.core.log import RaftLog
from raftkit.core.membership import (
    encode_conf,
    quorum_committed,
    quorum_vote,
)
from raftkit.core.progress import Inflights, Progress, ProgressState
from raftkit.core.quorum import VoteResult
from raftkit.core.reads import ReadRequest, Reads
from raftkit.core.recovery import Recovery
from raftkit.core.transfer import HANDED_OVER, PASSED_ON, TRANSFER_CONTEXT, Transfer
from raftkit.core.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    NodeId,
    ReadState,
    Role,
    SnapshotMeta,
    SoftState,
)
from raftkit.errors import (
    LogCompactedError,
    NotLeaderError,
    ProposalDroppedError,
)

if TYPE_CHECKING:
    from raftkit.storage.log_store import LogStore

__all__ = ["HANDED_OVER", "PASSED_ON", "TRANSFER_CONTEXT", "Raft", "RaftConfig"]

MT = MessageType


@dataclass
class RaftConfig:
    """Tuning of one core. Times are in ticks; the driver decides how long a
    tick is (e.g. 50 ms with ``election_tick=10`` gives 0.5–1 s timeouts)."""

    id: NodeId
    election_tick: int = 10  # election timeout is random in [election_tick, election_tick_max)
    election_tick_max: int = 0  # 0 means 2 * election_tick
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_msg: int = 512
    max_bytes_per_msg: int = 1 << 20
    max_inflight_msgs: int = 64
    max_inflight_bytes: int = 16 << 20
    max_committed_bytes_per_ready: int = 16 << 20
    applied: int = 0  # what the state machine already holds at start
    # A node that started with no state but may have had some before (memory
    # mode, a wiped disk) sets ``recovering``: until a leader commits a rejoin
    # marker for ``incarnation`` without counting it, it neither votes nor
    # campaigns and leaders do not count its acknowledgements (see
    # raftkit.core.recovery).
    recovering: bool = False
    incarnation: bytes = b""
    # The driver knows this node never held state (no term, no entry: its
    # restart marker is absent). Only such nodes may bootstrap without a
    # leader, and only with a majority of voters that never held state.
    # False (the default) claims nothing: the node waits to be readmitted.
    fresh: bool = False
    # A node that starts with a persisted term may have confirmed a leader's
    # lease just before it stopped: it refuses votes for its first election
    # timeout (raftkit.runtime.lease). Off only in tests that build nodes with a history.
    restart_guard: bool = True
    # Take a non-member's request to add itself as a learner (a node joining
    # with join_cluster()); a driver turns it off on unauthenticated links.
    accept_join_requests: bool = True

    def __post_init__(self) -> None:
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat_tick must be positive")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election_tick must be greater than heartbeat_tick")
        if self.election_tick_max and self.election_tick_max <= self.election_tick:
            raise ValueError("election_tick_max must be greater than election_tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max_inflight_msgs must be positive")


class Raft(Election, ConfChange, Reads, Transfer, Recovery):
    def __init__(
        self,
        config: RaftConfig,
        store: LogStore,
        rng: random.Random,
        conf: ConfState,
        snapshot: SnapshotMeta | None = None,
        startup_conf: ConfState | None = None,
    ) -> None:
        self.cfg = config
        self.id = config.id
        self.rng = rng
        self.log = RaftLog(store, config.applied)
        hs = store.hard_state()
        self.term = hs.term
        self.vote: NodeId | None = hs.vote
        self.snapshot = snapshot  # latest snapshot the driver holds, for lagging followers
        self.conf = conf
        # The membership the driver started us with (its member list, which
        # a snapshot's or the log's may since have replaced): its voters are
        # leaders we follow (raftkit.core.admission).
        self.startup_conf = startup_conf if startup_conf is not None else conf
        self._known_voters_cache: tuple[tuple[object, ...], frozenset[NodeId]] | None = None
        self._replay_conf_from_log()
        self.role = Role.FOLLOWER
        self.lead: NodeId | None = None
        self.progress: dict[NodeId, Progress] = {}
        self.votes: dict[NodeId, bool] = {}
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self.lead_transferee: NodeId | None = None
        self.pending_conf_index = 0
        self.reads: OrderedDict[bytes, ReadRequest] = OrderedDict()
        self.reads_waiting_for_commit: list[ReadRequest] = []
        self.recovering = config.recovering
        # Before the very first election, a node that bootstrapped from probes
        # waits for a majority to have bootstrapped too (else it could wait
        # forever for votes from nodes still recovering).
        self.bootstrapping = config.recovering
        self.probe_replies: dict[NodeId, Message] = {}  # latest PROBE_RESP per member
        self.recovering_peers: dict[NodeId, int] = {}  # member -> ticks since its last PROBE
        self.rejoin_markers: dict[NodeId, tuple[bytes, int]] = {}  # leader: node -> (incarnation, index)
        self.quorum_lost: str | None = None
        self.total_wipe = False  # quorum_lost says every voter lost its state
        self.probe_elapsed = config.heartbeat_tick - 1  # the first tick probes
        self.bootstrap_wait = 0  # ticks since bootstrapping, before the first election
        self.held_proposals: list[Entry] = []  # forwarded to us during a leadership transfer
        self.handover: tuple[int, NodeId] | None = None  # (term, successor) of our last transfer
        # The last term in which we sent a TIMEOUT_NOW: it forces votes past
        # the followers' lease, however late it arrives (raftkit.runtime.reads).
        self.timeout_now_term = 0
        # A node restarting with its state may have confirmed a leader's lease
        # just before it stopped, and it no longer knows that leader: it
        # refuses votes for its first election timeout, as if it had just
        # heard from one (raftkit.runtime.lease). A node that never had a term cannot
        # have confirmed a lease, so a new cluster's first election is not delayed.
        self.restart_guard = config.restart_guard and hs.term > 0
        self.won_by_transfer = False
        self.forced_conf = False
        self.request_seq = 0  # numbers our APPEND / HEARTBEAT / SNAPSHOT requests (see Message)
        self.become_follower(self.term, None)
        self._maybe_bootstrap()  # a single voter has nobody to ask

    # -- helpers ----------------------------------------------------------------

    @property
    def promotable(self) -> bool:
        return self.id in self.conf.all_voters

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role)

    def send(self, msg: Message) -> None:
        if self.recovering and msg.type in (MT.APPEND_RESP, MT.HEARTBEAT_RESP):
            msg = dataclasses.replace(msg, recovering=True, context=self.cfg.incarnation)
        self.msgs.append(msg)

    def _reply(self, m: Message, type: MessageType, **kw: object) -> None:
        if type in (MT.APPEND_RESP, MT.HEARTBEAT_RESP):
            kw.setdefault("commit", m.reject_hint)  # echo the request number (see Message)
        self.send(Message(type=type, src=self.id, dst=m.src, **kw))  # type: ignore[arg-type]

    def _next_seq(self) -> int:
        self.request_seq += 1
        return self.request_seq

    def _peers(self) -> list[NodeId]:
        return sorted(p for p in self.progress if p != self.id)

    def _reset_randomized_election_timeout(self) -> None:
        et = self.cfg.election_tick
        top = self.cfg.election_tick_max or 2 * et
        self.randomized_election_timeout = et + self.rng.randrange(top - et)

    # -- role changes -------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.lead = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self.lead_transferee = None
        self.votes = {}
        self.pending_conf_index = 0
        self.reads.clear()
        self.reads_waiting_for_commit.clear()
        last = self.log.last_index()
        self.progress = {}
        for node in self.conf.members:
            self.progress[node] = self._new_progress(node, last)

    def _new_progress(self, node: NodeId, last: int) -> Progress:
        pr = Progress(
            match=0,
            next=last + 1,
            inflights=Inflights(self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes),
            is_learner=node in self.conf.learners,
        )
        if node == self.id:
            pr.match = last
        else:
            # Check-quorum must hear from a peer within the first election
            # timeout too, so nobody starts out counted as active.
            pr.recent_active = False
        return pr

    def become_follower(self, term: int, lead: NodeId | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.lead = lead

    def become_pre_candidate(self) -> None:
        # Pre-vote (dissertation §9.6): ask first whether we could win, without
        # bumping our term, so a node rejoining after a partition cannot force
        # a healthy leader to step down.
        self.role = Role.PRE_CANDIDATE
        self.votes = {}
        self.lead = None
        self._reset_randomized_election_timeout()  # so two pre-candidates do not collide forever

    def become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.lead = self.id
        # Any config entry in the uncommitted tail counts as pending.
        self.pending_conf_index = self.log.last_index()
        # §8: a no-op entry of our own term lets us commit (and learn the
        # commit index of) everything before it. Send it at once (§5.2: a new
        # leader announces itself immediately, not at the next heartbeat).
        noop = HANDED_OVER if self.won_by_transfer else b""
        self._append_entries([Entry(0, 0, EntryKind.NOOP, noop)])
        if self.forced_conf:
            self.forced_conf = False
            self._append_entries([Entry(0, 0, EntryKind.CONFIG, encode_conf(self.conf))])
            self.pending_conf_index = self.log.last_index()
        self._bcast_append()

    # -- ticks ---------------------------------------------------------------------

    def tick(self) -> None:
        self._age_recovering_peers()
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.recovering and self.lead is not None and self.election_elapsed >= self.cfg.election_tick:
            # A recovering node never campaigns, so nothing else would clear a
            # leader it no longer hears from: forget it, so callers learn at
            # once that no leader is known.
            self.lead = None
        if self.election_elapsed >= self.cfg.election_tick:
            self.restart_guard = False  # a whole election timeout has passed since the start
        self._tick_recovery()
        if self.promotable and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.hup()

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if self.cfg.check_quorum and not self._quorum_active():
                # Check-quorum: we cannot tell whether a newer leader exists;
                # step down rather than serve stale reads or hang clients.
                self.become_follower(self.term, None)
                return
            if self.lead_transferee is not None:
                self.lead_transferee = None  # transfer did not finish in time
                if not self.promotable:
                    self.become_follower(self.term, None)  # removed: stop leading anyway
                    return
                self._release_held_proposals()
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat()

    def _quorum_active(self) -> bool:
        active = {}
        for node, pr in self.progress.items():
            if node == self.id:
                active[node] = True
            elif not pr.is_learner:
                # A node waiting to be readmitted cannot help commit anything:
                # counting it would keep a leader that cannot commit in office.
                active[node] = pr.recent_active and not pr.recovering
                pr.recent_active = False
        return quorum_vote(self.conf, active) is VoteResult.WON

    # -- step: the message dispatcher ----------------------------------------------------

    def step(self, m: Message) -> None:
        # A term or index near the codec's limit would stop this node for good
        # (raftkit.core.bounds); a term too far above ours may still raise it by one.
        far = only_term_too_far(m, self.term)
        if not far:
            check_message(m, self.term)
        if m.type in (MT.PROBE, MT.PROBE_RESP, MT.REJOIN):
            if far:
                check_message(m, self.term)
            self._step_recovery(m)
            return
        forced = m.context == TRANSFER_CONTEXT
        if refused_from_non_member(
            m,
            self.conf,
            accept_join_requests=self.cfg.accept_join_requests,
            forced_vote=forced,
            lead=self.lead,
            term=self.term,
        ):
            if far:
                check_message(m, self.term)
            return  # messages from non-members never change state (raftkit.core.admission)
        if far:
            self._step_term_too_far(m)
            return
        if m.type is MT.CONF_CHANGE:
            self._handle_conf_change_request(m)
            return
        if m.type in (MT.VOTE_RESP, MT.PRE_VOTE_RESP) and m.reject and m.commit:
            self._learn_commit(m.commit, m.log_term)  # whatever its term: committed stays committed
        if m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE) and self._in_lease() and not forced:
                # We heard from a live leader recently (or may have, just
                # before a restart): do not let a disrupting node (e.g. a
                # removed one) depose it, nor anyone break its lease.
                return
            if m.type is MT.PRE_VOTE:
                pass  # a pre-vote never changes our term
            elif m.type is MT.PRE_VOTE_RESP and not m.reject:
                pass  # granted pre-votes carry the future term; we bump it on winning
            else:
                lead = m.src if m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT) else None
                self.become_follower(m.term, lead)
        elif m.term < self.term:
            if m.type is MT.PROPOSE and m.term == self.term - 1:
                self._late_proposal(m)
                return
            if (self.cfg.check_quorum or self.cfg.pre_vote) and m.type in (MT.HEARTBEAT, MT.APPEND):
                # A stale leader (or a node that was partitioned): tell it our
                # term so it steps down; with pre-vote it might otherwise never
                # learn it, as its pre-votes cannot raise our term.
                # No request number: it answers no request of the leader's current term.
                self._reply(m, MT.APPEND_RESP, term=self.term, commit=0)
            elif m.type is MT.PRE_VOTE:
                self._reply(m, MT.PRE_VOTE_RESP, term=self.term, reject=True, **self._commit_hint(m))
            return

        if m.type in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(m)
        else:
            self._step_follower(m)

    def _step_term_too_far(self, m: Message) -> None:
        """``m`` is refused only because its term is above ``MAX_TERM`` and
        more than one above ours (raftkit.core.bounds). From a member, we
        still raise our term by one, or straight to ``MAX_TERM`` if we are
        below it: forged frames may have left the members' terms far apart
        (or one member just above ``MAX_TERM`` and the others far below),
        and without this they would refuse each other for good (no leader
        ever again, or one member cut off). The terms converge by one per
        message; a forger gains nothing it could not gain with frames in
        range (a jump to ``MAX_TERM``, then one term per frame). Votes we
        would ignore in a leader's lease raise nothing."""
        member = m.src in self.conf.members or m.src in self._known_voters()
        vote_in_lease = (
            m.type in (MT.VOTE, MT.PRE_VOTE) and m.context != TRANSFER_CONTEXT and self._in_lease()
        )
        if not member or vote_in_lease:
            check_message(m, self.term)  # raises: refused, nothing changed
        self.become_follower(max(self.term + 1, MAX_TERM), None)

    def _step_candidate(self, m: Message) -> None:
        expected = MT.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MT.VOTE_RESP
        if m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
            # §5.2: a leader of our term exists; return to follower.
            self.become_follower(m.term, m.src)
            self._step_follower(m)
        elif m.type is expected:
            result = self._record_vote(m.src, not m.reject)
            if result is VoteResult.WON:
                if self.role is Role.PRE_CANDIDATE:
                    self._campaign(pre=False, transfer=False)
                else:
                    self.become_leader()
            elif result is VoteResult.LOST:
                self.become_follower(self.term, None)

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t in (MT.APPEND, MT.HEARTBEAT):
            self._heard_leader(m.src)
            self.quorum_lost = None  # a leader is working
            self.total_wipe = False
            if self.held_proposals:
                self.lead = m.src
                self._release_held_proposals()
        if t is MT.APPEND:
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_append(m)
        elif t is MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_heartbeat(m)
        elif t is MT.SNAPSHOT:
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_snapshot(m)
        elif t is MT.TIMEOUT_NOW:
            # Leadership transfer (dissertation §3.10): campaign at once,
            # skipping pre-vote and the other nodes' leader leases.
            self.hup(transfer=True)
        elif t is MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))
        elif t is MT.PROPOSE and self.lead is not None:
            self.send(Message(type=MT.PROPOSE, src=self.id, dst=self.lead, term=self.term, entries=m.entries))

    # -- follower handlers ------------------------------------------------------------------

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            # Everything up to our commit index matches by Log Matching.
            self._reply(m, MT.APPEND_RESP, term=self.term, index=self.log.committed)
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._reply(m, MT.APPEND_RESP, term=self.term, index=last_new)
            return
        # §5.3 consistency check failed. Tell the leader where our log could
        # match so it can skip a whole term per round trip.
        hint, hint_term = self.log.find_conflict_by_term(min(m.index, self.log.last_index()), m.log_term)
        self._reply(
            m,
            MT.APPEND_RESP,
            term=self.term,
            index=m.index,
            reject=True,
            reject_hint=hint,
            log_term=hint_term,
        )

    def _handle_heartbeat(self, m: Message) -> None:
        if not self.recovering:
            # A recovering node's log may hold entries of a deposed leader
            # that the heartbeat's commit (from our match, which the leader
            # may not yet know is gone) would wrongly cover; it learns the
            # commit only from APPENDs whose entries it just matched.
            self.log.commit_to(min(m.commit, self.log.last_index()))
        self._reply(m, MT.HEARTBEAT_RESP, term=self.term, context=m.context)

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        assert snap is not None, "SNAPSHOT message without metadata"
        if self._restore(snap):
            self._reply(m, MT.APPEND_RESP, term=self.term, index=self.log.last_index())
        else:
            self._reply(m, MT.APPEND_RESP, term=self.term, index=self.log.committed)

    def _restore(self, snap: SnapshotMeta) -> bool:
        if snap.index <= self.log.committed:
            return False
        if self.log.match_term(snap.index, snap.term):
            # We already hold the snapshot's last entry: just learn the commit.
            self.log.commit_to(snap.index)
            return False
        self.log.restore(snap)
        self.snapshot = snap
        self._apply_conf(snap.conf)
        return True

    # -- leader ---------------------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t is MT.READ_INDEX:
            self._handle_read_index(m.src, m.context)
            return
        if t is MT.TRANSFER_LEADER:
            self.transfer_leadership(m.context.decode(errors="replace"))
            return
        if t is MT.PROPOSE:
            if self.lead_transferee is not None:
                if m.context == PASSED_ON:
                    return  # passed on once already: a second hand-over would be too late
                # Keep them for whoever leads next (appended nowhere yet, so
                # passing them on cannot apply a command twice).
                self.held_proposals.extend(m.entries)
                return
            with contextlib.suppress(ProposalDroppedError):
                self._propose([Entry(0, 0, EntryKind.NORMAL, e.data) for e in m.entries])
            return
        pr = self.progress.get(m.src)
        if pr is None:
            return  # not (or no longer) a member
        if t is MT.APPEND_RESP and m.index > self.log.last_index():
            # We never sent that entry: a forged (or corrupted) acknowledgement.
            # Counting it could commit entries only we hold; it changes nothing.
            return
        if t in (MT.APPEND_RESP, MT.HEARTBEAT_RESP) and not self._accept_reply(m, pr):
            return
        if t is MT.APPEND_RESP:
            self._handle_append_resp(m, pr)
        elif t is MT.HEARTBEAT_RESP:
            pr.probe_sent = False
            if pr.state is ProgressState.REPLICATE and pr.inflights.full:
                # The follower is alive but the window is full: some appends
                # were probably lost. Free a slot so one more append goes out;
                # a gap makes the follower reject it and we fall back to probing.
                pr.inflights.free_first_one()
            if pr.match < self.log.last_index() or pr.recovering:
                # A recovering node takes no commit index from heartbeats:
                # an (empty) append tells it, so it applies its rejoin marker.
                self._send_append(m.src)
            if m.context and not m.recovering:
                self._ack_read(m.context, m.src)

    def _accept_reply(self, m: Message, pr: Progress) -> bool:
        """Whether an APPEND_RESP / HEARTBEAT_RESP may change what we believe
        about its sender.

        A node that lost its state may still have replies from before the
        wipe in flight; one that arrived late would otherwise clear
        ``recovering`` and count a log that is gone. Such a reply answers a
        request the node received before the wipe, so a request we sent
        before we learned of the wipe (we learn it from a message the node
        sent after it). Request numbers only grow, so once we know, every
        reply echoing a number below ``seq_floor`` is dropped: the stale ones
        with certainty (and a few fresh ones, which costs a resend). A reply
        at or above the floor answers a request sent after we knew, hence
        comes from that incarnation or a later one: if it is not recovering,
        the node was readmitted. Recovering replies name their incarnation,
        so a second wipe, even before we saw the node readmitted, raises the
        floor again (only equality matters: random incarnation ids cannot be
        ordered, which is why they alone would not do). Believing a recovering
        reply is the cautious side (at worst the node is probed again), but a
        recovering reply of an incarnation we saw readmitted is merely late."""
        incarnation = m.context if m.recovering else b""
        same = incarnation == pr.incarnation  # both empty: a node that names none
        if m.recovering and not pr.recovering and same and incarnation:
            return False  # that incarnation was readmitted since
        if m.recovering and not (pr.recovering and same):
            pr.lost_state(self.request_seq + 1, incarnation)
            pr.recent_active = True
            self._send_append(m.src)  # probe it from the start of the log
            return False  # it answers a request sent before we knew
        if m.commit < pr.seq_floor:  # the echoed request number
            return False
        pr.recent_active = True
        pr.recovering = m.recovering
        return True

    def _handle_append_resp(self, m: Message, pr: Progress) -> None:
        if m.reject:
            hint = m.reject_hint
            if m.log_term > 0:
                hint, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decrease_to(m.index, hint):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.src)
            return
        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match + 1 >= self.log.first_index():
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._bcast_append()
        elif old_paused:
            self._send_append(m.src)
        # Fill the window: keep sending while there is something to send.
        for _ in range(self.cfg.max_inflight_msgs):
            if not self._send_append(m.src, send_if_empty=False):
                break
        if m.src == self.lead_transferee and pr.match == self.log.last_index():
            self._send_timeout_now(m.src)

    def _maybe_commit(self) -> bool:
        # A recovering node holds what it acknowledged, but it may have
        # forgotten votes, so a quorum that needs it proves nothing.
        match = {node: 0 if pr.recovering else pr.match for node, pr in self.progress.items()}
        index = quorum_committed(self.conf, match)
        # §5.4.2: only entries of the current term are committed by counting
        # replicas; earlier ones commit indirectly through them.
        if index > self.log.committed and self.log.term_or_zero(index) == self.term:
            self.log.commit_to(index)
            self._release_reads_waiting_for_commit()
            return True
        return False

    def _append_entries(self, entries: list[Entry]) -> None:
        last = self.log.last_index()
        stamped = [Entry(last + 1 + i, self.term, e.kind, e.data) for i, e in enumerate(entries)]
        self.log.append(stamped)
        self.progress[self.id].maybe_update(self.log.last_index())
        self._maybe_commit()

    def _bcast_append(self) -> None:
        for node in self._peers():
            self._send_append(node)

    def _bcast_heartbeat(self, context: bytes = b"") -> None:
        for node in self._peers():
            pr = self.progress[node]
            self.send(
                Message(
                    type=MT.HEARTBEAT,
                    src=self.id,
                    dst=node,
                    term=self.term,
                    commit=min(pr.match, self.log.committed),
                    context=context,
                    reject_hint=self._next_seq(),  # the request number
                )
            )

    def _send_append(self, to: NodeId, send_if_empty: bool = True) -> bool:
        pr = self.progress[to]
        if pr.is_paused():
            return False
        prev = pr.next - 1
        try:
            prev_term = self.log.term(prev)
            hi = min(self.log.last_index() + 1, pr.next + self.cfg.max_entries_per_msg)
            entries = self.log.entries(pr.next, hi, self.cfg.max_bytes_per_msg)
        except LogCompactedError:
            return self._send_snapshot(to, pr)
        if not entries and not send_if_empty:
            return False
        self.send(
            Message(
                type=MT.APPEND,
                src=self.id,
                dst=to,
                term=self.term,
                index=prev,
                log_term=prev_term,
                entries=tuple(entries),
                commit=self.log.committed,
                reject_hint=self._next_seq(),  # the request number
            )
        )
        if entries:
            pr.sent_entries(entries[-1].index, sum(e.size for e in entries))
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _send_snapshot(self, to: NodeId, pr: Progress) -> bool:
        if not pr.recent_active or self.snapshot is None:
            return False
        pr.become_snapshot(self.snapshot.index)
        snap, seq = self.snapshot, self._next_seq()  # reject_hint: the request number
        self.send(Message(MT.SNAPSHOT, self.id, to, term=self.term, snapshot=snap, reject_hint=seq))
        return True

    # -- proposals ------------------------------------------------------------------------

    def propose(self, data: bytes) -> int:
        """Append a command; returns its index. Raises if it cannot be accepted."""
        return self._propose([Entry(0, 0, EntryKind.NORMAL, data)])

    def forward(self, commands: list[bytes]) -> None:
        """On a follower: send commands to the leader, which appends them if
        it can (the driver learns the outcome by seeing them applied)."""
        if self.role is Role.LEADER:
            self.propose_batch(commands)
            return
        if self.lead is None:
            raise NotLeaderError(None)
        entries = tuple(Entry(0, 0, EntryKind.NORMAL, d) for d in commands)
        self.send(Message(type=MT.PROPOSE, src=self.id, dst=self.lead, term=self.term, entries=entries))

    def propose_batch(self, commands: list[bytes]) -> list[int]:
        first = self._propose([Entry(0, 0, EntryKind.NORMAL, d) for d in commands]) - len(commands) + 1
        return list(range(first, first + len(commands)))

    def _propose(self, entries: list[Entry]) -> int:
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.lead)
        if self.lead_transferee is not None:
            raise ProposalDroppedError(f"leadership is being transferred to {self.lead_transferee}")
        self._append_entries(entries)
        self._bcast_append()
        return self.log.last_index()

    # -- snapshots and unreachable peers (driver reports) ----------------------------------------

    def report_snapshot(self, to: NodeId, ok: bool) -> None:
        """The driver finished (or failed) streaming a snapshot to ``to``."""
        pr = self.progress.get(to)
        if self.role is not Role.LEADER or pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.probe_sent = True  # wait for the follower's answer before probing

    def report_unreachable(self, to: NodeId) -> None:
        pr = self.progress.get(to)
        if self.role is Role.LEADER and pr is not None and pr.state is ProgressState.REPLICATE:
            pr.become_probe()
