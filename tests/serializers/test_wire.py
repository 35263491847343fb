"""The wire codec: exact round trips, and nothing but CodecError for bad input."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, NamedTuple

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftkit.core.types import ConfState, Entry, EntryKind, HardState, Message, MessageType, SnapshotMeta
from raftkit.errors import CodecError, SerializationError
from raftkit.serializers import wire
from raftkit.testing import strategies


class Codec(NamedTuple):
    encode: Callable[[Any], bytes]
    decode: Callable[..., Any]
    values: st.SearchStrategy[Any]
    sample: Any

    @property
    def header(self) -> bytes:
        return self.encode(self.sample)[:3]

    def frame(self, body: Any) -> bytes:
        """A valid header followed by an arbitrary msgpack body."""
        return self.header + msgpack.packb(body, use_bin_type=True)

    def decode_or_codec_error(self, data: bytes) -> None:
        """Decoding either raises CodecError or yields a whole, well-typed
        value of the right kind; any other exception fails the test."""
        try:
            value = self.decode(data)
        except CodecError:
            return
        assert type(value) is type(self.sample)
        assert_well_typed(value)


def assert_well_typed(value: Any, hint: Any = None) -> None:
    """Check a decoded value against the annotations in ``core/types.py``,
    independently of the decoder's own checks: exact types, counters in
    0..2**64-1, enum members, frozensets and tuples of the right items."""
    hint = type(value) if hint is None else hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        assert any(_fits(value, arg) for arg in args), f"{value!r} is not a {hint}"
        return
    assert type(value) is (origin or hint), f"{value!r} is not a {hint}"
    if origin in (frozenset, tuple):
        for item in value:
            assert_well_typed(item, args[0])
    elif dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        for field in dataclasses.fields(hint):
            assert_well_typed(getattr(value, field.name), hints[field.name])
    elif hint is int:
        assert 0 <= value <= strategies.U64_MAX, f"{value} is out of range"


def _fits(value: Any, hint: Any) -> bool:
    try:
        assert_well_typed(value, hint)
    except AssertionError:
        return False
    return True


CODECS = {
    "message": Codec(
        wire.encode_message, wire.decode_message, strategies.messages(), Message(MessageType.VOTE, "a", "b")
    ),
    "entry": Codec(wire.encode_entry, wire.decode_entry, strategies.entries(), Entry(1, 1)),
    "hard_state": Codec(
        wire.encode_hard_state, wire.decode_hard_state, strategies.hard_states(), HardState()
    ),
    "snapshot_meta": Codec(
        wire.encode_snapshot_meta, wire.decode_snapshot_meta, strategies.snapshot_metas(), SnapshotMeta(0, 0)
    ),
    "conf_state": Codec(
        wire.encode_conf_state, wire.decode_conf_state, strategies.conf_states(), ConfState()
    ),
}
each_codec = pytest.mark.parametrize("name", CODECS)


# ------------------------------------------------------------- round trips


@each_codec
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    codec = CODECS[name]
    value = data.draw(codec.values)
    encoded = codec.encode(value)
    assert encoded[:3] == codec.header
    assert codec.decode(encoded) == value
    assert codec.decode(bytearray(encoded)) == value
    assert codec.decode(memoryview(b"pad" + encoded)[3:]) == value


def _one_array(msg: Message) -> bytes:
    """The message frame as msgpack packs the whole body in one go: what
    every release before the pieces wrote, and what peers read."""
    snap = msg.snapshot
    body = [
        int(msg.type), msg.src, msg.dst, msg.term, msg.log_term, msg.index,
        [[e.index, e.term, int(e.kind), e.data] for e in msg.entries],
        msg.commit, msg.reject, msg.reject_hint, msg.context,
        None if snap is None else [snap.index, snap.term, [
            sorted(snap.conf.voters), sorted(snap.conf.learners), sorted(snap.conf.voters_outgoing),
            [list(pair) for pair in snap.conf.addresses]]],
        msg.recovering,
    ]
    return b"RM" + bytes((wire.WIRE_VERSION,)) + msgpack.packb(body, use_bin_type=True)


@given(strategies.messages())
def test_message_pieces_are_the_bytes_of_one_packed_array(msg: Message) -> None:
    """Entries packed one by one (and shared between messages) give byte
    for byte the frame of the whole body packed at once."""
    size, pieces = wire.encode_message_pieces(msg)
    assert b"".join(pieces) == _one_array(msg) == wire.encode_message(msg)
    assert size == len(_one_array(msg))
    assert wire.decode_message(b"".join(pieces)) == msg


@pytest.mark.parametrize("count", [15, 16, 65_535, 65_536])
def test_message_pieces_at_each_size_where_msgpack_array_headers_change(count: int) -> None:
    msg = Message(MessageType.APPEND, "a", "b", term=1, entries=(Entry(1, 1, data=b"e"),) * count)
    assert b"".join(wire.encode_message_pieces(msg)[1]) == _one_array(msg)


MAX = wire.MAX_FRAME_BYTES


def test_an_entry_sent_to_several_peers_is_packed_once() -> None:
    """A leader sends the same entries to each follower: one packed copy
    serves every message (three copies a byte each was a fifth of a 20 KB
    workload's CPU)."""
    entries = tuple(Entry(i, 2, EntryKind.NORMAL, bytes([i]) * 20_000) for i in range(1, 4))
    packed: dict[int, tuple[Entry, tuple[bytes, ...]]] = {}
    to_b, to_c = (
        wire.encode_message_pieces(Message(MessageType.APPEND, "a", dst, entries=entries), MAX, packed)[1]
        for dst in ("b", "c")
    )
    assert len(packed) == 3
    shared = [p for p in to_b if any(p is q for q in to_c)]
    assert len(shared) == 6 and sum(map(len, shared)) > 60_000  # per entry its header and its data
    assert [e.data for e in wire.decode_message(b"".join(to_c)).entries] == [e.data for e in entries]


def test_a_cached_piece_of_another_entry_with_the_same_id_is_not_used() -> None:
    """The cache is keyed by ``id``, which Python reuses once an entry is
    freed: a piece is used only for the very entry it was packed from."""
    entry = Entry(7, 2, EntryKind.NORMAL, b"new" * 1000)
    stale = Entry(1, 1, EntryKind.NORMAL, b"old" * 1000)
    packed = {id(entry): (stale, (wire.encode_entry(stale)[3:],))}
    msg = Message(MessageType.APPEND, "a", "b", entries=(entry,))
    _, pieces = wire.encode_message_pieces(msg, MAX, packed)
    assert wire.decode_message(b"".join(pieces)).entries == (entry,)
    assert packed[id(entry)][0] is entry


@pytest.mark.parametrize("size", [16_383, 16_384, 65_535, 65_536, 200_000])
def test_large_entry_data_is_a_piece_of_its_own_not_a_copy(size: int) -> None:
    """Data of 16 KiB and more is not packed (copied) at all: the log's own
    bytes object is a piece, after a header; the bytes are those of the
    whole array packed at once, around msgpack's bin header changes."""
    entries = (Entry(5, 2, EntryKind.BATCH, b"d" * size), Entry(6, 2, EntryKind.NORMAL, b"e" * 10))
    msg = Message(MessageType.APPEND, "a", "b", term=2, entries=entries)
    _, pieces = wire.encode_message_pieces(msg)
    assert b"".join(pieces) == _one_array(msg)
    assert wire.decode_message(b"".join(pieces)) == msg
    assert any(p is entries[0].data for p in pieces) == (size >= 16_384)


def test_small_entries_travel_as_one_piece() -> None:
    """Each piece costs a Python object: a message of small entries is
    joined, so the send queue's byte budget bounds its memory."""
    entries = tuple(Entry(i, 1, EntryKind.NORMAL, b"x" * 10) for i in range(1, 200))
    size, pieces = wire.encode_message_pieces(Message(MessageType.APPEND, "a", "b", entries=entries))
    assert len(pieces) == 1 and len(pieces[0]) == size


def test_append_message_is_compact() -> None:
    msg = Message(
        MessageType.APPEND, "n1", "n2", term=3, log_term=2, index=10, entries=(Entry(11, 3, data=b"x" * 10),)
    )
    assert len(wire.encode_message(msg)) <= 40


def test_equal_memberships_encode_to_equal_bytes() -> None:
    ids = [f"node-{i}" for i in range(50)]
    forward = ConfState(voters=frozenset(ids))
    backward = ConfState(voters=frozenset(reversed(ids)))
    assert wire.encode_conf_state(forward) == wire.encode_conf_state(backward)


def test_config_entry_carries_an_encoded_conf_state() -> None:
    conf = ConfState(voters=frozenset({"a", "b"}), voters_outgoing=frozenset({"a", "c"}))
    entry = wire.decode_entry(wire.encode_entry(Entry(5, 2, EntryKind.CONFIG, wire.encode_conf_state(conf))))
    assert entry.kind is EntryKind.CONFIG
    assert wire.decode_conf_state(entry.data) == conf


def test_decoded_enums_are_the_enum_members() -> None:
    msg = wire.decode_message(
        wire.encode_message(Message(MessageType.APPEND, "a", "b", entries=(Entry(1, 1),)))
    )
    assert msg.type is MessageType.APPEND
    assert msg.entries[0].kind is EntryKind.NORMAL


# ------------------------------------------------------------- encoder errors


@pytest.mark.parametrize(
    "encode, value, reason",
    [
        (wire.encode_entry, Entry(2**64, 1), "out of range"),
        (wire.encode_hard_state, HardState(vote="\ud800"), "not valid UTF-8"),
        (wire.encode_entry, Entry(1, 1, data=object()), "serialize"),  # type: ignore[arg-type]
    ],
)
def test_unencodable_fields_raise_serialization_error(
    encode: Callable[[Any], bytes], value: Any, reason: str
) -> None:
    with pytest.raises(SerializationError, match=reason):
        encode(value)


@pytest.mark.parametrize(
    "msg, reason",
    [
        (Message(MessageType.APPEND, "a", "b", entries=(Entry(2**64, 1),)), "out of range"),
        (
            Message(MessageType.APPEND, "a", "b", entries=(Entry(1, 1, data=object()),)),  # type: ignore[arg-type]
            "serialize",
        ),
        (Message(MessageType.APPEND, "\ud800", "b", entries=(Entry(1, 1),)), "not valid UTF-8"),
        (Message(MessageType.APPEND, "a", "b", commit=-(2**64), entries=(Entry(1, 1),)), "out of range"),
    ],
)
def test_a_message_with_entries_that_cannot_be_encoded_raises_serialization_error(
    msg: Message, reason: str
) -> None:
    """Head, each entry and tail are packed apart: each of them still fails
    as one ``SerializationError`` (the transport drops that message alone)."""
    with pytest.raises(SerializationError, match=f"cannot encode message: .*({reason})"):
        wire.encode_message_pieces(msg)


def test_encode_message_refuses_a_frame_peers_would_drop() -> None:
    msg = Message(MessageType.APPEND, "a", "b", entries=(Entry(1, 1, data=b"x" * 100),))
    with pytest.raises(SerializationError, match="exceeds the 64-byte limit"):
        wire.encode_message(msg, max_bytes=64)


# ------------------------------------------------------------- header checks


@each_codec
def test_oversized_input_is_rejected_before_parsing(name: str) -> None:
    codec = CODECS[name]
    encoded = codec.encode(codec.sample)
    assert codec.decode(encoded, max_bytes=len(encoded)) == codec.sample
    with pytest.raises(CodecError, match=f"{len(encoded) + 1} bytes exceeds the {len(encoded)}-byte limit"):
        codec.decode(encoded + b"\x00", max_bytes=len(encoded))


def test_default_limit_is_64_mib() -> None:
    assert wire.MAX_FRAME_BYTES == 64 * 1024 * 1024
    with pytest.raises(CodecError, match="exceeds"):
        wire.decode_entry(bytes(wire.MAX_FRAME_BYTES + 1))


@each_codec
def test_every_record_kind_has_its_own_magic(name: str) -> None:
    codec = CODECS[name]
    for other_name, other in CODECS.items():
        if other_name != name:
            with pytest.raises(CodecError, match="bad magic"):
                codec.decode(other.encode(other.sample))


def test_wrong_magic_names_what_was_found() -> None:
    with pytest.raises(CodecError, match=r"message: bad magic b'RE' \(the entry magic\), expected b'RM'"):
        wire.decode_message(wire.encode_entry(Entry(1, 1)))
    with pytest.raises(CodecError, match=r"entry: bad magic b'GE', expected b'RE'"):
        wire.decode_entry(b"GET / HTTP/1.1\r\n")


@each_codec
def test_unknown_version_is_rejected(name: str) -> None:
    codec = CODECS[name]
    encoded = bytearray(codec.encode(codec.sample))
    assert encoded[2] == wire.WIRE_VERSION
    for version in (0, wire.WIRE_VERSION + 1, 255):
        encoded[2] = version
        with pytest.raises(CodecError, match=f"unsupported wire version {version}"):
            codec.decode(bytes(encoded))


@each_codec
@pytest.mark.parametrize("data", [b"", b"R", b"RM"])
def test_short_input_is_truncated(name: str, data: bytes) -> None:
    with pytest.raises(CodecError, match="truncated"):
        CODECS[name].decode(data)


# ------------------------------------------------------------- body validation

GOOD_ENTRY = [1, 1, 0, b""]
GOOD_CONF = [["a"], [], [], [["a", "127.0.0.1:1"]]]
GOOD_MESSAGE = [1, "a", "b", 1, 1, 1, [GOOD_ENTRY], 1, False, 0, b"", [1, 1, GOOD_CONF], False]
GOOD_BODIES = {
    "message": GOOD_MESSAGE,
    "entry": GOOD_ENTRY,
    "hard_state": [1, None, 1],
    "snapshot_meta": [1, 1, GOOD_CONF],
    "conf_state": GOOD_CONF,
}


def with_field(fields: list[Any], at: int, value: Any) -> list[Any]:
    changed = list(fields)
    changed[at] = value
    return changed


@pytest.mark.parametrize(
    "name, body, reason",
    [
        ("message", GOOD_MESSAGE[:-2], "expected an array of 12 or 13 fields"),
        ("message", GOOD_MESSAGE + [None], "expected an array of 12 or 13 fields"),
        ("message", with_field(GOOD_MESSAGE, 0, 99), "unknown message type int 99"),
        ("message", with_field(GOOD_MESSAGE, 0, True), "unknown message type bool True"),
        ("message", with_field(GOOD_MESSAGE, 1, b"a"), "src: node id must be a str"),
        ("message", with_field(GOOD_MESSAGE, 3, -1), "term must be a non-negative integer, got int -1"),
        ("message", with_field(GOOD_MESSAGE, 5, 1.0), "index must be a non-negative integer, got float"),
        ("message", with_field(GOOD_MESSAGE, 6, None), "entries must be an array"),
        (
            "message",
            with_field(GOOD_MESSAGE, 6, [GOOD_ENTRY, [1, 1, 7, b""]]),
            r"entries\[1\]: unknown entry kind",
        ),
        ("message", with_field(GOOD_MESSAGE, 7, False), "commit must be a non-negative integer, got bool"),
        ("message", with_field(GOOD_MESSAGE, 8, 0), "reject must be a bool"),
        ("message", with_field(GOOD_MESSAGE, 10, "ctx"), "context must be bytes, got str of length 3"),
        ("message", with_field(GOOD_MESSAGE, 11, [1, 1]), "snapshot: expected an array of 3 fields"),
        (
            "message",
            with_field(GOOD_MESSAGE, 11, [1, 1, [["a", "a"], [], [], []]]),
            "voters: duplicate node id",
        ),
        ("message", with_field(GOOD_MESSAGE, 12, 1), "recovering must be a bool"),
        ("entry", [1, 1, 0, "text"], "data must be bytes"),
        ("entry", [1, -5, 0, b""], "term must be a non-negative integer"),
        ("entry", {"index": 1}, "malformed body"),  # maps are never part of the format
        ("hard_state", [1, 7, 1], "vote must be a node id or nil"),
        ("hard_state", [1, None], "expected an array of 3 fields"),
        ("snapshot_meta", [1, 1, [["a"], "b", [], []]], "learners must be an array"),
        ("conf_state", [["a"], [1], [], []], "learners: node id must be a str"),
        ("conf_state", "voters", "expected an array of 3 or 4 fields, got str"),
        ("conf_state", [["a"], [], [], [["a", 5]]], "an address must be a string"),
        ("conf_state", [["a"], [], [], [["b", "x"], ["a", "y"]]], "sorted with one address per node"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(name: str, body: Any, reason: str) -> None:
    with pytest.raises(CodecError, match=reason):
        CODECS[name].decode(CODECS[name].frame(body))


@each_codec
def test_the_valid_bodies_above_decode(name: str) -> None:
    """So each malformed case above differs from a valid frame only where it says."""
    assert type(CODECS[name].decode(CODECS[name].frame(GOOD_BODIES[name]))) is type(CODECS[name].sample)


@pytest.mark.parametrize(
    "body, reason",
    [
        (msgpack.packb([1, 1, 0, b""]) + b"\x00", "extra data"),
        (b"\xc1", "FormatError"),
        (b"\xdd\xff\xff\xff\xff", "exceeds max_array_len"),  # a 4-billion-item array in 5 bytes
        (msgpack.packb(msgpack.ExtType(1, b"x")), "exceeds max_ext_len"),
        (b"\x94\x01\x01\x00\xa1\xff", "UnicodeDecodeError"),
        (b"\x91" * 5000, "StackError"),
    ],
)
def test_malformed_msgpack_is_a_codec_error(body: bytes, reason: str) -> None:
    with pytest.raises(CodecError, match=reason):
        wire.decode_entry(CODECS["entry"].header + body)


# ------------------------------------------------------------- fuzzing


@each_codec
@given(garbage=st.binary(max_size=200))
def test_garbage_raises_only_codec_error(name: str, garbage: bytes) -> None:
    CODECS[name].decode_or_codec_error(garbage)


@each_codec
@given(garbage=st.binary(max_size=200))
def test_garbage_after_a_valid_header_raises_only_codec_error(name: str, garbage: bytes) -> None:
    CODECS[name].decode_or_codec_error(CODECS[name].header + garbage)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=4)
    | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=6,
)


def replace_somewhere(data: st.DataObject, body: Any) -> Any:
    """``body`` with one value, at any depth, replaced by an arbitrary one."""
    if type(body) is not list or not body or data.draw(st.integers(0, 3)) == 0:
        return data.draw(msgpack_values)
    at = data.draw(st.integers(0, len(body) - 1))
    return with_field(body, at, replace_somewhere(data, body[at]))


@each_codec
@given(data=st.data())
def test_valid_bodies_with_one_bad_value_raise_only_codec_error(name: str, data: st.DataObject) -> None:
    codec = CODECS[name]
    body = msgpack.unpackb(codec.encode(data.draw(codec.values))[3:])
    codec.decode_or_codec_error(codec.frame(replace_somewhere(data, body)))


@each_codec
@given(data=st.data())
def test_truncated_frames_raise_codec_error(name: str, data: st.DataObject) -> None:
    codec = CODECS[name]
    encoded = codec.encode(data.draw(codec.values))
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(CodecError):
        codec.decode(encoded[:cut])


@each_codec
@given(data=st.data())
def test_mutated_frames_decode_whole_or_raise_codec_error(name: str, data: st.DataObject) -> None:
    codec = CODECS[name]
    damaged = bytearray(codec.encode(data.draw(codec.values)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    codec.decode_or_codec_error(bytes(damaged))


def test_version_1_records_and_frames_are_still_read() -> None:
    """What the previous release wrote: no addresses in memberships, no
    recovering flag on messages, version byte 1."""

    def v1(magic: bytes, body: list[Any]) -> bytes:
        return magic + bytes((1,)) + msgpack.packb(body, use_bin_type=True)

    conf = wire.decode_conf_state(v1(wire.encode_conf_state(ConfState())[:2], [["a", "b"], ["c"], []]))
    assert conf == ConfState(voters=frozenset({"a", "b"}), learners=frozenset({"c"}))
    message = [1, "a", "b", 1, 1, 1, [GOOD_ENTRY], 1, False, 0, b"", [1, 1, [["a"], [], []]]]
    magic = wire.encode_message(Message(MessageType.APPEND, "a", "b"))[:2]
    decoded = wire.decode_message(v1(magic, message))
    assert decoded.recovering is False
    assert decoded.snapshot is not None and decoded.snapshot.conf.voters == {"a"}
