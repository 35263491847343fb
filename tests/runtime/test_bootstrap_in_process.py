"""A first start in-process: empty nodes with no restart marker bootstrap
with a majority; a node restarted before it bootstrapped is still a first
start (raftkit.runtime.state_marker, docs/operations.md "Bootstrapping a cluster")."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pytest

from raftkit.builder import NodeBuilder
from raftkit.runtime.config import NodeConfig
from raftkit.state_machines.kv import KvStateMachine
from raftkit.testing.cluster import LocalCluster, fast_config, wait_until


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


def _build(
    cluster: LocalCluster, address: str, partners: list[str], sm: KvStateMachine, **cfg: object
) -> None:
    node = (
        NodeBuilder(address)
        .partners(partners)
        .transport(cluster.transport())
        .config(fast_config(**cfg))
        .state_machine(sm)
        .build()
    )
    cluster.nodes[address] = node
    node.start()


def test_a_total_wipe_after_growing_the_cluster_still_halts() -> None:
    """Grow 3 -> 4 voters, commit, wipe every node, restart each with the
    *current* member list (as an operator would): the markers are found
    (they are not named by the member list) and the cluster halts instead of
    starting empty. Found by review: with the list in the name, the three
    original nodes passed for a first start and bootstrapped an empty
    cluster, silently dropping the committed data."""
    with LocalCluster(3) as cluster:
        for address in cluster.addresses:
            cluster.add_node(address, KvStateMachine())
        leader = cluster.wait_leader(10)
        _build(cluster, "node4", cluster.addresses, KvStateMachine(), join=True)
        cluster.nodes[leader].add_member("node4", "node4", timeout=20)
        assert cluster.nodes[leader].propose(KvStateMachine.set_command("precious", 1), timeout=10) is None
        everyone = [*cluster.addresses, "node4"]
        wait_until(lambda: all(cluster.nodes[a].status()["applied_index"] >= 1 for a in everyone), 10)
        for address in everyone:
            cluster.stop(address)
        for address in everyone:
            _build(cluster, address, [p for p in everyone if p != address], KvStateMachine())
        wait_until(
            lambda: all("total wipe" in (cluster.nodes[a].status()["waiting"] or "") for a in everyone),
            15,
            what="every node to report the total wipe",
        )
        assert cluster.leader() is None


def test_a_majority_of_replaced_disks_never_starts_empty(tmp_path: Path) -> None:
    """Two of three durable nodes lose their data directory (a replaced disk)
    while the third, which kept its data, is down. The two must not start a
    new, empty cluster: their markers outside the data directory say they
    held state. A majority lost its state, so even with the third back the
    cluster waits for the operator; the documented step (the survivor
    restarts with force_new_cluster) brings the data back. Found by review:
    the marker lived only in the data directory and went with it, and the
    wiped pair bootstrapped an empty cluster."""
    markers = tmp_path / "markers"
    dirs = {}

    def config(address: str, **more: object) -> NodeConfig:
        return fast_config(data_dir=str(dirs[address]), state_marker_dir=str(markers), **more)

    with LocalCluster(3) as cluster:
        for address in cluster.addresses:
            dirs[address] = tmp_path / address
            cluster.add_node(address, KvStateMachine(), config(address))
        leader = cluster.wait_leader(10)
        assert cluster.nodes[leader].propose(KvStateMachine.set_command("precious", 1), timeout=10) is None
        everyone = cluster.addresses
        wait_until(lambda: all(cluster.nodes[a].status()["applied_index"] >= 1 for a in everyone), 10)
        for address in everyone:
            cluster.stop(address)
        keeper, *wiped = everyone
        for address in wiped:
            shutil.rmtree(dirs[address])
            cluster.add_node(address, KvStateMachine(), config(address))
        # Over ten election timeouts of the fast config: a first start elects in one or two.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert cluster.leader() is None, "the wiped majority started a new, empty cluster"
            time.sleep(0.02)
        assert all(cluster.nodes[a].status()["recovering"] for a in wiped)
        for address in wiped:  # the operator's step: the survivor alone starts a new cluster
            cluster.stop(address)
        survivor = KvStateMachine()
        cluster.add_node(keeper, survivor, config(keeper, force_new_cluster=True))
        assert cluster.wait_leader(15) == keeper
        wait_until(lambda: survivor.data.get("precious") == 1, 15, what="the survivor to hold the data")
