"""members_from_start (PySyncObj's static membership, raftkit.runtime.startup_members):
a node whose stored membership does not name it takes the members it was
started with, and keeps them while it replays its log."""

from __future__ import annotations

import random
from pathlib import Path

from raftkit.core.membership import encode_conf
from raftkit.core.rawnode import RawNode
from raftkit.core.types import ConfState, Entry, EntryKind, HardState, SnapshotMeta
from raftkit.runtime.config import NodeConfig, raft_config
from raftkit.runtime.startup_members import open_core
from raftkit.storage.memory import MemoryLogStore

OLD = {"10.0.0.1:4321": "10.0.0.1:4321", "10.0.0.2:4321": "10.0.0.2:4321", "10.0.0.3:4321": "10.0.0.3:4321"}
NEW = {"10.0.1.1:4321": "10.0.1.1:4321", "10.0.1.2:4321": "10.0.1.2:4321", "10.0.1.3:4321": "10.0.1.3:4321"}
ME = "10.0.1.1:4321"


def _old_cluster_log(*, with_reader: bool, compacted: bool = True) -> MemoryLogStore:
    """A log written by the cluster on its old addresses: a read-only node
    (a learner) joined and left, so config entries follow the snapshot."""
    old = frozenset(OLD)
    reader = "readonly@10.0.0.9:5000"
    store = MemoryLogStore()
    if compacted:
        store.reset(1, 1)  # compacted up to a snapshot at index 1
        entries = [Entry(2, 1, EntryKind.NORMAL, b"x")]
    else:
        entries = [Entry(1, 1, EntryKind.NOOP), Entry(2, 1, EntryKind.NORMAL, b"x")]
    if with_reader:
        entries += [
            Entry(3, 1, EntryKind.CONFIG, encode_conf(ConfState(voters=old, learners=frozenset({reader})))),
            Entry(4, 1, EntryKind.CONFIG, encode_conf(ConfState(voters=old))),
            Entry(5, 1, EntryKind.NORMAL, b"y"),
        ]
    store.save(HardState(term=1, vote=None, commit=entries[-1].index), entries)
    return store


def _open(
    store: MemoryLogStore,
    peers: dict[str, str],
    node_config: NodeConfig,
    me: str = ME,
    *,
    snapshot: bool = True,
) -> RawNode:
    meta = SnapshotMeta(1, 1, ConfState(voters=frozenset(OLD))) if snapshot else None
    voters = set(peers) - ({me} if node_config.join else set())
    return open_core(
        raft_config(node_config, me, applied=1),
        node_config,
        store,
        peers,
        ConfState(voters=frozenset(voters)),
        meta,
        random.Random(1),
        stored=True,
    )


def readdressed(data_dir: Path, written_by: str = "10.0.0.1:4321", **more: bool) -> NodeConfig:
    """A SyncObj node's config over data written by the node at ``written_by``."""
    (data_dir / "node-id").write_text(written_by + "\n")
    return NodeConfig(members_from_start=True, data_dir=str(data_dir), **more)


def _apply_committed(raw: RawNode) -> None:
    while raw.has_ready():
        raw.advance(raw.ready())


def test_a_node_started_on_a_new_address_takes_the_members_it_was_started_with(tmp_path: Path) -> None:
    raw = _open(_old_cluster_log(with_reader=False), NEW, readdressed(tmp_path))
    _apply_committed(raw)
    assert raw.raft.conf.voters == frozenset(NEW)


def test_the_started_members_survive_the_replay_of_older_config_entries(tmp_path: Path) -> None:
    """Found by review: the forced membership was taken over the conf
    applied at start, and the config entries committed after the snapshot
    (a read-only node joining and leaving) were then applied over it: every
    node of a cluster restarted on new addresses found itself outside its
    own membership, and the cluster never elected a leader again."""
    raw = _open(_old_cluster_log(with_reader=True), NEW, readdressed(tmp_path))
    assert raw.raft.conf.voters == frozenset(NEW)
    _apply_committed(raw)
    assert raw.raft.conf.voters == frozenset(NEW)
    assert raw.raft.log.applied == 5


def test_the_started_members_hold_without_a_snapshot_too(tmp_path: Path) -> None:
    """No snapshot: the membership in force at start is the one started
    with, and the log's config entries (all naming the old addresses) would
    replace it as they are applied."""
    store = _old_cluster_log(with_reader=True, compacted=False)
    raw = _open(store, NEW, readdressed(tmp_path), snapshot=False)
    _apply_committed(raw)
    assert raw.raft.conf.voters == frozenset(NEW)


def test_a_node_its_storage_names_keeps_the_stored_membership(tmp_path: Path) -> None:
    """The usual restart: the started members do not override the log."""
    old_me = "10.0.0.1:4321"
    raw = _open(
        _old_cluster_log(with_reader=True),
        {**NEW, old_me: old_me},
        readdressed(tmp_path),
        old_me,
    )
    _apply_committed(raw)
    assert raw.raft.conf.voters == frozenset(OLD)


def test_a_joining_node_never_makes_itself_a_voter(tmp_path: Path) -> None:
    """Found by review: a read-only node (join=True: it asks to become a
    learner) with stored data is never named by it (it listens on a new port
    each start), so members_from_start made it a *voter* of its own
    membership: it could campaign, win with the members' votes, and write
    itself into the cluster as a voter."""
    reader = "readonly@10.0.1.9:5001"
    peers = {**NEW, reader: "10.0.1.9:5001"}
    raw = _open(
        _old_cluster_log(with_reader=False), peers, readdressed(tmp_path, join=True), reader
    )
    _apply_committed(raw)
    assert reader not in raw.raft.conf.voters


def test_a_removed_voter_restarted_on_its_own_address_keeps_its_stored_membership(tmp_path: Path) -> None:
    """Found by review: a voter removed from the cluster, its storage
    compacted past every membership that named it, restarted with its old
    command line: its data was written under its own id, so the membership
    it stored stands (two or more of them forcing the old one could elect a
    leader of their own beside the cluster's)."""
    removed = "10.0.1.1:4321"
    raw = _open(_old_cluster_log(with_reader=False), NEW, readdressed(tmp_path, written_by=removed))
    _apply_committed(raw)
    assert raw.raft.conf.voters == frozenset(OLD)
    assert (tmp_path / "node-id").read_text().strip() == removed


def test_without_a_record_of_whose_data_it_is_nothing_is_forced(tmp_path: Path) -> None:
    config = NodeConfig(members_from_start=True, data_dir=str(tmp_path))  # data from before the record
    raw = _open(_old_cluster_log(with_reader=False), NEW, config)
    _apply_committed(raw)
    assert raw.raft.conf.voters == frozenset(OLD)
    assert (tmp_path / "node-id").read_text().strip() == ME  # recorded from now on
