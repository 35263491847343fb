"""The frame format, byte by byte: headers, payload codecs, the incremental
decoder (any split of a stream gives the same frames; garbage raises only
FrameError / CodecError), rechunking, and address parsing."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftkit.core.types import Message, MessageType
from raftkit.errors import CodecError
from raftkit.serializers import wire
from raftkit.transports._outbound import rechunk
from raftkit.transports.framing import (
    HEADER_LEN,
    MAGIC,
    PREFIX,
    Channel,
    FrameDecoder,
    FrameError,
    FrameKind,
    batch_parts,
    decode_batch,
    decode_hello,
    encode_frame,
    encode_hello,
    frame_header,
)
from raftkit.transports.netutil import format_address, parse_address

kinds = st.sampled_from([FrameKind.BATCH, FrameKind.SNAPSHOT_CHUNK, FrameKind.HELLO, FrameKind.SNAPSHOT_END])
frames = st.lists(st.tuples(kinds, st.binary(max_size=300)), max_size=8)


def heartbeat(commit: int) -> Message:
    return Message(type=MessageType.HEARTBEAT, src="a", dst="b", term=2, commit=commit)


def test_header_is_magic_version_and_big_endian_length() -> None:
    assert PREFIX == b"RKT\x01"
    assert frame_header(0x01020304) == b"RKT\x01\x01\x02\x03\x04"
    assert encode_frame(FrameKind.SNAPSHOT_END) == b"RKT\x01\x00\x00\x00\x01\x05"


@given(
    frames,
    st.lists(st.integers(min_value=0, max_value=4000), max_size=10),
    st.sampled_from([bytes, bytearray, memoryview]),
)
def test_any_split_of_a_stream_decodes_to_the_same_frames(
    items: list[tuple[FrameKind, bytes]], cuts: list[int], piece: Callable[[bytes], Any]
) -> None:
    stream = b"".join(encode_frame(kind, [payload]) for kind, payload in items)
    decoder = FrameDecoder()
    got = []
    bounds = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        got += decoder.feed(piece(stream[lo:hi]))
    assert decoder.pending == 0
    assert all(type(header) is bytes and type(body) is memoryview and body.readonly for header, body in got)
    # Opened only now, after every later read: a body handed out earlier still holds its frame.
    opened = [Channel().open(header, body) for header, body in got]
    assert [(kind, bytes(payload)) for kind, payload in opened] == items  # type: ignore[misc]


@given(st.binary(max_size=600))
def test_garbage_raises_only_frame_errors(data: bytes) -> None:
    decoder = FrameDecoder(max_frame_bytes=1 << 16)
    try:
        for header, body in decoder.feed(data):
            kind, payload = Channel().open(header, body)  # type: ignore[misc]
            if kind is FrameKind.BATCH:
                decode_batch(payload)
            elif kind is FrameKind.HELLO:
                decode_hello(payload)
    except CodecError:
        pass


@given(st.binary(min_size=1, max_size=16).filter(lambda b: not PREFIX.startswith(b[:4])))
def test_a_stranger_is_rejected_within_four_bytes(data: bytes) -> None:
    with pytest.raises(FrameError, match="bad magic|version"):
        FrameDecoder().feed(data + b"\x00" * 4)


def test_a_stranger_is_rejected_before_four_bytes_arrive() -> None:
    with pytest.raises(FrameError, match="bad magic"):
        FrameDecoder().feed(b"GE")


def test_wrong_version_is_named() -> None:
    with pytest.raises(FrameError, match="unsupported framing version 2"):
        FrameDecoder().feed(MAGIC + b"\x02")


def test_oversized_length_is_rejected_from_the_header_alone() -> None:
    decoder = FrameDecoder(max_frame_bytes=1000)
    with pytest.raises(FrameError, match="exceeds the 1000-byte limit"):
        decoder.feed(frame_header(1001))
    assert len(FrameDecoder(1000).feed(frame_header(1000) + bytes(1000))) == 1


@pytest.mark.parametrize("held", [b"", b"RKT"])
def test_frames_not_yet_taken_when_the_reader_stops_are_kept_for_the_next_read(held: bytes) -> None:
    """A reader may stop part-way (its connection closes on a bad frame):
    the frames after the one it stopped at are neither lost nor duplicated."""
    three = [encode_frame(FrameKind.BATCH, [bytes([i]) * 50]) for i in range(3)]
    decoder = FrameDecoder()
    assert decoder.feed(held) == []
    reading = decoder.frames(b"".join(three)[len(held):] if held else b"".join(three))
    first = next(reading)
    reading.close()
    assert first == (three[0][:HEADER_LEN], three[0][HEADER_LEN:])
    assert decoder.feed(b"") == [(f[:HEADER_LEN], f[HEADER_LEN:]) for f in three[1:]]
    assert decoder.pending == 0


def test_a_frame_read_whole_is_a_view_of_the_bytes_read_not_a_copy() -> None:
    """A big command crossed the decoder copied twice: a fifth of a
    follower's CPU at 20 KB commands. Now a frame inside one read is a view
    of that read, and a frame completed across reads is copied once."""
    frame = encode_frame(FrameKind.BATCH, [b"x" * 5000])
    data = frame + frame[:100]
    decoder = FrameDecoder()
    (header, body), = decoder.feed(data)
    assert body.obj is data and bytes(body) == frame[HEADER_LEN:]
    (_, second), = decoder.feed(frame[100:])
    assert bytes(second) == frame[HEADER_LEN:]
    assert bytes(body) == frame[HEADER_LEN:]  # the first view is untouched by the second read


def test_a_frame_across_many_reads_is_joined_once_and_holds_only_its_own_bytes() -> None:
    """Growing one buffer read by read copied a multi-megabyte frame again at
    each reallocation (7 % of a follower's CPU at 20 KB commands). The reads
    are kept as they came and joined once: the body is a view of exactly
    its frame's bytes, and the next frame's start stays a view of its read."""
    frame = encode_frame(FrameKind.BATCH, [bytes(range(256)) * 4096])  # 1 MiB
    nxt = encode_frame(FrameKind.BATCH, [b"y" * 100])
    stream = frame + nxt[:30]
    reads = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    decoder = FrameDecoder()
    for read in reads[:-1]:
        assert decoder.feed(read) == []
    assert decoder.pending == sum(len(r) for r in reads[:-1])
    (header, body), = decoder.feed(reads[-1])
    assert header == frame[:HEADER_LEN] and bytes(body) == frame[HEADER_LEN:]
    assert type(body.obj) is bytes and len(body.obj) == len(frame)  # one join, of this frame alone
    assert decoder.pending == 30
    assert decoder.feed(nxt[30:]) == [(nxt[:HEADER_LEN], nxt[HEADER_LEN:])]
    assert decoder.pending == 0


def test_a_reader_that_stops_after_a_joined_frame_finds_the_rest_at_the_next_read() -> None:
    big = encode_frame(FrameKind.BATCH, [b"b" * 5000])
    small = [encode_frame(FrameKind.BATCH, [bytes([i]) * 40]) for i in range(2)]
    decoder = FrameDecoder()
    assert decoder.feed(big[:1000]) == []
    reading = decoder.frames(big[1000:] + b"".join(small))
    assert next(reading) == (big[:HEADER_LEN], big[HEADER_LEN:])
    reading.close()
    assert decoder.feed(b"") == [(f[:HEADER_LEN], f[HEADER_LEN:]) for f in small]
    assert decoder.pending == 0


def test_a_frame_trickled_byte_by_byte_is_held_in_about_its_own_size() -> None:
    """A peer may send a frame one byte per read: the decoder must not hold
    an object per byte (tens of bytes each) beyond what ``pending`` counts."""
    frame = encode_frame(FrameKind.BATCH, [b"t" * 50_000])
    decoder = FrameDecoder()
    assert decoder.feed(frame[:HEADER_LEN]) == []
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(HEADER_LEN, len(frame) - 1):
            assert decoder.feed(frame[i : i + 1]) == []
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert decoder.pending == len(frame) - 1
    assert held < 2 * decoder.pending  # 40 times as much with an object per read
    assert decoder.feed(frame[-1:]) == [(frame[:HEADER_LEN], frame[HEADER_LEN:])]


def test_the_start_of_the_next_frame_does_not_hold_the_whole_read() -> None:
    """A read of a whole frame and the next one's header: keeping a view of
    that header would keep the whole read (a peer may never finish the
    frame), beyond what ``pending`` counts for the transport's budget."""
    frame = encode_frame(FrameKind.BATCH, [b"r" * 200_000])
    nxt = encode_frame(FrameKind.BATCH, [b"n" * 100])
    decoder = FrameDecoder()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        read = frame + nxt[:HEADER_LEN]
        assert len(decoder.feed(read)) == 1
        del read  # the transport keeps no reference to a read either
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert decoder.pending == HEADER_LEN and held < 10_000  # 200 KB with a view of the read
    assert decoder.feed(nxt[HEADER_LEN:]) == [(nxt[:HEADER_LEN], nxt[HEADER_LEN:])]


def test_what_is_left_after_a_frame_that_spanned_reads_does_not_hold_the_read() -> None:
    """The read that completes a big frame also brings a small frame and the
    start of a third: that start is most of what is left after the big
    frame, but a small part of the read it would keep alive."""
    big = encode_frame(FrameKind.BATCH, [b"b" * 300_000])
    small = encode_frame(FrameKind.BATCH, [b"s" * 40_000])
    third = encode_frame(FrameKind.BATCH, [b"t" * 100_000])
    cut = len(big) - 70_000
    decoder = FrameDecoder()
    assert decoder.feed(big[:cut]) == []
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        read = big[cut:] + small + third[:40_010]  # 150 KB: the big frame's last 70 KB, 40 KB, 40 KB
        assert len(decoder.feed(read)) == 2
        del read
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert decoder.pending == 40_010 and held < 2 * decoder.pending  # 150 KB with a view of the read
    assert decoder.feed(third[40_010:]) == [(third[:HEADER_LEN], third[HEADER_LEN:])]


def test_incomplete_frame_is_held_back() -> None:
    decoder = FrameDecoder()
    frame = encode_frame(FrameKind.BATCH, [b"x" * 50])
    assert decoder.feed(frame[:-1]) == []
    assert decoder.pending == len(frame) - 1
    assert decoder.feed(frame[-1:]) == [(frame[:HEADER_LEN], frame[HEADER_LEN:])]


def test_plain_channel_refuses_unknown_and_handshake_kinds() -> None:
    with pytest.raises(FrameError, match="empty frame"):
        Channel().open(frame_header(0), b"")
    with pytest.raises(FrameError, match="unknown frame kind 99"):
        Channel().open(frame_header(1), b"\x63")
    with pytest.raises(FrameError, match="AUTH_NONCE"):
        Channel().open(frame_header(1), bytes([FrameKind.AUTH_NONCE]))


@given(st.text(min_size=1, max_size=50), st.text(max_size=50))
def test_hello_round_trips(src: str, dst: str) -> None:
    assert decode_hello(encode_hello(src, dst)) == (src, dst)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "truncated"),
        (b"\x00\x05ab", "truncated node id"),
        (b"\x00\x01a\x00\x01bX", "trailing"),
        (b"\x00\x00\x00\x01b", "empty sender"),
        (b"\x00\x01\xff\x00\x00", "UTF-8"),
    ],
)
def test_bad_hello_is_refused(payload: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        decode_hello(payload)


def test_batch_round_trips_and_rejects_a_bad_tail_whole() -> None:
    messages = [heartbeat(i) for i in range(5)]
    payload = b"".join(batch_parts([wire.encode_message(m) for m in messages]))
    assert decode_batch(payload) == messages
    with pytest.raises(CodecError):
        decode_batch(payload + b"\x00\x00\x00\x03RMx")
    with pytest.raises(FrameError, match="overruns"):
        decode_batch(payload + b"\x00\x00\x10\x00")
    with pytest.raises(FrameError, match="truncated"):
        decode_batch(payload + b"\x00")
    with pytest.raises(FrameError, match="empty"):
        decode_batch(b"")


@given(
    st.lists(st.binary(max_size=3000), max_size=12),
    st.integers(min_value=1, max_value=1024),
)
def test_rechunk_keeps_the_bytes_and_bounds_the_pieces(chunks: list[bytes], size: int) -> None:
    pieces = [bytes(piece) for piece in rechunk(chunks, size)]
    assert b"".join(pieces) == b"".join(chunks)
    assert all(0 < len(p) <= size for p in pieces)
    assert all(len(p) == size for p in pieces[:-1])


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("node-1.example:0", ("node-1.example", 0)),
        ("[::1]:65535", ("::1", 65535)),
        ("[fe80::1%lo]:7", ("fe80::1%lo", 7)),
    ],
)
def test_parse_address(text: str, parsed: tuple[str, int]) -> None:
    assert parse_address(text) == parsed
    assert format_address(*parsed) == text


@pytest.mark.parametrize(
    "text", ["::1:9000", "host", "host:", "host:x", "host:70000", "[::1]9000", "[nope]:1"]
)
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="bad address"):
        parse_address(text)
