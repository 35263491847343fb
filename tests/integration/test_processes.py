"""Real clusters: nodes are separate OS processes talking TCP on loopback.

Faults are real too: SIGKILL (of processes these tests started, by PID),
a node with the wrong password, and garbage written straight to a node's
port. Every wait has a deadline.
"""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkit.testing.process_cluster import ProcessCluster

pytestmark = pytest.mark.timeout(180)


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def converge(cluster: ProcessCluster, expect: dict, timeout: float = 30.0) -> None:
    """Wait until every live node's state contains ``expect``."""

    def done() -> bool:
        for addr, node in cluster.nodes.items():
            if not node.alive:
                continue
            state = cluster.dump(addr)
            if state is None or any(state["data"].get(k) != v for k, v in expect.items()):
                return False
        return True

    cluster.wait_for(done, timeout, f"all nodes to hold {len(expect)} keys")


@pytest.mark.parametrize("size", [3, 5])
def test_writes_through_any_node_replicate_everywhere(size: int) -> None:
    with ProcessCluster(size, password="s3cret") as c:
        c.wait_leader()
        expect = {}
        for i, addr in enumerate(c.addresses):
            r = c.nodes[addr].request("set", key=f"k{i}", value=i)
            assert r["ok"], r
            expect[f"k{i}"] = i
        converge(c, expect)
        counters = {c.dump(a)["counter"] for a in c.addresses}
        assert counters == {0}


def test_leader_killed_new_leader_elected_and_writes_continue() -> None:
    with ProcessCluster(3, password="s3cret") as c:
        lead = c.wait_leader()
        follower = next(a for a in c.addresses if a != lead)
        assert c.nodes[follower].request("incr", by=1)["result"] == 1
        c.nodes[lead].kill()
        new_lead = c.wait_for(lambda: (x := c.leader()) != lead and x, 30, "a new leader")
        assert new_lead != lead
        r = c.nodes[follower].request("incr", by=1)
        assert r == {"ok": True, "result": 2}, r
        # The killed node comes back empty-handed (in-memory) and catches up.
        c.start(lead)
        converge(c, {})
        c.wait_for(lambda: (c.dump(lead) or {}).get("counter") == 2, 30, "the restarted node to catch up")


def test_acknowledged_async_writes_survive_leader_kill() -> None:
    with ProcessCluster(3, password="s3cret") as c:
        lead = c.wait_leader()
        other = next(a for a in c.addresses if a != lead)
        r = c.nodes[other].request("load", count=500, prefix="a")
        assert r["ok"] and len(r["acked"]) == 500, r
        c.nodes[lead].kill()
        c.wait_for(lambda: (x := c.leader()) != lead and x, 30, "a new leader")
        r2 = c.nodes[other].request("load", count=500, prefix="b")
        assert r2["ok"] and len(r2["acked"]) >= 490, r2
        acked = {k: int(k[1:]) for k in r["acked"] + r2["acked"]}
        converge(c, acked)


def test_node_with_wrong_password_cannot_join_or_inject() -> None:
    with ProcessCluster(3, password="right") as c:
        lead = c.wait_leader()
        intruder = next(a for a in c.addresses if a != lead)
        c.nodes[intruder].kill()
        match_before = c.status(lead)["peers"][intruder]["match"]
        c.password = "wrong"
        c.start(intruder)  # same address and id, wrong password
        good = [a for a in c.addresses if a != intruder]
        for i in range(5):
            assert c.nodes[good[i % 2]].request("set", key=f"x{i}", value=i)["ok"]
        written = {f"x{i}": i for i in range(5)}
        # A sync write returns once applied on the node that took it; the
        # other good node applies it a moment later.
        c.wait_for(
            lambda: all(all(c.dump(a)["data"].get(k) == v for k, v in written.items()) for a in good),
            30,
            "both good nodes to hold the writes",
        )
        # The intruder learned nothing and disturbed nobody: no append sent
        # to it since its restart was acknowledged.
        assert c.dump(intruder)["data"] == {}
        leader_status = c.status(lead)
        assert leader_status["peers"][intruder]["match"] == match_before < leader_status["commit_index"]
        statuses = [c.status(a) for a in good]
        assert {s["leader"] for s in statuses} == {lead}
        assert c.status(intruder)["leader"] in (None, "")


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(garbage=st.lists(st.binary(min_size=1, max_size=512), min_size=1, max_size=4))
def test_garbage_on_a_port_closes_only_that_connection(cluster_for_garbage, garbage: list[bytes]) -> None:
    c, counter = cluster_for_garbage
    target = c.addresses[0]
    host, port = host_port(target)
    with socket.create_connection((host, port), timeout=5) as s:
        for chunk in garbage:
            try:
                s.sendall(chunk)
            except OSError:
                break  # the node already closed us: that is the point
    # Oversized length prefix and truncated frames too.
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"RKT\x01" + (2**31).to_bytes(4, "big") + b"\x00" * 16)
    counter[0] += 1
    r = c.nodes[target].request("incr", by=1)
    assert r == {"ok": True, "result": counter[0]}, r


@pytest.fixture(scope="module")
def cluster_for_garbage():
    with ProcessCluster(3) as c:
        c.wait_leader()
        yield c, [0]


def test_ipv6_loopback_cluster() -> None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    with ProcessCluster(3, host="::1", password="v6") as c:
        lead = c.wait_leader()
        assert lead.startswith("[::1]:")
        for addr in c.addresses:
            assert c.nodes[addr].request("incr", by=1)["ok"]
        c.wait_for(lambda: all((c.dump(a) or {}).get("counter") == 3 for a in c.addresses), 30, "counter 3")
