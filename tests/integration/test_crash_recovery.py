"""Crash recovery on real processes: nodes with an LMDB log and snapshot
files (taken by forking) are killed with SIGKILL, leader included, while a
write load runs, and restarted on their data directories. Every
acknowledged write must be on every node afterwards, all nodes must
converge, and a restarted node must rebuild from its newest snapshot plus
its log tail. Also: a kill while a snapshot is being written, and a kill of
a follower while it installs a snapshot from the leader.

The default run takes well under a minute; ``-m soak`` runs the long
kill loop (``RAFTKIT_CRASH_KILLS`` kills, 40 by default).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from workload import Writer, check_converged

from raftkit.testing.process_cluster import NodeStartError, ProcessCluster

# Small compaction thresholds so that snapshots happen all the time. One
# command per entry, so that the writes of a test reach them: packed, a few
# hundred concurrent writes make only a few entries (the chaos tests of
# raftkit.testing.process_test kill nodes with packed entries).
# Fork captures always (the default "auto" would take small states in a thread): these
# tests kill nodes and their snapshot children.
NODE_ARGS = ["--fast", "--compaction-entries", "150", "--compaction-keep", "30", "--commands-per-entry", "1",
             "--snapshot-mode", "fork"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    with ProcessCluster(3, data_dir=tmp_path, node_args=NODE_ARGS) as c:
        yield c


def status(cluster: ProcessCluster, address: str) -> dict[str, Any]:
    return cluster.wait_for(lambda: cluster.status(address), 20, f"the status of {address}")


def leader_commit(cluster: ProcessCluster) -> int:
    leader = cluster.wait_leader(30)
    return int(status(cluster, leader)["commit_index"])


def caught_up(cluster: ProcessCluster, address: str, target: int | None = None) -> bool:
    """``address`` applied ``target`` (default: what the leader has committed now)."""
    if target is None:
        target = leader_commit(cluster)
    mine = cluster.status(address)
    return bool(mine and mine["applied_index"] >= target)


def kill_loop(cluster: ProcessCluster, kills: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    writers = [Writer(cluster, seed + i) for i in range(2)]
    for w in writers:
        w.start()
    writer = writers[0]
    recoveries: list[dict[str, Any]] = []
    try:
        for k in range(kills):
            leader = cluster.wait_leader(30)
            followers = [a for a in cluster.addresses if a != leader]
            victim = leader if k % 2 == 0 else rng.choice(followers)
            cluster.wait_for(lambda: writer.batches > k + 1, 30, "writes in flight")  # noqa: B023
            cluster.kill(victim)
            if victim == leader:
                survivors = [a for a in cluster.addresses if a != victim]
                cluster.wait_for(lambda: cluster.leader() in survivors, 30, "a new leader")  # noqa: B023
            cluster.start(victim)
            recoveries.append(status(cluster, victim)["recovery"])
            target = leader_commit(cluster)  # fixed: the writers keep going meanwhile
            cluster.wait_for(lambda: caught_up(cluster, victim, target), 60, f"{victim} to catch up")  # noqa: B023
    finally:
        for w in writers:
            w.stop()
    acked = set().union(*(w.acked for w in writers))
    state = check_converged(cluster, acked)
    assert len(acked) > 200, "the load should have acknowledged many writes"
    return {"acked": len(acked), "recoveries": recoveries, "state": state}


def test_sigkill_loop_keeps_every_acknowledged_write_and_restarts_from_snapshot_plus_log(
    cluster: ProcessCluster,
) -> None:
    result = kill_loop(cluster, kills=6, seed=1)
    print(f"\ncrash loop: 6 kills, {result['acked']} acknowledged writes checked, 0 lost")
    snapshots = [r for r in result["recoveries"] if r["snapshot_index"] > 0]
    assert snapshots, f"no restart began from a snapshot: {result['recoveries']}"
    assert all(r["restored"] for r in snapshots)
    assert any(r["log_last_index"] > r["snapshot_index"] for r in snapshots)  # plus the log tail
    assert any("recovered: snapshot" in cluster.log_text(a) for a in cluster.addresses)
    # Every node may have restarted since its last automatic snapshot: take one
    # on each, and check it was captured by a forked child.
    for a in cluster.addresses:
        assert cluster.nodes[a].request("snapshot", op_timeout=30)["ok"]
    for a in cluster.addresses:
        snap = status(cluster, a)["snapshot"]
        assert snap["taken"] > 0 and snap["mode"] == "fork", snap


@pytest.mark.soak
def test_soak_sigkill_loop(cluster: ProcessCluster) -> None:
    kills = int(os.environ.get("RAFTKIT_CRASH_KILLS", "40"))
    result = kill_loop(cluster, kills=kills, seed=int(time.time()))
    print(f"\ncrash loop: {kills} kills, {result['acked']} acknowledged writes checked, 0 lost")


def test_a_node_killed_while_writing_a_snapshot_restarts_cleanly(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader(30)
    victim = next(a for a in cluster.addresses if a != leader)
    cluster.restart(victim, ["--slow-snapshot", "3"])  # its fork child takes 3 s to serialize
    cluster.wait_for(lambda: caught_up(cluster, victim), 30, "the victim to rejoin")
    acked = set(cluster.nodes[leader].request("load", count=200, prefix="a", op_timeout=10)["acked"])
    cluster.wait_for(lambda: status(cluster, victim)["snapshot"]["in_progress"], 30, "a snapshot under way")
    snaps = cluster.node_dir(victim) / "snapshots"
    half_written = list(snaps.glob("*.tmp"))
    assert half_written, "the snapshot should be half written"
    cluster.kill(victim)

    # The orphaned child still sleeps, but holds none of the node's sockets
    # or locks: the node restarts at once, drops the half-written file and
    # rebuilds from its log.
    cluster.start(victim)
    assert not any(p.exists() for p in half_written)
    rec = status(cluster, victim)["recovery"]
    assert rec["snapshot_index"] == 0 and rec["replay"] > 0
    acked |= set(cluster.nodes[leader].request("load", count=100, prefix="b", op_timeout=10)["acked"])
    check_converged(cluster, acked)
    assert len(acked) == 300


def test_a_follower_killed_while_installing_a_snapshot_restarts_cleanly(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader(30)
    victim, other = (a for a in cluster.addresses if a != leader)
    cluster.kill(victim)
    acked = set(cluster.nodes[leader].request("load", count=400, prefix="a", op_timeout=10)["acked"])
    for a in (leader, other):
        cluster.wait_for(lambda: status(cluster, a)["log_first_index"] > 100, 30, "compaction")  # noqa: B023
    # The leader's transport still holds the appends it sent the dead node
    # and would deliver them on reconnection; a new leader process has
    # only its compacted log to offer, so it must send the snapshot.
    cluster.restart(leader)
    cluster.wait_for(lambda: cluster.leader(), 30, "a leader")

    cluster.start(victim, ["--slow-restore", "3"])  # the restore takes 3 s: kill it in the middle
    installing = cluster.wait_for(
        lambda: status(cluster, victim)["installing_snapshot"], 30, "the snapshot install to begin"
    )
    cluster.kill(victim)

    cluster.start(victim)
    rec = status(cluster, victim)["recovery"]
    # The snapshot was stored before the state machine was restored from it:
    # the restart restores it again, whole, and continues with the log.
    assert rec["snapshot_index"] == installing and rec["restored"]
    assert not list((cluster.node_dir(victim) / "snapshots").glob("*.tmp"))
    cluster.wait_for(lambda: caught_up(cluster, victim), 30, "the victim to catch up")
    check_converged(cluster, acked)


def test_a_node_whose_snapshots_are_gone_refuses_to_start(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader(30)
    cluster.nodes[leader].request("load", count=400, prefix="a", op_timeout=10)
    cluster.wait_for(lambda: status(cluster, leader)["log_first_index"] > 100, 30, "the leader to compact")
    cluster.kill(leader)
    for path in (cluster.node_dir(leader) / "snapshots").glob("snap-*.snap"):
        path.unlink()
    with pytest.raises(NodeStartError, match="cannot start: the log starts at index") as info:
        cluster.start(leader)
    assert "rejoin as a new member" in str(info.value.reason)
