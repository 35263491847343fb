"""The StateMachine contract as seen through the KeyValueStateMachine example."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkit.state_machines.kv import KvStateMachine
from raftkit.testing.kv import KeyValueStateMachine, del_command, set_command


def test_set_and_del_return_the_previous_value() -> None:
    sm = KeyValueStateMachine()
    assert sm.apply(set_command("k", 1)) is None
    assert sm.apply(set_command("k", [1, "two"])) == 1
    assert sm.apply(del_command("k")) == [1, "two"]
    assert sm.apply(del_command("k")) is None
    assert sm.data == {}


@pytest.mark.parametrize(
    "command",
    [
        b"\xc1",  # never-used msgpack byte
        msgpack.packb(["set", "k"]),
        msgpack.packb(["set", 1, 2]),
        msgpack.packb(["incr", "k"]),
        msgpack.packb({"set": "k"}),
        msgpack.packb([]),
    ],
)
def test_malformed_command_raises_and_changes_nothing(command: bytes) -> None:
    sm = KeyValueStateMachine()
    sm.apply(set_command("a", 1))
    with pytest.raises(ValueError):
        sm.apply(command)
    assert sm.data == {"a": 1}


def test_apply_batch_turns_exceptions_into_outcomes() -> None:
    sm = KeyValueStateMachine()
    results = sm.apply_batch([set_command("a", 1), b"\xc1", set_command("a", 2), del_command("b")])
    assert results[0] is None
    assert isinstance(results[1], ValueError)
    assert results[2:] == [1, None]
    assert sm.data == {"a": 2}


def test_snapshot_is_independent_of_insertion_order() -> None:
    one, two = KeyValueStateMachine(), KeyValueStateMachine()
    one.apply_batch([set_command("x", 1), set_command("y", 2)])
    two.apply_batch([set_command("y", 2), set_command("x", 1)])
    assert one.snapshot() == two.snapshot()


def test_restore_replaces_the_whole_state() -> None:
    source = KeyValueStateMachine()
    source.apply(set_command("kept", {"nested": [1, 2]}))
    target = KeyValueStateMachine()
    target.apply(set_command("stale", True))
    target.restore(source.snapshot())
    assert target.data == {"kept": {"nested": [1, 2]}}


def test_restore_rejects_a_non_map_snapshot() -> None:
    with pytest.raises(ValueError, match="not a key-value map"):
        KeyValueStateMachine().restore(msgpack.packb([1, 2]))


_ints = st.integers(-(2**63), 2**64 - 1)  # what msgpack can encode
_values = st.none() | _ints | st.text(max_size=5) | st.lists(_ints, max_size=3)
_commands = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), _values).map(lambda kv: set_command(*kv))
    | st.sampled_from(["a", "b", "c"]).map(del_command),
    max_size=30,
)


@settings(max_examples=50)
@given(before=_commands, after=_commands)
def test_restored_replica_behaves_like_the_original(before: list[bytes], after: list[bytes]) -> None:
    original = KeyValueStateMachine()
    original.apply_batch(before)
    replica = KeyValueStateMachine()
    replica.restore(original.snapshot())
    assert replica.apply_batch(after) == original.apply_batch(after)
    assert replica.snapshot() == original.snapshot()


@pytest.mark.parametrize("start, by", [(-(2**63) + 2, -3), (2**64 - 2, 2)])
def test_an_increment_msgpack_cannot_store_fails_and_changes_nothing(start: int, by: int) -> None:
    # Found by StateMachineConformance: the sum used to be stored, and every
    # later snapshot() then raised OverflowError (no compaction, ever).
    sm = KvStateMachine()
    sm.apply(KvStateMachine.set_command("a", start))
    before = sm.snapshot()
    with pytest.raises(ValueError, match="outside the storable range"):
        sm.apply(KvStateMachine.incr_command("a", by))
    assert sm.snapshot() == before
    assert sm.apply(KvStateMachine.incr_command("a", -by // abs(by))) == start - by // abs(by)
