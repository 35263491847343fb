"""The built-in serializers against the Serializer conformance suite, plus
what each documents beyond it."""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkit.errors import CodecError, SerializationError
from raftkit.serializers import (
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
    get_serializer,
    msgpack_serializer,
)
from raftkit.testing.conformance.serializer import SerializerConformance, canonical


class Unregistered:
    """A class no safe serializer knows."""


def msgpack_values() -> st.SearchStrategy[Any]:
    """Everything MsgpackSerializer documents as round-tripping exactly."""
    hashable_scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=2**64)  # beyond msgpack's native range
        | st.integers(max_value=-(2**63) - 1)
        | st.floats(allow_nan=False)
        | st.text()
        | st.binary()
    )
    hashables = st.recursive(
        hashable_scalars,
        lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
        max_leaves=4,
    )
    scalars = hashable_scalars | st.floats()  # NaN is fine as a value, not as a key
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.lists(inner, max_size=4).map(tuple)
            | st.dictionaries(hashables, inner, max_size=4)
            | st.sets(hashables, max_size=4)
            | st.frozensets(hashables, max_size=4)
        ),
        max_leaves=12,
    )


class TestMsgpackSerializer(SerializerConformance):
    def make_serializer(self) -> Serializer:
        return MsgpackSerializer()

    def values(self) -> st.SearchStrategy[Any]:
        return msgpack_values()

    def unencodable_values(self) -> list[tuple[Any, str]]:
        return [
            (object(), "object"),
            ([1, {"k": complex(1, 2)}], "complex"),
            (Unregistered(), "Unregistered"),
            ({"a": bytearray(b"x"), "b": threading.Lock()}, "lock"),
            ("\ud800", "str"),
        ]


class TestJsonSerializer(SerializerConformance):
    def make_serializer(self) -> Serializer:
        return JsonSerializer()

    def unencodable_values(self) -> list[tuple[Any, str]]:
        return [
            (b"bytes", "bytes"),
            ([{1, 2}], "set"),
            ({"x": Unregistered()}, "Unregistered"),
            ({(1, 2): "tuple key"}, "tuple"),
            ([float("nan")], "float"),
            ("\udfff", "str"),
        ]


class TestPickleSerializer(SerializerConformance):
    def make_serializer(self) -> Serializer:
        return PickleSerializer()

    def values(self) -> st.SearchStrategy[Any]:
        return msgpack_values()

    def unencodable_values(self) -> list[tuple[Any, str]]:
        return [(threading.Lock(), "lock"), ([lambda: None], "lambda")]


@settings(max_examples=300)
@given(value=msgpack_values(), chunk=st.integers(1, 64))
def test_msgpack_dump_to_walking_everything_writes_the_bytes_dumps_returns(value: Any, chunk: int) -> None:
    """Every container walked (not only those with big values), a piece
    handed on after almost every item: still dumps' bytes, byte for byte."""
    with mock.patch.object(msgpack_serializer, "_WALK_ITEM_BYTES", 0):
        serializer = MsgpackSerializer()
        pieces: list[bytes] = []
        serializer.dump_to(value, pieces.append, chunk=chunk)
        assert b"".join(pieces) == serializer.dumps(value)


def test_msgpack_dump_to_never_holds_a_big_state_whole() -> None:
    """A SyncObj-like state of 200 values of 20 KB goes out in pieces of
    about the chunk size (plus one value), not as one 4 MB buffer."""
    state = {"self": {"data": {f"k-{i}": "x" * 20_000 for i in range(200)}, "n": 1}, "consumers": [],
             "code_version": 0}
    serializer = MsgpackSerializer()
    pieces: list[bytes] = []
    serializer.dump_to(state, pieces.append, chunk=100_000)
    assert b"".join(pieces) == serializer.dumps(state)
    assert len(pieces) >= 30 and max(map(len, pieces)) <= 100_000 + 20_010


def test_msgpack_dump_to_passes_the_writers_own_error_on_as_it_is() -> None:
    """A writer that fails (a closed file raises ValueError) is not reported
    as a value that cannot be encoded."""

    def closed(piece: bytes) -> None:
        raise ValueError("I/O operation on closed file")

    with pytest.raises(ValueError, match="closed file"):
        MsgpackSerializer().dump_to({"a": "x" * 5_000, "b": "y" * 5_000}, closed, chunk=1_000)
    with pytest.raises(ValueError, match="closed file"):
        MsgpackSerializer().dump_to({"a": 1}, closed)  # the last piece, after the walk


def test_msgpack_dump_to_packs_many_small_values_whole() -> None:
    """Walking a dict of small values would cost a call per value for no
    buffer saved: it is packed in one call, as dumps does."""
    serializer = MsgpackSerializer()
    pieces: list[bytes] = []
    serializer.dump_to({"data": {i: i for i in range(10_000)}}, pieces.append, chunk=1_000)
    assert len(pieces) == 1


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize("value, type_name", [(Color.RED, "Color"), (OrderedDict(a=1), "OrderedDict")])
def test_msgpack_rejects_subclasses_instead_of_losing_their_type(value: Any, type_name: str) -> None:
    with pytest.raises(SerializationError, match=f"of type {type_name}$"):
        MsgpackSerializer().dumps(value)


def test_msgpack_encodes_byte_buffers_as_bytes() -> None:
    serializer = MsgpackSerializer()
    assert serializer.loads(serializer.dumps([bytearray(b"ab"), memoryview(b"cd")])) == [b"ab", b"cd"]


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"\xc7\x01\x63\x00", "unknown msgpack extension type 99"),
        (b"\xd4\x01\x05", "extension type 1 is a type marker and must be empty"),
        (b"\xc7\x00\x01", "a type marker outside the head of an array"),  # a bare marker
        (b"\x92\xc0\xc7\x00\x01", "a type marker outside the head of an array"),  # [nil, marker]
        (b"\x81\xa1k\xc7\x00\x02", "a type marker outside the head of an array"),  # {"k": marker}
        (b"\x92\xc7\x00\x02\x90", "unhashable"),  # a set holding a list
        (b"\x81\x91\x01\x01", "unhashable"),  # a map keyed by a list
        (b"\x92\xc7\x00\x01" * 5000 + b"\xc0", "StackError"),  # tuples nested 5000 deep
        (b"\x92\x01", "incomplete"),
        (b"\x01\x02", "extra data"),
    ],
)
def test_msgpack_loads_names_what_is_wrong(data: bytes, reason: str) -> None:
    with pytest.raises(CodecError, match=reason):
        MsgpackSerializer().loads(data)


def test_msgpack_wire_form_of_extension_types() -> None:
    """Pinned: these bytes are in users' logs and snapshots."""
    serializer = MsgpackSerializer()
    assert serializer.dumps((1, "a")) == b"\x93\xc7\x00\x01\x01\xa1a"
    assert serializer.dumps(frozenset({7})) == b"\x92\xc7\x00\x03\x07"
    assert serializer.dumps(2**64) == b"\xc7\x09\x04\x01" + bytes(8)
    assert serializer.dumps(-(2**63) - 1) == b"\xc7\x09\x04\xff\x7f" + b"\xff" * 7


def test_msgpack_hashable_containers_work_as_keys_and_members() -> None:
    serializer = MsgpackSerializer()
    value = {(1, 2): {frozenset({(3,)})}, frozenset({"a"}): [()]}
    assert serializer.loads(serializer.dumps(value)) == value


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"[" * 100_000, "RecursionError"),
        (b'"\xff"', "UnicodeDecodeError"),
        (b'{"a": 1', "JSONDecodeError"),
        (b"[NaN]", "NaN is not a JSON value"),
        (b"-Infinity", "-Infinity is not a JSON value"),
    ],
)
def test_json_loads_names_what_is_wrong(data: bytes, reason: str) -> None:
    with pytest.raises(CodecError, match=reason):
        JsonSerializer().loads(data)


def test_json_loses_tuples_and_non_str_keys_as_documented() -> None:
    serializer = JsonSerializer()
    assert serializer.loads(serializer.dumps({"t": (1, 2), 3: None})) == {"t": [1, 2], "3": None}
    assert serializer.dumps({"é": 1}) == '{"é":1}'.encode()


def test_safety_flags() -> None:
    assert MsgpackSerializer.safe_for_untrusted
    assert JsonSerializer.safe_for_untrusted
    assert not PickleSerializer.safe_for_untrusted


def test_get_serializer_by_name() -> None:
    for cls in (MsgpackSerializer, JsonSerializer, PickleSerializer):
        assert type(get_serializer(cls.name)) is cls
    with pytest.raises(ValueError, match=r"unknown serializer 'yaml'.*json, msgpack, pickle"):
        get_serializer("yaml")


def test_canonical_keeps_exact_types() -> None:
    assert canonical([1, (2,), {3: 0.0}]) == canonical([1, (2,), {3: 0.0}])
    for left, right in [(1, True), ((1,), [1]), (0.0, -0.0), ({1}, frozenset({1})), ([b"a"], ["a"])]:
        assert canonical(left) != canonical(right)
    assert canonical(float("nan")) == canonical(float("nan"))
    assert canonical({"a": 1, "b": 2}) == canonical({"b": 2, "a": 1})
