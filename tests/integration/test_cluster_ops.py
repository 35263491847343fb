"""Cluster operations on real processes under a write load: grow 3 -> 5 and
shrink back (the leader included), replace a dead server, add a learner and
promote it, transfer leadership to a named node. Every acknowledged write
must be on every member at the end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from workload import Writer, check_converged

from raftkit.testing.process_cluster import ProcessCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    # Nodes join by asking the members over Raft, which members take only
    # over authenticated links (raftkit.core.admission): hence a password.
    with ProcessCluster(3, data_dir=tmp_path, node_args=["--fast"], password="ops-s3cret") as c:
        yield c


def members(cluster: ProcessCluster, address: str) -> dict[str, Any]:
    answer = cluster.nodes[address].request("members", timeout=10)
    assert answer["ok"], answer
    return answer["result"]


def ask(cluster: ProcessCluster, address: str, op: str, **fields: Any) -> Any:
    answer = cluster.nodes[address].request(op, timeout=70, op_timeout=60, **fields)
    assert answer["ok"], f"{op} on {address}: {answer}"
    return answer["result"]


def voters_everywhere(cluster: ProcessCluster, expected: set[str]) -> bool:
    for address in cluster.addresses:
        status = cluster.status(address)
        if not status or set(status["voters"]) != expected or status["recovering"]:
            return False
    return True


def test_grow_three_to_five_and_shrink_back_under_load(cluster: ProcessCluster) -> None:
    original = list(cluster.addresses)
    writer = Writer(cluster, seed=7)
    writer.start()
    try:
        new = [cluster.grow(), cluster.grow()]  # each asks the cluster to add it
        everyone = set(original + new)
        cluster.wait_for(lambda: voters_everywhere(cluster, everyone), 90, "five voters on every node")
        assert writer.batches > 0
        # Shrink: remove the leader and one new node, asking a third member.
        leader = cluster.wait_leader(30)
        gone = [leader, new[0]]
        keeper = next(a for a in cluster.addresses if a not in gone)
        for address in gone:
            ask(cluster, keeper, "remove", node=address)
        for address in gone:
            cluster.retire(address)
        remaining = everyone - set(gone)
        cluster.wait_for(lambda: voters_everywhere(cluster, remaining), 60, "three voters on every node")
        assert cluster.wait_leader(30) not in gone
        batches = writer.batches
        cluster.wait_for(lambda: writer.batches > batches + 2, 30, "writes after the shrink")
    finally:
        writer.stop()
    check_converged(cluster, writer.acked)
    assert len(writer.acked) > 100


def test_a_removed_node_cannot_disrupt_the_cluster(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader(30)
    outcast = next(a for a in cluster.addresses if a != leader)
    ask(cluster, leader, "remove", node=outcast)
    term = cluster.status(leader)["term"]
    # It keeps running, cut off from the log: it must not campaign its way back.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert cluster.status(outcast)["role"] != "leader"
        time.sleep(0.1)
    assert cluster.status(leader)["term"] == term and cluster.status(leader)["role"] == "leader"
    cluster.retire(outcast)
    assert ask(cluster, leader, "set", key="after", value=1) is None


def test_replace_a_dead_server(cluster: ProcessCluster) -> None:
    writer = Writer(cluster, seed=11)
    writer.start()
    try:
        leader = cluster.wait_leader(30)
        dead = next(a for a in cluster.addresses if a != leader)
        cluster.kill(dead)
        ask(cluster, leader, "remove", node=dead)
        cluster.addresses.remove(dead)
        del cluster.nodes[dead]
        fresh = cluster.grow()
        expected = set(cluster.addresses)
        cluster.wait_for(lambda: voters_everywhere(cluster, expected), 90, f"{fresh} to replace {dead}")
    finally:
        writer.stop()
    check_converged(cluster, writer.acked)


def test_learner_catches_up_and_is_promoted(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader(30)
    for i in range(50):
        ask(cluster, leader, "set", key=f"k{i}", value=i)
    ask(cluster, leader, "snapshot")
    # Started the PySyncObj way (all members as partners, not yet a member):
    # it waits, empty, until it is added.
    learner = cluster.grow(join=False)
    assert cluster.status(learner)["recovering"]
    ask(cluster, leader, "add", node=learner, learner=True)
    cluster.wait_for(lambda: (cluster.dump(learner) or {}).get("data", {}).get("k49") == 49, 60, "catch-up")
    status = cluster.status(learner)
    assert learner in status["learners"] and status["role"] == "follower"
    ask(cluster, leader, "promote", node=learner)
    expected = set(cluster.addresses)
    cluster.wait_for(lambda: voters_everywhere(cluster, expected), 60, "the learner promoted everywhere")
    # Now a voter it can lead.
    assert ask(cluster, leader, "transfer", to=learner) == learner


def test_transfer_leadership_to_a_named_node_and_to_anyone(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader(30)
    target = next(a for a in cluster.addresses if a != leader)
    other = next(a for a in cluster.addresses if a not in (leader, target))
    assert ask(cluster, other, "transfer", to=target) == target  # asked on a third node
    cluster.wait_for(lambda: cluster.leader() == target, 10, "everyone to follow the new leader")
    new = ask(cluster, target, "transfer")  # to=None: the most up-to-date voter
    assert new != target
    answer = cluster.nodes[target].request("transfer", to="127.0.0.1:1", timeout=20, op_timeout=5)
    assert not answer["ok"] and "not a voter" in answer["error"]
