"""ReplCounter mirrors an int: same outcomes, same value on every node,
also after a snapshot."""

from __future__ import annotations

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

from raftkit.batteries import ReplCounter

numbers = st.integers(-1000, 1000)
ops = sequences(
    st.one_of(
        st.tuples(st.just("set"), numbers),
        st.tuples(st.just("add"), numbers),
        st.tuples(st.just("sub"), numbers),
        st.tuples(st.just("inc")),
    )
)


def on_battery(c: ReplCounter, op: tuple[Any, ...]) -> Any:
    return getattr(c, op[0])(*op[1:], sync=True, timeout=10)


def on_model(model: list[int], op: tuple[Any, ...]) -> Any:
    name, *args = op
    if name == "set":
        model[0] = args[0]
    elif name == "add":
        model[0] += args[0]
    elif name == "sub":
        model[0] -= args[0]
    else:
        model[0] += 1
    return model[0]


SPEC = Spec(
    kind="counter",
    new_model=lambda: [0],
    reset=lambda c: c.set(0, sync=True, timeout=10),
    on_battery=on_battery,
    on_model=on_model,
    state=lambda c: c.get(),
    model_state=lambda m: m[0],
)


@PROPERTY_SETTINGS
@example(ops=[(0, ("set", 5)), (1, ("add", 3)), (2, ("inc",))], snapshot_at=2)
@given(ops=ops, snapshot_at=snapshot_at)
def test_counter_matches_an_int_on_every_node(bc: BatteryCluster, ops: Ops, snapshot_at: Any) -> None:
    check_ops(bc, SPEC, ops, snapshot_at)


def test_counter_api_and_refusals(no_new_threads: None) -> None:
    counter = ReplCounter()
    with single_node(counter):
        assert counter.get() == 0 and repr(counter) == "ReplCounter(0)"
        assert counter.set(42, sync=True) == 42
        assert counter.add(10, sync=True) == 52
        assert counter.sub(2, sync=True) == 50
        assert counter.inc(sync=True) == 51
        with pytest.raises(TypeError):  # the method's own exception, raised on every node
            counter.add("x", sync=True)
        assert counter.get() == 51 and str(counter) == "ReplCounter(51)"
