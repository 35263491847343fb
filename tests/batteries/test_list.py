"""ReplList mirrors a list: same outcomes (values and exceptions), same
contents on every node, also after a snapshot; refused calls change nothing."""

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

from raftkit.batteries import ReplList

values = st.integers(-3, 3)
positions = st.integers(-4, 4)
ops = sequences(
    st.one_of(
        st.tuples(st.just("reset"), st.lists(values, max_size=5)),
        st.tuples(st.just("set"), positions, values),
        st.tuples(st.just("__setitem__"), positions, values),
        st.tuples(st.just("append"), values),
        st.tuples(st.just("extend"), st.lists(values, max_size=3)),
        st.tuples(st.just("insert"), positions, values),
        st.tuples(st.just("remove"), values),
        st.tuples(st.just("pop"), st.none() | positions),
        st.tuples(st.just("sort"), st.booleans()),
    )
)


def on_battery(lst: ReplList, op: tuple[Any, ...]) -> Any:
    name, *args = op
    return getattr(lst, name)(*args, sync=True, timeout=10)


def on_model(model: list[Any], op: tuple[Any, ...]) -> Any:
    name, *args = op
    if name == "reset":
        model[:] = args[0]
        return None
    if name in ("set", "__setitem__"):
        model[args[0]] = args[1]
        return None
    if name == "pop":
        return model.pop(-1 if args[0] is None else args[0])
    if name == "sort":
        model.sort(reverse=args[0])
        return None
    return getattr(model, name)(*args)


SPEC = Spec(
    kind="list",
    new_model=list,
    reset=lambda lst: lst.reset([], sync=True, timeout=10),
    on_battery=on_battery,
    on_model=on_model,
    state=lambda lst: list(lst.rawData()),
    model_state=list,
)


@PROPERTY_SETTINGS
@example(ops=[(0, ("extend", [3, 1, 2])), (1, ("sort", False)), (2, ("pop", 0))], snapshot_at=2)
@given(ops=ops, snapshot_at=snapshot_at)
def test_list_matches_a_list_on_every_node(bc: BatteryCluster, ops: Ops, snapshot_at: Any) -> None:
    model = check_ops(bc, SPEC, ops, snapshot_at)
    for lst in bc.replicas("list"):  # every node answers reads like the list
        assert len(lst) == lst.len() == len(model)
        assert list(lst) == model and [lst[i] for i in range(len(model))] == model
        for v in range(-3, 4):
            assert lst.count(v) == model.count(v) and (v in lst) == (v in model)
            if v in model:
                assert lst.index(v) == model.index(v)
        if model:
            assert lst.get(-1) == model[-1]


def test_refused_calls_raise_clear_errors_and_change_nothing(no_new_threads: None) -> None:
    lst = ReplList()
    with single_node(lst):
        lst.extend([3, "a", 1], sync=True)
        with pytest.raises(TypeError):
            lst.sort(sync=True)  # int and str cannot be compared
        with pytest.raises(ValueError, match=r"ReplList.remove\(99\)"):
            lst.remove(99, sync=True)
        with pytest.raises(IndexError, match="index 7 out of range"):
            lst.pop(7, sync=True)
        with pytest.raises(IndexError, match="out of range"):
            lst.set(-4, "x", sync=True)
        with pytest.raises(ValueError, match=r"ReplList.index\('zz'\)"):
            lst.index("zz")
        with pytest.raises(TypeError, match="needs a list"):
            lst.reset({"not": "a list"}, sync=True)
        assert lst.rawData() == [3, "a", 1]
        lst.reset([], sync=True)
        with pytest.raises(IndexError, match="pop from an empty ReplList"):
            lst.pop(sync=True)
        lst.append(5)  # asynchronous: ordered before the next call from this node
        lst[0] = 6  # __setitem__ is a replicated (asynchronous) call too
        assert lst.pop(sync=True) == 6 and len(lst) == 0
