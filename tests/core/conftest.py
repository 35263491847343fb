"""Hand-driving harness for the sans-I/O core tests.

``Net`` owns a few ``RawNode`` objects, each over its own ``MemoryLogStore``,
and plays the driver for them: ``ready(id)`` takes a ``Ready``, persists it
(``store.reset`` for a snapshot, then ``store.save``), records the committed
entries as applied, queues the messages in ``pending`` and calls
``advance``. Nothing is delivered unless a test says so (``step``,
``deliver`` or ``stabilize``), so every message a test asserts on is one the
core really emitted.

Test modules in this directory have no package, so the harness is handed
out through fixtures (``make_net``, ``net``) rather than imported.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

import pytest

from raftkit.core.raft import RaftConfig
from raftkit.core.rawnode import RawNode
from raftkit.core.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    NodeId,
    ReadState,
    Ready,
    Role,
    SnapshotMeta,
)
from raftkit.storage.memory import MemoryLogStore

MT = MessageType


def log_entries(terms: Sequence[int], start: int = 1) -> list[Entry]:
    """Entries with the given terms at consecutive indexes from ``start``."""
    return [Entry(start + i, t, EntryKind.NORMAL, f"e{start + i}".encode()) for i, t in enumerate(terms)]


def store_with(terms: Sequence[int] = (), *, term: int = 0, vote: NodeId | None = None, commit: int = 0):
    """A MemoryLogStore already holding a log (terms of entries 1..n) and a hard state."""
    store = MemoryLogStore()
    hard = HardState(term=max(term, *terms) if terms else term, vote=vote, commit=commit)
    store.save(hard, log_entries(terms))
    return store


def of(msgs: Iterable[Message], type: MessageType | None = None, *, src=None, dst=None) -> list[Message]:
    """The messages of ``msgs`` matching every given criterion, in order."""
    return [
        m
        for m in msgs
        if (type is None or m.type is type)
        and (src is None or m.src == src)
        and (dst is None or m.dst == dst)
    ]


class Net:
    """A few RawNodes and a driver that does exactly what a test tells it."""

    of = staticmethod(of)
    log_entries = staticmethod(log_entries)
    store_with = staticmethod(store_with)

    def __init__(
        self,
        ids: Sequence[NodeId] = ("a", "b", "c"),
        *,
        conf: ConfState | None = None,
        stores: dict[NodeId, MemoryLogStore] | None = None,
        **cfg: object,
    ) -> None:
        self.ids = list(ids)
        self.cfg = dict(cfg)
        self.nodes: dict[NodeId, RawNode] = {}
        self.stores: dict[NodeId, MemoryLogStore] = {}
        self.applied: dict[NodeId, list[Entry]] = {}
        self.snapshots: dict[NodeId, list[SnapshotMeta]] = {}
        self.read_states: dict[NodeId, list[ReadState]] = {}
        self.pending: list[Message] = []  # emitted by a Ready, not delivered yet
        self.delivered: list[Message] = []
        self.dropped: list[Message] = []
        self.isolated: set[NodeId] = set()
        for seed, node_id in enumerate(self.ids):
            store = stores[node_id] if stores and node_id in stores else MemoryLogStore()
            self.start(node_id, store, conf=conf, seed=seed)

    # -- building -------------------------------------------------------------

    def start(
        self,
        node_id: NodeId,
        store: MemoryLogStore,
        *,
        conf: ConfState | None = None,
        snapshot: SnapshotMeta | None = None,
        seed: int = 0,
        **cfg: object,
    ) -> RawNode:
        # Nodes built over a store with a history are not restarts inside a
        # lease here: they vote at once unless a test asks for the guard.
        options = {"election_tick": 10, "heartbeat_tick": 1, "restart_guard": False, **self.cfg, **cfg}
        config = RaftConfig(id=node_id, **options)  # type: ignore[arg-type]
        peers = None if conf is not None or snapshot is not None else self.ids
        node = RawNode(config, store, peers=peers, conf=conf, snapshot=snapshot, rng=random.Random(seed))
        self.nodes[node_id] = node
        self.stores[node_id] = store
        self.applied.setdefault(node_id, [])
        self.snapshots.setdefault(node_id, [])
        self.read_states.setdefault(node_id, [])
        return node

    def __getitem__(self, node_id: NodeId) -> RawNode:
        return self.nodes[node_id]

    # -- the driver -------------------------------------------------------------

    def ready(self, node_id: NodeId) -> Ready:
        """Take one Ready from ``node_id`` and do what it asks (persist, queue
        the messages, apply), then advance. Returns the Ready for inspection."""
        node, store = self.nodes[node_id], self.stores[node_id]
        rd = node.ready()
        if rd.snapshot is not None:
            store.reset(rd.snapshot.index, rd.snapshot.term)
            self.snapshots[node_id].append(rd.snapshot)
        store.save(rd.hard_state, rd.entries)
        self.pending.extend(rd.messages)
        self.applied[node_id].extend(rd.committed_entries)
        self.read_states[node_id].extend(rd.read_states)
        node.advance(rd)
        return rd

    def step(self, msg: Message) -> None:
        if msg.dst in self.nodes:  # messages to nodes outside the net are lost
            self.nodes[msg.dst].step(msg)

    def tick(self, node_id: NodeId, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[node_id].tick()

    def flush(self) -> None:
        """Take a Ready from every node that has one."""
        for node_id in self.ids:
            if self.nodes[node_id].has_ready():
                self.ready(node_id)

    def deliver(self, keep: Callable[[Message], bool] | None = None) -> list[Message]:
        """Flush every node, then deliver the queued messages once (those
        ``keep`` refuses, or that touch an isolated node, are dropped)."""
        self.flush()
        batch, self.pending = self.pending, []
        out = []
        for m in batch:
            if m.src in self.isolated or m.dst in self.isolated or (keep is not None and not keep(m)):
                self.dropped.append(m)
                continue
            self.delivered.append(m)
            out.append(m)
            self.step(m)
        return out

    def stabilize(
        self, keep: Callable[[Message], bool] | None = None, max_rounds: int = 100
    ) -> list[Message]:
        """Deliver until no node has anything left to say; returns what was delivered."""
        out: list[Message] = []
        for _ in range(max_rounds):
            self.flush()
            if not self.pending:
                return out
            out.extend(self.deliver(keep))
        raise AssertionError("the cluster did not go quiet")

    # -- elections --------------------------------------------------------------

    def elect(self, node_id: NodeId) -> None:
        """Have ``node_id`` campaign and deliver everything until quiet. The
        new leader has not ticked yet (its check-quorum window starts now)."""
        self.nodes[node_id].campaign()
        self.stabilize()
        assert self.role(node_id) is Role.LEADER, f"{node_id} did not win: {self.nodes[node_id].status()}"

    def grant_election(self, node_id: NodeId, voters: Iterable[NodeId]) -> None:
        """Make ``node_id`` campaign and answer its (pre-)vote requests with
        grants forged from ``voters`` (the other nodes never see them)."""
        node = self.nodes[node_id]
        node.campaign()
        for _ in range(2):  # pre-vote round (if enabled), then the vote round
            rd = self.ready(node_id)
            requests = [m for m in rd.messages if m.type in (MT.PRE_VOTE, MT.VOTE)]
            self.pending = [m for m in self.pending if m not in requests]
            for m in requests:
                if m.dst in voters:
                    resp = MT.PRE_VOTE_RESP if m.type is MT.PRE_VOTE else MT.VOTE_RESP
                    node.step(Message(type=resp, src=m.dst, dst=node_id, term=m.term))
            if self.role(node_id) is Role.LEADER:
                return
        raise AssertionError(f"{node_id} did not win: {node.status()}")

    # -- observations -------------------------------------------------------------

    def role(self, node_id: NodeId) -> Role:
        return self.nodes[node_id].soft_state.role

    def term(self, node_id: NodeId) -> int:
        return self.nodes[node_id].hard_state.term

    def commit(self, node_id: NodeId) -> int:
        return self.nodes[node_id].hard_state.commit

    def log_terms(self, node_id: NodeId) -> list[int]:
        """Terms of the entries ``node_id`` has persisted, first to last."""
        store = self.stores[node_id]
        return [e.term for e in store.entries(store.first_index(), store.last_index() + 1)]

    def peer(self, leader: NodeId, node_id: NodeId):
        return self.nodes[leader].status().peers[node_id]


@pytest.fixture
def make_net() -> type[Net]:
    """The ``Net`` class: ``make_net(ids, conf=..., stores=..., **RaftConfig options)``."""
    return Net


@pytest.fixture
def net() -> Net:
    """Three voters a, b, c with election_tick=10, heartbeat_tick=1, nothing happened yet."""
    return Net()
