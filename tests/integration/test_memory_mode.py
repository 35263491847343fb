"""In-memory mode on real processes: a node killed with SIGKILL restarts
empty. It must not vote or count toward a quorum until the leader has
readmitted it, so rapid one-at-a-time kills (leader included) never lose an
acknowledged write. PySyncObj lost 71 % of acknowledged writes in this
test. A cluster whose majority lost its memory must say so."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator

import pytest
from workload import Writer, check_converged

from raftkit.testing.process_cluster import ProcessCluster


@pytest.fixture
def cluster() -> Iterator[ProcessCluster]:
    with ProcessCluster(3, node_args=["--fast"]) as c:  # no data_dir: memory only
        yield c


def readmitted(cluster: ProcessCluster, address: str) -> bool:
    status = cluster.status(address)
    return bool(status and not status["recovering"] and status["leader"])


def most_caught_up_follower(cluster: ProcessCluster, leader: str) -> str:
    peers = (cluster.status(leader) or {}).get("peers") or {}
    followers = [a for a in cluster.addresses if a != leader]
    return max(followers, key=lambda a: (peers.get(a) or {}).get("match", 0))


def rapid_kills(cluster: ProcessCluster, rounds: int) -> tuple[int, int]:
    """Each round: SIGKILL the follower that acknowledges most (it restarts
    empty at once), then, as soon as it is readmitted, the leader. The
    dangerous moment is the second kill: the remaining follower may lack
    entries that only the first victim had acknowledged. Never more than
    one node is without its state. Returns (acknowledged writes, kills,
    each victim's readmission window in seconds, from status())."""
    writers = [Writer(cluster, seed) for seed in (1, 2)]
    for w in writers:
        w.start()
    kills = 0
    windows: list[float] = []
    try:
        for r in range(rounds):
            leader = cluster.wait_leader(30)
            cluster.wait_for(lambda: writers[0].batches > r, 30, "writes in flight")  # noqa: B023
            for victim in (most_caught_up_follower(cluster, leader), leader):
                cluster.restart(victim)  # SIGKILL, then start empty
                kills += 1
                cluster.wait_for(lambda: readmitted(cluster, victim), 60, f"{victim} to be readmitted")  # noqa: B023
                windows.append((cluster.status(victim) or {}).get("readmitted_after_s") or float("nan"))
    finally:
        for w in writers:
            w.stop()
    acked = set().union(*(w.acked for w in writers))
    check_converged(cluster, acked)
    return len(acked), kills, windows


def window_text(windows: list[float]) -> str:
    """The readmission windows: every millisecond is one in which one more
    crash would halt the in-memory cluster."""
    return f"readmitted after median {statistics.median(windows):.3f}s, max {max(windows):.3f}s"


def test_rapid_kills_in_memory_mode_lose_no_acknowledged_write(cluster: ProcessCluster) -> None:
    acked, kills, windows = rapid_kills(cluster, rounds=4)
    print(f"\nmemory mode: {kills} kills, {acked} acknowledged writes checked, 0 lost;", window_text(windows))
    assert acked > 200


@pytest.mark.soak
def test_soak_rapid_kills_in_memory_mode(cluster: ProcessCluster) -> None:
    acked, kills, windows = rapid_kills(cluster, rounds=int(os.environ.get("RAFTKIT_CRASH_KILLS", "40")) // 2)
    print(f"\nmemory mode soak: {kills} kills, {acked} acknowledged writes checked, 0 lost;")
    print(window_text(windows))


def test_an_empty_node_elects_no_stale_node_while_the_leader_is_frozen(cluster: ProcessCluster) -> None:
    """PySyncObj's loss, staged: G lags (frozen) while L and F commit writes;
    F restarts empty; L freezes and G wakes up. Only G and the empty F can
    talk: if F voted, G would lead without the writes and overwrite them."""
    leader = cluster.wait_leader(30)
    f, g = (a for a in cluster.addresses if a != leader)
    cluster.pause(g)
    try:
        answer = cluster.nodes[leader].request("load", count=300, prefix="w", op_timeout=10)
        acked = set(answer["acked"])
        assert len(acked) == 300
        cluster.restart(f)  # SIGKILL; it comes back empty
        cluster.pause(leader)
    finally:
        cluster.resume(g)
    try:
        # Several election timeouts: G campaigns, the empty F must refuse.
        for _ in range(40):
            assert cluster.status(g)["role"] != "leader", "G was elected without the committed writes"
            time.sleep(0.1)
    finally:
        cluster.resume(leader)
    cluster.wait_for(lambda: readmitted(cluster, f), 60, "F to be readmitted")
    check_converged(cluster, acked)


def test_a_majority_that_lost_its_memory_says_so_then_restarts_clean(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader(30)
    assert cluster.nodes[leader].request("set", key="precious", value=1, op_timeout=10)["ok"]
    survivor = next(a for a in cluster.addresses if a != leader)
    lost = [a for a in cluster.addresses if a != survivor]
    for address in lost:  # both down before either starts: neither can be readmitted in between
        cluster.kill(address)
    for address in lost:
        cluster.start(address)

    def everyone_says_so() -> bool:
        statuses = [cluster.status(a) for a in cluster.addresses]
        return all(s and s["quorum_lost"] and "majority of voters" in s["quorum_lost"] for s in statuses)

    cluster.wait_for(everyone_says_so, 30, "every node to report that a majority lost its state")
    assert cluster.leader() is None  # nobody pretends
    # The last node restarting empty too is a total wipe: nobody starts empty on its own.
    cluster.restart(survivor)

    def total_wipe() -> bool:
        statuses = [cluster.status(a) or {} for a in cluster.addresses]
        return all("total wipe" in (s.get("waiting") or "") for s in statuses)

    cluster.wait_for(total_wipe, 30, "every node to report the total wipe")
    assert cluster.leader() is None
    # The documented way out: start every node with initial_cluster_state='new'.
    for address in cluster.addresses:
        cluster.restart(address, ["--initial-cluster-state", "new"])
    cluster.wait_leader(30)
    assert all(not cluster.status(a)["quorum_lost"] for a in cluster.addresses)
    assert cluster.dump(survivor)["data"] == {}
