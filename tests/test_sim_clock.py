"""The simulator's clock model (raftkit.testing.clock): nodes tick on their
own drifting clocks, and a leader's lease reads are checked against every
write acknowledged while its lease holds."""

from __future__ import annotations

import pytest

import raftkit.testing.clock as clock_module
from raftkit.core.types import MessageType
from raftkit.runtime.config import NodeConfig
from raftkit.testing.clock import ClockModel
from raftkit.testing.sim import InvariantViolation, SimCluster

CONFIG = NodeConfig(
    tick_interval=0.1, election_timeout_min=0.5, election_timeout_max=1.0, heartbeat_interval=0.1
)



class CountingCluster(SimCluster):
    def __init__(self, *a: object, **kw: object) -> None:
        self.ticks: dict[str, list[float]] = {}
        super().__init__(*a, **kw)  # type: ignore[arg-type]

    def _tick_node(self, node_id: str) -> None:
        assert self.clock is not None
        self.ticks.setdefault(node_id, []).append(self.clock.now)
        super()._tick_node(node_id)


def _cluster(seed: int, cls: type[SimCluster] = SimCluster, **kw: object) -> SimCluster:
    return cls(
        3,
        seed=seed,
        election_tick=CONFIG.election_tick,
        heartbeat_tick=CONFIG.heartbeat_tick,
        clock=ClockModel(CONFIG, seed, **kw),  # type: ignore[arg-type]
    )


def _with_leader(seed: int) -> tuple[SimCluster, str]:
    c = _cluster(seed)
    c.run_until(lambda: c.leader() is not None, 300)
    c.run_until(c.converged, 300)
    lead = c.leader()
    assert lead is not None
    return c, lead


def test_each_node_ticks_on_its_own_clock_within_the_drift_bound() -> None:
    c = _cluster(3, CountingCluster, drift=0.05)
    assert isinstance(c, CountingCluster) and c.clock is not None
    c.clock.advance(10.0)
    for node in c.ids:
        gaps = [b - a for a, b in zip(c.ticks[node], c.ticks[node][1:], strict=False)]
        assert gaps and all(0.1 / 1.05 - 1e-9 <= g <= 0.1 + 1e-9 for g in gaps), node
        assert 95 <= len(c.ticks[node]) <= 106, node
    firsts = sorted(c.ticks[node][0] for node in c.ids)
    assert firsts[0] != firsts[-1]  # phases differ
    c.tick()  # one tick of real time, every node as its clock says
    assert c.clock.now == pytest.approx(10.1)


def test_a_restarted_node_starts_its_tick_timer_afresh() -> None:
    c = _cluster(4, CountingCluster)
    assert isinstance(c, CountingCluster) and c.clock is not None
    c.clock.advance(1.0)
    c.crash("n2")
    c.clock.advance(0.333)
    c.restart("n2")
    restarted = c.clock.now
    c.clock.advance(1.0)
    first = min(t for t in c.ticks["n2"] if t > restarted)
    assert first - restarted == pytest.approx(0.1 / c.clock.clocks["n2"].rate)


def test_the_clock_must_match_the_cluster_ticks() -> None:
    with pytest.raises(ValueError, match="election_tick/heartbeat_tick"):
        SimCluster(3, election_tick=10, clock=ClockModel(CONFIG))
    with pytest.raises(ValueError, match="check_quorum=True"):
        SimCluster(3, election_tick=5, check_quorum=False, clock=ClockModel(CONFIG))
    with pytest.raises(ValueError, match="drift"):
        ClockModel(CONFIG, drift=1.5)


def _cut_off_in_its_lease(c: SimCluster, lead: str) -> str:
    """The leader confirms a read round and is cut off at once; time passes
    in small steps, each message delivered at once, until another leader
    acknowledges a write. Returns it."""
    assert c.clock is not None
    assert c.read(lead, b"lease-round")
    c.deliver_all()
    c.isolate(lead)
    for _ in range(400):
        c.clock.advance(0.005)
        c.deliver_all()
        new = c.leader()
        if new not in (None, lead):
            assert c.propose(new, b"after") is not None
            c.deliver_all()
            assert c.proposals[b"after"].acked
            return new
    raise AssertionError("no new leader in 2 s")


def test_a_lease_longer_than_the_followers_promise_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    c, lead = _with_leader(0)
    monkeypatch.setattr(clock_module, "lease_span", lambda config: 60.0)
    with pytest.raises(InvariantViolation, match=f"stale lease read: .* leader {lead} "):
        _cut_off_in_its_lease(c, lead)


def test_a_lease_ends_before_the_next_leader_acknowledges_anything_no_lease_no_check() -> None:
    c, lead = _with_leader(0)
    c.isolate(lead)  # no round confirmed: no lease
    assert c.clock is not None
    for _ in range(400):
        c.clock.advance(0.005)
        c.deliver_all()
        if c.leader() not in (None, lead):
            break
    assert c.propose(c.leader() or lead, b"after") is not None
    c.deliver_all()
    assert c.proposals[b"after"].acked and not c.clock.lease_holds(lead)


@pytest.mark.parametrize("seed", [13, 34, 36])  # seeds where the new leader is elected early
def test_a_leader_cut_off_in_its_lease_serves_no_stale_read(seed: int) -> None:
    c, lead = _with_leader(seed)
    _cut_off_in_its_lease(c, lead)
    assert c.clock is not None and not c.clock.lease_holds(lead)


def test_a_late_timeout_now_does_not_elect_a_leader_inside_a_lease() -> None:
    c, lead = _with_leader(1)
    assert c.clock is not None
    target = min(i for i in c.ids if i != lead)
    c.transfer_leadership(lead, target)
    [pos] = [i for i, e in enumerate(c.inflight) if e.msg.type is MessageType.TIMEOUT_NOW]
    c.park(pos)  # delayed
    for _ in range(300):  # the transfer expires; the leader goes on leading
        c.clock.advance(0.01)
        c.deliver_all()
    assert c.leader() == lead
    assert c.read(lead, b"renewed")  # a lease confirmed after the transfer expired
    c.deliver_all()
    c.unpark(0)  # the late TIMEOUT_NOW
    c.isolate(lead)
    c.deliver_all()
    new = c.leader()
    if new not in (None, lead):
        assert c.propose(new, b"after") is not None
        c.deliver_all()
