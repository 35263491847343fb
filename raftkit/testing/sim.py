"""SimCluster: a deterministic cluster of Raft cores under a seeded scheduler.

Every node is a ``RawNode`` with a ``MemoryLogStore`` and a
``MemorySnapshotter`` standing in for its disk, and a tiny state machine that
records the entries it applied. The network is a list of in-flight envelopes
that tests deliver, drop, duplicate or reorder explicitly (or let ``run``
schedule with the seeded RNG). A crash throws away everything volatile (the
core, the state machine, the unstable log); a restart rebuilds the node from
what its "disk" holds. The same seed and the same calls give the same run,
event for event, so every failure is reproducible from its trace.

The cluster is put together from mixins kept in modules of their own: the
network and its fault rules (``SimNetwork``, raftkit.testing.sim_network)
and the history needed to check Raft's safety properties after every step
(``check_invariants``, in raftkit.testing.invariants: judged from the
test's own ground truth, never from the cores' flags). What one node holds
is ``SimNode`` (raftkit.testing.sim_node).

Late messages: what a node sent before it crashed or was wiped can come back
(``replay_ghost``), a TIMEOUT_NOW can arrive after its transfer expired
(``replay_timeout_now``), and any message can be held out of the network
(``park`` / ``unpark``). With a ``clock`` (raftkit.testing.clock), ticks
follow real time on drifting clocks and leader leases are checked.

Membership changes (``add_learner``, ``promote``, ``demote``,
``remove_member``, ``change_voters``) are proposed on the current leader
and take effect on each node when it applies them; the invariants judge
quorums by the configuration in force (``current_conf``), and a node
removed from it keeps running but no longer counts for convergence.

A user's state machine (``state_machine=factory``) runs on every node, fed
the committed commands as a node's runtime feeds it, and the invariants
check that its replicas agree (raftkit.testing.sim_state).
"""

from __future__ import annotations

import bisect
import dataclasses
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgpack

from raftkit.core.raft import RaftConfig
from raftkit.core.rawnode import RawNode
from raftkit.core.types import (
    ConfState,
    Entry,
    EntryKind,
    NodeId,
    Ready,
    Role,
    SnapshotMeta,
)
from raftkit.errors import ProposalDroppedError
from raftkit.runtime.log_writes import send_ahead, stored_committed
from raftkit.storage.memory_snapshotter import MemorySnapshotter
from raftkit.testing.invariants import Invariants, InvariantViolation
from raftkit.testing.sim_network import (
    GHOSTS_PER_NODE,
    LATE_TIMEOUT_NOWS,
    MAX_GHOSTS,
    Envelope,
    SimNetwork,
    describe,
)
from raftkit.testing.sim_node import SimLogStore, SimNode
from raftkit.testing.sim_state import Outcome, StateAgreement, StateMachineFactory, pack, unpack

if TYPE_CHECKING:
    from raftkit.state_machines.base import StateMachine
    from raftkit.testing.clock import ClockModel

# Envelope, describe, SimNode and the late-message bounds live in sim_network
# and sim_node; they are re-exported here, where tests and scripts import them.
__all__ = [
    "GHOSTS_PER_NODE",
    "LATE_TIMEOUT_NOWS",
    "MAX_GHOSTS",
    "Envelope",
    "InvariantViolation",
    "Outcome",
    "SimCluster",
    "SimNode",
    "describe",
]

T = TypeVar("T")

@dataclass
class Proposal:
    data: bytes
    node: NodeId
    index: int
    term: int
    acked: bool = False


@dataclass
class PendingRead:
    node: NodeId
    context: bytes
    must_see: frozenset[bytes]  # proposals acknowledged before the read began
    index: int | None = None
    served: bool = False
    served_at: int | None = None  # the serving node's applied index when it served the read


class SimCluster(SimNetwork, Invariants):
    def __init__(
        self,
        n: int = 3,
        seed: int = 0,
        *,
        ids: Iterable[NodeId] | None = None,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        max_entries_per_msg: int = 64,
        max_inflight_msgs: int = 16,
        check_every_step: bool = True,
        send_ahead: bool = True,
        apply_first: bool = True,
        clock: ClockModel | None = None,
        state_machine: StateMachineFactory | None = None,
        state_equal: Callable[[Any, Any], bool] | None = None,
        digest: Callable[[Any], Any] | None = None,
    ) -> None:
        """``send_ahead``: a leader sends its appends before it writes them,
        as the node runtime does (raftkit.runtime.log_writes.send_ahead).
        ``apply_first``: a node applies the committed entries it already
        holds before it writes new ones, as the runtime does with a store
        whose writes wait for the disk (``stored_committed``).

        ``clock``: a ClockModel (raftkit.testing.clock) drives the ticks
        from real time, with per-node drift and phase, and checks leases.

        ``state_machine``: a factory of ``raftkit.state_machines.StateMachine``;
        every node then applies the committed commands to an instance of its
        own, and the invariants check that the replicas agree, comparing
        states with ``state_equal(a, b)`` or ``digest(sm)`` (default: the
        ``snapshot()`` bytes) and outcomes by value or exception
        (raftkit.testing.sim_state)."""
        self.ids: list[NodeId] = list(ids) if ids is not None else [f"n{i}" for i in range(1, n + 1)]
        self.rng = random.Random(seed)
        self.seed = seed
        self.time = 0
        self._config = dict(
            election_tick=election_tick,
            heartbeat_tick=heartbeat_tick,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
            max_entries_per_msg=max_entries_per_msg,
            max_inflight_msgs=max_inflight_msgs,
        )
        self.check_every_step = check_every_step
        self.send_ahead = send_ahead
        self.apply_first = apply_first
        self.nodes: dict[NodeId, SimNode] = {i: SimNode(i) for i in self.ids}
        self._bootstrap_voters: list[NodeId] = list(self.ids)  # nodes added later join with no membership
        self.bootstrap_conf = ConfState(voters=frozenset(self.ids))
        self._init_network()  # in-flight messages, blocked links, late-message pools
        self.trace: list[str] = []
        self.trace_messages = False
        self.listeners: list[Callable[[str], None]] = []
        # History for the invariants (raftkit.testing.invariants).
        self._init_truth()
        self.agreement: StateAgreement | None = None
        if state_machine is not None:
            self.agreement = StateAgreement(
                state_machine, self._violation, state_equal=state_equal, digest=digest
            )
        self.proposals: dict[bytes, Proposal] = {}
        self.reads: dict[bytes, PendingRead] = {}
        # Called with each read as it is served, while the serving node's
        # state machine is at ``read.served_at`` (to read its answer there).
        self.read_listeners: list[Callable[[PendingRead], None]] = []
        self.confs: dict[int, ConfState] = {}  # index -> committed configuration entry
        self._conf_indexes: list[int] = []  # sorted keys of ``confs``
        self.clock = clock
        if clock is not None:
            clock.attach(self)
        for node_id in self.ids:
            self._boot(self.nodes[node_id])

    # -- lifecycle ---------------------------------------------------------------

    def _boot(self, sn: SimNode) -> None:
        snap = sn.snapshots.latest()
        sn.applied = {}
        sn.applied_index = 0
        if self.agreement is not None and snap is None:
            self.agreement.start(sn.id)
        if snap is not None:
            with sn.snapshots.open(snap.index) as src:
                self._restore_state(sn, snap, src.read())
        cfg = RaftConfig(
            id=sn.id,
            applied=sn.applied_index,
            recovering=sn.lost_state,
            fresh=not sn.had_state,
            incarnation=f"{sn.id}/{sn.incarnation}".encode(),
            **self._config,
        )
        rng = random.Random(f"{self.seed}/{sn.id}/{sn.incarnation}")
        # Every (re)start is told the cluster's current members, learners
        # included (node.py counts every peer it is given): an operator
        # restarts a node with the current member list, and the core follows
        # only leaders it knows (raftkit.core.admission; a node started with
        # an older list may wait for a leader it knows, docs/operations.md).
        told = ConfState(voters=frozenset(self._bootstrap_voters) | self.current_conf().members)
        if sn.id in self._bootstrap_voters:
            sn.raw = RawNode(
                cfg, sn.store, peers=self._bootstrap_voters, snapshot=snap, rng=rng, member_list=told
            )
        else:
            # Like a node started with join: no membership of its own.
            sn.raw = RawNode(cfg, sn.store, conf=ConfState(), snapshot=snap, rng=rng, member_list=told)

    def _restore_state(self, sn: SimNode, meta: SnapshotMeta, data: bytes) -> None:
        if self.agreement is not None:  # a fresh user state machine, from the user's part
            data, user = unpack(data)
            self.agreement.restore(sn.id, meta.index, user)
        sn.applied = {i: Entry(i, t, EntryKind(k), d) for i, t, k, d in msgpack.unpackb(data, use_list=False)}
        sn.applied_index = meta.index

    def add_node(self, node_id: NodeId) -> None:
        """Start a new, empty node outside the membership; it learns the
        configuration from the log (or a snapshot) once a leader adds it."""
        if node_id in self.nodes:
            raise ValueError(f"node {node_id!r} already exists")
        self.ids.append(node_id)
        self.nodes[node_id] = sn = SimNode(node_id)
        self._boot(sn)
        self.log(f"{node_id} started outside the membership")

    def crash(self, node_id: NodeId) -> None:
        """Kill a node: its core, state machine and anything unpersisted are lost."""
        sn = self.nodes[node_id]
        if not sn.alive:
            return
        sn.raw = None
        sn.crash_at_write = False
        sn.applied = {}
        if self.agreement is not None:
            self.agreement.drop(node_id)
        sn.received_snapshots.clear()
        self.ghosts.extend(self._recent.pop(node_id, ()))
        del self.ghosts[:-MAX_GHOSTS]
        self.log(f"{node_id} crashed")

    def crash_while_writing(self, node_id: NodeId) -> None:
        """Crash a node in the middle of its next Ready that writes: after
        what it may send ahead of the write (a leader's appends), before the
        write. Raft must not lose an acknowledged entry to it."""
        sn = self.nodes[node_id]
        if sn.alive:
            sn.crash_at_write = True

    def wipe(self, node_id: NodeId, *, forget_marker: bool = False) -> None:
        """Crash a node and lose its disk too (an in-memory node restarting).
        It restarts in recovery mode (RaftConfig.recovering): it votes and
        counts again only once a leader readmits it, so the invariants keep
        holding while at most a minority has lost its state. The restart
        marker survives unless ``forget_marker`` (an operator deleting it to
        start a new cluster after a total wipe)."""
        self.crash(node_id)
        sn = self.nodes[node_id]
        sn.lost_state = True
        if forget_marker:
            sn.had_state = False
        sn.wipes += 1
        sn.amnesiac = True
        sn.store = SimLogStore()
        sn.snapshots = MemorySnapshotter()
        self._last_hard.pop(node_id, None)
        self._commit_seen.pop(node_id, None)
        self.log(f"{node_id} lost its disk")

    def restart(self, node_id: NodeId) -> None:
        sn = self.nodes[node_id]
        if sn.alive:
            return
        sn.incarnation += 1
        self._boot(sn)
        if self.clock is not None:
            self.clock.restarted(node_id)
        hs = sn.store.hard_state()
        self.log(f"{node_id} restarted (term {hs.term}, commit {hs.commit}, applied {sn.applied_index})")
        self._process(sn)

    # -- inputs ------------------------------------------------------------------

    def tick(self, node_id: NodeId | None = None) -> None:
        """Advance logical time one tick on one node (or on every live node).
        With a clock model, one tick of real time passes instead, and every
        node ticks as its own clock says (``node_id`` is ignored)."""
        if self.clock is not None:
            self.time += 1
            self.clock.advance(self.clock.tick_interval)
            return
        targets = [node_id] if node_id is not None else self.ids
        self.time += 1 if node_id is None else 0
        for i in targets:
            self._tick_node(i)

    def _tick_node(self, node_id: NodeId) -> None:
        sn = self.nodes[node_id]
        if sn.raw is not None:
            sn.raw.tick()
            self._process(sn)

    def campaign(self, node_id: NodeId) -> None:
        sn = self.nodes[node_id]
        if sn.raw is not None:
            sn.raw.campaign()
            self._process(sn)

    def propose(self, node_id: NodeId, data: bytes) -> int | None:
        """Propose ``data`` (which must be unique) on a node; returns its index,
        or None when the node refused (not leader, transfer in progress...)."""
        sn = self.nodes[node_id]
        if sn.raw is None:
            return None
        try:
            index = sn.raw.propose(data)
        except ProposalDroppedError:
            return None
        self.proposals[data] = Proposal(data, node_id, index, sn.raw.raft.term)
        self.log(f"{node_id} accepted proposal {data.decode(errors='replace')} at {index}")
        self._process(sn)
        return index

    def read(self, node_id: NodeId, context: bytes) -> bool:
        """Start a linearizable read; False when the node refused it."""
        sn = self.nodes[node_id]
        if sn.raw is None:
            return False
        try:
            sn.raw.read_index(context)
        except ProposalDroppedError:
            return False
        acked = frozenset(d for d, p in self.proposals.items() if p.acked)
        self.reads[context] = PendingRead(node_id, context, acked)
        if self.clock is not None:
            self.clock.read_issued(node_id, context, sn.raw.raft.term)
        self._process(sn)
        return True

    def propose_conf_change(self, node_id: NodeId, conf: ConfState) -> int | None:
        """Propose a new membership on a node; returns the entry's index, or
        None when the node refused (not leader, a change already pending...)."""
        # An operator does not shrink the voters around nodes that lost their
        # state (the leader refuses when it knows; of a node that crashed
        # before saying so it cannot know): that would leave a majority without it.
        lost = {n for n, other in self.nodes.items() if other.lost_state}
        for voters in (conf.voters, conf.voters_outgoing):
            if voters and len(lost & voters) > (len(voters) - 1) // 2:
                return None
        sn = self.nodes[node_id]
        if sn.raw is None:
            return None
        try:
            index = sn.raw.propose_conf_change(conf)
        except ProposalDroppedError:
            return None
        self.log(f"{node_id} accepted conf change at {index}")
        self._process(sn)
        return index

    def transfer_leadership(self, node_id: NodeId, to: NodeId) -> None:
        sn = self.nodes[node_id]
        if sn.raw is not None:
            try:
                sn.raw.transfer_leadership(to)
            except ProposalDroppedError:
                return
            self._process(sn)

    def compact(self, node_id: NodeId, keep: int = 0) -> SnapshotMeta | None:
        """Snapshot the node's state machine and compact its log, keeping
        ``keep`` trailing entries before the snapshot index."""
        sn = self.nodes[node_id]
        if sn.raw is None:
            return None
        index = sn.applied_index
        if index <= sn.store.first_index() - 1 + keep or index > sn.store.last_index():
            return None
        meta = SnapshotMeta(index, sn.store.term(index), sn.raw.raft.conf)
        with sn.snapshots.create(meta) as sink:
            sink.write(self._state_bytes(sn))
            sink.commit()
        sn.snapshots.prune(2)
        sn.store.compact(index - keep)
        sn.raw.snapshot_created(meta)
        self.log(f"{node_id} snapshot at {meta.term}/{meta.index}, log compacted to {index - keep}")
        return meta

    def _state_bytes(self, sn: SimNode) -> bytes:
        rows = [(e.index, e.term, int(e.kind), e.data) for _, e in sorted(sn.applied.items())]
        data: bytes = msgpack.packb(rows, use_bin_type=True)
        if self.agreement is not None:
            data = pack(data, self.agreement.snapshot(sn.id))
        return data

    # -- the driver: what a real node runtime does with each Ready ----------------------

    def _process(self, sn: SimNode) -> None:
        raw = sn.raw
        assert raw is not None
        for _ in range(1000):  # bounded: each Ready strictly drains the core's outputs
            if not raw.has_ready():
                break
            rd = raw.ready()
            if self.send_ahead:  # a leader's appends leave while it writes (raftkit.runtime.log_writes)
                hs = sn.store.hard_state()
                for m in send_ahead(rd, raw.raft, (hs.term, hs.vote)):
                    self._send(sn, m)
            first = stored_committed(rd) if self.apply_first else []
            if first and rd.hard_state is not None:
                # A leader's commit in this Ready covers entries it held before (a lone
                # voter's covers even those the Ready writes, and so every earlier one,
                # from a former term too): applied before the write, they are judged
                # against its decision now, which the write would record only after.
                self._record_leader_commit(sn, rd.hard_state.term, first[-1].index)
            self._apply_entries(sn, first)  # stored and committed: applied while the node writes
            if sn.crash_at_write and (rd.entries or rd.hard_state is not None):
                self.log(f"{sn.id} crashes while writing")
                self.crash(sn.id)  # nothing of this Ready is written; what went ahead is out
                return
            self._persist(sn, rd)
            if sn.store.hard_state().term > 0 or sn.store.last_index() > 0:
                sn.had_state = True  # written before any message of this Ready leaves
            for m in rd.messages:
                self._send(sn, m)
            self._apply(sn, rd, len(first))
            raw.advance(rd)
            if sn.lost_state and not raw.raft.recovering:
                sn.lost_state = False  # readmitted (until then a restart recovers again, as on disk)
            if self.check_every_step:
                self.check_invariants()
                if self.clock is not None:
                    self.clock.check_leases()
        else:
            raise InvariantViolation(f"{sn.id} produced Ready values forever")

    def _persist(self, sn: SimNode, rd: Ready) -> None:
        if rd.snapshot is not None:
            snap = rd.snapshot
            data = sn.received_snapshots.pop(snap.index)
            sn.snapshots.install(snap, [data])
            sn.store.reset(snap.index, snap.term)
        sn.store.save(rd.hard_state, rd.entries)
        if rd.hard_state is not None:
            self._record_leader_commit(sn, rd.hard_state.term, rd.hard_state.commit)
        if rd.soft_state is not None:
            role, lead = rd.soft_state.role, rd.soft_state.leader
            term = rd.hard_state.term if rd.hard_state is not None else sn.store.hard_state().term
            if role is Role.FOLLOWER and lead is not None:
                self.log(f"{sn.id} follows {lead} in term {term}")
            else:
                self.log(f"{sn.id} is {role.value} in term {term}")
            if role is Role.LEADER:
                other = self.leaders_by_term.setdefault(term, sn.id)
                if other != sn.id:
                    raise InvariantViolation(f"election safety: {other} and {sn.id} both lead term {term}")

    def _apply(self, sn: SimNode, rd: Ready, skip: int) -> None:
        if rd.snapshot is not None:
            with sn.snapshots.open(rd.snapshot.index) as src:
                self._restore_state(sn, rd.snapshot, src.read())
            self.log(f"{sn.id} installed snapshot {rd.snapshot.term}/{rd.snapshot.index}")
            for e in sn.applied.values():
                self._record_committed(sn, e)
        self._apply_entries(sn, rd.committed_entries[skip:])
        for rs in rd.read_states:
            read = self.reads.get(rs.context)
            if read is not None:
                read.index = rs.index
            if self.clock is not None:
                self.clock.read_confirmed(sn.id, rs.context)
        self._serve_reads(sn)

    def _apply_entries(self, sn: SimNode, entries: list[Entry]) -> None:
        for e in entries:
            if e.index != sn.applied_index + 1:
                raise InvariantViolation(f"{sn.id} applied {e.index} after {sn.applied_index}: out of order")
            sn.applied[e.index] = e
            sn.applied_index = e.index
            self._record_committed(sn, e)
            if self.agreement is not None:
                self.agreement.apply(sn.id, e)
            p = self.proposals.get(e.data) if e.kind is EntryKind.NORMAL else None
            if p is not None and p.node == sn.id and p.index == e.index and p.term == e.term:
                p.acked = True
                if self.clock is not None:
                    self.clock.acked(p)

    def _serve_reads(self, sn: SimNode) -> None:
        for read in self.reads.values():
            if read.node != sn.id or read.served or read.index is None or sn.applied_index < read.index:
                continue
            read.served = True
            read.served_at = sn.applied_index
            applied = {e.data for e in sn.applied.values()}
            missing = read.must_see - applied
            if missing:
                raise InvariantViolation(f"stale read {read.context!r} on {sn.id}: misses {sorted(missing)}")
            self.log(f"{sn.id} served read {read.context.decode(errors='replace')} at index {read.index}")
            for listener in self.read_listeners:
                listener(read)

    def _add_conf(self, index: int, conf: ConfState) -> None:
        self.confs[index] = conf
        bisect.insort(self._conf_indexes, index)

    # -- membership -----------------------------------------------------------------

    def conf_at(self, index: int) -> ConfState:
        """The configuration in force once entries up to ``index`` are applied:
        the last committed config entry at or below it, else the bootstrap one."""
        pos = bisect.bisect_right(self._conf_indexes, index)
        return self.confs[self._conf_indexes[pos - 1]] if pos else self.bootstrap_conf

    def current_conf(self) -> ConfState:
        """The latest committed configuration (the bootstrap one until a change commits)."""
        return self.confs[self._conf_indexes[-1]] if self._conf_indexes else self.bootstrap_conf

    def members(self) -> frozenset[NodeId]:
        """Voters and learners of the latest committed configuration."""
        return self.current_conf().members

    def ever_members(self) -> frozenset[NodeId]:
        """Every node that belonged to some committed configuration."""
        return frozenset(self.bootstrap_conf.members.union(*(c.members for c in self.confs.values())))

    def change_membership(self, build: Callable[[ConfState], ConfState | None]) -> int | None:
        """Propose ``build(conf)`` on the current leader, where ``conf`` is the
        configuration it has applied. Returns the entry's index, or None when
        there is no leader, ``build`` returns None (nothing to change), or the
        leader refuses (a change still pending, a joint config being left...)."""
        lead = self.leader()
        if lead is None:
            return None
        raw = self.nodes[lead].raw
        assert raw is not None
        if raw.raft.conf.joint:
            return None
        new = build(raw.raft.conf)
        if new is None or new == raw.raft.conf:
            return None
        return self.propose_conf_change(lead, new)

    def add_learner(self, node_id: NodeId) -> int | None:
        """Start ``node_id`` empty (unless it already exists) and propose it as
        a learner; it catches up from the log, or by snapshot if compacted."""
        if node_id not in self.nodes:
            self.add_node(node_id)

        def build(conf: ConfState) -> ConfState | None:
            if node_id in conf.members:
                return None
            return dataclasses.replace(conf, learners=conf.learners | {node_id})

        return self.change_membership(build)

    def promote(self, node_id: NodeId) -> int | None:
        """Learner -> voter (a single-server change)."""

        def build(conf: ConfState) -> ConfState | None:
            if node_id not in conf.learners:
                return None
            voters, learners = conf.voters | {node_id}, conf.learners - {node_id}
            return dataclasses.replace(conf, voters=voters, learners=learners)

        return self.change_membership(build)

    def demote(self, node_id: NodeId) -> int | None:
        """Voter -> learner; refused for the last voter."""

        def build(conf: ConfState) -> ConfState | None:
            if node_id not in conf.voters or conf.voters == {node_id}:
                return None
            voters, learners = conf.voters - {node_id}, conf.learners | {node_id}
            return dataclasses.replace(conf, voters=voters, learners=learners)

        return self.change_membership(build)

    def remove_member(self, node_id: NodeId) -> int | None:
        """Remove a voter or a learner; refused for the last voter. The node
        keeps running: once it applies its removal it stops campaigning."""

        def build(conf: ConfState) -> ConfState | None:
            if node_id not in conf.members or conf.voters == {node_id}:
                return None
            voters, learners = conf.voters - {node_id}, conf.learners - {node_id}
            return dataclasses.replace(conf, voters=voters, learners=learners)

        return self.change_membership(build)

    def change_voters(self, voters: Iterable[NodeId]) -> int | None:
        """Make ``voters`` (current members) the voter set. Current voters
        left out are removed. One voter more or less is a simple change;
        anything else goes through a joint configuration, which the leader
        leaves by itself once it has applied it."""
        target = frozenset(voters)

        def build(conf: ConfState) -> ConfState | None:
            if not target or not target <= conf.members or target == conf.voters:
                return None
            learners = conf.learners - target
            if len(target ^ conf.voters) == 1:
                return dataclasses.replace(conf, voters=target, learners=learners)
            return dataclasses.replace(conf, voters=target, learners=learners, voters_outgoing=conf.voters)

        return self.change_membership(build)

    # -- scheduling ---------------------------------------------------------------

    def run(
        self,
        rounds: int,
        *,
        drop_rate: float = 0.0,
        duplicate_rate: float = 0.0,
        delay_rate: float = 0.0,
        max_delay: int = 5,
        reorder: bool = False,
    ) -> None:
        """``rounds`` times: tick every live node, then deliver what is in
        flight. Faults, drawn from the seeded RNG: drop a message, deliver it
        twice, hold it back up to ``max_delay`` rounds, shuffle the order."""
        for _ in range(rounds):
            self.tick()
            self._deliver_due(
                drop_rate=drop_rate,
                duplicate_rate=duplicate_rate,
                delay_rate=delay_rate,
                max_delay=max_delay,
                reorder=reorder,
            )

    def run_until(self, predicate: Callable[[], bool], max_rounds: int = 1000, **kw: float | bool) -> int:
        """Run rounds until ``predicate()``; returns the rounds used. Raises
        TimeoutError (with the trace tail) if it never holds."""
        for used in range(max_rounds + 1):
            if predicate():
                return used
            self.run(1, **kw)  # type: ignore[arg-type]
        tail = "\n".join(self.trace[-30:])
        raise TimeoutError(f"condition not reached in {max_rounds} rounds; last events:\n{tail}")

    def run_until_value(self, fn: Callable[[], T | None], max_rounds: int = 1000) -> T:
        """Run rounds until ``fn()`` returns something other than None."""
        self.run_until(lambda: fn() is not None, max_rounds)
        value = fn()
        assert value is not None
        return value

    def stabilize(self, max_rounds: int = 2000) -> None:
        """Heal, restart every crashed node and run until one leader has
        replicated everything to every node."""
        self.heal()
        for node_id in self.ids:
            self.nodes[node_id].crash_at_write = False  # no more faults: an armed crash is called off
            self.restart(node_id)
        self.run_until(self.converged, max_rounds)

    # -- observation ------------------------------------------------------------------

    def leader(self) -> NodeId | None:
        """The live leader with the highest term, if any."""
        leaders = [
            (sn.raw.raft.term, sn.id)
            for sn in self.nodes.values()
            if sn.raw is not None and sn.raw.raft.role is Role.LEADER
        ]
        return max(leaders)[1] if leaders else None

    def converged(self) -> bool:
        lead = self.leader()
        if lead is None:
            return False
        raw = self.nodes[lead].raw
        assert raw is not None
        if raw.raft.log.committed < raw.raft.log.last_index():
            return False
        if raw.raft.lead_transferee is not None:
            return False
        target = raw.raft.log.committed
        members = raw.raft.conf.members  # removed and never-added nodes do not count
        return all(
            sn.raw is not None
            and sn.applied_index == target
            and (sn.id == lead or (sn.raw.raft.role is Role.FOLLOWER and sn.raw.raft.lead == lead))
            for sn in self.nodes.values()
            if sn.id in members
        )

    # -- the user's state machine (raftkit.testing.sim_state) ------------------------------

    def state_machine(self, node_id: NodeId) -> StateMachine | None:
        """The node's instance of the user's state machine (None while it is down)."""
        if self.agreement is None:
            raise ValueError("this SimCluster runs no state machine (state_machine=...)")
        return self.agreement.instances.get(node_id)

    @property
    def results(self) -> dict[int, dict[NodeId, Outcome]]:
        """index -> node -> the outcome of its latest apply of the command there."""
        return self.agreement.results if self.agreement is not None else {}

    def result_at(self, index: int, node: NodeId | None = None) -> Outcome | None:
        """The outcome of the command at ``index`` (on ``node``, else the first seen)."""
        return self.agreement.result_at(index, node) if self.agreement is not None else None

    def log(self, event: str) -> None:
        line = f"t={self.time:<4} {event}"
        self.trace.append(line)
        for listener in self.listeners:
            listener(line)
