"""While a node runs, the collector's first threshold is at least
``NodeConfig.gc_threshold``; the program's own setting comes back when the
last node stops, and a change the program made meanwhile is never undone."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from raftkit import SyncObj
from raftkit.runtime import gc_tuning
from raftkit.runtime.config import NodeConfig
from raftkit.testing.cluster import LocalCluster, fast_conf
from raftkit.testing.kv import KeyValueStateMachine
from raftkit.transports.memory import MemoryNetwork, MemoryTransport

PROGRAM = (700, 10, 10)  # what the program under test set before any node started


@pytest.fixture(autouse=True)
def program_thresholds(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from PROGRAM with no node holding the threshold, and
    leaves the process's own setting as it found it."""
    before = gc.get_threshold()
    monkeypatch.setattr(gc_tuning, "_holders", 0)
    monkeypatch.setattr(gc_tuning, "_saved", None)
    monkeypatch.setattr(gc_tuning, "_ours", None)
    gc.set_threshold(*PROGRAM)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def solo(name: str, **conf: object) -> SyncObj:
    return SyncObj(name, [], fast_conf(**conf), transport=MemoryTransport(MemoryNetwork()))


def test_a_running_node_raises_the_first_threshold_and_its_stop_restores_the_programs() -> None:
    node = solo("a")
    try:
        assert gc.get_threshold() == (50_000, 10, 10)
    finally:
        node.destroy()
    assert gc.get_threshold() == PROGRAM


def test_the_setting_comes_back_only_when_the_last_node_stops() -> None:
    a, b = solo("a"), solo("b")
    a.destroy()
    assert gc.get_threshold() == (50_000, 10, 10)
    a.destroy()  # a second stop releases nothing more
    assert gc.get_threshold() == (50_000, 10, 10)
    b.destroy()
    assert gc.get_threshold() == PROGRAM


def test_none_leaves_the_collector_alone() -> None:
    node = solo("a", gc_threshold=None)
    try:
        assert gc.get_threshold() == PROGRAM
    finally:
        node.destroy()
    assert gc.get_threshold() == PROGRAM


@pytest.mark.parametrize(
    "program",
    [(200_000, 5, 5), (0, 10, 10)],
    ids=["already-higher-is-kept", "zero-keeps-automatic-collection-off"],
)
def test_a_program_threshold_the_node_must_not_raise_is_left_alone(program: tuple[int, int, int]) -> None:
    gc.set_threshold(*program)
    node = solo("a")
    assert gc.get_threshold() == program
    node.destroy()
    assert gc.get_threshold() == program


def test_a_change_the_program_makes_while_nodes_run_is_not_undone() -> None:
    node = solo("a")
    gc.set_threshold(1_000, 20, 20)
    node.destroy()
    assert gc.get_threshold() == (1_000, 20, 20)


def test_a_node_asking_for_more_raises_it_further_and_all_of_it_is_restored() -> None:
    a = solo("a", gc_threshold=20_000)
    assert gc.get_threshold() == (20_000, 10, 10)
    b = solo("b", gc_threshold=80_000)
    assert gc.get_threshold() == (80_000, 10, 10)
    b.destroy()
    a.destroy()
    assert gc.get_threshold() == PROGRAM


def test_a_program_change_while_nothing_was_raised_is_not_undone_either() -> None:
    gc.set_threshold(200_000, 10, 10)
    a = solo("a")  # already higher: nothing raised
    gc.set_threshold(700, 10, 10)  # the program lowers it while a runs
    b = solo("b")
    assert gc.get_threshold() == (50_000, 10, 10)
    a.destroy()
    b.destroy()
    assert gc.get_threshold() == (700, 10, 10)  # its latest setting, not the one a found


def test_a_node_stopped_while_it_starts_leaves_nothing_raised() -> None:
    async def main() -> None:
        with LocalCluster(1) as cluster:
            node = cluster.add_node("node1", KeyValueStateMachine(), start=False)
            real_astart = node.transport.astart
            inside, go_on = asyncio.Event(), asyncio.Event()

            async def slow_astart(*args: Any, **kwargs: Any) -> None:
                await real_astart(*args, **kwargs)
                inside.set()
                await go_on.wait()  # as a TCP listener being set up: the stop lands here

            node.transport.astart = slow_astart  # type: ignore[method-assign]
            starting = asyncio.ensure_future(node.astart())
            await asyncio.wait_for(inside.wait(), 5.0)
            await node.astop()
            go_on.set()
            with contextlib.suppress(Exception):
                await starting
        assert gc.get_threshold() == PROGRAM

    asyncio.run(main())
    assert gc.get_threshold() == PROGRAM
    assert gc_tuning._holders == 0


def test_a_hold_released_before_it_was_taken_takes_nothing() -> None:
    hold = gc_tuning.CollectorHold(50_000)
    hold.release()
    hold.acquire()
    assert gc.get_threshold() == PROGRAM and gc_tuning._holders == 0


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "50000"])
def test_a_threshold_that_is_not_a_positive_int_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="gc_threshold"):
        NodeConfig(gc_threshold=bad)  # type: ignore[arg-type]
    assert gc.get_threshold() == PROGRAM
