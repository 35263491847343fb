"""ReplDict mirrors a dict: same outcomes, same items in the same order on
every node, also after a snapshot; refused calls change nothing."""

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

from raftkit import FAIL_REASON, CallError, SerializationError
from raftkit.batteries import ReplDict
from raftkit.testing.cluster import wait_until

KEYS = ["a", "b", "c", 1, 2, (1, "x")]
keys = st.sampled_from(KEYS)
values = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.lists(st.integers(0, 3), max_size=2))
ops = sequences(
    st.one_of(
        st.tuples(st.just("reset"), st.dictionaries(keys, values, max_size=3)),
        st.tuples(st.just("set"), keys, values),
        st.tuples(st.just("__setitem__"), keys, values),
        st.tuples(st.just("setdefault"), keys, values),
        st.tuples(st.just("update"), st.dictionaries(keys, values, max_size=3)),
        st.tuples(st.just("pop"), keys, st.none() | values),
        st.tuples(st.just("clear")),
    )
)


def on_battery(d: ReplDict, op: tuple[Any, ...]) -> Any:
    name, *args = op
    return getattr(d, name)(*args, sync=True, timeout=10)


def on_model(model: dict[Any, Any], op: tuple[Any, ...]) -> Any:
    name, *args = op
    if name == "reset":
        model.clear()
        model.update(args[0])
        return None
    if name == "set":
        name = "__setitem__"
    return getattr(model, name)(*args)


SPEC = Spec(
    kind="dict",
    new_model=dict,
    reset=lambda d: d.reset({}, sync=True, timeout=10),
    on_battery=on_battery,
    on_model=on_model,
    state=lambda d: list(d.rawData().items()),  # the order too
    model_state=lambda m: list(m.items()),
)


@PROPERTY_SETTINGS
@example(ops=[(0, ("set", "a", 1)), (1, ("update", {"b": [2]})), (2, ("pop", "a", None))], snapshot_at=2)
@given(ops=ops, snapshot_at=snapshot_at)
def test_dict_matches_a_dict_on_every_node(bc: BatteryCluster, ops: Ops, snapshot_at: Any) -> None:
    model = check_ops(bc, SPEC, ops, snapshot_at)
    for d in bc.replicas("dict"):
        assert list(d.keys()) == list(model.keys()) and list(d) == list(model)
        assert list(d.values()) == list(model.values()) and list(d.items()) == list(model.items())
        assert len(d) == d.len() == len(model)
        for k in KEYS:
            assert (k in d) == d.contains(k) == (k in model)
            assert d.get(k, "missing") == model.get(k, "missing")
            if k in model:
                assert d[k] == model[k]
            else:
                with pytest.raises(KeyError):
                    d[k]


def test_dict_syntax_errors_and_views(no_new_threads: None) -> None:
    d = ReplDict()
    with single_node(d):
        d.set("testKey1", "testValue1", sync=True)
        d["testKey2"] = "testValue2"  # asynchronous
        wait_until(lambda: d.get("testKey2") == "testValue2")
        keys = d.keys()
        d.set("k3", 3, sync=True)
        assert list(keys) == ["testKey1", "testKey2"]  # a view of a copy: iterating never races
        assert d.pop("nope", sync=True) is None  # PySyncObj: pop never raises
        with pytest.raises(ValueError):
            d.update([("ok", 1), ("too", "many", "items")], sync=True)
        assert "ok" not in d  # all or nothing
        with pytest.raises(TypeError, match="needs a dict"):
            d.reset([1, 2], sync=True)
        # A value the serializer cannot encode: refused before it is logged,
        # naming the type and the serializer.
        with pytest.raises(SerializationError, match="MsgpackSerializer cannot encode .* type object"):
            d.set("bad", object(), sync=True)
        # A failure inside the method is the call's outcome, for callbacks too.
        got: list[Any] = []
        d.update(5, callback=lambda result, err: got.append(err))
        wait_until(lambda: got)
        assert isinstance(got[0], CallError) and got[0] == FAIL_REASON.METHOD_RAISED
        assert isinstance(got[0].exception, TypeError)
        assert d.rawData() == {"testKey1": "testValue1", "testKey2": "testValue2", "k3": 3}
