"""The fixed wire codec for Raft messages and for the records stores keep.

Unlike ``Serializer`` (pluggable, for application values), this format is
part of the protocol: every node must read what every other node writes, and
a store must read what an older build wrote. So every frame and record starts
with a 3-byte header::

    magic (2 bytes, one per record kind) | version (1 byte)

followed by one msgpack array. A message is a flat array; entries, snapshot
metadata and configurations are nested arrays. Membership lists are sorted,
so equal values encode to equal bytes.

Encoders trust their input (it comes from the core, and checking it twice
would double the cost of the hot path) but raise ``SerializationError`` for
values msgpack cannot represent, such as integers above 2**64-1; note that
negative integers do encode, and no decoder accepts them. Decoders trust
nothing: anything malformed, truncated, oversized, of the wrong kind or of an
unknown version raises ``CodecError`` (never another exception type) and
nothing half-built is returned. Terms and indexes above 2**63
(``raftkit.core.bounds.CEILING``) are refused too: far below the codec's
limit, so no node ever adopts a term it cannot increment.
"""

from __future__ import annotations

from typing import Any

import msgpack

from raftkit.core.bounds import CEILING
from raftkit.core.types import ConfState, Entry, EntryKind, HardState, Message, MessageType, SnapshotMeta
from raftkit.errors import CodecError, SerializationError

MAX_FRAME_BYTES = 64 * 1024 * 1024
"""Default upper bound on one encoded frame or record; larger input is
rejected before any parsing."""

WIRE_VERSION = 2
# Version 1 (before membership addresses and the recovering flag) is still
# read, so data directories and peers of the previous release keep working.
READABLE_VERSIONS = (1, 2)
"""The format version this build writes and reads."""

_HEADER_LEN = 3
_MESSAGE_MAGIC = b"RM"
_ENTRY_MAGIC = b"RE"
_HARD_STATE_MAGIC = b"RH"
_SNAPSHOT_META_MAGIC = b"RS"
_CONF_STATE_MAGIC = b"RC"
_KIND_BY_MAGIC = {
    _MESSAGE_MAGIC: "message",
    _ENTRY_MAGIC: "entry",
    _HARD_STATE_MAGIC: "hard state",
    _SNAPSHOT_META_MAGIC: "snapshot meta",
    _CONF_STATE_MAGIC: "conf state",
}

_MESSAGE_TYPES = {t.value: t for t in MessageType}
_ENTRY_KINDS = {k.value: k for k in EntryKind}

Buffer = bytes | bytearray | memoryview


# ---------------------------------------------------------------- encoding


def encode_message(msg: Message, max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """One message as a frame; ``SerializationError`` if it would exceed
    ``max_bytes`` (a peer with the same limit would drop it)."""
    _, pieces = encode_message_pieces(msg, max_bytes)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def encode_message_pieces(
    msg: Message,
    max_bytes: int = MAX_FRAME_BYTES,
    packed_entries: dict[int, tuple[Entry, tuple[bytes, ...]]] | None = None,
) -> tuple[int, list[bytes]]:
    """``encode_message``'s frame as its size and pieces that concatenate to
    it (msgpack values encode alike alone or nested). Each entry is a piece
    of its own, packed once per ``packed_entries`` (a cache the caller
    passes to every message of one send): a leader sending the same entries
    to each follower copied them into every message, three copies a byte
    per follower; now one in all, plus the frame's join. An entry's data of
    ``_DATA_PIECE_BYTES`` or more is a piece itself, not copied at all.
    Pieces averaging under 1 KiB are joined into one, so a queued message
    holds about the bytes it counts."""
    snap = msg.snapshot
    head = [int(msg.type), msg.src, msg.dst, msg.term, msg.log_term, msg.index]
    tail = [
        msg.commit,
        msg.reject,
        msg.reject_hint,
        msg.context,
        None if snap is None else _snapshot_meta_body(snap),
        msg.recovering,
    ]
    if not msg.entries:
        pieces = [_pack(_MESSAGE_MAGIC, [*head, [], *tail])]
    else:
        # Both arrays have six items, a one-byte header each: drop it, the message is one array of 13.
        first = _MESSAGE_MAGIC + bytes((WIRE_VERSION, 0x90 | 13)) + _packb("message", head)[1:]
        cache = {} if packed_entries is None else packed_entries
        pieces = [first + _array_header(len(msg.entries))]
        for e in msg.entries:
            hit = cache.get(id(e))
            if hit is None or hit[0] is not e:  # the cache holds the entry: its id cannot be reused meanwhile
                hit = cache[id(e)] = (e, _entry_pieces(e))
            pieces += hit[1]
        pieces.append(_packb("message", tail)[1:])
    size = sum(map(len, pieces))
    if size > max_bytes:
        raise SerializationError(f"message frame of {size} bytes exceeds the {max_bytes}-byte limit")
    if len(pieces) > 1 and size < _PIECE_BYTES * len(pieces):
        pieces = [b"".join(pieces)]  # small pieces: each would cost more memory than the bytes it carries
    return size, pieces


_PIECE_BYTES = 1024
"""The mean piece size below which a message's pieces are joined into one."""

_DATA_PIECE_BYTES = 16 << 10
"""Entry data this long travels as a piece of its own (the bytes object the
log holds), behind a header packed alone: packing it copied every byte once
more (20 KB commands, 3 nodes, 6,000/s: 287 -> 282 µs of CPU per command,
docs/benchmarks.md, session 34)."""


def _entry_pieces(e: Entry) -> tuple[bytes, ...]:
    """An entry's msgpack array ``[index, term, kind, data]`` as pieces."""
    data = e.data
    size = len(data) if type(data) is bytes else 0
    if not _DATA_PIECE_BYTES <= size <= 0xFFFFFFFF:  # past msgpack's bin32, packb says why
        return (_packb("message", [e.index, e.term, int(e.kind), data]),)
    # The fields packed with an empty bin (c4 00), whose header then gives way to the real one.
    head = _packb("message", [e.index, e.term, int(e.kind), b""])[:-2]
    bin_header = b"\xc5" + size.to_bytes(2, "big") if size <= 0xFFFF else b"\xc6" + size.to_bytes(4, "big")
    return head + bin_header, data


def _array_header(n: int) -> bytes:
    """msgpack's header of an array of ``n`` items."""
    if n <= 15:
        return bytes((0x90 | n,))
    if n <= 0xFFFF:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def encode_entry(entry: Entry) -> bytes:
    """One log entry as a stored record."""
    return _pack(_ENTRY_MAGIC, [entry.index, entry.term, int(entry.kind), entry.data])


def encode_hard_state(hs: HardState) -> bytes:
    """A hard state as a stored record."""
    return _pack(_HARD_STATE_MAGIC, [hs.term, hs.vote, hs.commit])


def encode_snapshot_meta(meta: SnapshotMeta) -> bytes:
    """Snapshot metadata as a stored record."""
    return _pack(_SNAPSHOT_META_MAGIC, _snapshot_meta_body(meta))


def encode_conf_state(conf: ConfState) -> bytes:
    """A membership as a record: the payload of ``EntryKind.CONFIG`` entries."""
    return _pack(_CONF_STATE_MAGIC, _conf_state_body(conf))


def _snapshot_meta_body(meta: SnapshotMeta) -> list[Any]:
    return [meta.index, meta.term, _conf_state_body(meta.conf)]


def _conf_state_body(conf: ConfState) -> list[Any]:
    return [
        sorted(conf.voters),
        sorted(conf.learners),
        sorted(conf.voters_outgoing),
        [list(pair) for pair in conf.addresses],
    ]


def _pack(magic: bytes, body: list[Any]) -> bytes:
    return magic + bytes((WIRE_VERSION,)) + _packb(_KIND_BY_MAGIC[magic], body)


def _packb(kind: str, body: list[Any]) -> bytes:
    try:
        packed: bytes = msgpack.packb(body, use_bin_type=True)
    except UnicodeEncodeError as exc:
        raise SerializationError(
            f"cannot encode {kind}: a node id is not valid UTF-8 ({exc.reason})"
        ) from exc
    except (TypeError, ValueError, OverflowError) as exc:
        # OverflowError: an int outside msgpack's range (negative ones encode,
        # but decoders reject them). TypeError: a field of the wrong type.
        raise SerializationError(f"cannot encode {kind}: {exc}") from exc
    return packed


# ---------------------------------------------------------------- decoding


def decode_message(data: Buffer, max_bytes: int = MAX_FRAME_BYTES) -> Message:
    """Parse and fully validate one message frame."""
    body = _unpack(data, _MESSAGE_MAGIC, max_bytes)
    fields = _array(body, 13, "message", or_v1=12)
    mtype = fields[0]
    if type(mtype) is not int or mtype not in _MESSAGE_TYPES:
        raise CodecError(f"message: unknown message type {_show(mtype)}")
    raw_entries = fields[6]
    if type(raw_entries) is not list:
        raise CodecError(f"message: entries must be an array, got {_show(raw_entries)}")
    reject = fields[8]
    if type(reject) is not bool:
        raise CodecError(f"message: reject must be a bool, got {_show(reject)}")
    context = fields[10]
    if type(context) is not bytes:
        raise CodecError(f"message: context must be bytes, got {_show(context)}")
    raw_snapshot = fields[11]
    recovering = fields[12] if len(fields) == 13 else False
    if type(recovering) is not bool:
        raise CodecError(f"message: recovering must be a bool, got {_show(recovering)}")
    return Message(
        type=_MESSAGE_TYPES[mtype],
        src=_node_id(fields[1], "message: src"),
        dst=_node_id(fields[2], "message: dst"),
        term=_uint(fields[3], "message: term"),
        log_term=_uint(fields[4], "message: log_term"),
        index=_uint(fields[5], "message: index"),
        entries=tuple([_entry(e, "message: entries", i) for i, e in enumerate(raw_entries)]),
        commit=_uint(fields[7], "message: commit"),
        reject=reject,
        reject_hint=_uint(fields[9], "message: reject_hint"),
        context=context,
        snapshot=None if raw_snapshot is None else _snapshot_meta(raw_snapshot, "message: snapshot"),
        recovering=recovering,
    )


def decode_entry(data: Buffer, max_bytes: int = MAX_FRAME_BYTES) -> Entry:
    """Parse and fully validate one stored entry record."""
    return _entry(_unpack(data, _ENTRY_MAGIC, max_bytes), "entry")


def decode_hard_state(data: Buffer, max_bytes: int = MAX_FRAME_BYTES) -> HardState:
    """Parse and fully validate one stored hard state record."""
    term, vote, commit = _array(_unpack(data, _HARD_STATE_MAGIC, max_bytes), 3, "hard state")
    if vote is not None and type(vote) is not str:
        raise CodecError(f"hard state: vote must be a node id or nil, got {_show(vote)}")
    return HardState(
        term=_uint(term, "hard state: term"),
        vote=vote,
        commit=_uint(commit, "hard state: commit"),
    )


def decode_snapshot_meta(data: Buffer, max_bytes: int = MAX_FRAME_BYTES) -> SnapshotMeta:
    """Parse and fully validate one stored snapshot metadata record."""
    return _snapshot_meta(_unpack(data, _SNAPSHOT_META_MAGIC, max_bytes), "snapshot meta")


def decode_conf_state(data: Buffer, max_bytes: int = MAX_FRAME_BYTES) -> ConfState:
    """Parse and fully validate one membership record."""
    return _conf_state(_unpack(data, _CONF_STATE_MAGIC, max_bytes), "conf state")


def _unpack(data: Buffer, magic: bytes, max_bytes: int) -> Any:
    """Check size and header, then parse the msgpack body with every length
    bounded by the input size, no maps and no extension types."""
    size = len(data)
    kind = _KIND_BY_MAGIC[magic]
    if size > max_bytes:
        raise CodecError(f"{kind}: {size} bytes exceeds the {max_bytes}-byte limit")
    if size < _HEADER_LEN:
        raise CodecError(f"{kind}: truncated, {size} bytes is shorter than the {_HEADER_LEN}-byte header")
    view = memoryview(data)
    found = bytes(view[:2])
    if found != magic:
        other = _KIND_BY_MAGIC.get(found)
        hint = f" (the {other} magic)" if other else ""
        raise CodecError(f"{kind}: bad magic {found!r}{hint}, expected {magic!r}")
    if view[2] not in READABLE_VERSIONS:
        readable = f"{READABLE_VERSIONS[0]} to {WIRE_VERSION}"
        raise CodecError(f"{kind}: unsupported wire version {view[2]} (this build reads {readable})")
    body = view[_HEADER_LEN:]
    limit = len(body)
    try:
        return msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=limit,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException) as exc:
        # ValueError also covers truncation, trailing bytes, bad UTF-8,
        # exceeded limits and nesting too deep.
        raise CodecError(f"{kind}: malformed body ({type(exc).__name__}: {exc})") from exc


def _entry(value: Any, where: str, position: int | None = None) -> Entry:
    # The hot path of decoding an APPEND: one combined check, and the error
    # message (with its f-strings) is only built when something is wrong.
    if type(value) is list and len(value) == 4:
        index, term, kind, data = value
        if (
            type(index) is int
            and 0 <= index <= CEILING
            and type(term) is int
            and 0 <= term <= CEILING
            and type(kind) is int
            and kind in _ENTRY_KINDS
            and type(data) is bytes
        ):
            return Entry(index, term, _ENTRY_KINDS[kind], data)
    raise _entry_error(value, where if position is None else f"{where}[{position}]")


def _entry_error(value: Any, where: str) -> CodecError:
    """The precise error for an entry ``_entry`` refused (raised directly
    when a shared check finds it first)."""
    index, term, kind, data = _array(value, 4, where)
    _uint(index, f"{where}: index")
    _uint(term, f"{where}: term")
    if type(data) is not bytes:
        return CodecError(f"{where}: data must be bytes, got {_show(data)}")
    return CodecError(f"{where}: unknown entry kind {_show(kind)}")


def _snapshot_meta(value: Any, where: str) -> SnapshotMeta:
    index, term, conf = _array(value, 3, where)
    return SnapshotMeta(
        index=_uint(index, f"{where}: index"),
        term=_uint(term, f"{where}: term"),
        conf=_conf_state(conf, f"{where}: conf"),
    )


def _conf_state(value: Any, where: str) -> ConfState:
    voters, learners, outgoing, *rest = _array(value, 4, where, or_v1=3)
    addresses = rest[0] if rest else []
    return ConfState(
        voters=_members(voters, f"{where}: voters"),
        learners=_members(learners, f"{where}: learners"),
        voters_outgoing=_members(outgoing, f"{where}: voters_outgoing"),
        addresses=_addresses(addresses, f"{where}: addresses"),
    )


def _addresses(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if type(value) is not list:
        raise CodecError(f"{where} must be an array, got {_show(value)}")
    pairs = []
    for pair in value:
        node, address = _array(pair, 2, where)
        if type(address) is not str:
            raise CodecError(f"{where}: an address must be a string, got {_show(address)}")
        pairs.append((_node_id(node, where), address))
    if pairs != sorted(pairs) or len({n for n, _ in pairs}) != len(pairs):
        raise CodecError(f"{where}: must be sorted with one address per node")
    return tuple(pairs)


def _members(value: Any, where: str) -> frozenset[str]:
    if type(value) is not list:
        raise CodecError(f"{where} must be an array, got {_show(value)}")
    for member in value:
        _node_id(member, where)
    members = frozenset(value)
    if len(members) != len(value):
        raise CodecError(f"{where}: duplicate node id")
    return members


def _array(value: Any, length: int, where: str, *, or_v1: int | None = None) -> list[Any]:
    """``value`` as an array of ``length`` fields; ``or_v1``: the shorter
    length version 1 wrote (read as if the newer fields held their defaults)."""
    if type(value) is list and (len(value) == length or len(value) == or_v1):
        return value
    wanted = f"{or_v1} or {length}" if or_v1 is not None else f"{length}"
    raise CodecError(f"{where}: expected an array of {wanted} fields, got {_show(value)}")


def _uint(value: Any, where: str) -> int:
    """A term, index or commit: a non-negative int within the bounds."""
    # ``type() is int`` rather than isinstance: msgpack booleans are not counts.
    if type(value) is not int or value < 0:
        raise CodecError(f"{where} must be a non-negative integer, got {_show(value)}")
    if value > CEILING:
        raise CodecError(f"{where} {value} exceeds the limit {CEILING} (2**63): refused")
    return value


def _node_id(value: Any, where: str) -> str:
    if type(value) is not str:
        raise CodecError(f"{where}: node id must be a str, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    """A short description of a bad value for an error message, cheap even
    when the value is huge."""
    kind = type(value)
    if kind is list:
        return f"an array of {len(value)} items"
    if kind is bytes or kind is str:
        return f"{kind.__name__} of length {len(value)}"
    return f"{kind.__name__} {value!r:.40}"
