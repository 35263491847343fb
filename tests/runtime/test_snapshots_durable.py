"""On-disk mode: a restarted node resumes from its newest good snapshot and
its log; a durable state machine is neither restored from an older
snapshot nor replayed; damaged or missing data is refused with a clear
message instead of starting empty; a full disk freezes a node (a leader
steps down) until the write succeeds."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from raftkit import BuildError, NodeBuilder, SyncObj, SyncObjConf, replicated
from raftkit.core.types import Entry, HardState, Message
from raftkit.errors import SnapshotError
from raftkit.runtime.node import Node
from raftkit.runtime.snapshots import RecoveryError, StorageUnavailableError
from raftkit.storage.log_store import LogStore
from raftkit.storage.memory import MemoryLogStore
from raftkit.testing.cluster import LocalCluster, fast_conf, fast_config, wait_until
from raftkit.testing.kv import FileKeyValueStateMachine, KeyValueStateMachine, set_command
from raftkit.transports.memory import MemoryNetwork, MemoryTransport


def builder(sm: Any, data_dir: Path, **config: Any) -> NodeBuilder:
    return (
        NodeBuilder("solo")
        .partners([])
        .transport(MemoryTransport(MemoryNetwork(auto_deliver=True)))
        .config(fast_config(data_dir=str(data_dir), **config))
        .state_machine(sm)
    )


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


def run(nodes: list[Node], b: NodeBuilder) -> Node:
    node = b.build()
    nodes.append(node)
    node.start()
    assert node.wait_ready(5)
    return node


def fill(node: Node, count: int, prefix: str = "k") -> None:
    for i in range(count):
        node.propose(set_command(f"{prefix}{i}", i))


def snapshot_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "snapshots").glob("snap-*.snap"))


def corrupt(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # in the payload: only the streaming checksum notices
    path.write_bytes(bytes(raw))


def test_a_restarted_node_resumes_from_its_newest_snapshot_plus_the_log_tail(
    nodes: list[Node], tmp_path: Path
) -> None:
    first = KeyValueStateMachine()
    node = run(nodes, builder(first, tmp_path, log_compaction_min_entries=100, log_compaction_keep=10))
    fill(node, 250)
    wait_until(lambda: node.status()["snapshot"]["taken"] >= 2, what="snapshots")
    term, applied = node.status()["term"], node.status()["applied_index"]
    node.stop()

    again = KeyValueStateMachine()
    node = run(nodes, builder(again, tmp_path, log_compaction_min_entries=100, log_compaction_keep=10))
    rec = node.status()["recovery"]
    snap = max(int(p.name[5:25]) for p in snapshot_files(tmp_path))
    assert rec["snapshot_index"] == snap and rec["restored"]
    assert rec["log_first_index"] <= snap + 1 and rec["log_last_index"] == applied
    assert rec["replay"] == applied - snap  # the tail after the snapshot comes from the log
    assert again.data == first.data and len(again.data) == 250
    assert node.status()["term"] > term  # term and vote survived: a new election, a newer term


def test_a_durable_state_machine_is_neither_restored_from_an_older_snapshot_nor_replayed(
    nodes: list[Node], tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    sm = FileKeyValueStateMachine(state)
    node = run(nodes, builder(sm, tmp_path / "data", log_compaction_min_entries=10**6))
    fill(node, 40)
    snap = node.request_log_compaction().result(10)
    assert snap is not None
    fill(node, 30, prefix="after")
    held = node.state_machine.applied_index
    node.stop()

    sm = FileKeyValueStateMachine(state)
    node = run(nodes, builder(sm, tmp_path / "data", log_compaction_min_entries=10**6))
    rec = node.status()["recovery"]
    assert rec["snapshot_index"] == snap.index and not rec["restored"] and rec["applied"] >= held
    assert sm.restores == 0
    node.propose(set_command("new", 1))
    assert sm.applied and min(sm.applied) > held  # nothing it held was applied again
    assert len(sm.data) == 71


def test_a_state_machine_whose_disk_fills_holds_entries_back_and_applies_them_once_later(
    nodes: list[Node], tmp_path: Path
) -> None:
    sm = FileKeyValueStateMachine(tmp_path / "state.json")
    node = run(nodes, builder(sm, tmp_path / "data", storage_retry_interval=0.05))
    node.propose(set_command("a", 1))
    sm.disk_full = True
    pending = node.submit(set_command("b", 2))
    error = wait_until(lambda: node.status()["storage_error"], what="the failure to show")
    assert "cannot apply to the state machine: OSError" in error and not pending.done()
    assert node.status()["commit_index"] > node.status()["applied_index"]  # committed, held back
    sm.disk_full = False
    assert pending.result(5) is None
    wait_until(lambda: node.status()["storage_error"] is None, what="the error to clear")
    assert sm.data == {"a": 1, "b": 2} and len(sm.applied) == len(set(sm.applied)) == 2


def test_a_corrupted_newest_snapshot_falls_back_to_an_older_one_when_the_log_reaches_it(
    nodes: list[Node], tmp_path: Path
) -> None:
    node = run(nodes, builder(KeyValueStateMachine(), tmp_path, log_compaction_min_entries=50,
                              log_compaction_keep=500))
    fill(node, 160)
    wait_until(lambda: len(snapshot_files(tmp_path)) >= 2, what="two snapshot files")
    node.stop()
    files = snapshot_files(tmp_path)
    corrupt(files[-1])

    sm = KeyValueStateMachine()
    node = run(nodes, builder(sm, tmp_path, log_compaction_min_entries=50, log_compaction_keep=500))
    rec = node.status()["recovery"]
    assert rec["snapshot_index"] == int(files[-2].name[5:25]) and len(rec["skipped_snapshots"]) == 1
    assert "checksum" in rec["skipped_snapshots"][0]
    assert len(sm.data) == 160  # older snapshot + the log after it
    assert (tmp_path / "snapshots" / (files[-1].name + ".corrupt")).exists()  # kept for inspection


@pytest.mark.parametrize("damage", ["corrupt", "delete"])
def test_a_compacted_log_without_a_usable_snapshot_refuses_to_start(tmp_path: Path, damage: str) -> None:
    node = builder(KeyValueStateMachine(), tmp_path, log_compaction_min_entries=50,
                   log_compaction_keep=5).build()
    node.start()
    try:
        assert node.wait_ready(5)
        fill(node, 120)
        wait_until(lambda: node.status()["log_first_index"] > 50, what="compaction")
    finally:
        node.stop()
    for path in snapshot_files(tmp_path):
        corrupt(path) if damage == "corrupt" else path.unlink()
    with pytest.raises(RecoveryError, match="cannot start: the log starts at index") as info:
        builder(KeyValueStateMachine(), tmp_path).build()
    assert "rejoin as a new member" in str(info.value)
    # The refused build released its directories: a fixed one opens at once.
    with pytest.raises(RecoveryError):
        builder(KeyValueStateMachine(), tmp_path).build()


def test_snapshots_without_their_log_refuse_to_start(nodes: list[Node], tmp_path: Path) -> None:
    node = run(nodes, builder(KeyValueStateMachine(), tmp_path, log_compaction_min_entries=20))
    fill(node, 30)
    wait_until(lambda: snapshot_files(tmp_path), what="a snapshot")
    node.stop()
    for path in (tmp_path / "log").iterdir():
        path.unlink()
    (tmp_path / "log").rmdir()
    for _ in range(2):  # the refusal creates nothing: a second attempt is refused too
        with pytest.raises(BuildError, match="holds snapshots but the log store .* is missing"):
            builder(KeyValueStateMachine(), tmp_path).build()


def test_another_clusters_data_directory_is_refused(nodes: list[Node], tmp_path: Path) -> None:
    node = run(nodes, builder(KeyValueStateMachine(), tmp_path, cluster_id="blue",
                              log_compaction_min_entries=5))
    fill(node, 10)
    wait_until(lambda: snapshot_files(tmp_path), what="a snapshot")
    node.stop()
    with pytest.raises(SnapshotError, match="belongs to cluster 'blue', not 'green'"):
        builder(KeyValueStateMachine(), tmp_path, cluster_id="green").build()


class Notes(SyncObj):
    def __init__(self, conf: SyncObjConf) -> None:
        super().__init__("notes", [], conf, transport=MemoryTransport(MemoryNetwork()))
        self.notes: list[str] = []

    @replicated
    def add(self, note: str) -> int:
        self.notes.append(note)
        return len(self.notes)


def test_a_syncobj_with_a_journal_file_resumes_after_a_restart(tmp_path: Path) -> None:
    journal = tmp_path / "journal"  # PySyncObj's journalFile: a directory for raftkit
    conf = fast_conf(journalFile=str(journal), logCompactionMinEntries=20)
    obj = Notes(conf)
    try:
        for i in range(50):
            obj.add(f"n{i}", sync=True)
        wait_until(lambda: obj.status()["snapshot"]["taken"] >= 1, what="a snapshot")
    finally:
        obj.destroy()
    assert (journal / "log" / "data.mdb").exists() and snapshot_files(journal)
    obj = Notes(conf)
    try:
        assert obj.notes == [f"n{i}" for i in range(50)]
        assert obj.add("again", sync=True) == 51
    finally:
        obj.destroy()


# -- a full disk -------------------------------------------------------------------------------


class FlakyStore(LogStore):
    """A MemoryLogStore whose writes fail with ENOSPC while ``full``."""

    def __init__(self) -> None:
        self.inner = MemoryLogStore()
        self.full = False
        self.refused = 0

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        if self.full:
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.inner.save(hard_state, entries)

    def first_index(self) -> int:
        return self.inner.first_index()

    def last_index(self) -> int:
        return self.inner.last_index()

    def term(self, index: int) -> int:
        return self.inner.term(index)

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        return self.inner.entries(lo, hi, max_bytes)

    def hard_state(self) -> HardState:
        return self.inner.hard_state()

    def compact(self, index: int) -> None:
        self.inner.compact(index)

    def reset(self, index: int, term: int) -> None:
        self.inner.reset(index, term)


class CountingTransport(MemoryTransport):
    sent = 0

    def send(self, messages: Sequence[Message]) -> None:
        self.sent += len(messages)
        super().send(messages)


def test_a_leader_whose_disk_fills_steps_down_sends_nothing_and_recovers_when_space_returns() -> None:
    config = fast_config(storage_retry_interval=0.05)
    with LocalCluster(3) as cluster:
        stores = {a: FlakyStore() for a in cluster.addresses}
        links = {a: CountingTransport(cluster.network) for a in cluster.addresses}
        for a in cluster.addresses:
            node = (
                NodeBuilder(a).partners(cluster.partners(a)).transport(links[a]).config(config)
                .log_store(stores[a]).state_machine(KeyValueStateMachine()).build()
            )
            cluster.nodes[a] = node
            node.start()
        old = cluster.wait_leader()
        cluster.nodes[old].propose(set_command("before", 1))

        stores[old].full = True
        stuck = cluster.nodes[old].submit(set_command("during", 1))  # appended, never persisted
        status = wait_until(lambda: (s := cluster.nodes[old].status())["storage_error"] and s, what="freeze")
        assert "No space left on device" in status["error"]
        assert status["role"] == "follower" and status["leader"] is None and not cluster.nodes[old].is_leader
        baseline = links[old].sent
        others = [a for a in cluster.addresses if a != old]
        new = wait_until(
            lambda: (lead := cluster.nodes[others[0]].leader) in others
            and cluster.nodes[others[1]].leader == lead and lead,
            what="the others to elect a new leader",
        )
        assert cluster.nodes[new].propose(set_command("after", 2)) is None
        with pytest.raises(StorageUnavailableError, match="cannot write its log"):
            cluster.nodes[old].submit(set_command("refused", 3)).result(5)
        assert links[old].sent == baseline  # not one message while its write failed
        assert stores[old].refused > 1  # retried

        stores[old].full = False
        data = cluster.nodes[new].state_machine.data  # type: ignore[attr-defined]
        wait_until(lambda: cluster.nodes[old].status()["error"] is None, what="the write to succeed")
        wait_until(
            lambda: cluster.nodes[old].state_machine.data == data,  # type: ignore[attr-defined]
            what="the recovered node to converge",
        )
        assert {"before", "after"} <= set(data)
        assert stuck.exception(5) is not None or stuck.result() is None  # exactly one outcome
        assert cluster.wait_leader() in cluster.addresses
