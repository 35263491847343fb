"""Consistent reads: ``Node.read_barrier`` (ReadIndex), lease reads, and the
batteries' ``read="linearizable"`` / ``"lease"``."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import pytest

from raftkit import CommandTimeoutError, NodeStoppedError, NoLeaderError, SyncObj
from raftkit.batteries import ReplDict
from raftkit.testing.cluster import LocalCluster, fast_conf, wait_until
from raftkit.testing.kv import KeyValueStateMachine, set_command


def kv_cluster(cluster: LocalCluster) -> dict[str, KeyValueStateMachine]:
    machines = {a: KeyValueStateMachine() for a in cluster.addresses}
    for address, sm in machines.items():
        cluster.add_node(address, sm)
    return machines


def test_a_linearizable_read_on_a_follower_sees_every_acknowledged_write() -> None:
    with LocalCluster(3) as cluster:
        machines = kv_cluster(cluster)
        leader = cluster.wait_leader()
        writer = cluster.nodes[leader]
        reader = cluster.followers()[0]
        for i in range(100):
            writer.propose(set_command("k", i), timeout=5)
            index = cluster.nodes[reader].read_barrier(timeout=5).result(6)
            assert cluster.nodes[reader].status()["applied_index"] >= index
            assert machines[reader].data["k"] == i


def test_concurrent_reads_share_rounds_and_all_resolve() -> None:
    with LocalCluster(3) as cluster:
        kv_cluster(cluster)
        cluster.wait_leader()
        node = cluster.nodes[cluster.followers()[0]]
        futures = [node.read_barrier(timeout=5) for _ in range(200)]
        indexes = [f.result(6) for f in futures]
        assert all(i >= 1 for i in indexes)


def test_a_partitioned_old_leader_never_serves_a_stale_read() -> None:
    with LocalCluster(3) as cluster:
        machines = kv_cluster(cluster)
        old = cluster.wait_leader()
        cluster.nodes[old].propose(set_command("k", "old"), timeout=5)
        cluster.network.isolate(old)
        read = cluster.nodes[old].read_barrier(timeout=1.0)
        others = [a for a in cluster.addresses if a != old]
        new = wait_until(lambda: next((a for a in others if cluster.nodes[a].is_leader), None))
        cluster.nodes[new].propose(set_command("k", "new"), timeout=5)
        with pytest.raises((CommandTimeoutError, NoLeaderError)):
            read.result(3)
        assert machines[old].data["k"] == "old"  # stale, and no read barrier vouched for it
        with pytest.raises((CommandTimeoutError, NoLeaderError)):
            cluster.nodes[old].read_barrier(timeout=0.5, lease=True).result(3)


def test_no_leader_fails_with_no_leader_error() -> None:
    with LocalCluster(3) as cluster:
        node = cluster.add_node("node1", KeyValueStateMachine())  # alone: no quorum, no leader
        with pytest.raises(NoLeaderError):
            node.read_barrier(timeout=1).result(3)


def test_stop_fails_waiting_reads() -> None:
    with LocalCluster(3) as cluster:
        kv_cluster(cluster)
        leader = cluster.wait_leader()
        follower = cluster.followers()[0]
        cluster.network.cut(follower, leader)  # the READ_INDEX never arrives; heartbeats still do
        # The cut keeps these waiting: none can resolve with an index, so each
        # must end with NodeStoppedError when the node stops.
        reads = [cluster.nodes[follower].read_barrier(timeout=20) for _ in range(5)]
        cluster.stop(follower)
        for f in reads:
            with pytest.raises(NodeStoppedError):
                f.result(3)
        with pytest.raises(NodeStoppedError):
            cluster.nodes[follower].read_barrier(timeout=1).result(3)


def test_lease_read_on_a_healthy_leader_and_fallback_on_a_follower() -> None:
    with LocalCluster(3) as cluster:
        kv_cluster(cluster)
        leader = cluster.wait_leader()
        node = cluster.nodes[leader]
        node.propose(set_command("k", 1), timeout=5)
        followers = cluster.followers()
        for _ in range(5):  # a loaded machine may let the short test lease lapse: try again
            first = node.read_barrier(timeout=5, lease=True).result(6)  # a round: takes the lease
            assert first >= 2
            # While the lease holds, a lease read needs no round: it resolves
            # even when the followers cannot answer.
            cluster.network.partition(leader, followers)
            try:
                assert node.read_barrier(timeout=0.1, lease=True).result(3) >= first
                break
            except CommandTimeoutError:
                pass  # the lease expired first and the fallback round could not finish
            finally:
                cluster.network.heal()
            cluster.wait_leader()
            node = cluster.nodes[cluster.wait_leader()]
            leader, followers = node.id, cluster.followers()
        else:
            pytest.fail("a lease read never resolved without a round")
        follower = cluster.nodes[cluster.followers()[0]]
        assert follower.read_barrier(timeout=5, lease=True).result(6) >= first  # falls back to ReadIndex


def test_aread_barrier() -> None:
    with LocalCluster(3) as cluster:
        kv_cluster(cluster)
        cluster.wait_leader()
        node = cluster.nodes[cluster.followers()[0]]

        async def main() -> int:
            return await node.aread_barrier(timeout=5)

        assert asyncio.run(main()) >= 1


class Store(SyncObj):
    def __init__(self, address: str, partners: list[str], conf: Any, **kw: Any) -> None:
        self.d = ReplDict()
        super().__init__(address, partners, conf, consumers=[self.d], **kw)


def test_battery_linearizable_and_lease_reads() -> None:
    with LocalCluster(3) as cluster:
        stores = cluster.add_syncobjs(lambda a, p, t: Store(a, p, fast_conf(), transport=t))
        leader = cluster.wait_leader()
        by_address = dict(zip(cluster.addresses, stores, strict=True))
        writer = by_address[leader]
        reader = by_address[cluster.followers()[0]]
        for i in range(30):
            writer.d.set("k", i, sync=True, timeout=5)
            assert reader.d.get("k", read="linearizable") == i
            assert writer.d.get("k", read="lease") == i
            assert reader.d.get("k", read="lease") == i
        assert reader.read_barrier(timeout=5) >= 30

        async def main() -> Any:
            return await reader.d.get.aio("k", read="linearizable"), await reader.aread_barrier(timeout=5)

        value, index = asyncio.run(main())
        assert value == 29 and index >= 30


def test_every_read_gets_one_outcome_under_load() -> None:
    with LocalCluster(3) as cluster:
        kv_cluster(cluster)
        cluster.wait_leader()
        node = cluster.nodes[cluster.followers()[0]]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: node.read_barrier(timeout=5).result(6), range(400)))
        assert len(results) == 400


def test_reads_on_every_node_at_once() -> None:
    with LocalCluster(3) as cluster:
        kv_cluster(cluster)
        cluster.wait_leader()
        futures = [cluster.nodes[a].read_barrier(timeout=5) for _ in range(50) for a in cluster.addresses]
        assert all(f.result(6) >= 1 for f in futures)
