"""Shared harness for the battery tests (imported by their modules).

``BatteryCluster`` runs one 3-node in-process cluster whose SyncObjs carry
one instance of every battery. A property test drives one battery and a
plain Python model through the same operation sequence (``check_ops``):
every call must have the same outcome as on the model, every node must end
in the model's state, and so must a node that starts empty after the log
was compacted and the leader changed (it gets the state from a snapshot) and a copy restored from
a snapshot taken by hand.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from raftkit import SyncObj
from raftkit.batteries import ReplCounter, ReplDict, ReplList, ReplPriorityQueue, ReplQueue, ReplSet
from raftkit.testing.cluster import LocalCluster, fast_conf, wait_until
from raftkit.transports.memory import MemoryNetwork, MemoryTransport

QUEUE_MAXSIZE = 3

# Fresh instances, in the order every node passes them as consumers.
KINDS: dict[str, Callable[[], Any]] = {
    "counter": ReplCounter,
    "list": ReplList,
    "dict": ReplDict,
    "set": ReplSet,
    "queue": lambda: ReplQueue(QUEUE_MAXSIZE),
    "pqueue": lambda: ReplPriorityQueue(QUEUE_MAXSIZE),
    "ticker": ReplCounter,  # the harness's own: a write that makes the leader probe a fresh node
}

# Moderate by default (the whole directory runs in well under a minute);
# RAFTKIT_SOAK=1 runs many more.
PROPERTY_SETTINGS = settings(
    max_examples=200 if os.environ.get("RAFTKIT_SOAK") else 12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def conf() -> Any:
    # log_compaction_keep=0: after a compaction the log holds nothing a
    # fresh node could start from, so it must be sent the snapshot.
    return fast_conf(useFork=False, log_compaction_keep=0)


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """A call's outcome, comparable between a battery and its model."""
    try:
        return ("returned", call())
    except Exception as exc:
        return ("raised", type(exc))


class BatteryCluster:
    """Three SyncObjs on a LocalCluster, each with one instance of every kind."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.kinds = list(KINDS)
        self.snapshots_installed = 0

    def make(self, address: str, partners: list[str], transport: MemoryTransport) -> SyncObj:
        consumers = [KINDS[kind]() for kind in self.kinds]
        return SyncObj(address, partners, conf(), consumers=consumers, transport=transport)

    def start(self) -> None:
        self.cluster.add_syncobjs(self.make)
        self.cluster.wait_leader()

    def replicas(self, kind: str) -> list[Any]:
        """The battery ``kind`` on every node, in address order."""
        i = self.kinds.index(kind)
        return [self.cluster.objs[a]._rk_consumers[i] for a in self.cluster.addresses]

    def converge(self, kind: str, state: Callable[[Any], Any], expected: Any) -> None:
        """Wait until every node applied all the leader committed, then until
        every replica equals ``expected``. (The state alone can match too
        early: a replica that has not yet applied a put and the get after it
        looks like the final, empty queue.)"""
        objs = self.cluster.objs
        target = objs[self.cluster.wait_leader(timeout=10)].status()["commit_index"]
        wait_until(
            lambda: all(objs[a].status()["applied_index"] >= target for a in self.cluster.addresses),
            timeout=10,
            what=f"every node to apply up to index {target}",
        )
        wait_until(
            lambda: all(state(b) == expected for b in self.replicas(kind)),
            timeout=10,
            what=f"every node's {kind} to equal {expected!r}",
        )

    def replace_leader_from_snapshot(self) -> None:
        """Compact every node's log, then replace the leader by an empty
        node. The new leader knows nothing of that node's log, so it probes
        it and, the log being compacted, can only send it the snapshot.
        (Replacing a follower would not do: the leader remembers what the
        old one had stored and never looks back.)"""
        leader = self.cluster.wait_leader(timeout=10)
        for obj in self.cluster.objs.values():
            obj.force_log_compaction().result(10)
        self.cluster.stop(leader)
        fresh = self.cluster.add_syncobj(leader, self.make)
        new_leader = self.cluster.wait_leader(timeout=10, exclude=leader)
        # A write in the new leader's term, so there is something to catch up to.
        self.replicas("ticker")[self.cluster.addresses.index(new_leader)].inc(sync=True, timeout=10)
        target = self.cluster.objs[new_leader].status()["commit_index"]
        wait_until(
            lambda: fresh.status()["applied_index"] >= target, timeout=10, what="the fresh node to catch up"
        )
        assert fresh.status()["log_first_index"] > 1, "the fresh node should have started from a snapshot"
        # Until the leader readmits it, the empty node neither votes nor counts
        # toward a quorum: replacing another node before then would leave one.
        wait_until(lambda: not fresh.status()["recovering"], timeout=10, what="the fresh node's readmission")
        self.snapshots_installed += 1

    def restored_copy(self, kind: str) -> Any:
        """The battery ``kind`` as restored, on a node never started, from
        a snapshot of the leader's state machine."""
        leader = self.cluster.wait_leader(timeout=10)
        data = self.cluster.objs[leader].get_node().state_machine.snapshot()
        consumers = [KINDS[k]() for k in self.kinds]
        transport = MemoryTransport(MemoryNetwork())
        offline = SyncObj("offline", [], fast_conf(autoTick=False), consumers=consumers, transport=transport)
        offline.get_node().state_machine.restore(data)
        offline.destroy()
        return consumers[self.kinds.index(kind)]


@contextmanager
def single_node(*consumers: Any) -> Iterator[SyncObj]:
    """A one-node cluster carrying ``consumers``, stopped on exit."""
    with LocalCluster(1, prefix="solo") as cluster:

        def make(address: str, partners: list[str], transport: MemoryTransport) -> SyncObj:
            return SyncObj(address, partners, fast_conf(), consumers=list(consumers), transport=transport)

        yield cluster.add_syncobj("solo1", make)


@dataclass
class Spec:
    """How to drive one battery and its model with the same operations."""

    kind: str
    new_model: Callable[[], Any]
    reset: Callable[[Any], None]  # bring the battery back to the empty state (replicated)
    on_battery: Callable[[Any, tuple[Any, ...]], Any]
    on_model: Callable[[Any, tuple[Any, ...]], Any]
    state: Callable[[Any], Any]  # the battery's state, comparable with model_state
    model_state: Callable[[Any], Any]


Ops = list[tuple[int, tuple[Any, ...]]]


def check_ops(bc: BatteryCluster, spec: Spec, ops: Ops, snapshot_at: int | None) -> Any:
    """Run ``ops`` (each ``(node, operation)``) on the battery through that
    node and on the model; return the model at the end."""
    spec.reset(bc.replicas(spec.kind)[0])
    model = spec.new_model()
    for n, (via, op) in enumerate(ops):
        if n == snapshot_at:
            bc.replace_leader_from_snapshot()
        battery = bc.replicas(spec.kind)[via % 3]
        expected = outcome(lambda: spec.on_model(model, op))  # noqa: B023 - called at once
        got = outcome(lambda: spec.on_battery(battery, op))  # noqa: B023
        assert got == expected, f"{op!r} via node {via}: battery {got!r}, model {expected!r}"
    if snapshot_at is not None and snapshot_at >= len(ops):
        bc.replace_leader_from_snapshot()
    expected_state = spec.model_state(model)
    bc.converge(spec.kind, spec.state, expected_state)
    assert spec.state(bc.restored_copy(spec.kind)) == expected_state
    return model


# -- strategies -------------------------------------------------------------------------

MAX_OPS = 12

# Which node each call goes through, and where (if anywhere) in the sequence
# the leader is replaced by an empty node that must install a snapshot.
via = st.integers(0, 2)
snapshot_at = st.none() | st.integers(0, MAX_OPS)


def sequences(op: st.SearchStrategy[tuple[Any, ...]]) -> st.SearchStrategy[Ops]:
    return st.lists(st.tuples(via, op), max_size=MAX_OPS)
