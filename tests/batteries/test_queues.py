"""ReplQueue mirrors queue.Queue and ReplPriorityQueue a heapq heap, with
a size limit: same outcomes, same contents on every node, also after a
snapshot."""

from __future__ import annotations

import heapq
import queue
from typing import Any

import pytest
from battery_harness import (
    PROPERTY_SETTINGS,
    QUEUE_MAXSIZE,
    BatteryCluster,
    Ops,
    Spec,
    check_ops,
    sequences,
    single_node,
    snapshot_at,
)
from hypothesis import example, given
from hypothesis import strategies as st

from raftkit.batteries import ReplPriorityQueue, ReplQueue

queue_ops = sequences(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 9)),
        st.tuples(st.just("put_nowait"), st.integers(0, 9)),
        st.tuples(st.just("get"), st.none() | st.just("empty")),
        st.tuples(st.just("get_nowait")),
    )
)
# A str among ints cannot be ordered: put must refuse it and change nothing.
pqueue_ops = sequences(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 9) | st.just("str")),
        st.tuples(st.just("put_nowait"), st.integers(0, 9)),
        st.tuples(st.just("get"), st.none() | st.just("empty")),
        st.tuples(st.just("get_nowait")),
    )
)


def on_battery(q: Any, op: tuple[Any, ...]) -> Any:
    name, *args = op
    return getattr(q, name)(*args, sync=True, timeout=10)


def on_queue_model(model: queue.Queue[Any], op: tuple[Any, ...]) -> Any:
    name, *args = op
    if name == "put":  # PySyncObj: False when full
        try:
            model.put_nowait(args[0])
        except queue.Full:
            return False
        return True
    if name == "get":  # PySyncObj: the default when empty
        try:
            return model.get_nowait()
        except queue.Empty:
            return args[0]
    return getattr(model, name)(*args)


class HeapModel:
    """A plain heapq-based priority queue with a size limit."""

    def __init__(self) -> None:
        self.heap: list[Any] = []

    def push(self, item: Any) -> None:
        trial = list(self.heap)
        heapq.heappush(trial, item)  # TypeError: unchanged
        self.heap = trial

    def apply(self, op: tuple[Any, ...]) -> Any:
        name, *args = op
        full = len(self.heap) >= QUEUE_MAXSIZE
        if name == "put":
            if full:
                return False
            self.push(args[0])
            return True
        if name == "put_nowait":
            if full:
                raise queue.Full
            self.push(args[0])
            return None
        if not self.heap:
            if name == "get_nowait":
                raise queue.Empty
            return args[0]
        return heapq.heappop(self.heap)


QUEUE = Spec(
    kind="queue",
    new_model=lambda: queue.Queue(QUEUE_MAXSIZE),
    reset=lambda q: [q.get(sync=True, timeout=10) for _ in range(QUEUE_MAXSIZE)],
    on_battery=on_battery,
    on_model=on_queue_model,
    state=lambda q: list(q.rawData()),
    model_state=lambda m: list(m.queue),
)

PQUEUE = Spec(
    kind="pqueue",
    new_model=HeapModel,
    reset=lambda q: [q.get(sync=True, timeout=10) for _ in range(QUEUE_MAXSIZE)],
    on_battery=on_battery,
    on_model=lambda m, op: m.apply(op),
    state=lambda q: list(q.rawData()),  # the heap's exact layout
    model_state=lambda m: list(m.heap),
)


@PROPERTY_SETTINGS
@example(ops=[(0, ("put", 1)), (1, ("put", 2)), (2, ("get", None))], snapshot_at=2)
@given(ops=queue_ops, snapshot_at=snapshot_at)
def test_queue_matches_queue_queue_on_every_node(bc: BatteryCluster, ops: Ops, snapshot_at: Any) -> None:
    model = check_ops(bc, QUEUE, ops, snapshot_at)
    for q in bc.replicas("queue"):
        expected = (model.qsize(), model.qsize(), model.empty(), model.full())
        assert (q.qsize(), len(q), q.empty(), q.full()) == expected


@PROPERTY_SETTINGS
@example(ops=[(0, ("put", 5)), (1, ("put", 2)), (2, ("put", 7))], snapshot_at=2)
@given(ops=pqueue_ops, snapshot_at=snapshot_at)
def test_priority_queue_matches_a_heap_on_every_node(bc: BatteryCluster, ops: Ops, snapshot_at: Any) -> None:
    model = check_ops(bc, PQUEUE, ops, snapshot_at)
    n = len(model.heap)
    for q in bc.replicas("pqueue"):
        assert (q.qsize(), q.empty(), q.full()) == (n, n == 0, n >= QUEUE_MAXSIZE)


def test_full_and_empty_queues(no_new_threads: None) -> None:
    q, pq = ReplQueue(maxsize=2), ReplPriorityQueue(maxsize=2)
    with single_node(q, pq):
        assert q.maxsize == pq.maxsize == 2
        assert q.get(sync=True) is None and q.get("none left", sync=True) == "none left"
        with pytest.raises(queue.Empty, match="ReplQueue is empty"):
            q.get_nowait(sync=True)
        assert [q.put(x, sync=True) for x in "abc"] == [True, True, False]  # PySyncObj: False when full
        assert q.full() and q.qsize() == 2
        with pytest.raises(queue.Full, match=r"ReplQueue is full \(maxsize=2\)"):
            q.put_nowait("c", sync=True)
        assert [q.get(sync=True), q.get_nowait(sync=True)] == ["a", "b"] and q.empty()

        assert pq.put((2, "later"), sync=True) and pq.put((1, "first"), sync=True)
        assert not pq.put((0, "no room"), sync=True)
        assert pq.get(sync=True) == (1, "first")
        with pytest.raises(TypeError, match="must be comparable"):
            pq.put_nowait("not a tuple", sync=True)
        assert pq.rawData() == [(2, "later")]  # the refused item is not left behind
        assert pq.get(sync=True) == (2, "later") and pq.get(sync=True) is None
        with pytest.raises(queue.Empty):
            pq.get_nowait(sync=True)
    unbounded = ReplQueue()
    assert unbounded.maxsize == 0 and not unbounded.full()


def test_a_refused_put_leaves_the_heap_exactly_as_it_was() -> None:
    """Found by StateMachineConformance: the refused put used to take the item
    out again and heapify(), which reordered the heap (the snapshot changed)."""
    pq = ReplPriorityQueue()
    for item in [(0, "a"), (1, None), (0, "a")]:
        pq._push(item)
    before = list(pq._heap)
    with pytest.raises(TypeError, match="must be comparable"):
        pq._push((0, None))
    assert pq._heap == before == [(0, "a"), (1, None), (0, "a")]
