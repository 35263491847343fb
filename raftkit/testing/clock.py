"""A clock model for SimCluster: real time, node clocks with tick phase and
bounded drift, and leader leases checked for linearizability.

Without a clock the simulator counts ticks only, which cannot say whether a
lease (measured in seconds on the leader's clock) outlives the followers'
refusal to vote (counted in their own ticks). With a ``ClockModel``:

* real time ``now`` advances only through ``advance`` (``SimCluster.tick``
  advances it by one nominal tick); messages arrive at the real time they
  are delivered, with no latency (the hardest case for a lease);
* each node's clock runs at its own rate, within ``drift`` of real time
  (and of every other clock), and ticks its core whenever its clock crosses
  a multiple of ``tick_interval`` from its own phase; a restarted process
  starts its tick timer afresh (a new phase);
* a leader holds a lease from the start of a ReadIndex round (on its own
  clock) that a quorum confirmed in its term, for as long as raftkit's
  lease code says (``lease_span``, the one seam to raftkit.runtime.reads);
* after every step, every node whose lease holds now could serve a lease
  read now (or an instant later): its committed log must hold every write
  acknowledged so far, by any leader. Otherwise the read is stale.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from raftkit.core.types import NodeId, Role
from raftkit.runtime.config import NodeConfig
from raftkit.testing.invariants import InvariantViolation

if TYPE_CHECKING:
    from raftkit.core.raft import Raft
    from raftkit.testing.sim import Proposal, SimCluster

# --- The seam to raftkit's lease code: the only lines that know how raftkit
# computes a lease. Re-point them here when it changes.
from raftkit.runtime.lease import config_lease


def lease_span(config: NodeConfig) -> float:
    """Seconds, on the leader's clock from the start of a ReadIndex round a
    quorum confirmed, for which raftkit serves lease reads without a round."""
    return config_lease(config)


def drift_bound(config: NodeConfig) -> float:
    """The relative clock-rate difference raftkit's leases allow for."""
    return config.lease_drift


def lease_fenced(raft: Raft) -> bool:
    """Whether raftkit serves no lease reads on this leader for another
    reason than time: it sent a TIMEOUT_NOW in its term (after the fix)."""
    return getattr(raft, "timeout_now_term", None) == raft.term


# ------------------------------------------------------------------------------------------


@dataclass
class _Clock:
    rate: float  # seconds of this clock per real second
    offset: float  # this clock's reading at real time 0
    next_tick: float  # reading at which the node ticks next


@dataclass
class _Lease:
    term: int
    started: float  # the round's start, on the leader's clock


class ClockModel:
    def __init__(self, config: NodeConfig, seed: int = 0, drift: float | None = None) -> None:
        """``drift``: how far each node's clock rate may stray from real time
        (a rate in ``[1, 1 + drift]``); by default half the bound raftkit's
        leases allow for, so any two clocks stay within it."""
        self.config = config
        self.tick_interval = config.tick_interval
        self.drift = drift_bound(config) / 2 if drift is None else drift
        if not 0 <= self.drift < 1:
            raise ValueError(f"drift must be in [0, 1), not {self.drift}")
        self.rng = random.Random(f"clock/{seed}")
        self.now = 0.0
        self.clocks: dict[NodeId, _Clock] = {}
        self.leases: dict[NodeId, _Lease] = {}
        self._rounds: dict[bytes, tuple[NodeId, int, float]] = {}  # ctx -> (node, term, start)
        self.ack_times: dict[bytes, float] = {}
        self._cluster: SimCluster | None = None

    def attach(self, cluster: SimCluster) -> None:
        """Called by SimCluster: check the cluster ticks as ``config`` says."""
        want = (self.config.election_tick, self.config.heartbeat_tick)
        have = (cluster._config["election_tick"], cluster._config["heartbeat_tick"])
        if want != have:
            raise ValueError(
                f"the clock's NodeConfig gives election_tick/heartbeat_tick {want}, the cluster has {have}:"
                " build SimCluster with the same values"
            )
        if not cluster._config["check_quorum"]:
            raise ValueError("leases need check_quorum: build SimCluster with check_quorum=True")
        self._cluster = cluster

    def _clock(self, node: NodeId) -> _Clock:
        clock = self.clocks.get(node)
        if clock is None:
            rate = 1 + self.rng.uniform(0, self.drift)
            offset = self.rng.uniform(0, 1000)
            clock = _Clock(rate, offset, 0.0)
            clock.next_tick = self._reading(clock) + self.rng.uniform(0, self.tick_interval)
            self.clocks[node] = clock
        return clock

    def _reading(self, clock: _Clock) -> float:
        return clock.offset + clock.rate * self.now

    def local(self, node: NodeId) -> float:
        """What ``node``'s clock reads now."""
        return self._reading(self._clock(node))

    def restarted(self, node: NodeId) -> None:
        """A restarted process: its tick timer starts now; its leases are gone."""
        clock = self._clock(node)
        clock.next_tick = self._reading(clock) + self.tick_interval
        self.leases.pop(node, None)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of real time pass, ticking each live node whenever its clock says."""
        cluster = self._cluster
        assert cluster is not None, "attach the clock to a SimCluster first"
        end = self.now + seconds
        for _ in range(100_000):  # bounded: each pass ticks one node, at most ~nodes*seconds/tick
            due = []
            for node in cluster.ids:
                if cluster.nodes[node].alive:
                    clock = self._clock(node)
                    due.append(((clock.next_tick - clock.offset) / clock.rate, node))
            if not due or min(due)[0] > end:
                break
            at, node = min(due)
            self.now = max(self.now, at)
            self.clocks[node].next_tick += self.tick_interval
            cluster._tick_node(node)
        else:
            raise RuntimeError("the clock ticked too often; is tick_interval tiny?")
        self.now = end

    # -- leases ---------------------------------------------------------------------------

    def read_issued(self, node: NodeId, ctx: bytes, term: int) -> None:
        self._rounds[ctx] = (node, term, self.local(node))

    def read_confirmed(self, node: NodeId, ctx: bytes) -> None:
        """A ReadState arrived on ``node``: if it leads the round's term, the round renews its lease."""
        issued = self._rounds.pop(ctx, None)
        raw = self._cluster.nodes[node].raw if self._cluster is not None else None
        if issued is None or raw is None or issued[0] != node:
            return
        _, term, started = issued
        if raw.raft.role is Role.LEADER and raw.raft.term == term:
            lease = self.leases.get(node)
            if lease is None or lease.term != term or started > lease.started:
                self.leases[node] = _Lease(term, started)

    def acked(self, proposal: Proposal) -> None:
        self.ack_times.setdefault(proposal.data, self.now)

    def lease_holds(self, node: NodeId) -> bool:
        """Whether ``node`` would serve a lease read now (ReadBarriers.lease_valid's conditions)."""
        cluster = self._cluster
        lease = self.leases.get(node)
        raw = cluster.nodes[node].raw if cluster is not None else None
        if lease is None or raw is None:
            return False
        raft = raw.raft
        if raft.role is not Role.LEADER or raft.term != lease.term or raft.lead_transferee is not None:
            return False
        if raft.log.term_or_zero(raft.log.committed) != raft.term or lease_fenced(raft):
            return False
        return self.local(node) < lease.started + lease_span(self.config)

    def check_leases(self) -> None:
        """A lease read on any node whose lease holds now sees every write acknowledged so far."""
        cluster = self._cluster
        if cluster is None or not self.ack_times:
            return
        for node in list(self.leases):
            if not self.lease_holds(node):
                continue
            raw = cluster.nodes[node].raw
            assert raw is not None
            log = raw.raft.log
            first = log.first_index()
            missing = [
                p
                for p in cluster.proposals.values()
                if p.acked
                and p.index >= first  # older ones are in its snapshot
                and not (p.index <= log.committed and log.term_or_zero(p.index) == p.term)
            ]
            if missing:
                p = missing[0]
                lease, clock = self.leases[node], self._clock(node)
                raise InvariantViolation(
                    f"stale lease read: at t={self.now:.4f}s leader {node} (term {raw.raft.term}) serves"
                    f" lease reads (round started at t={(lease.started - clock.offset) / clock.rate:.4f}s,"
                    f" lease {lease_span(self.config):.3f}s on its clock) at commit {log.committed}, but"
                    f" {p.data!r} ({p.term}/{p.index}) was acknowledged at t={self.ack_times[p.data]:.4f}s"
                    f" by {p.node}"
                )
