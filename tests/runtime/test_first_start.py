"""A first start in-process: empty nodes with no restart marker bootstrap
with a majority; a node restarted before it bootstrapped is still a first
start (raftkit.state_marker, docs/operations.md "Bootstrapping a cluster")."""

from __future__ import annotations

from pathlib import Path

from raftkit.kvnode import KvStateMachine
from raftkit.testing.cluster import LocalCluster, fast_config


def test_a_disk_cluster_restarted_before_its_first_election_still_starts(tmp_path: Path) -> None:
    """An empty data directory keeps a RECOVERING mark from an earlier start
    that never bootstrapped (e.g. the nodes could not reach each other);
    that start held no state, so this one is still a first start."""
    with LocalCluster(3) as cluster:
        for address in cluster.addresses:
            (tmp_path / address).mkdir()
            (tmp_path / address / "RECOVERING").touch()  # left by the earlier start
        for address in cluster.addresses[:2]:  # a majority; the third never comes
            cluster.add_node(address, KvStateMachine(), fast_config(data_dir=str(tmp_path / address)))
        leader = cluster.wait_leader(10)
        assert cluster.nodes[leader].propose(KvStateMachine.set_command("k", 1), timeout=10) is None
        assert (tmp_path / leader / "HELD_STATE").exists()  # from now on a wipe is told from a first start
