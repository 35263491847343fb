"""A first start in-process: empty nodes with no restart marker bootstrap
with a majority; a node restarted before it bootstrapped is still a first
start (raftkit.state_marker, docs/operations.md "Bootstrapping a cluster")."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

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


def test_a_memory_cluster_wiped_everywhere_halts_and_logs_it_once(caplog: pytest.LogCaptureFixture) -> None:
    with LocalCluster(3) as cluster:
        for address in cluster.addresses:
            cluster.add_node(address, KvStateMachine())
        leader = cluster.wait_leader(10)
        cluster.nodes[leader].propose(KvStateMachine.set_command("precious", 1), timeout=10)
        for address in cluster.addresses:
            cluster.stop(address)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="raftkit"):
            fresh = {a: cluster.add_node(a, KvStateMachine()) for a in cluster.addresses}  # all empty

            def halted() -> bool:
                return all("total wipe" in (n.status()["waiting"] or "") for n in fresh.values())

            def logged() -> bool:
                messages = [r.getMessage() for r in caplog.records]
                return all(any(m.startswith(f"{a}: halted:") for m in messages) for a in fresh)

            deadline = time.monotonic() + 10
            while not (halted() and logged()) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert halted() and logged()
            time.sleep(0.5)  # fifty more ticks: still logged only once
        assert cluster.leader() is None
        for address, node in fresh.items():
            s = node.status()
            assert s["recovering"] and s["state_marker"] in s["waiting"], s["waiting"]
            lines = [r for r in caplog.records if r.getMessage().startswith(f"{address}: halted:")]
            assert len(lines) == 1, [r.getMessage() for r in caplog.records]


def test_each_in_process_network_is_a_new_world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two LocalClusters with the same node ids, one after the other, with no
    marker folder configured anywhere (as in a user's own test suite): the
    second is a brand-new cluster and starts, because an in-process network
    keeps its nodes' markers for its own lifetime only. Before, the first
    cluster's markers landed in the shared per-user folder and the second
    halted as a 'total wipe' (found when a module-scoped fixture ran before
    the suite's marker fixture)."""
    monkeypatch.delenv("RAFTKIT_STATE_MARKER_DIR", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the per-user default, kept out of /tmp
    markers = []
    for round_ in range(2):
        with LocalCluster(3, prefix="world") as cluster:
            for address in cluster.addresses:
                cluster.add_node(address, KvStateMachine())
            leader = cluster.wait_leader(10)
            assert cluster.nodes[leader].propose(KvStateMachine.set_command("k", round_), timeout=10) is None
            markers.append(Path(cluster.nodes[leader].status()["state_marker"]))
            assert markers[-1].exists()
    assert markers[0].parent != markers[1].parent
