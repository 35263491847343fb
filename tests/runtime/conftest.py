"""Shared fixtures for the runtime tests: a LocalCluster that is always
closed, and a check that no test leaves a node thread behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from raftkit.testing.cluster import LocalCluster, node_threads, wait_until


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    yield
    wait_until(lambda: not node_threads(), timeout=5.0, what="every node thread to end")


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(3) as c:
        yield c
