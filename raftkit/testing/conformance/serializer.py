"""The conformance suite for ``Serializer`` implementations.

Use it from a pytest module::

    from raftkit.testing.conformance.serializer import SerializerConformance

    class TestMySerializer(SerializerConformance):
        def make_serializer(self):
            return MySerializer()

        def values(self):  # optional: widen to everything you document
            return my_values_strategy()

        def unencodable_values(self):
            return [(object(), "object")]

The default ``values()`` is the JSON data model, which every raftkit
serializer is expected to round-trip.
"""

from __future__ import annotations

import contextlib
import math
from functools import cached_property
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkit.errors import CodecError, SerializationError
from raftkit.serializers.base import Serializer


def json_values() -> st.SearchStrategy[Any]:
    """None, bools, ints, finite floats, strs, and lists / str-keyed dicts of them."""
    finite = st.floats(allow_nan=False, allow_infinity=False)
    scalars = st.none() | st.booleans() | st.integers() | finite | st.text()
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )


def canonical(value: Any) -> Any:
    """A comparable form of ``value`` that keeps exact types (``1 != True``,
    ``(1,) != [1]``, ``0.0 != -0.0``), treats NaN as equal to NaN, and
    ignores dict and set order."""
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if kind is float:
        return (name, "nan" if math.isnan(value) else value.hex())
    if kind in (list, tuple):
        return (name, tuple(canonical(v) for v in value))
    if kind is dict:
        return (name, tuple(sorted(repr((canonical(k), canonical(v))) for k, v in value.items())))
    if kind in (set, frozenset):
        return (name, tuple(sorted(repr(canonical(v)) for v in value)))
    return (name, value)


# Every subclass runs the same Hypothesis test functions, so they share
# example-database entries; replaying another serializer's draws is harmless.
# No deadline: these judge outcomes, not speed, and some garbage is slow by
# nature (pickle's b"]r\x00\x00\x00\x02" sizes its memo for index 2**25: 0.3 s and
# half a GiB here, past Hypothesis's 200 ms default in a CI run).
_shared_tests = settings(deadline=None, suppress_health_check=[HealthCheck.differing_executors])


class SerializerConformance:
    """Checks one ``Serializer`` implementation against the interface contract.

    Not collected by pytest itself (no ``Test`` prefix); subclass it.
    """

    def make_serializer(self) -> Serializer:
        """Return a fresh instance of the serializer under test."""
        raise NotImplementedError

    def values(self) -> st.SearchStrategy[Any]:
        """Values the serializer documents as round-tripping exactly."""
        return json_values()

    def unencodable_values(self) -> list[tuple[Any, str]]:
        """Pairs of (value ``dumps`` must refuse, name of the type to blame);
        ``[]`` if the serializer encodes everything."""
        raise NotImplementedError

    @cached_property
    def _value_strategy(self) -> st.SearchStrategy[Any]:
        # Built once per test: Hypothesis needs the same strategy object for
        # every example of a run to replay and shrink consistently.
        return self.values()

    def test_declares_name_and_safety(self) -> None:
        serializer = self.make_serializer()
        assert isinstance(serializer.name, str) and serializer.name, "name must be a non-empty str"
        assert isinstance(serializer.safe_for_untrusted, bool), "safe_for_untrusted must be a bool"

    @_shared_tests
    @given(data=st.data())
    def test_round_trip(self, data: st.DataObject) -> None:
        serializer = self.make_serializer()
        value = data.draw(self._value_strategy, label="value")
        encoded = serializer.dumps(value)
        assert type(encoded) is bytes, f"dumps returned {type(encoded).__name__}, not bytes"
        decoded = serializer.loads(encoded)
        assert canonical(decoded) == canonical(value), f"{value!r} came back as {decoded!r}"

    @_shared_tests
    @given(data=st.data())
    def test_dump_to_writes_the_bytes_dumps_returns(self, data: st.DataObject) -> None:
        serializer = self.make_serializer()
        value = data.draw(self._value_strategy, label="value")
        pieces: list[bytes] = []
        serializer.dump_to(value, pieces.append)
        assert b"".join(pieces) == serializer.dumps(value), "dump_to's pieces differ from dumps' bytes"

    def test_unencodable_values_raise_serialization_error(self) -> None:
        serializer = self.make_serializer()
        for value, type_name in self.unencodable_values():
            for encode in (serializer.dumps, lambda v: serializer.dump_to(v, lambda piece: None)):
                with pytest.raises(SerializationError) as info:
                    encode(value)
                message = str(info.value)
                assert type_name in message, f"error for {value!r} does not name {type_name!r}: {message}"
                assert type(serializer).__name__ in message, f"error does not name the serializer: {message}"

    @_shared_tests
    @given(garbage=st.binary(max_size=256))
    def test_loads_garbage_raises_only_codec_error(self, garbage: bytes) -> None:
        serializer = self.make_serializer()
        with contextlib.suppress(CodecError):
            serializer.loads(garbage)

    @_shared_tests
    @given(data=st.data())
    def test_loads_truncated_or_mutated_raises_only_codec_error(self, data: st.DataObject) -> None:
        serializer = self.make_serializer()
        encoded = bytearray(serializer.dumps(data.draw(self._value_strategy, label="value")))
        cut = data.draw(st.integers(0, len(encoded)), label="cut")
        damaged = encoded[:cut]
        if damaged:
            at = data.draw(st.integers(0, len(damaged) - 1), label="at")
            damaged[at] = data.draw(st.integers(0, 255), label="byte")
        with contextlib.suppress(CodecError):
            serializer.loads(bytes(damaged))
