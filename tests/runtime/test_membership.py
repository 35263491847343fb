"""Membership changes through the SyncObj API (PySyncObj's addNodeToCluster /
removeNodeFromCluster), leadership transfer, and the admin endpoint a
SyncObj serves (set-version included). Real-process versions of these
live in tests/integration/test_cluster_ops.py."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raftkit import SyncObj, replicated
from raftkit.admin.client import AdminClient
from raftkit.runtime.membership_ops import MembershipError, MembershipOps, TransferError
from raftkit.syncobj.outcomes import FAIL_REASON
from raftkit.testing.cluster import fast_conf, wait_until
from raftkit.transports.memory import MemoryNetwork, MemoryTransport

ADDRESSES = ["m1", "m2", "m3"]


class Ledger(SyncObj):
    def __init__(self, address: str, partners: list[str], network: MemoryNetwork) -> None:
        super().__init__(address, partners, fast_conf(password="pw"), transport=MemoryTransport(network))
        self.entries: list[int] = []

    @replicated
    def add(self, value: int) -> int:
        self.entries.append(value)
        return len(self.entries)

    @replicated(ver=1)
    def add(self, value: int) -> int:  # noqa: F811 - version 1 of the same method
        self.entries.append(value * 10)
        return len(self.entries)


@pytest.fixture
def network() -> MemoryNetwork:
    return MemoryNetwork(auto_deliver=True)


@pytest.fixture
def cluster(network: MemoryNetwork) -> Iterator[dict[str, Ledger]]:
    objs = {a: Ledger(a, [p for p in ADDRESSES if p != a], network) for a in ADDRESSES}
    try:
        yield objs
    finally:
        for obj in objs.values():
            obj.destroy()


def leader_of(objs: dict[str, Ledger]) -> Ledger:
    wait_until(lambda: any(o.get_node().is_leader for o in objs.values()), what="a leader")
    return next(o for o in objs.values() if o.get_node().is_leader)


def test_add_a_node_the_pysyncobj_way_then_remove_it_with_a_callback(
    cluster: dict[str, Ledger], network: MemoryNetwork
) -> None:
    lead = leader_of(cluster)
    for i in range(20):
        lead.add(i, sync=True)
    newcomer = Ledger("m4", ADDRESSES, network)  # every member as partners; waits to be added
    cluster["m4"] = newcomer
    assert newcomer.status()["recovering"]
    follower = next(o for a, o in cluster.items() if o is not lead and a != "m4")
    follower.addNodeToCluster("m4")  # asked on a follower: forwarded to the leader
    wait_until(lambda: newcomer.entries == list(range(20)), what="the newcomer to catch up")
    everywhere = lambda: all("m4" in o.status()["voters"] for o in cluster.values())  # noqa: E731
    wait_until(everywhere, what="m4 a voter everywhere")
    wait_until(lambda: not newcomer.status()["recovering"], what="m4 readmitted")
    assert lead.add(20, sync=True) == 21

    done = threading.Event()
    outcome: list[object] = []
    lead.removeNodeFromCluster("m4", callback=lambda res, err: (outcome.append(err), done.set()))
    assert done.wait(10) and outcome == [FAIL_REASON.SUCCESS]
    assert "m4" not in lead.status()["voters"]


def test_bad_membership_requests_fail_clearly(cluster: dict[str, Ledger]) -> None:
    lead = leader_of(cluster)
    node = lead.get_node()
    with pytest.raises(MembershipError, match="not a learner"):
        node.promote_member("stranger", timeout=2)
    with pytest.raises(TransferError, match="not a voter"):
        lead.transfer_leadership("stranger")
    for address in ADDRESSES:
        if address != node.id:
            lead.remove_node_from_cluster(address)  # blocks (the camelCase form returns at once)
    assert lead.status()["voters"] == [node.id]
    with pytest.raises(MembershipError, match="last voter"):
        node.remove_member(node.id, timeout=2)
    with pytest.raises(TransferError, match="single voter"):
        lead.transfer_leadership()
    assert lead.add(1, sync=True) == 1  # a cluster of one still works


def test_removing_a_node_that_is_not_a_member_is_refused_and_changes_nothing(
    cluster: dict[str, Ledger],
) -> None:
    lead = leader_of(cluster)
    follower = next(o for o in cluster.values() if o is not lead).get_node()
    for node in (lead.get_node(), follower):  # on any member: it catches up before it refuses
        message = r"^n9 is not a member of this cluster \(members: m1, m2, m3\)"
        with pytest.raises(MembershipError, match=message):
            node.remove_member("n9", timeout=5)
    assert lead.get_node().members()["voters"] == ADDRESSES
    gone = follower.id
    lead.get_node().remove_member(gone, timeout=10)
    wait_until(lambda: gone not in lead.get_node().members()["voters"], what=f"{gone} removed")
    # The core keeps a retried request harmless: asking again for a removal that holds is a no-op ...
    assert lead.get_node().call_in_loop(lambda: MembershipOps(lead.get_node()).ask("remove", gone)) is None
    assert lead.add(1, sync=True) == 1 and len(lead.get_node().members()["voters"]) == 2
    # ... while the operator's call says the node is not a member any more.
    with pytest.raises(MembershipError, match=f"{gone} is not a member"):
        lead.get_node().remove_member(gone, timeout=5)


def test_transfer_to_a_named_node_and_back(cluster: dict[str, Ledger]) -> None:
    lead = leader_of(cluster)
    target = next(a for a in ADDRESSES if a != lead.get_node().id)
    assert lead.transfer_leadership(target) == target
    assert cluster[target].transfer_leadership(lead.get_node().id) == lead.get_node().id


def test_a_syncobj_serves_admin_with_set_version(cluster: dict[str, Ledger]) -> None:
    lead = leader_of(cluster)
    server = lead.serve_admin("127.0.0.1:0")
    with AdminClient(server.address, password="pw") as client:
        assert client.call("status")["leader"] == lead.get_node().id
        assert client.call("set-version", {"version": 1})["code_version"] == 1
    assert lead.add(7, sync=True) and lead.entries[-1] == 70  # version 1 of add now runs
    wrong = AdminClient(server.address, password="wrong")
    with pytest.raises(Exception, match="authentication failed"), wrong:
        wrong.call("status")


class Durable(SyncObj):
    def __init__(
        self, base: Path, address: str, partners: list[str], network: MemoryNetwork, **extra: Any
    ) -> None:
        conf = fast_conf(dataDir=str(base / address), **extra)
        super().__init__(address, partners, conf, transport=MemoryTransport(network))
        self.entries: list[int] = []

    @replicated
    def add(self, value: int) -> int:
        self.entries.append(value)
        return len(self.entries)


def test_a_survivor_of_a_lost_quorum_restarts_as_a_new_cluster(tmp_path: Path) -> None:
    """Disaster recovery: two of three data directories are gone for good.
    The survivor, started with force_new_cluster, leads a cluster of one
    with its data, and stays so after a plain restart."""

    network = MemoryNetwork(auto_deliver=True)
    objs = {a: Durable(tmp_path, a, [p for p in ADDRESSES if p != a], network) for a in ADDRESSES}
    try:
        lead = leader_of(objs)  # type: ignore[arg-type]
        for i in range(5):
            lead.add(i, sync=True)
        wait_until(lambda: all(o.entries == list(range(5)) for o in objs.values()), what="replicated")
    finally:
        for obj in objs.values():
            obj.destroy()
    survivor = ADDRESSES[0]
    network = MemoryNetwork(auto_deliver=True)
    alone = Durable(tmp_path, survivor, ADDRESSES[1:], network, force_new_cluster=True)
    try:
        wait_until(lambda: alone.get_node().is_leader, what="the survivor to lead")
        assert alone.entries == list(range(5))
        assert alone.add(5, sync=True) == 6
        assert alone.status()["voters"] == [survivor]
    finally:
        alone.destroy()
    # No flag this time: the log says so.
    again = Durable(tmp_path, survivor, ADDRESSES[1:], MemoryNetwork(auto_deliver=True))
    try:
        wait_until(lambda: again.get_node().is_leader, what="the survivor to lead after a restart")
        assert again.entries == list(range(6)) and again.status()["voters"] == [survivor]
    finally:
        again.destroy()


def test_a_cluster_waiting_for_a_majority_says_so(
    cluster: dict[str, Ledger], caplog: pytest.LogCaptureFixture
) -> None:
    lead = leader_of(cluster)
    assert lead.status()["waiting"] is None
    survivor = next(o for o in cluster.values() if o is not lead)
    for obj in cluster.values():
        if obj is not survivor:
            obj.destroy()
    wait_until(lambda: "waiting for a majority" in (survivor.status()["waiting"] or ""), what="the reason")
    assert "needs 2 of 3 voters" in survivor.status()["waiting"]
    wait_until(lambda: "no leader for" in caplog.text, timeout=10, what="the log line")


def test_a_wiped_durable_node_stays_recovering_across_a_crash_until_readmitted(tmp_path: Path) -> None:
    """Entries a wiped node receives before it is readmitted do not bring
    back the votes it forgot: a restart meanwhile must still recover."""
    network = MemoryNetwork(auto_deliver=True)
    objs = {a: Durable(tmp_path, a, [p for p in ADDRESSES if p != a], network) for a in ADDRESSES}
    try:
        lead = leader_of(objs)  # type: ignore[arg-type]
        for i in range(3):
            lead.add(i, sync=True)
        lead_id = lead.get_node().id
        wiped, down = (a for a in ADDRESSES if a != lead_id)
        objs[down].destroy()  # without it, the leader cannot readmit anyone
        objs[wiped].destroy()
        shutil.rmtree(tmp_path / wiped)  # the disk is replaced
        objs[wiped] = Durable(tmp_path, wiped, [p for p in ADDRESSES if p != wiped], network)
        marker = tmp_path / wiped / "RECOVERING"
        assert objs[wiped].status()["recovering"] and marker.exists()
        wait_until(lambda: objs[wiped].entries == [0, 1, 2], what="the wiped node to receive the log")
        objs[wiped].destroy()
        objs[wiped] = Durable(tmp_path, wiped, [p for p in ADDRESSES if p != wiped], network)
        assert objs[wiped].status()["recovering"], "a crash before readmission must not end recovery"
        objs[down] = Durable(tmp_path, down, [p for p in ADDRESSES if p != down], network)
        wait_until(lambda: not objs[wiped].status()["recovering"], what="readmission")
        wait_until(lambda: not marker.exists(), what="the marker removed")
    finally:
        for obj in objs.values():
            obj.destroy()
