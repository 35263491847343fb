"""First start versus total wipe, on real in-memory processes (127.0.0.1).

A brand-new cluster starts with a majority, as PySyncObj users start theirs:
one member down, or one with a wrong password, does not stop it. A cluster
whose every node lost its memory after committing data does not start empty
on its own: every node halts and says so, and the documented operator step
(delete the restart markers, or start with initial_cluster_state='new')
starts a new, empty cluster. Restart markers live in this test's own folder
(tests/conftest.py sets RAFTKIT_STATE_MARKER_DIR; the processes inherit it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftkit.testing.process_cluster import NodeProcess, ProcessCluster, free_ports

pytestmark = pytest.mark.timeout(180)


def wait_for(predicate, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def status(node: NodeProcess) -> dict:
    r = node.request("status", timeout=5)
    return r["result"] if r.get("ok") else {}


@pytest.fixture
def procs() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    try:
        yield started
    finally:
        for p in started:
            p.stop()
        for p in started:
            p.kill()


def start_two_of_three(procs: list[NodeProcess], third_password: str | None) -> tuple[list[NodeProcess], str]:
    """Start two members of a three-node cluster (password "right"); the
    third is absent, or present with ``third_password``."""
    addresses = [f"127.0.0.1:{p}" for p in free_ports(3)]
    for i, address in enumerate(addresses):
        password = "right" if i < 2 else third_password
        if i == 2 and password is None:
            break  # the third member is down
        partners = [a for a in addresses if a != address]
        procs.append(NodeProcess(address, partners, password, None, ["--fast"]))
    return procs[:2], addresses[0]


@pytest.mark.parametrize("third", ["down", "wrong password"])
def test_a_brand_new_cluster_starts_with_a_majority(procs: list[NodeProcess], third: str) -> None:
    good, _ = start_two_of_three(procs, None if third == "down" else "wrong")
    leader = wait_for(lambda: status(good[0]).get("leader"), 30, "a leader elected by two of three")
    writer = next(p for p in good if p.address == leader)
    assert writer.request("set", key="k", value=1, op_timeout=10)["ok"]
    wait_for(lambda: all(status(p).get("commit_index", 0) >= 1 for p in good), 10, "both to learn the commit")
    assert all(status(p)["readmitted_after_s"] is not None for p in good)  # reported, and voting


def test_a_cluster_wiped_everywhere_halts_then_the_operator_starts_it_new() -> None:
    with ProcessCluster(3, node_args=["--fast"]) as cluster:  # memory only
        leader = cluster.wait_leader(30)
        assert cluster.nodes[leader].request("set", key="precious", value=1, op_timeout=10)["ok"]
        # Every node killed and restarted empty, one at a time, none readmitted in between.
        for address in [a for a in cluster.addresses if a != leader] + [leader]:
            cluster.restart(address)

        def everyone_halts() -> bool:
            statuses = [cluster.status(a) or {} for a in cluster.addresses]
            return all(s.get("waiting") and "total wipe" in s["waiting"] for s in statuses)

        cluster.wait_for(everyone_halts, 30, "every node to report the total wipe")
        time.sleep(1.0)  # several election timeouts (0.3-0.6 s): still nobody starts empty
        assert cluster.leader() is None
        for address in cluster.addresses:
            s = cluster.status(address)
            assert s is not None and s["recovering"] and "total wipe" in s["waiting"], s
            assert "initial_cluster_state='new'" in s["waiting"] and s["state_marker"] in s["waiting"]
        markers = [Path(cluster.status(a)["state_marker"]) for a in cluster.addresses]  # type: ignore[index]
        assert all(m.exists() for m in markers)
        # The operator step, as documented: delete every marker and restart the nodes.
        for address in cluster.addresses:
            cluster.kill(address)
        for marker in markers:
            marker.unlink()
        for address in cluster.addresses:
            cluster.start(address)
        lead = cluster.wait_leader(30)
        assert cluster.dump(lead)["data"] == {}  # type: ignore[index]
        assert cluster.nodes[lead].request("set", key="new", value=2, op_timeout=10)["ok"]


def test_initial_cluster_state_new_starts_over_after_a_total_wipe() -> None:
    with ProcessCluster(3, node_args=["--fast"]) as cluster:
        leader = cluster.wait_leader(30)
        assert cluster.nodes[leader].request("set", key="precious", value=1, op_timeout=10)["ok"]
        for address in cluster.addresses:
            cluster.restart(address)

        def halted() -> bool:
            waiting = [(cluster.status(a) or {}).get("waiting") or "" for a in cluster.addresses]
            return all("total wipe" in w for w in waiting)

        cluster.wait_for(halted, 30, "the total wipe to be reported")
        for address in cluster.addresses:
            cluster.restart(address, ["--initial-cluster-state", "new"])
        lead = cluster.wait_leader(30)
        assert cluster.dump(lead)["data"] == {}  # type: ignore[index]
