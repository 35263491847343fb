"""RawNode: the driver-facing API of the core (etcd-raft's RawNode).

A driver loops::

    while running:
        feed inputs: node.tick() / node.step(msg) / node.propose(cmd) ...
        if node.has_ready():
            rd = node.ready()
            persist rd.snapshot, then rd.entries + rd.hard_state atomically
            send rd.messages               # only after the write is durable
            apply rd.committed_entries     # in order
            node.advance(rd)

Persist-before-send is what makes a vote or an acknowledgement a promise
that survives a crash; apply-in-order is what makes every replica compute the
same state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from raftkit.core.bounds import CEILING
from raftkit.core.membership import decode_conf
from raftkit.core.progress import ProgressState
from raftkit.core.raft import Raft, RaftConfig
from raftkit.core.types import (
    ConfState,
    EntryKind,
    HardState,
    Message,
    MessageType,
    NodeId,
    Ready,
    Role,
    SnapshotMeta,
    SoftState,
)
from raftkit.errors import NotLeaderError

if TYPE_CHECKING:
    from raftkit.storage.log_store import LogStore


@dataclass(frozen=True)
class PeerStatus:
    match: int
    next: int
    state: ProgressState
    recent_active: bool
    learner: bool


@dataclass(frozen=True)
class Status:
    id: NodeId
    role: Role
    term: int
    vote: NodeId | None
    leader: NodeId | None
    commit: int
    applied: int
    first_index: int
    last_index: int
    conf: ConfState
    peers: dict[NodeId, PeerStatus]
    lead_transferee: NodeId | None
    recovering: bool = False  # restarted without its state; not voting yet
    quorum_lost: str | None = None  # why no leader can be elected, if a majority lost its state


class RawNode:
    """One Raft participant. Not thread-safe: a single driver owns it."""

    def __init__(
        self,
        config: RaftConfig,
        store: LogStore,
        *,
        peers: list[NodeId] | None = None,
        conf: ConfState | None = None,
        snapshot: SnapshotMeta | None = None,
        rng: random.Random | None = None,
        force_conf: ConfState | None = None,
        member_list: ConfState | None = None,
    ) -> None:
        """Build a core over ``store``.

        Membership at start comes from, in order: ``snapshot.conf`` (the
        driver's latest snapshot), ``conf``, or ``peers`` (bootstrap voters,
        which must include ``config.id``). Config entries applied since are
        replayed from the log. ``force_conf`` overrides all of that (disaster
        recovery: a survivor restarts as a new cluster of its own); the first
        leader writes it to the log so it outlives the next restart.

        ``member_list``: the members the operator named at start (defaults to
        ``conf`` or ``peers``, even beside a snapshot). Its voters are among
        the leaders this node follows (raftkit.core.admission); a node that
        joins with no membership of its own names the cluster's here.
        """
        if snapshot is not None:
            start_conf = snapshot.conf
        elif conf is not None:
            start_conf = conf
        elif peers is not None:
            start_conf = ConfState(voters=frozenset(peers))
        else:
            raise ValueError("give the initial membership: peers, conf or snapshot")
        startup = member_list if member_list is not None else conf
        if startup is None and peers is not None:
            startup = ConfState(voters=frozenset(peers))
        self.raft = Raft(config, store, rng or random.Random(0), start_conf, snapshot, startup)
        if force_conf is not None:
            self.raft.force_conf(force_conf)
        self._prev_hard = store.hard_state()
        self._prev_soft = self.raft.soft_state()

    # -- inputs -------------------------------------------------------------

    def tick(self) -> None:
        self.raft.tick()

    def step(self, message: Message) -> None:
        if message.dst != self.raft.id:
            raise ValueError(f"message for {message.dst!r} delivered to {self.raft.id!r}")
        self.raft.step(message)

    def campaign(self) -> None:
        if self.raft.term >= CEILING:
            raise ValueError(
                f"{self.raft.id} cannot campaign: its term {self.raft.term} reached the bound {CEILING} "
                "(raftkit.core.bounds); a term this high can only come from a damaged hard state"
            )
        self.raft.hup()

    def propose(self, command: bytes) -> int:
        """Propose a command; returns its log index. Raises NotLeaderError /
        ProposalDroppedError if this node cannot accept it."""
        return self.raft.propose(command)

    def propose_batch(self, commands: list[bytes], kind: EntryKind = EntryKind.NORMAL) -> list[int]:
        return self.raft.propose_batch(commands, kind)

    def forward(self, commands: list[bytes], kind: EntryKind = EntryKind.NORMAL) -> None:
        """Propose on the leader wherever it is: appended here if this node
        leads, otherwise sent to the known leader (raises NotLeaderError when
        there is none). Outcomes are learned when the entries are applied."""
        self.raft.forward(commands, kind)

    def propose_conf_change(self, conf: ConfState) -> int:
        return self.raft.propose_conf_change(conf)

    def request_conf_change(self, request: bytes, via: NodeId | None = None) -> int | None:
        """Ask for a single-server membership change (``membership.encode_change``).
        On the leader it is proposed at once (returns the index, or None when
        the change already holds). Elsewhere it is sent to the known leader,
        or to ``via`` (a member a joining node knows), and None is returned:
        the caller watches the applied membership and retries."""
        r = self.raft
        if r.role is Role.LEADER:
            return r.request_conf_change(request)
        to = r.lead or via
        if to is None:
            raise NotLeaderError(None)
        r.send(Message(type=MessageType.CONF_CHANGE, src=r.id, dst=to, term=r.term, context=request))
        return None

    def read_index(self, context: bytes) -> None:
        self.raft.read_index(context)

    def transfer_leadership(self, to: NodeId) -> None:
        self.raft.transfer_leadership(to)

    def report_snapshot(self, to: NodeId, ok: bool) -> None:
        self.raft.report_snapshot(to, ok)

    def report_unreachable(self, to: NodeId) -> None:
        self.raft.report_unreachable(to)

    def snapshot_created(self, meta: SnapshotMeta) -> None:
        """The driver saved a snapshot (and may now compact the log up to
        ``meta.index``); lagging followers will be sent this one."""
        if self.raft.snapshot is None or meta.index > self.raft.snapshot.index:
            self.raft.snapshot = meta

    # -- outputs ------------------------------------------------------------

    def has_ready(self) -> bool:
        r, hs, ss = self.raft, self._prev_hard, self._prev_soft
        # Field by field: asked twice per Ready, building HardState and
        # SoftState to compare them was most of its cost.
        return bool(
            r.msgs
            or r.appends_due
            or r.read_states
            or r.log.unstable
            or r.log.pending_snapshot is not None
            or r.log.has_next_committed_entries()
            or r.term != hs.term
            or r.vote != hs.vote
            or r.log.committed != hs.commit
            or r.lead != ss.leader
            or r.role is not ss.role
        )

    def ready(self) -> Ready:
        r = self.raft
        r.send_due_appends()
        hs = r.hard_state()
        ss = r.soft_state()
        rd = Ready(
            hard_state=hs if hs != self._prev_hard else None,
            soft_state=ss if ss != self._prev_soft else None,
            entries=list(r.log.unstable),
            snapshot=r.log.pending_snapshot,
            messages=r.msgs,
            committed_entries=r.log.next_committed_entries(r.cfg.max_committed_bytes_per_ready),
            read_states=r.read_states,
        )
        r.msgs = []
        r.read_states = []
        if rd.committed_entries:
            r.log.applying = rd.committed_entries[-1].index
        if rd.soft_state is not None:
            self._prev_soft = ss
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver has done everything ``rd`` asked for."""
        r = self.raft
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.snapshot is not None:
            r.log.snapshot_persisted(rd.snapshot)
        if rd.entries:
            last = rd.entries[-1]
            r.log.stable_to(last.index, last.term)
        for e in rd.committed_entries:
            r.log.applied_to(e.index)
            if e.kind is EntryKind.CONFIG and (e.index, e.term) not in r.superseded_confs:
                r._apply_conf(decode_conf(e.data))
            elif e.kind is EntryKind.NOOP and e.data:
                r.marker_applied(e)
        if rd.committed_entries:
            r.maybe_leave_joint()

    # -- introspection ------------------------------------------------------

    @property
    def id(self) -> NodeId:
        return self.raft.id

    @property
    def hard_state(self) -> HardState:
        return self.raft.hard_state()

    @property
    def soft_state(self) -> SoftState:
        return self.raft.soft_state()

    def status(self) -> Status:
        r = self.raft
        peers = {}
        if r.role is Role.LEADER:
            peers = {
                node: PeerStatus(pr.match, pr.next, pr.state, pr.recent_active, pr.is_learner)
                for node, pr in sorted(r.progress.items())
            }
        return Status(
            id=r.id,
            role=r.role,
            term=r.term,
            vote=r.vote,
            leader=r.lead,
            commit=r.log.committed,
            applied=r.log.applied,
            first_index=r.log.first_index(),
            last_index=r.log.last_index(),
            conf=r.conf,
            peers=peers,
            lead_transferee=r.lead_transferee,
            recovering=r.recovering,
            quorum_lost=r.quorum_lost,
        )
