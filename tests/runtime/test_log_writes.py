"""LogWrites: only what Raft needs on disk costs a write. A Ready whose only
news is the commit index writes nothing until the next write that must be
durable (which carries it) or until the node stops."""

from __future__ import annotations

import contextlib
import errno
import random
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from raftkit import NodeBuilder
from raftkit.core.types import ConfState, Entry, HardState, Message, MessageType, Ready, Role, SnapshotMeta
from raftkit.runtime.log_writes import LogWrites
from raftkit.storage.memory import MemoryLogStore
from raftkit.testing.cluster import LocalCluster, fast_config, wait_until
from raftkit.testing.kv import KeyValueStateMachine, set_command
from raftkit.transports.memory import MemoryTransport


class CountingStore(MemoryLogStore):
    def __init__(self) -> None:
        super().__init__()
        self.saves: list[tuple[HardState | None, int]] = []

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        self.saves.append((hard_state, len(entries)))
        super().save(hard_state, entries)


def test_a_commit_index_alone_waits_for_the_next_durable_write() -> None:
    store = CountingStore()
    writes = LogWrites(store)
    writes.save(HardState(term=1, vote="a", commit=0), [Entry(1, 1)])
    writes.save(HardState(term=1, vote="a", commit=1), [])  # only the commit moved
    assert store.saves == [(HardState(1, "a", 0), 1)] and writes.unsaved == HardState(1, "a", 1)
    writes.save(None, [Entry(2, 1)])  # entries: the waiting commit index goes with them
    assert store.saves[-1] == (HardState(1, "a", 1), 1) and writes.unsaved is None
    assert store.hard_state() == HardState(1, "a", 1)


def test_a_new_term_or_vote_is_written_at_once() -> None:
    store = CountingStore()
    writes = LogWrites(store)
    writes.save(HardState(term=2, vote=None, commit=0), [])
    writes.save(HardState(term=2, vote="b", commit=0), [])
    assert [hs for hs, _ in store.saves] == [HardState(2, None, 0), HardState(2, "b", 0)]


def test_flush_writes_what_waits_once() -> None:
    store = CountingStore()
    writes = LogWrites(store)
    writes.save(HardState(term=0, vote=None, commit=3), [])
    assert store.saves == []
    writes.flush()
    writes.flush()
    assert store.saves == [(HardState(0, None, 3), 0)]


def test_a_failed_write_keeps_the_waiting_commit_index() -> None:
    class Failing(CountingStore):
        def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
            raise OSError("disk full")

    writes = LogWrites(Failing())
    writes.save(HardState(term=0, commit=2), [])
    with pytest.raises(OSError, match="disk full"):
        writes.save(None, [Entry(1, 1)])
    assert writes.unsaved == HardState(term=0, commit=2)


# -- what a leader sends while it writes (LogWrites.send_ahead) ---------------------------------


def core(role: Role, committed: int) -> Any:
    """What send_ahead reads of the core: its role and commit index."""
    return SimpleNamespace(role=role, log=SimpleNamespace(committed=committed))


def leader_ready(hard_state: HardState | None = None) -> Ready:
    """A leader's Ready: entry 5 to write, an append of it to b and c, a heartbeat and a read reply."""
    entry = Entry(5, 2, data=b"x")
    return Ready(
        hard_state=hard_state,
        entries=[entry],
        messages=[
            Message(MessageType.APPEND, "a", "b", term=2, index=4, log_term=2, entries=(entry,), commit=4),
            Message(MessageType.HEARTBEAT, "a", "d", term=2, commit=4),
            Message(MessageType.APPEND, "a", "c", term=2, index=4, log_term=2, entries=(entry,), commit=4),
            Message(MessageType.READ_INDEX_RESP, "a", "b", term=2, index=4),
        ],
    )


def durable_writes(term: int = 2, vote: str = "a") -> LogWrites:
    store = CountingStore()
    store.save(HardState(term=term, vote=vote, commit=0), [])
    return LogWrites(store)


def test_a_leaders_appends_go_ahead_of_its_write_and_nothing_else_does() -> None:
    rd = leader_ready(HardState(term=2, vote="a", commit=4))  # only the commit index moved
    ahead = durable_writes().send_ahead(rd, core(Role.LEADER, committed=4))
    assert [(m.type, m.dst) for m in ahead] == [(MessageType.APPEND, "b"), (MessageType.APPEND, "c")]
    assert [m.type for m in rd.messages] == [MessageType.HEARTBEAT, MessageType.READ_INDEX_RESP]


@pytest.mark.parametrize(
    "case, rd, role, committed",
    [
        ("a follower's acknowledgements wait for its write", leader_ready(), Role.FOLLOWER, 4),
        ("a candidate's requests wait for its term and vote", leader_ready(), Role.CANDIDATE, 4),
        ("a commit index that covers the entries (a lone voter)", leader_ready(), Role.LEADER, 5),
        ("a new term in the write", leader_ready(HardState(term=3, vote="a", commit=4)), Role.LEADER, 4),
        ("a new vote in the write", leader_ready(HardState(term=2, vote="b", commit=4)), Role.LEADER, 4),
        ("no entries to write alongside", Ready(messages=leader_ready().messages), Role.LEADER, 4),
        ("a snapshot to install first",
         Ready(entries=leader_ready().entries, messages=leader_ready().messages,
               snapshot=SnapshotMeta(index=3, term=2, conf=ConfState(voters=frozenset("abc")))),
         Role.LEADER, 4),
    ],
)
def test_nothing_goes_ahead_when(case: str, rd: Ready, role: Role, committed: int) -> None:
    before = list(rd.messages)
    assert durable_writes().send_ahead(rd, core(role, committed)) == [], case
    assert rd.messages == before, case


class RecordingStore(MemoryLogStore):
    """Notes each write once it returned, in the cluster-wide ``events``."""

    def __init__(self, node_id: str, events: list[tuple[str, ...]]) -> None:
        super().__init__()
        self.node_id, self.events = node_id, events

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        super().save(hard_state, entries)
        for e in entries:
            self.events.append(("written", self.node_id, str(e.index)))


class RecordingTransport(MemoryTransport):
    def __init__(self, network: Any, node_id: str, events: list[tuple[str, ...]]) -> None:
        super().__init__(network)
        self.who, self.events = node_id, events

    def send(self, messages: Sequence[Message]) -> None:
        for m in messages:
            if m.type is MessageType.APPEND:
                for e in m.entries:
                    self.events.append(("sent entry", self.who, str(e.index)))
                self.events.append(("sent commit", self.who, str(m.commit)))
            elif m.type is MessageType.APPEND_RESP and not m.reject:
                self.events.append(("acknowledged", self.who, str(m.index)))
        super().send(messages)


def test_in_a_cluster_only_the_leaders_appends_leave_before_its_write() -> None:
    """Outside view of three nodes: the leader sends each new entry before its
    own write of it returns; no follower acknowledges an entry it has not
    written; and no commit index leaves the leader before it wrote what it covers."""
    events: list[tuple[str, ...]] = []
    with LocalCluster(3) as cluster:
        for a in cluster.addresses:
            node = (
                NodeBuilder(a).partners(cluster.partners(a)).config(fast_config())
                .transport(RecordingTransport(cluster.network, a, events))
                .log_store(RecordingStore(a, events)).state_machine(KeyValueStateMachine()).build()
            )
            cluster.nodes[a] = node
            node.start()
        leader = cluster.wait_leader()
        for i in range(20):
            cluster.nodes[leader].propose(set_command(f"k{i}", i))
        wait_until(lambda: all(n.status()["applied_index"] >= 21 for n in cluster.nodes.values()),
                   what="every node applied the writes")
        snapshot = list(events)

    def first(kind: str, node: str, index: int) -> int:
        return next(i for i, e in enumerate(snapshot) if e == (kind, node, str(index)))

    proposed = range(2, 22)  # 1 is the leader's own first entry
    ahead = [i for i in proposed if first("sent entry", leader, i) < first("written", leader, i)]
    assert ahead == list(proposed)  # each one left while the leader wrote it
    for kind, node, index in snapshot:
        n = int(index)
        if kind == "acknowledged" and n in proposed:  # a follower acknowledges only what it wrote
            assert first("acknowledged", node, n) > first("written", node, n), (node, n)
        if kind == "sent commit" and node == leader and n in proposed:  # it covers only written entries
            assert first("sent commit", leader, n) > first("written", leader, n), n


# -- what a node applies before a write that waits for the disk (LogWrites.apply_first) ---------


def ready_with(committed: range, entries: range, snapshot: SnapshotMeta | None = None) -> Ready:
    return Ready(committed_entries=[Entry(i, 1) for i in committed], entries=[Entry(i, 1) for i in entries],
                 snapshot=snapshot)


class DiskStore(CountingStore):
    """A store whose writes, it says, wait for the disk (as LmdbLogStore's with fsync)."""

    @property
    def writes_wait_for_disk(self) -> bool:
        return True


@pytest.mark.parametrize(
    "case, rd, first",
    [
        ("all committed entries are stored", ready_with(range(3, 6), range(6, 8)), [3, 4, 5]),
        ("the entries this Ready writes wait for it", ready_with(range(3, 8), range(6, 9)), [3, 4, 5]),
        ("a replaced suffix waits for its write too", ready_with(range(3, 6), range(4, 7)), [3]),
        ("nothing to write: no reason to go first", ready_with(range(3, 6), range(0)), []),
        ("nothing committed", ready_with(range(0), range(6, 8)), []),
        ("a snapshot is restored first",
         ready_with(range(3, 6), range(6, 8), SnapshotMeta(2, 1, ConfState(voters=frozenset("a")))), []),
    ],
)
def test_committed_entries_the_store_holds_are_applied_before_a_slow_write(
    case: str, rd: Ready, first: list[int]
) -> None:
    assert [e.index for e in LogWrites(DiskStore()).apply_first(rd)] == first, case
    assert LogWrites(CountingStore()).apply_first(rd) == [], case  # a store in memory: nothing goes first


class RecordingMachine(KeyValueStateMachine):
    def __init__(self, node_id: str, events: list[tuple[str, ...]]) -> None:
        super().__init__()
        self.node_id, self.events = node_id, events

    def apply_entry(self, index: int, command: bytes) -> Any:
        self.events.append(("applied", self.node_id, str(index)))
        return super().apply_entry(index, command)


class RecordingDiskStore(RecordingStore):
    """Notes when each write starts too, and says it waits for the disk."""

    @property
    def writes_wait_for_disk(self) -> bool:
        return True

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        for e in entries:
            self.events.append(("writing", self.node_id, str(e.index)))
        super().save(hard_state, entries)


class ReceivingTransport(RecordingTransport):
    """Also notes each append as it arrives (its commit index and first
    entry); while ``lossy``, loses appends that carry no entries: a follower
    then learns the commit index of what it wrote with the next entries."""

    lossy = True

    def send(self, messages: Sequence[Message]) -> None:
        super().send([m for m in messages if m.type is not MessageType.APPEND or m.entries or not self.lossy])

    def _receive(self, frame: Any) -> None:
        for m in frame.messages:
            if m.type is MessageType.APPEND and m.entries:
                self.events.append(("received", self.who, str(m.commit), str(m.entries[0].index)))
        super()._receive(frame)


def test_in_a_cluster_what_a_follower_holds_is_applied_before_its_next_write() -> None:
    """Outside view of three nodes whose writes wait for the disk: no node
    applies an entry before its own write of it returned; and when an
    append brings a follower both new entries and the commit index of
    entries it had written, it applies those before it starts writing."""
    events: list[tuple[str, ...]] = []
    with LocalCluster(3) as cluster:
        transports = [ReceivingTransport(cluster.network, a, events) for a in cluster.addresses]
        for a, transport in zip(cluster.addresses, transports, strict=True):
            node = (
                NodeBuilder(a).partners(cluster.partners(a)).config(fast_config())
                .transport(transport)
                .log_store(RecordingDiskStore(a, events)).state_machine(RecordingMachine(a, events)).build()
            )
            cluster.nodes[a] = node
            node.start()
        leader = cluster.wait_leader()
        for i in range(20):  # one at a time: each append brings the commit index of the one before
            cluster.nodes[leader].propose(set_command(f"k{i}", i))
        for transport in transports:
            transport.lossy = False  # a follower probed after the partition gets empty appends
        behind = next(a for a in cluster.addresses if a != leader)
        cluster.network.isolate(behind)  # it catches up later on entries committed without it
        for i in range(20, 30):
            cluster.nodes[leader].propose(set_command(f"k{i}", i))
        cluster.network.heal()
        wait_until(lambda: all(n.status()["applied_index"] >= 31 for n in cluster.nodes.values()),
                   what="every node applied the writes")
        snapshot = list(events)

    def at(kind: str, node: str, index: int) -> int:
        return next((i for i, e in enumerate(snapshot) if e == (kind, node, str(index))), len(snapshot))

    applied = [(pos, e[1], int(e[2])) for pos, e in enumerate(snapshot) if e[0] == "applied"]
    held = {node: {index for _, n, index in applied if n == node} for node in (leader, behind)}
    assert len(held[leader]) >= 30 and held[behind] == held[leader]  # it caught up on all of them
    for pos, node, index in applied:  # never ahead of its own write
        assert at("written", node, index) < pos, (node, index)
    commands = {index for _, _, index in applied}  # the leader's no-op applies nothing
    went_first = 0
    for pos, e in enumerate(snapshot):
        if e[0] != "received" or e[1] == leader:
            continue
        node, commit, new = e[1], int(e[2]), int(e[3])
        for i in range(1, min(commit + 1, new)):
            if i in commands and at("written", node, i) < pos < at("applied", node, i):  # stored, committed
                assert at("applied", node, i) < at("writing", node, new), (node, i, new)
                went_first += 1
    assert went_first > 0  # the case this is about happened


class FlakyDiskStore(MemoryLogStore):
    """Says its writes wait for the disk; fails a share of the writes that carry entries."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng, self.fail_rate, self.failures = random.Random(seed), 0.0, 0

    @property
    def writes_wait_for_disk(self) -> bool:
        return True

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        if entries and self.rng.random() < self.fail_rate:
            self.failures += 1
            raise OSError(errno.EIO, "injected write failure")
        super().save(hard_state, entries)


class StoreCheckingMachine(KeyValueStateMachine):
    """Notes each entry it applies, and any its node's store did not hold yet."""

    def __init__(self, store: FlakyDiskStore) -> None:
        super().__init__()
        self.store, self.order, self.not_stored = store, [], []

    def apply_entry(self, index: int, command: bytes) -> Any:
        self.order.append(index)
        if index > self.store.last_index():
            self.not_stored.append(index)
        return super().apply_entry(index, command)


def test_writes_that_fail_and_are_retried_apply_every_entry_once_in_order() -> None:
    """A failed write is retried and its Ready completed whole (what was
    applied first included): every node applies each entry once, in order,
    never before its store holds it, and keeps every acknowledged write."""
    with LocalCluster(3) as cluster:
        stores = {a: FlakyDiskStore(i) for i, a in enumerate(cluster.addresses)}
        machines = {a: StoreCheckingMachine(stores[a]) for a in cluster.addresses}
        for a in cluster.addresses:
            node = (
                NodeBuilder(a).partners(cluster.partners(a)).config(fast_config(storage_retry_interval=0.02))
                .transport(cluster.transport()).log_store(stores[a]).state_machine(machines[a]).build()
            )
            cluster.nodes[a] = node
            node.start()
        leader = cluster.wait_leader()
        for store in stores.values():
            store.fail_rate = 0.3
        acknowledged: dict[str, int] = {}
        for wave in range(20):  # bounded: each wave waits for its outcomes
            calls = {}
            for i in range(10):
                key = f"k{wave}-{i}"
                with contextlib.suppress(Exception):  # refused while the leader's write fails
                    calls[key] = cluster.nodes[leader].submit(set_command(key, wave), timeout=2)
            for key, future in calls.items():
                with contextlib.suppress(Exception):
                    future.result(timeout=10)
                    acknowledged[key] = wave
        for store in stores.values():
            store.fail_rate = 0.0
        assert acknowledged and sum(s.failures for s in stores.values()) > 0
        wait_until(lambda: len({n.status()["applied_index"] for n in cluster.nodes.values()}) == 1
                   and all(m.data.items() >= acknowledged.items() for m in machines.values()),
                   what="every node applied every acknowledged write", timeout=20)
        for a, m in machines.items():
            assert m.not_stored == [], a
            assert m.order == sorted(m.order), a  # in order (a batch applies its commands under one index)
            assert len(set(m.order)) == len(set(machines[leader].order)), a
