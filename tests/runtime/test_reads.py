"""Consistent reads: ``Node.read_barrier`` (ReadIndex), lease reads, and the
batteries' ``read="linearizable"`` / ``"lease"``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import types
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkit import CommandTimeoutError, NodeStoppedError, NoLeaderError, SyncObj
from raftkit.batteries import ReplDict
from raftkit.core.rawnode import RawNode
from raftkit.core.types import Entry, EntryKind, HardState, Message, MessageType, ReadState, Role
from raftkit.runtime import reads
from raftkit.runtime.config import NodeConfig, raft_config
from raftkit.runtime.lease import config_lease, lease_duration
from raftkit.storage.memory import MemoryLogStore
from raftkit.testing.cluster import LocalCluster, fast_conf, wait_until
from raftkit.testing.kv import KeyValueStateMachine, set_command
from raftkit.testing.sim import SimCluster

MT = MessageType


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


# -- the lease formula (raftkit.runtime.lease) and ReadBarriers on a fake clock ---------------------


def test_lease_duration_is_the_followers_tick_count_minus_the_drift_bound() -> None:
    assert lease_duration(8, 0.05, 0.1) == pytest.approx(7 * 0.05 * 0.9)
    assert lease_duration(2, 0.1, 0.0) == pytest.approx(0.1)
    cfg = NodeConfig()
    expected = (cfg.election_tick - 1) * cfg.tick_interval * (1 - cfg.lease_drift)
    assert config_lease(cfg) == pytest.approx(expected)
    assert config_lease(cfg) < cfg.election_timeout_min  # shorter than the old 0.9 x 0.4 s too


@pytest.mark.parametrize(
    ("args", "what"),
    [
        ((1, 0.05, 0.1), "election_tick"),
        ((8.0, 0.05, 0.1), "election_tick"),
        ((True, 0.05, 0.1), "election_tick"),
        ((8, 0.0, 0.1), "tick_interval"),
        ((8, float("nan"), 0.1), "tick_interval"),
        ((8, 0.05, 1.0), "drift"),
        ((8, 0.05, -0.01), "drift"),
        ((8, 0.05, float("nan")), "drift"),
    ],
)
def test_lease_duration_refuses_bad_input_with_a_clear_error(args: tuple, what: str) -> None:
    with pytest.raises(ValueError, match=what):
        lease_duration(*args)


@pytest.mark.parametrize("drift", [1.0, -0.1, 2.0])
def test_node_config_refuses_a_lease_drift_outside_zero_to_one(drift: float) -> None:
    with pytest.raises(ValueError, match="lease_drift must be a fraction"):
        NodeConfig(lease_drift=drift)


def _first_unsafe_tick(cfg: NodeConfig, restarted: bool, seed: int) -> int:
    """Drive one follower core built as the runtime builds it (raft_config):
    it hears leader L (or restarts with L's term on disk), then ticks; after
    each tick (and before the first) candidate C asks it for a pre-vote and a
    vote. Returns the number of ticks after which it first grants one, or
    campaigns itself: from then on another leader can be elected."""
    store = MemoryLogStore()
    if restarted:
        store.save(HardState(term=1, vote="L", commit=1), [Entry(1, 1, EntryKind.NOOP, b"")])
    node = RawNode(raft_config(cfg, "F", applied=0), store, peers=["C", "F", "L"], rng=random.Random(seed))
    if not restarted:
        node.step(Message(MT.APPEND, "L", "F", term=1, entries=(Entry(1, 1, EntryKind.NOOP, b""),), commit=1))
    for ticks in range(3 * cfg.election_tick + 2):
        if ticks:
            node.tick()
        if node.raft.role is not Role.FOLLOWER:
            return ticks
        for kind in (MT.PRE_VOTE, MT.VOTE):
            node.step(Message(kind, "C", "F", term=2, index=1, log_term=1))
        while node.has_ready():
            rd = node.ready()
            store.save(rd.hard_state, rd.entries)
            node.advance(rd)
            if any(m.type in (MT.PRE_VOTE_RESP, MT.VOTE_RESP) and not m.reject for m in rd.messages):
                return ticks
    raise AssertionError("the follower never granted a vote")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tick=st.floats(0.001, 0.5),
    ratio=st.floats(0.05, 30.0),  # election_timeout_min / tick_interval
    spread=st.floats(1.05, 3.0),  # election_timeout_max / election_timeout_min
    heartbeat=st.floats(0.01, 0.99),  # heartbeat_interval / election_timeout_min
    drift=st.floats(0.0, 0.5),
    pre_vote=st.booleans(),
    phase=st.floats(0.001, 1.0),  # the follower's first tick after the event, in ticks
    speed=st.floats(0.5, 1.0),  # the follower's clock rate, as a fraction of the fastest the bound allows
    latency=st.floats(0.0, 0.05),  # from the leader sending the round to the follower hearing it
    down=st.one_of(st.none(), st.floats(0.0, 1.0)),  # None: no restart; else restarted this long after
    seed=st.integers(0, 1 << 16),
)
def test_no_lease_outlives_the_refusal_of_the_followers_that_confirmed_it(
    tick: float, ratio: float, spread: float, heartbeat: float, drift: float, pre_vote: bool,
    phase: float, speed: float, latency: float, down: float | None, seed: int,
) -> None:
    """For every configuration NodeConfig accepts: the leader sends a round at
    t=0 (its clock is real time) and serves lease reads until config_lease;
    a follower that confirmed it (heard it at ``latency``, perhaps restarted
    after) lets another leader be elected only at its n-th tick, which comes
    at ``start + (phase + n - 1) * tick / rate`` with its clock running up to
    1 / (1 - drift) times as fast as the leader's. The lease must end first."""
    minimum = ratio * tick
    cfg = NodeConfig(
        tick_interval=tick, election_timeout_min=minimum, election_timeout_max=minimum * spread,
        heartbeat_interval=heartbeat * minimum, lease_drift=drift, pre_vote=pre_vote,
    )
    rate = speed / (1 - drift)
    start = latency if down is None else latency + down
    n = _first_unsafe_tick(cfg, restarted=down is not None, seed=seed)
    unsafe_at = start if n == 0 else start + (phase + n - 1) * tick / rate
    assert config_lease(cfg) < unsafe_at, (cfg.election_tick, n)


class _FakeLoop:
    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def call_soon_threadsafe(self, fn: Any, *args: Any) -> None:
        self.callbacks.append((fn, args))

    def run(self) -> None:
        while self.callbacks:
            fn, args = self.callbacks.pop(0)
            fn(*args)


class _RecordingRaw:
    """The leader's real core; ReadIndex rounds are recorded, not run."""

    def __init__(self, raft: Any) -> None:
        self.raft = raft
        self.rounds: list[bytes] = []

    def read_index(self, ctx: bytes) -> None:
        self.rounds.append(ctx)


class _LeaderNode:
    """What ReadBarriers needs of a Node, around a SimCluster leader."""

    def __init__(self, raft: Any, config: NodeConfig) -> None:
        self.raw = _RecordingRaw(raft)
        self.config = config
        self.loop = _FakeLoop()
        self.applied = 1 << 40

    def barriers(self) -> reads.ReadBarriers:
        return reads.ReadBarriers(
            self.raw, self.config, b"test/",  # type: ignore[arg-type]
            loop=lambda: self.loop,  # type: ignore[arg-type,return-value]
            stopped_reason=lambda: None,
            frozen=lambda: False,
            applied=lambda: self.applied,
            process_ready=lambda: None,
        )


class _LeaseClock:
    """ReadBarriers on a leader core, with ``raftkit.runtime.reads``' clock faked."""

    def __init__(self, raft: Any, config: NodeConfig, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0.0
        monkeypatch.setattr(reads, "time", types.SimpleNamespace(monotonic=lambda: self.now))
        self.node = _LeaderNode(raft, config)
        self.barriers = self.node.barriers()

    def confirm_round(self, sent: float, confirmed: float) -> None:
        self.now = sent
        future = self.barriers.register(60.0, False)
        self.node.loop.run()
        ctx = self.node.raw.rounds[-1]
        self.now = confirmed
        self.barriers.after_apply([ReadState(self.node.raw.raft.log.committed, ctx)], self.node.applied)
        assert future.result(0) >= 1

    def served_without_round(self, at: float) -> bool:
        self.now = at
        rounds = len(self.node.raw.rounds)
        future = self.barriers.register(60.0, True)
        self.node.loop.run()
        return len(self.node.raw.rounds) == rounds and future.done()


def _sim_leader(cfg: NodeConfig) -> SimCluster:
    c = SimCluster(3, seed=11, election_tick=cfg.election_tick, heartbeat_tick=cfg.heartbeat_tick)
    c.campaign("n1")
    c.deliver_all()
    c.propose("n1", b"x0")
    c.deliver_all()
    assert c.leader() == "n1"
    return c


def test_the_lease_runs_from_when_the_round_was_sent_for_the_formulas_length(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = NodeConfig(tick_interval=0.1, election_timeout_min=0.25, election_timeout_max=0.5)
    c = _sim_leader(cfg)
    clock = _LeaseClock(c.nodes["n1"].raw.raft, cfg, monkeypatch)
    lease = config_lease(cfg)  # 1 tick x 0.9 = 0.09 s: the followers count only 2 ticks here
    clock.confirm_round(sent=10.0, confirmed=10.05)  # a slow answer does not extend it
    assert clock.served_without_round(10.0 + lease - 1e-6)
    assert not clock.served_without_round(10.0 + lease + 1e-6)


def test_a_leader_that_sent_timeout_now_serves_no_lease_reads_in_that_term(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The d_stale_timeout_now schedule: the TIMEOUT_NOW of a transfer is held
    back until the transfer has expired on the leader; it may still arrive
    and force an election past the followers' refusal at any time, so the
    leader's later rounds must not give it a lease in that term."""
    cfg = NodeConfig()
    c = _sim_leader(cfg)
    leader = c.nodes["n1"].raw.raft
    c.transfer_leadership("n1", "n2")
    held = [env for env in c.inflight if env.msg.type is MT.TIMEOUT_NOW]
    assert held, "the transfer sent no TIMEOUT_NOW"
    c.inflight = [env for env in c.inflight if env.msg.type is not MT.TIMEOUT_NOW]
    for _ in range(cfg.election_tick + 1):  # the transfer expires; n1 keeps leading
        c.tick()
        c.deliver_all()
    assert leader.role is Role.LEADER and leader.lead_transferee is None
    term = leader.term

    clock = _LeaseClock(leader, cfg, monkeypatch)
    clock.confirm_round(sent=0.0, confirmed=0.001)
    assert not clock.served_without_round(0.002)  # a round instead: linearizable either way

    # Indeed the late TIMEOUT_NOW still elects n2, with forced votes.
    c.inflight.extend(held)
    c.deliver_all()
    assert c.leader() == "n2" and c.nodes["n2"].raw.raft.term > term
