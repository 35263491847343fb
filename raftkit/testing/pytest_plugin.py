"""raftkit's pytest plugin: clusters as fixtures, for testing code built on
raftkit.

Installing raftkit registers it (the ``pytest11`` entry point ``raftkit``),
so these fixtures are there in any test suite; nothing of raftkit's is
imported until a test asks for one. Disable it with ``-p no:raftkit``.

* ``raftkit_sim``: a factory of deterministic simulated clusters
  (``SimCluster``). ``raftkit_sim(n=3, seed=0, stable=True, **options)``;
  with ``stable=True`` (the default) it runs until a leader is elected and
  committed, so a test's first command does real work instead of being
  dropped.
* ``raftkit_cluster``: a ``LocalCluster`` of 3 real nodes in this process
  on an in-memory network (threads, event loops, timers), closed after the
  test, which then fails if a node thread is left behind.
* ``raftkit_processes``: a factory of ``ProcessCluster`` (real node
  processes on 127.0.0.1), every one closed and reaped after the test.

Example (``test_counter.py``)::

    def test_a_command_is_applied_everywhere(raftkit_sim):
        sim = raftkit_sim(n=3, seed=1)
        leader = sim.leader()
        index = sim.propose(leader, b"incr-1")
        sim.run_until(lambda: all(sim.nodes[n].applied_index >= index for n in sim.ids))

It imports only ``raftkit.testing`` (inside the fixtures).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from raftkit.testing.cluster import LocalCluster
    from raftkit.testing.process_cluster import ProcessCluster
    from raftkit.testing.sim import SimCluster

__all__ = ["raftkit_cluster", "raftkit_processes", "raftkit_sim"]


@pytest.fixture
def raftkit_sim() -> Callable[..., SimCluster]:
    """``raftkit_sim(n=3, seed=0, stable=True, **options) -> SimCluster``;
    ``options`` are ``SimCluster``'s keyword arguments."""
    from raftkit.testing.sim import SimCluster

    def make(n: int = 3, seed: int = 0, *, stable: bool = True, **options: Any) -> SimCluster:
        sim = SimCluster(n, seed, **options)
        if stable:
            sim.stabilize()
        return sim

    return make


@pytest.fixture
def raftkit_cluster() -> Iterator[LocalCluster]:
    """Three real nodes in this process (``node1``..``node3``); add
    ``SyncObj``s or ``Node``s to it. Closed after the test."""
    from raftkit.testing.cluster import LocalCluster, node_threads, wait_until

    with LocalCluster(3) as cluster:
        yield cluster
    wait_until(lambda: not node_threads(), timeout=5.0, what="every node thread of raftkit_cluster to end")


@pytest.fixture
def raftkit_processes() -> Iterator[Callable[..., ProcessCluster]]:
    """``raftkit_processes(n=3, **options) -> ProcessCluster``: real node
    processes on 127.0.0.1; all of them are closed after the test."""
    from raftkit.testing.process_cluster import ProcessCluster

    started: list[ProcessCluster] = []

    def make(n: int = 3, **options: Any) -> ProcessCluster:
        cluster = ProcessCluster(n, **options)
        started.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in started:
            cluster.close()
