"""The Raft protocol as a deterministic state machine (no I/O, no clock).

Inputs arrive as method calls (``tick``, ``step``, ``propose`` ...); outputs
accumulate in ``msgs`` / ``read_states`` and in the log, and ``RawNode``
packages them into a ``Ready``. Section numbers refer to the Raft paper
("In Search of an Understandable Consensus Algorithm") and Ongaro's
dissertation; structure and names follow etcd-io/raft where that helps
readers who know it.

This module holds the node's state, its role changes, ticks, the message
dispatch (``step``) and proposals. The handlers it dispatches to are mixins
of ``Raft``, one module per idea (as etcd-io/raft keeps quorum/, tracker/,
confchange/ apart): raftkit.core.election (votes), .replication (appends,
heartbeats, snapshots, commit), .confchange (membership changes), .reads
(ReadIndex), .transfer (leadership transfer) and .recovery (nodes that lost
their state). Mixins rather than functions keep every method an attribute
of ``Raft`` under its old name and add no call on the per-message paths.
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
    quorum_vote,
)
from raftkit.core.progress import Inflights, Progress, ProgressState
from raftkit.core.quorum import VoteResult
from raftkit.core.reads import ReadRequest, Reads
from raftkit.core.recovery import Recovery
from raftkit.core.replication import Replication
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
    proposable,
)
from raftkit.errors import (
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
    # Ticks between a leader's check-quorum rounds (0: election_tick). A
    # longer window keeps a leader that lost its majority in office longer
    # (PySyncObj's leaderFallbackTimeout); lease reads do not rest on it.
    quorum_check_tick: int = 0
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


class Raft(Replication, Election, ConfChange, Reads, Transfer, Recovery):
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
        # Proposals appended since the last Ready, not yet sent (send_due_appends).
        self.appends_due = False
        self.read_states: list[ReadState] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.quorum_elapsed = 0  # with quorum_check_tick: ticks led, and when each voter was last heard
        self.heard_at: dict[NodeId, int] = {}
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
        # (index, term) of the stored config entries a forced membership
        # replaces: applying them later must not bring the old one back.
        self.superseded_confs: frozenset[tuple[int, int]] = frozenset()
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
        self.quorum_elapsed = 0
        self.heard_at = {}
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
        if self.cfg.quorum_check_tick and not self._heard_from_quorum_lately():
            return
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if not self.cfg.quorum_check_tick and not self._keeps_quorum():
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
        self.send_owed_commits()

    def set_quorum_check_tick(self, ticks: int) -> None:
        """Change ``cfg.quorum_check_tick`` on a running node (PySyncObj's
        leaderFallbackTimeout, set live). A leader keeps what it heard:
        the windowed check consumes ``recent_active`` at every tick, so the
        once-per-election_tick round that takes over starts with the voters
        the window counted as active (else the first round would see only
        the last tick's answers and depose a healthy leader); a new window
        starts as a new leader's does."""
        old, self.cfg.quorum_check_tick = self.cfg.quorum_check_tick, ticks
        if self.role is not Role.LEADER or old == ticks:
            return
        if old and not ticks:
            now = self.quorum_elapsed
            for node, pr in self.progress.items():
                if node != self.id and not pr.is_learner and now - self.heard_at.get(node, 0) < old:
                    pr.recent_active = True
        elif ticks and not old:
            self.quorum_elapsed, self.heard_at = 0, {}

    def _heard_from_quorum_lately(self) -> bool:
        """Check-quorum over a window of ``quorum_check_tick`` ticks, checked
        at every tick (the leader steps down that long after it last heard
        from a majority); False if it stepped down."""
        self.quorum_elapsed += 1
        now, window = self.quorum_elapsed, self.cfg.quorum_check_tick
        active = {}
        for node, pr in self.progress.items():
            if node == self.id:
                active[node] = True
            elif not pr.is_learner:
                if pr.recent_active:
                    self.heard_at[node] = now
                    pr.recent_active = False
                active[node] = not pr.recovering and now - self.heard_at.get(node, 0) < window
        if not self.cfg.check_quorum or quorum_vote(self.conf, active) is VoteResult.WON:
            return True
        self.become_follower(self.term, None)
        return False

    def _keeps_quorum(self) -> bool:
        """Check-quorum: we cannot tell whether a newer leader exists; step
        down rather than serve stale reads or hang clients. False if it did."""
        if self.cfg.check_quorum and not self._quorum_active():
            self.become_follower(self.term, None)
            return False
        return True

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

    # -- step on a leader -----------------------------------------------------------------

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
                self._propose([proposable(e) for e in m.entries])
                self.note_forwarded(m.src)
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

    # -- proposals ------------------------------------------------------------------------

    def propose(self, data: bytes) -> int:
        """Append a command; returns its index. Raises if it cannot be accepted."""
        return self._propose([Entry(0, 0, EntryKind.NORMAL, data)])

    def forward(self, commands: list[bytes], kind: EntryKind = EntryKind.NORMAL) -> None:
        """On a follower: send commands (``kind``: NORMAL or BATCH) to the
        leader, which appends them if it can (the driver learns the outcome
        by seeing them applied)."""
        if self.role is Role.LEADER:
            self.propose_batch(commands, kind)
            return
        if self.lead is None:
            raise NotLeaderError(None)
        entries = tuple(Entry(0, 0, kind, d) for d in commands)
        self.send(Message(type=MT.PROPOSE, src=self.id, dst=self.lead, term=self.term, entries=entries))

    def propose_batch(self, commands: list[bytes], kind: EntryKind = EntryKind.NORMAL) -> list[int]:
        """Append one entry of ``kind`` (NORMAL or BATCH) per item; their indexes."""
        # The hot path: each entry is made once, already stamped.
        self._check_can_propose()
        first, term = self.log.last_index() + 1, self.term
        self._append_stamped([Entry(first + i, term, kind, d) for i, d in enumerate(commands)])
        self.appends_due = True
        return list(range(first, first + len(commands)))

    def _propose(self, entries: list[Entry]) -> int:
        self._check_can_propose()
        self._append_entries(entries)
        self.appends_due = True
        return self.log.last_index()

    def _check_can_propose(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.lead)
        if self.lead_transferee is not None:
            raise ProposalDroppedError(f"leadership is being transferred to {self.lead_transferee}")
