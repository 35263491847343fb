"""PySyncObj's API used the way PySyncObj programs use it, over real TCP on
127.0.0.1: manual ticking with ``_onTick`` / ``doTick``, node objects,
``getStatus()``'s keys, read-only nodes, ``name_vN`` attributes,
asynchronous membership changes, ``syncobj_admin``, bind errors, addresses
written PySyncObj's ways, and a cluster restarted on new addresses.

(PySyncObj's own suite, run against raftkit: ``make pysyncobj-suite``.)
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from raftkit import (
    _RAFT_STATE,
    FAIL_REASON,
    HAS_CRYPTO,
    SyncObj,
    SyncObjConf,
    SyncObjException,
    replicated,
    replicated_sync,
)
from raftkit.batteries import ReplCounter, ReplList
from raftkit.syncobj import TCPNode, executeAdminCommand
from raftkit.testing.process_cluster import free_ports

PASSWORD = "compat-test-password"

# Every option of PySyncObj 0.3.17's SyncObjConf (its config.py).
PYSYNCOBJ_OPTIONS = [
    "password",
    "autoTick",
    "autoTickPeriod",
    "commandsQueueSize",
    "appendEntriesPeriod",
    "raftMinTimeout",
    "raftMaxTimeout",
    "leaderFallbackTimeout",
    "appendEntriesUseBatch",
    "appendEntriesBatchSizeBytes",
    "bindAddress",
    "bindRetryTime",
    "maxBindRetries",
    "connectionTimeout",
    "connectionRetryTime",
    "commandsWaitLeader",
    "fullDumpFile",
    "journalFile",
    "flushJournal",
    "useFork",
    "logCompactionMinEntries",
    "logCompactionMinTime",
    "logCompactionSplit",
    "logCompactionBatchSize",
    "sendBufferSize",
    "recvBufferSize",
    "dynamicMembershipChange",
    "onStateChanged",
    "onReady",
    "onCodeVersionChanged",
    "serializer",
    "deserializer",
    "serializeChecker",
    "pollerType",
    "dnsCacheTime",
    "dnsFailCacheTime",
    "preferredAddrType",
]

# PySyncObj's getStatus() keys for a node with partners (per-partner keys aside).
STATUS_KEYS = {
    "version",
    "revision",
    "self",
    "state",
    "leader",
    "has_quorum",
    "partner_nodes_count",
    "readonly_nodes_count",
    "log_len",
    "last_applied",
    "commit_idx",
    "raft_term",
    "next_node_idx_count",
    "match_idx_count",
    "leader_commit_idx",
    "uptime",
    "self_code_version",
    "enabled_code_version",
}


def addresses(n: int) -> list[str]:
    return [f"127.0.0.1:{p}" for p in free_ports(n)]


class Counter(SyncObj):
    """PySyncObj's test object, as its suite writes it (manual ticking)."""

    def __init__(
        self,
        me: str | None,
        partners: list[str],
        *,
        password: str | None = PASSWORD,
        auto: bool = False,
        dump: str | None = None,
        **conf: Any,
    ) -> None:
        cfg = SyncObjConf(
            autoTick=auto,
            appendEntriesPeriod=0.1,
            raftMinTimeout=0.5,
            raftMaxTimeout=1.0,
            password=password,
            **conf,
        )
        if dump is not None:
            cfg.fullDumpFile = dump
        super().__init__(me, partners, cfg)
        self.__counter = 0

    @replicated
    def addValue(self, value: int) -> int:  # noqa: N802
        self.__counter += value
        return self.__counter

    @replicated_sync
    def addValueSync(self, value: int) -> int:  # noqa: N802
        self.__counter += value
        return self.__counter

    @replicated
    def mark(self) -> str:
        return "v0"

    @replicated(ver=1)
    def mark(self) -> str:  # noqa: F811 - the next code version's definition
        return "v1"

    def getCounter(self) -> int:  # noqa: N802
        return self.__counter


def tick_until(
    objs: Iterable[SyncObj], done: Callable[[], bool], seconds: float = 15.0, what: str = "the condition"
) -> None:
    """PySyncObj's doTicks: each object ticked by a thread of its own with
    ``_onTick(0.05)``, until ``done()`` or the deadline (then it fails)."""
    objs = list(objs)
    stop = threading.Event()
    deadline = time.monotonic() + seconds

    def run(o: SyncObj) -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            o._onTick(0.05)

    threads = [threading.Thread(target=run, args=(o,), daemon=True) for o in objs]
    for t in threads:
        t.start()
    try:
        while not done():
            assert time.monotonic() < deadline, f"timed out after {seconds:.0f}s waiting for {what}"
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(5)


def destroy(*objs: SyncObj) -> None:
    for o in objs:
        o._destroy()


@pytest.fixture
def pair() -> Iterable[tuple[list[str], Counter, Counter]]:
    a = addresses(2)
    o1, o2 = Counter(a[0], [a[1]]), Counter(a[1], [a[0]])
    tick_until([o1, o2], lambda: o1._isReady() and o2._isReady(), what="both ready")
    yield a, o1, o2
    destroy(o1, o2)


def test_manual_ticking_node_objects_and_status_keys(pair: tuple[list[str], Counter, Counter]) -> None:
    a, o1, o2 = pair
    leader = o1._getLeader()
    assert isinstance(leader, TCPNode) and leader.address in a and leader == o2._getLeader()
    assert leader == leader.address and leader.port == int(leader.address.rsplit(":", 1)[1])
    assert o1.selfNode == TCPNode(a[0]) and o1.otherNodes == {TCPNode(a[1])} and o1.readonlyNodes == set()
    status = o1.getStatus()
    assert set(status) >= STATUS_KEYS
    assert status["self"] == TCPNode(a[0]) and status["leader"] == leader
    assert status["state"] in (_RAFT_STATE.FOLLOWER, _RAFT_STATE.LEADER)
    assert status[f"partner_node_status_server_{a[1]}"] == 2  # heard from lately
    assert o1.hasQuorum and o1.isNodeConnected(TCPNode(a[1])) and o1.isNodeConnected(a[1])

    results: list[tuple[Any, Any]] = []
    o1.addValue(150, callback=lambda r, e: results.append((r, e)))
    o2.addValue(200)
    tick_until([o1, o2], lambda: o1.getCounter() == o2.getCounter() == 350 and results, what="350 on both")
    assert results[0][1] == FAIL_REASON.SUCCESS and results[0][0] in (150, 350)
    assert o1.raftCommitIndex >= 3 and o1.raftLastApplied >= 3 and o1.raftCurrentTerm >= 1
    assert o1._getTerm() == o1.raftCurrentTerm and o1._getRaftLogSize() >= 1


def test_get_status_lists_pysyncobj_keys_and_still_reads_raftkit_0_1_keys(
    pair: tuple[list[str], Counter, Counter],
) -> None:
    _, o1, _ = pair
    status = o1.getStatus()
    assert status["version"] == importlib.metadata.version("pyraftkit")
    assert "role" not in status and "commit_index" not in status  # PySyncObj's shape when listed
    with pytest.warns(DeprecationWarning, match=r"read it from status\(\)"):
        role = status["role"]  # raftkit 0.1 read status()'s keys from getStatus()
    assert role in ("leader", "follower")
    with pytest.warns(DeprecationWarning):
        assert status.get("applied_index") >= status["last_applied"]
    assert status.get("no such key", "default") == "default"
    with pytest.raises(KeyError):
        status["no such key"]


def test_a_node_that_stops_answering_costs_the_other_its_quorum(
    pair: tuple[list[str], Counter, Counter],
) -> None:
    a, o1, o2 = pair
    assert o1.hasQuorum
    o2._destroy()
    tick_until([o1], lambda: not o1.hasQuorum, what="o1 to see it lost its quorum")
    assert o1.getStatus()[f"partner_node_status_server_{a[1]}"] == 0


def test_versioned_methods_appear_as_name_vN_and_do_apply(pair: tuple[list[str], Counter, Counter]) -> None:
    a, o1, o2 = pair
    assert hasattr(o1, "mark_v0") and hasattr(o1, "mark_v1") and not hasattr(o1, "mark_v2")
    got: list[Any] = []
    o1.mark_v1(callback=lambda r, e: got.append((r, e)))  # the same method: the version in force runs
    tick_until([o1, o2], lambda: bool(got), what="the call's outcome")
    assert got == [("v0", FAIL_REASON.SUCCESS)]
    assert o1.addValue(5, _doApply=True) == 5  # PySyncObj's hook: applied here only, not replicated
    assert o1.getCounter() == 5 and o2.getCounter() == 0


def test_batteries_apply_locally_with_doapply() -> None:
    c, items = ReplCounter(), ReplList()
    c.set(42, _doApply=True)
    c.add(10, _doApply=True)
    items.append(7, _doApply=True)
    assert c.get() == 52 and items.rawData() == [7]


def test_read_only_nodes_follow_count_and_forward_calls() -> None:
    a = addresses(3)
    voters = [Counter(a[i], [x for x in a if x != a[i]]) for i in range(3)]
    tick_until(voters, lambda: all(o._isReady() for o in voters), what="the voters")
    readers = [Counter(None, a), Counter(None, a)]
    everyone = voters + readers
    voters[0].addValue(10)
    tick_until(everyone, lambda: all(o.getCounter() == 10 for o in everyone), what="the readers to catch up")
    for o in voters:
        assert o.getStatus()["readonly_nodes_count"] == 2
        assert o.getStatus()["partner_nodes_count"] == 2
    reader = readers[0]
    assert reader.selfNode is None and reader._getLeader() == voters[0]._getLeader()
    assert reader.getStatus()["state"] == _RAFT_STATE.FOLLOWER
    assert len(reader.readonlyNodes) == 1 and reader.otherNodes == {TCPNode(x) for x in a}
    got: list[Any] = []
    reader.addValue(5, callback=lambda r, e: got.append(e))  # forwarded to the leader
    tick_until(
        everyone,
        lambda: got == [FAIL_REASON.SUCCESS] and all(o.getCounter() == 15 for o in everyone),
        what="the reader's call everywhere",
    )
    reader._destroy()  # it asks to be removed
    tick_until(
        voters,
        lambda: all(o.getStatus()["readonly_nodes_count"] == 1 for o in voters),
        what="the voters to drop the reader",
    )
    destroy(*voters, readers[1])


def test_a_read_only_node_over_plain_tcp_is_refused_with_the_reason() -> None:
    a = addresses(2)
    with pytest.raises(ValueError, match="authenticated transport"):
        Counter(None, a, password=None)


def test_membership_changes_return_at_once_and_complete_as_the_nodes_tick() -> None:
    a = addresses(3)
    o1, o2 = Counter(a[0], [a[1]], password=None), Counter(a[1], [a[0]], password=None)
    tick_until([o1, o2], lambda: o1._isReady() and o2._isReady(), what="ready")
    refused: list[str] = []
    asking = threading.Thread(target=lambda: refused.append(executeAdminCommand(["-conn", a[0], "-status"])))
    asking.start()
    tick_until([o1, o2], lambda: bool(refused), what="the admin refusal")
    assert "no cluster password" in refused[0] and "SyncObjConf(password=...)" in refused[0]
    added: list[Any] = []
    started = time.monotonic()
    o2.addNodeToCluster(a[2], callback=lambda r, e: added.append(e))  # manual mode: nothing can block
    assert time.monotonic() - started < 1.0 and added == []
    tick_until([o1, o2], lambda: TCPNode(a[2]) in o1.otherNodes, what="a[2] listed (a learner first)")
    o3 = Counter(a[2], [a[0], a[1]], password=None)
    tick_until([o1, o2, o3], lambda: added == [FAIL_REASON.SUCCESS], what="a[2] promoted")
    assert a[2] in o1.status()["members"]
    o1.addValue(3)
    tick_until([o1, o2, o3], lambda: o3.getCounter() == 3, what="the new voter to apply")
    removed: list[Any] = []
    o1.removeNodeFromCluster(TCPNode(a[2]), callback=lambda r, e: removed.append(e))
    tick_until([o1, o2, o3], lambda: removed == [FAIL_REASON.SUCCESS], what="a[2] removed")
    assert o1.otherNodes == {TCPNode(a[1])}
    o1.removeNodeFromCluster(a[1])
    tick_until([o1, o2], lambda: o1.otherNodes == set(), what="a[1] removed")
    bad: list[Any] = []
    o1.removeNodeFromCluster(a[0], callback=lambda r, e: bad.append(e))  # the last voter: refused at once
    tick_until([o1], lambda: len(bad) == 1, what="the refusal")
    assert bad[0] == FAIL_REASON.REQUEST_DENIED and "last voter" in str(bad[0].exception)
    destroy(o1, o2, o3)


def test_syncobj_admin_on_the_raft_port(pair: tuple[list[str], Counter, Counter]) -> None:
    a, o1, o2 = pair
    newcomer = addresses(1)[0]
    answers: dict[str, Any] = {}

    def admin(key: str, args: list[str]) -> None:
        answers[key] = executeAdminCommand(args)

    jobs = {
        "status": ["-conn", a[0], "-pass", PASSWORD, "-status"],
        "wrong": ["-conn", a[0], "-pass", "not-the-password", "-status"],
        "none": ["-conn", a[0], "-status"],
        "version": ["-conn", a[1], "-pass", PASSWORD, "-set_version", "1"],
        "add": ["-conn", a[0], "-pass", PASSWORD, "-add", newcomer],
    }
    threads = [threading.Thread(target=admin, args=item, daemon=True) for item in jobs.items()]
    for t in threads:
        t.start()
    tick_until([o1, o2], lambda: len(answers) == len(jobs), what="every admin answer")
    lines = dict(line.split(": ", 1) for line in answers["status"].splitlines())
    assert set(lines) >= STATUS_KEYS and lines["self"] == a[0]
    assert "wrong password" in answers["wrong"] and "requires the cluster password" in answers["none"]
    assert answers["version"] == "SUCCESS SET_VERSION 1"
    assert answers["add"] == f"SUCCESS ADD {newcomer}"  # in the membership (a learner until it catches up)
    assert TCPNode(newcomer) in o1.otherNodes
    tick_until([o1, o2], lambda: o1.getCodeVersion() == o2.getCodeVersion() == 1, what="code version 1")
    assert executeAdminCommand(["-conn", "nonsense", "-status"]) == "invalid address to connect"
    assert (
        executeAdminCommand(["-conn", a[0], "-pass", PASSWORD, "-add", "x"])
        == "invalid address to command add"
    )


def test_the_syncobj_admin_console_script_prints_pysyncobj_output() -> None:
    a = addresses(1)
    o = Counter(a[0], [], auto=True)
    try:
        assert o.waitReady(10)
        script = Path(sys.executable).with_name("syncobj_admin")
        out = subprocess.run(
            [str(script), "-conn", a[0], "-pass", PASSWORD, "-status"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert f"self: {a[0]}" in out and "state: 2" in out
        bad = subprocess.run(
            [str(script), "-conn", a[0], "-status"], capture_output=True, text=True, timeout=60
        )
        assert bad.returncode == 1 and "password" in bad.stdout
    finally:
        o.destroy()


def test_a_port_in_use_is_reported_by_waitbinded_as_pysyncobj_does() -> None:
    a = addresses(2)
    o1 = Counter(a[0], [a[1]], auto=True, maxBindRetries=1)
    o2 = Counter(a[0], [a[1]], auto=True, maxBindRetries=1)  # the same port
    try:
        o1.waitBinded()
        with pytest.raises(SyncObjException) as caught:
            o2.waitBinded()
        assert caught.value.errorCode == "BindError" and "cannot listen" in str(caught.value)
        with pytest.raises(SyncObjException):
            o2.addValue(1)
    finally:
        destroy(o1, o2)


def test_addresses_written_the_pysyncobj_ways() -> None:
    a = addresses(2)
    o1 = Counter(a[0], [a[1], a[0]], password=None)  # its own address among the partners: dropped
    assert o1.otherNodes == {TCPNode(a[1])} and o1.getStatus()["partner_nodes_count"] == 1
    o1._destroy()
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    v6 = [f"::1:{p}" for p in free_ports(2)]  # PySyncObj splits on the last colon
    n1, n2 = Counter(v6[0], [v6[1]], password=None), Counter(v6[1], [v6[0]], password=None)
    tick_until([n1, n2], lambda: n1._isReady() and n2._isReady(), what="the IPv6 pair")
    assert n1._getLeader().address in v6 and n1.selfNode.address == v6[0]
    destroy(n1, n2)


def test_a_cluster_restarted_on_new_addresses_keeps_its_data(tmp_path: Path) -> None:
    dumps = [str(tmp_path / "dump1"), str(tmp_path / "dump2")]
    a = addresses(2)
    o1, o2 = (
        Counter(a[0], [a[1]], password=None, dump=dumps[0]),
        Counter(a[1], [a[0]], password=None, dump=dumps[1]),
    )
    tick_until([o1, o2], lambda: o1._isReady() and o2._isReady(), what="ready")
    o1.addValue(350)
    tick_until([o1, o2], lambda: o1.getCounter() == o2.getCounter() == 350, what="350")
    destroy(o1, o2)
    b = addresses(2)  # PySyncObj's membership is the one it is started with
    o1, o2 = (
        Counter(b[0], [b[1]], password=None, dump=dumps[0]),
        Counter(b[1], [b[0]], password=None, dump=dumps[1]),
    )
    tick_until(
        [o1, o2],
        lambda: o1._isReady() and o2._isReady() and o1._getLeader() is not None,
        what="the readdressed cluster",
    )
    assert o1._getLeader().address in b and o1.getCounter() == o2.getCounter() == 350
    o2.addValue(1)
    tick_until([o1, o2], lambda: o1.getCounter() == 351, what="a new write")
    destroy(o1, o2)


def test_every_pysyncobj_option_is_accepted_and_print_status_logs(
    pair: tuple[list[str], Counter, Counter], caplog: pytest.LogCaptureFixture
) -> None:
    a, o1, _ = pair
    conf = SyncObjConf()
    for name in PYSYNCOBJ_OPTIONS:
        assert hasattr(conf, name), name
        kind = SyncObjConf.options()[name][1]
        assert kind in ("mapped", "transport", "accepted", "unsupported"), (name, kind)
    SyncObjConf(leaderFallbackTimeout=10.0, dnsCacheTime=1.0, pollerType="select")
    assert HAS_CRYPTO is True
    with caplog.at_level(logging.INFO, logger="raftkit.syncobj"):
        o1._printStatus()
    assert f"self: {a[0]}" in caplog.text and "partner_nodes_count: 1" in caplog.text


def test_on_tick_callbacks_run_in_manual_mode_and_can_be_removed(
    pair: tuple[list[str], Counter, Counter],
) -> None:
    _, o1, o2 = pair
    seen: list[float] = []
    callback = lambda: seen.append(time.monotonic())  # noqa: E731
    o1.addOnTickCallback(callback)
    tick_until([o1, o2], lambda: len(seen) >= 5, what="five tick callbacks")
    o1.removeOnTickCallback(callback)
    tick_until([o1, o2], lambda: True)  # one round after removal (may run a last time meanwhile)
    count = len(seen)
    deadline = time.monotonic() + 0.5
    tick_until([o1, o2], lambda: time.monotonic() > deadline, what="half a second of ticks")
    assert len(seen) == count


def test_leader_fallback_timeout_keeps_a_lone_leader_that_long_and_can_change_live(
    pair: tuple[list[str], Counter, Counter],
) -> None:
    _, o1, o2 = pair
    leader = o1 if o1._isLeader() else o2
    leader.conf.leaderFallbackTimeout = 2.0  # set on the running node, as PySyncObj reads its conf live
    started = time.monotonic()
    tick_until([leader], lambda: time.monotonic() - started > 1.5, what="1.5 s alone")  # > election timeout
    assert leader._isLeader()
    tick_until([leader], lambda: not leader._isLeader(), what="the lone leader to step down")
    assert time.monotonic() - started >= 2.0
    with pytest.raises(ValueError, match="leader_fallback_timeout"):
        leader.conf.leaderFallbackTimeout = 0.01
    assert leader.conf.leaderFallbackTimeout == 2.0  # refused: not kept


def test_transfer_leadership_the_pysyncobj_way_in_manual_mode() -> None:
    a = addresses(3)
    objs = [Counter(a[i], [x for x in a if x != a[i]], password=None) for i in range(3)]
    ready = lambda: all(o._isReady() for o in objs) and objs[0]._getLeader() is not None  # noqa: E731
    tick_until(objs, ready, what="ready")
    old = objs[0]._getLeader()
    leader = next(o for o in objs if o.selfNode == old)
    follower = next(o for o in objs if o.selfNode != old)
    refused: list[Any] = []
    follower.transferLeadership(callback=lambda r, e: refused.append(e))
    leader.transferLeadership(leader.selfNode, callback=lambda r, e: refused.append(e))
    assert refused == [FAIL_REASON.NOT_LEADER, FAIL_REASON.REQUEST_DENIED]  # at once
    outcome: list[Any] = []
    leader.transferLeadership(follower.selfNode, callback=lambda r, e: outcome.append(e))
    tick_until(objs, lambda: all(o._getLeader() == follower.selfNode for o in objs), what="the new leader")
    assert outcome == [FAIL_REASON.SUCCESS]
    destroy(*objs)


def _admin_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("admin-server-")]


def test_astop_stops_the_admin_endpoints() -> None:
    """Found by review: astop() stopped the node but not the admin endpoint
    started for connections on the Raft port (nor serve_admin's): its thread
    and pool outlived the object."""
    import asyncio

    a = addresses(2)
    before = set(_admin_threads())

    async def main() -> None:
        o = Counter(a[0], [])
        await o.astart()
        o.serve_admin(a[1])
        host, port = a[0].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(b"RKA")  # the admin magic: handed to the endpoint on the Raft port
            deadline = time.monotonic() + 5
            while o.__dict__.get("_rk_port_admin") is None:
                assert time.monotonic() < deadline, "the Raft port never handed the admin connection over"
                await asyncio.sleep(0.02)
            await o.astop()
        assert set(_admin_threads()) - before == set()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_no_admin_endpoint_starts_once_destroyed() -> None:
    """Found by review: an admin connection handed over by the Raft port
    between destroy() stopping the admin endpoints and the node stopping
    started a new endpoint that nothing stopped (a thread and a pool)."""
    a = addresses(1)
    o = Counter(a[0], [])
    before = set(_admin_threads())
    o._destroy()
    left, right = socket.socketpair()
    with left, right:
        o._rk_adopt_admin(left, b"RKA")  # as TcpTransport.admin_handoff would, late
        assert set(_admin_threads()) - before == set()
        assert left.fileno() == -1  # closed, not leaked


def test_astart_does_not_hold_the_start_lock_while_it_awaits() -> None:
    """Found by review: astart() held _rk_start_lock (a threading.Lock)
    across ``await node.astart()``, which waits between attempts to bind a
    busy port. A coroutine of the same loop that took the lock meanwhile
    (addOnTickCallback, or the Raft port handing an admin connection over)
    blocked the loop's thread on a lock only that thread could release."""
    import asyncio

    a = addresses(1)
    host, port = a[0].rsplit(":", 1)
    squatter = socket.socket()
    squatter.bind((host, int(port)))
    squatter.listen()
    outcome: list[str] = []
    objs: list[Counter] = []

    async def main() -> None:
        o = Counter(a[0], [], bindRetryTime=0.2, maxBindRetries=10)
        objs.append(o)

        async def meanwhile() -> None:
            await asyncio.sleep(0.1)  # astart is waiting to bind again
            o.addOnTickCallback(lambda: None)
            outcome.append("added")
            squatter.close()

        try:
            await asyncio.gather(o.astart(), meanwhile())
            outcome.append("started")
        finally:
            await o.astop()

    runner = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    runner.start()
    runner.join(10)
    if runner.is_alive():  # deadlocked: free the loop's thread so the test process can end
        squatter.close()
        with contextlib.suppress(RuntimeError):
            objs[0]._rk_start_lock.release()
        pytest.fail("the event loop deadlocked on _rk_start_lock during astart()")
    assert outcome == ["added", "started"]


def test_doapply_on_name_vN_runs_that_version() -> None:
    """PySyncObj's name_vN(..., _doApply=True) runs that very definition
    (its replicatedImpl calls the func it wraps); it ran the newest one."""
    o = Counter(addresses(1)[0], [])
    try:
        assert o.mark_v0(_doApply=True) == "v0"
        assert o.mark_v1(_doApply=True) == "v1"
        assert o.mark(_doApply=True) == "v1"  # the name itself: the last definition, as in PySyncObj
    finally:
        o._destroy()


def test_an_ipv6_literal_without_a_port_is_refused_as_an_address() -> None:
    """'::1' split on its last colon is host ':' and port 1: it was taken
    as such, so syncobj_admin raised a ValueError naming '[:]:1' instead of
    answering 'invalid address to connect', and SyncObj('::1', ...) said
    the same about an address nobody wrote."""
    assert executeAdminCommand(["-conn", "::1", "-status"]) == "invalid address to connect"
    assert executeAdminCommand(["-conn", "127.0.0.1:1", "-add", "::1"]) == "invalid address to command add"
    with pytest.raises(ValueError, match="'::1' is not host:port"):
        Counter("::1", [], password=None)
    assert TCPNode("fe80::1%eth0:6000").host == "fe80::1%eth0"  # a zone id stays part of the host


def test_a_readdressed_cluster_whose_log_holds_config_entries_elects_a_leader(tmp_path: Path) -> None:
    """A read-only node joined and left (config entries in the log): the
    cluster restarted on new addresses with its dump files must still take
    the members it is started with (before the fix, replaying those entries
    put every node outside its own membership: no leader, ever)."""
    dumps = [str(tmp_path / "dump1"), str(tmp_path / "dump2")]
    a = addresses(2)
    o1, o2 = Counter(a[0], [a[1]], dump=dumps[0]), Counter(a[1], [a[0]], dump=dumps[1])
    tick_until([o1, o2], lambda: o1._isReady() and o2._isReady(), what="ready")
    reader = Counter(None, a)
    tick_until([o1, o2, reader], lambda: o1.getStatus()["readonly_nodes_count"] == 1, what="the reader in")
    o1.addValue(7, callback=lambda r, e: None)
    tick_until([o1, o2, reader], lambda: reader.getCounter() == 7, what="the reader to follow")
    reader._destroy()
    tick_until([o1, o2], lambda: o1.getStatus()["readonly_nodes_count"] == 0, what="the reader out")
    destroy(o1, o2)
    b = addresses(2)
    o1, o2 = Counter(b[0], [b[1]], dump=dumps[0]), Counter(b[1], [b[0]], dump=dumps[1])
    try:
        tick_until([o1, o2], lambda: o1._getLeader() is not None and o1.getCounter() == 7, what="a leader")
        assert o1._getLeader().address in b and o1.getStatus()["partner_nodes_count"] == 1
    finally:
        destroy(o1, o2)


def test_a_manual_read_only_node_starts_when_ticked_or_astarted_not_when_built() -> None:
    """Found by review: a read-only node's join request is a tick callback,
    and addOnTickCallback started a manual node (start_manual) to schedule
    it, inside the constructor: built inside a running asyncio loop it
    raised (another loop is running), and astart() was never possible."""
    import asyncio

    a = addresses(2)
    ran: list[int] = []

    async def main() -> None:
        o = Counter(None, [a[0]])
        try:
            assert not o.get_node().started
            o.addOnTickCallback(lambda: ran.append(1))
            assert not o.get_node().started
            await o.astart()
            deadline = time.monotonic() + 5
            while not ran:
                assert time.monotonic() < deadline, "tick callbacks never ran after astart()"
                await asyncio.sleep(0.02)
        finally:
            await o.astop()

    asyncio.run(asyncio.wait_for(main(), 30))
    o = Counter(a[1], [], password=None)  # a manual node: callbacks start with the first doTick
    try:
        o.addOnTickCallback(lambda: ran.append(2))
        assert not o.get_node().started
        tick_until([o], lambda: 2 in ran, what="the callback on doTick")
    finally:
        o._destroy()
