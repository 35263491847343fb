"""status() figures, on_state_changed callbacks, NodeMetrics and the
optional Prometheus exporter (raftkit.runtime.metrics, raftkit.runtime.prometheus)."""

from __future__ import annotations

import sys
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from raftkit import SyncObj, replicated
from raftkit.errors import CommandTimeoutError, NodeStoppedError
from raftkit.runtime.metrics import LATENCY_BUCKETS, NodeMetrics
from raftkit.runtime.pending import PendingCommands
from raftkit.runtime.prometheus import Collector, serve_prometheus
from raftkit.testing.cluster import LocalCluster, fast_conf, fast_config, wait_until
from raftkit.testing.kv import KeyValueStateMachine, set_command

Changes = list[tuple[str, str, str]]


def start_cluster(cluster: LocalCluster, changes: Changes | None = None) -> str:
    lock = threading.Lock()

    def recorder(address: str) -> Any:
        def on_state_changed(old: str, new: str) -> None:
            with lock:
                assert changes is not None
                changes.append((address, old, new))

        return on_state_changed if changes is not None else None

    for address in cluster.addresses:
        cluster.add_node(address, KeyValueStateMachine(), fast_config(on_state_changed=recorder(address)))
    return cluster.wait_leader()


def write(cluster: LocalCluster, leader: str, n: int) -> None:
    node = cluster.nodes[leader]
    for i in range(n):  # one at a time: one entry each (commands waiting together share entries)
        node.submit(set_command(f"k{i}", i), timeout=5.0).result(5.0)


def replicated_everywhere(cluster: LocalCluster, leader: str) -> dict[str, Any] | None:
    s = cluster.nodes[leader].status()
    last = s["log_last_index"]
    ok = s["commit_index"] == last and len(s["peers"]) == 2
    ok = ok and all(p["match"] == last for p in s["peers"].values())
    ok = ok and all(cluster.nodes[a].status()["applied_index"] == last for a in cluster.addresses)
    return s if ok else None


# -- status() on a live cluster ----------------------------------------------------------


def test_status_reports_indexes_membership_peers_contact_and_proposals(cluster: LocalCluster) -> None:
    leader = start_cluster(cluster)
    write(cluster, leader, 20)
    s = wait_until(lambda: replicated_everywhere(cluster, leader), what="every peer to match the log end")

    members = sorted(cluster.addresses)
    followers = [a for a in members if a != leader]
    assert s["role"] == "leader" and s["leader"] == leader and s["term"] >= 1
    assert s["members"] == members and s["learners"] == []
    assert s["snapshot_index"] == 0 == s["snapshot"]["index"]
    assert s["log_entries"] == s["log_last_index"] - s["log_first_index"] + 1 >= 21  # + the leader's no-op
    assert s["applied_index"] == s["commit_index"] == s["log_last_index"]
    assert sorted(s["peers"]) == followers
    for peer in s["peers"].values():
        assert peer["match"] == s["log_last_index"]
        assert peer["last_contact"] is not None and 0 <= peer["last_contact"] < 1.0  # heartbeats: 30 ms
    assert sorted(s["last_contact"]) == followers

    m = s["metrics"]
    assert m["proposals_total"] == m["proposals_applied"] == 20 and m["proposals_failed"] == 0
    assert m["proposal_latency_count"] == 20 and m["proposal_latency_sum"] > 0
    assert 0 < m["proposal_latency_p50"] <= m["proposal_latency_p99"] <= LATENCY_BUCKETS[-1]
    assert m["applied_total"] >= 21 and m["applied_bytes"] > 0 and m["apply_rate_per_s"] > 0
    buckets, total, count = cluster.nodes[leader].metrics.latency_histogram()
    assert count == 20 == buckets[-1][1] and total == pytest.approx(m["proposal_latency_sum"])
    assert [c for _, c in buckets] == sorted(c for _, c in buckets)  # cumulative

    for f in followers:
        fs = cluster.nodes[f].status()
        assert fs["role"] == "follower" and fs["peers"] == {}  # progress is the leader's to know
        assert sorted(fs["last_contact"]) == [a for a in members if a != f]
        assert fs["last_contact"][leader] is not None and fs["last_contact"][leader] < 1.0
        assert fs["metrics"]["proposals_total"] == 0 and fs["metrics"]["applied_total"] >= 21


def test_a_stopped_followers_last_contact_grows_on_the_leader(cluster: LocalCluster) -> None:
    leader = start_cluster(cluster)
    write(cluster, leader, 3)
    wait_until(lambda: replicated_everywhere(cluster, leader), what="replication")
    gone = next(a for a in cluster.addresses if a != leader)
    alive = next(a for a in cluster.addresses if a not in (leader, gone))
    cluster.stop(gone)

    def contact(peer: str) -> float:
        return cluster.nodes[leader].status()["peers"][peer]["last_contact"]

    wait_until(lambda: contact(gone) > 0.3, what="the stopped follower's silence to show")
    before = contact(gone)
    wait_until(lambda: contact(gone) >= before + 0.1, what="its last contact to keep growing")
    assert contact(alive) < 0.3  # the live one still answers every heartbeat


# -- on_state_changed --------------------------------------------------------------------


def test_on_state_changed_reports_election_and_step_down_by_transfer(cluster: LocalCluster) -> None:
    changes: Changes = []
    leader = start_cluster(cluster, changes)
    assert any(a == leader and new == "leader" for a, _, new in changes)
    write(cluster, leader, 1)
    wait_until(lambda: replicated_everywhere(cluster, leader), what="the target to catch up")
    target = next(a for a in cluster.addresses if a != leader)

    cluster.nodes[leader].transfer_leadership(target)
    assert cluster.wait_leader(exclude=leader) == target
    wait_until(lambda: (leader, "leader", "follower") in changes, what="the old leader's step-down callback")
    wait_until(lambda: [c for c in changes if c[0] == target][-1][2] == "leader", what="the target's")
    assert all(old != new for _, old, new in changes)
    roles = {"follower", "pre-candidate", "candidate", "leader"}
    assert all({old, new} <= roles for _, old, new in changes)


class Flag(SyncObj):
    @replicated
    def set(self, value: bool) -> None:
        self.value = value


def test_pysyncobj_on_state_changed_sees_the_step_down_as_2_to_0(cluster: LocalCluster) -> None:
    changes: list[tuple[str, int, int]] = []

    def make(address: str, partners: list[str], transport: Any) -> Flag:
        def record(old: int, new: int) -> None:
            changes.append((address, old, new))

        return Flag(address, partners, fast_conf(onStateChanged=record), transport=transport)

    objs = cluster.add_syncobjs(make)
    leader = cluster.wait_leader()
    objs[0].set(True, sync=True)
    wait_until(lambda: replicated_everywhere(cluster, leader), what="replication")
    target = next(a for a in cluster.addresses if a != leader)
    cluster.nodes[leader].transfer_leadership(target)
    cluster.wait_leader(exclude=leader)
    wait_until(lambda: (leader, 2, 0) in changes, what="PySyncObj's leader -> follower")
    assert all(old != new and {old, new} <= {0, 1, 2} for _, old, new in changes)


# -- NodeMetrics and PendingCommands, by hand --------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_latency_histogram_buckets_sum_and_quantiles() -> None:
    clock = Clock()
    m = NodeMetrics(clock)
    assert m.latency_quantile(0.5) is None
    for latency in (0.001, 0.002, 0.002, 0.02, 0.02, 0.02, 0.3, 100.0):
        clock.now = latency
        m.proposal_applied(0.0)  # submitted at 0
    buckets, total, count = m.latency_histogram()
    assert count == 8 and total == pytest.approx(100.365)
    as_dict = dict(buckets)
    assert as_dict[0.001] == 1  # bounds are inclusive (Prometheus' "le")
    assert as_dict[0.0025] == 3 and as_dict[0.025] == 6 and as_dict[0.5] == 7 and as_dict[30.0] == 7
    assert as_dict[float("inf")] == 8
    assert 0.01 < m.latency_quantile(0.5) <= 0.025  # the 4th of 8 lies in (0.01, 0.025]
    assert m.latency_quantile(0.99) == LATENCY_BUCKETS[-1]  # beyond the last bound: the last bound
    assert m.summary()["proposal_latency_p99"] == LATENCY_BUCKETS[-1]


def test_apply_rate_and_last_contact_use_the_clock() -> None:
    clock = Clock()
    m = NodeMetrics(clock)
    assert m.last_contact(["a"]) == {"a": None}
    m.contact("a")
    clock.now += 2.5
    assert m.last_contact(["a", "b"]) == {"a": 2.5, "b": None}
    for _ in range(50):
        m.entry_applied(10)
    clock.now += 2.5  # 50 entries in the 5 s since start
    assert m.apply_rate() == pytest.approx(10.0)
    for _ in range(30):
        m.entry_applied(10)
    clock.now += 20.0  # the window moves on: only samples within ~10 s count, and one older
    assert m.apply_rate() == pytest.approx(30 / 20.0)
    clock.now += 20.0
    assert m.apply_rate() == 0.0 and m.applied_total == 80 and m.applied_bytes == 800


def test_pending_commands_count_submissions_outcomes_and_failures() -> None:
    clock = Clock()
    metrics = NodeMetrics(clock)
    table = PendingCommands(metrics)
    seqs = [table.register(deadline=1e9)[0] for _ in range(4)]
    clock.now += 0.004
    table.resolve(seqs[0], "ok")
    table.resolve(seqs[1], error=ValueError("applied, and raised"))
    table.fail(seqs[2], CommandTimeoutError("late"))
    table.fail(seqs[2], CommandTimeoutError("twice"))  # gone already: not counted again
    table.close(NodeStoppedError("stopped"))
    assert (metrics.proposals_total, metrics.proposals_applied, metrics.proposals_failed) == (4, 2, 2)
    assert metrics.latency_histogram()[2] == 2 and dict(metrics.latency_histogram()[0])[0.005] == 2


# -- the Prometheus exporter ---------------------------------------------------------------


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5.0) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_prometheus_endpoint_serves_the_status_figures_and_latency(cluster: LocalCluster) -> None:
    leader = start_cluster(cluster)
    write(cluster, leader, 5)
    s = wait_until(lambda: replicated_everywhere(cluster, leader), what="replication")
    with serve_prometheus(list(cluster.nodes.values()), "127.0.0.1:0") as server:
        assert server.address[0] == "127.0.0.1" and server.address[1] > 0
        samples = scrape(server.url)
        names = {name for name, _ in samples}
        for name in (
            "raftkit_term", "raftkit_commit_index", "raftkit_applied_index", "raftkit_log_entries",
            "raftkit_snapshot_index", "raftkit_members", "raftkit_role", "raftkit_is_leader",
            "raftkit_peer_match_index", "raftkit_peer_last_contact_seconds", "raftkit_proposals_total",
            "raftkit_proposals_failed_total", "raftkit_applied_entries_total", "raftkit_apply_rate",
            "raftkit_proposal_latency_seconds_bucket", "raftkit_proposal_latency_seconds_sum",
            "raftkit_proposal_latency_seconds_count",
        ):
            assert name in names, name
        me = (("node", leader),)
        assert samples[("raftkit_term", me)] == s["term"]
        assert samples[("raftkit_commit_index", me)] >= s["commit_index"]
        assert samples[("raftkit_is_leader", me)] == 1.0
        assert samples[("raftkit_role", (("node", leader), ("role", "leader")))] == 1.0
        assert samples[("raftkit_proposals_total", me)] == 5.0
        assert samples[("raftkit_proposal_latency_seconds_count", me)] == 5.0
        assert samples[("raftkit_proposal_latency_seconds_bucket", (("le", "+Inf"), ("node", leader)))] == 5.0
        for peer in cluster.addresses:
            if peer != leader:
                labels = (("node", leader), ("peer", peer))
                assert samples[("raftkit_peer_match_index", labels)] >= s["log_last_index"]
                assert samples[("raftkit_peer_last_contact_seconds", labels)] < 1.0
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(server.url.replace("/metrics", "/nope"), timeout=5.0)
        assert missing.value.code == 404


def test_collector_registers_in_a_registry_of_ones_own() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    with LocalCluster(1) as solo:
        node = solo.add_node("node1", KeyValueStateMachine())
        solo.wait_leader()
        registry = CollectorRegistry()
        registry.register(Collector(node))
        text = generate_latest(registry).decode()
        assert 'raftkit_is_leader{node="node1"} 1.0' in text


def test_without_prometheus_client_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import then raises ImportError
    with pytest.raises(ImportError, match=r"pip install pyraftkit\[metrics\]"):
        serve_prometheus([], "127.0.0.1:0")
