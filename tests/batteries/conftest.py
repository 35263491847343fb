"""Fixtures for the battery tests: the shared battery cluster, and a check
that a test leaves no node or keeper thread behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from battery_harness import BatteryCluster

from raftkit.testing.cluster import LocalCluster, node_threads, wait_until


@pytest.fixture(scope="module")
def bc() -> Iterator[BatteryCluster]:
    before = set(node_threads())
    with LocalCluster(3, prefix="bat") as cluster:
        bc = BatteryCluster(cluster)
        bc.start()
        yield bc
    wait_until(lambda: set(node_threads()) <= before, timeout=5, what="the battery cluster's threads to end")


@pytest.fixture
def no_new_threads() -> Iterator[None]:
    """Every node or keeper thread a test starts has ended when it returns."""
    before = {t.ident for t in node_threads()}
    yield
    wait_until(
        lambda: not [t for t in node_threads() if t.ident not in before],
        timeout=5,
        what="the test's node and keeper threads to end",
    )
