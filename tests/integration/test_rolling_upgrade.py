"""Zero-downtime deploy on real processes: a 3-node cluster running release 0
is restarted process by process on release 1 (which has ``set`` version 0
and version 1) under a steady write load; then the cluster is switched to
version 1. No acknowledged write may be lost, and no call may fail."""

from __future__ import annotations

from pathlib import Path

from workload import Writer, check_converged

from raftkit.testing.process_cluster import ProcessCluster


def test_rolling_upgrade_under_load_loses_and_fails_nothing(tmp_path: Path) -> None:
    # Long election timeouts: leadership moves only when the test hands it over
    # (a CPU-starved machine must not stage an election and fail calls with it).
    args = ["--fast", "--election-timeout", "1.5:3.0"]
    with ProcessCluster(3, data_dir=tmp_path, node_args=args) as cluster:
        writer = Writer(cluster, seed=5)
        writer.start()
        try:
            for address in list(cluster.addresses):
                cluster.wait_for(lambda: writer.batches > 2, 30, "writes in flight")
                writer.avoid_node(address)
                if cluster.leader() == address:  # hand over first: nothing in flight is dropped
                    answer = cluster.nodes[address].request("transfer", timeout=20, op_timeout=10)
                    assert answer["ok"], answer
                    # Stop it only once nobody forwards to it any more (what was
                    # forwarded before, it passes on to its successor).
                    successor = answer["result"]
                    follows = lambda: all(  # noqa: E731
                        (cluster.status(a) or {}).get("leader") == successor  # noqa: B023
                        for a in cluster.addresses
                    )
                    cluster.wait_for(follows, 30, "every node to follow the new leader")
                cluster.nodes[address].stop()
                cluster.start(address, ["--code", "1"])
                up = lambda: (cluster.status(address) or {}).get("leader")  # noqa: B023, E731
                cluster.wait_for(up, 30, "the upgraded node")
                writer.avoid.discard(address)
            before = cluster.dump(cluster.addresses[0])["counter"]
            node = cluster.nodes[cluster.addresses[0]]
            assert node.request("set_version", version=1, op_timeout=10) == {"ok": True, "result": 1}
            for address in cluster.addresses:
                cluster.wait_for(lambda: cluster.status(address)["code_version"] == 1, 10, "version 1")  # noqa: B023
            batches = writer.batches
            cluster.wait_for(lambda: writer.batches > batches + 3, 30, "writes on version 1")
        finally:
            writer.stop()
        state = check_converged(cluster, writer.acked)
        print(f"\nrolling upgrade: {len(writer.acked)} acknowledged writes, {writer.failed} failed, 0 lost")
        assert writer.failed == 0, writer.errors
        assert state["counter"] > before  # version 1 of set ran, on every node alike
