"""ReplSet mirrors a set: same outcomes, same members on every node, also
after a snapshot; ``pop`` picks the same element on every node."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from battery_harness import (
    PROPERTY_SETTINGS,
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

from raftkit.batteries import ReplSet
from raftkit.batteries._base import stable_key

# Lists are unhashable: adding one must fail the same way on both sides.
elements = st.one_of(
    st.integers(0, 4), st.sampled_from(["a", "b", "c", (1, "x")]), st.lists(st.integers(0, 1), max_size=1)
)
ops = sequences(
    st.one_of(
        st.tuples(st.just("reset"), st.lists(st.integers(0, 4), max_size=4)),
        st.tuples(st.just("add"), elements),
        st.tuples(st.just("remove"), elements),
        st.tuples(st.just("discard"), elements),
        st.tuples(st.just("pop")),
        st.tuples(st.just("clear")),
        st.tuples(st.just("update"), st.lists(elements, max_size=3)),
    )
)


def on_battery(s: ReplSet, op: tuple[Any, ...]) -> Any:
    name, *args = op
    return getattr(s, name)(*args, sync=True, timeout=10)


def on_model(model: set[Any], op: tuple[Any, ...]) -> Any:
    name, *args = op
    if name == "reset":
        model.clear()
        model.update(args[0])
        return None
    if name == "pop":  # the documented choice: the smallest by stable_key
        if not model:
            raise KeyError("pop from an empty set")
        item = min(model, key=stable_key)
        model.remove(item)
        return item
    if name == "update":
        model.update(set(args[0]))  # all or nothing, like ReplSet.update
        return None
    return getattr(model, name)(*args)


SPEC = Spec(
    kind="set",
    new_model=set,
    reset=lambda s: s.reset([], sync=True, timeout=10),
    on_battery=on_battery,
    on_model=on_model,
    state=lambda s: set(s.rawData()),
    model_state=set,
)


@PROPERTY_SETTINGS
@example(ops=[(0, ("update", ["c", 1, (1, "x")])), (1, ("pop",)), (2, ("add", "a"))], snapshot_at=2)
@given(ops=ops, snapshot_at=snapshot_at)
def test_set_matches_a_set_on_every_node(bc: BatteryCluster, ops: Ops, snapshot_at: Any) -> None:
    model = check_ops(bc, SPEC, ops, snapshot_at)
    for s in bc.replicas("set"):
        assert len(s) == s.len() == len(model) and set(s) == model
        for e in [0, 1, 2, 3, 4, "a", "b", "c", (1, "x")]:
            assert (e in s) == s.contains(e) == (e in model)


def test_pop_from_an_empty_set_and_remove_of_a_non_member_raise_key_error(no_new_threads: None) -> None:
    s = ReplSet()
    with single_node(s):
        with pytest.raises(KeyError, match="pop from an empty ReplSet"):
            s.pop(sync=True)
        with pytest.raises(KeyError, match="not a member"):
            s.remove("x", sync=True)
        s.update(["b", "a"], sync=True)
        with pytest.raises(TypeError):
            s.update(["c", ["unhashable"]], sync=True)
        assert s.rawData() == {"a", "b"}  # all or nothing
        assert s.pop(sync=True) == "a"


POP_ORDER = """
from raftkit.batteries._base import stable_key
items = {"pear", "apple", "fig", ("t", 1), 3, b"x", None, 2.5, frozenset({"q", "r"})}
print([stable_key(x) for x in sorted(items, key=stable_key)])  # a frozenset's repr varies
"""


def test_pop_order_does_not_depend_on_the_hash_seed() -> None:
    """Nodes run with different PYTHONHASHSEEDs; set.pop() would pick
    different elements on each, ReplSet.pop must not."""
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        cmd = [sys.executable, "-c", POP_ORDER]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=30)
        outputs.add(done.stdout)
    assert len(outputs) == 1
