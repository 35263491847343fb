"""The frame format of raftkit's socket transports.

A connection is a sequence of frames::

    b"RKT" | version (1 byte) | length (4 bytes, big-endian) | body (length bytes)

The 8-byte header lets a receiver reject a stranger (wrong magic, another
framing version) or an absurd length after reading 8 bytes, before it
buffers anything. In a plain frame the body is a kind byte followed by that
kind's payload; the encrypted transport seals the whole body instead (see
``raftkit.transports.encrypted``), so the kind is hidden too.

Payloads by kind:

* ``HELLO``: the sender's node id and the node id it means to reach, each as
  a 2-byte length and UTF-8 text. Always the first frame a dialer sends, so
  the receiver knows who is talking and can refuse a misdirected connection.
* ``BATCH``: one or more wire-encoded Raft messages
  (``raftkit.serializers.wire``), each preceded by its 4-byte length. The
  messages of one ``send`` to a peer travel in one batch (and what queued
  up while the peer was unreachable or slow, in as few as fit).
* ``SNAPSHOT_BEGIN`` (one wire-encoded SNAPSHOT message), ``SNAPSHOT_CHUNK``
  (raw bytes), ``SNAPSHOT_END`` (empty), ``SNAPSHOT_ABORT`` (empty: the
  sender's stream failed; discard what arrived).
* ``SNAPSHOT_ACK``: the only frame a listener sends back on an established
  connection, one byte (1 = handed to the node), once the receiver's handler
  has taken the stream that END closed. The sender reports the outcome
  then, so "ok" means delivered, not merely written to a socket buffer.
* ``AUTH_*``: the encrypted transport's handshake, sent in the clear.

Decoders trust nothing: anything malformed raises ``FrameError`` (a
``CodecError``) and the connection that sent it is closed.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator, Sequence

from raftkit.core.types import Message, NodeId
from raftkit.errors import CodecError
from raftkit.serializers import wire

MAGIC = b"RKT"
FRAME_VERSION = 1
PREFIX = MAGIC + bytes((FRAME_VERSION,))
HEADER_LEN = 8
_LENGTH = struct.Struct(">I")
_ID_LENGTH = struct.Struct(">H")

Buffer = bytes | bytearray | memoryview


class FrameKind(enum.IntEnum):
    HELLO = 1
    BATCH = 2
    SNAPSHOT_BEGIN = 3
    SNAPSHOT_CHUNK = 4
    SNAPSHOT_END = 5
    SNAPSHOT_ABORT = 6
    SNAPSHOT_ACK = 7
    AUTH_NONCE = 16
    AUTH_CHALLENGE = 17
    AUTH_PROOF = 18
    AUTH_CONFIRM = 19


DATA_KINDS = frozenset(
    {
        FrameKind.HELLO,
        FrameKind.BATCH,
        FrameKind.SNAPSHOT_BEGIN,
        FrameKind.SNAPSHOT_CHUNK,
        FrameKind.SNAPSHOT_END,
        FrameKind.SNAPSHOT_ABORT,
        FrameKind.SNAPSHOT_ACK,
    }
)
"""The kinds an established connection may carry; handshake kinds may not."""

_KINDS = {int(k): k for k in FrameKind}


class FrameError(CodecError):
    """Bytes on a connection are not a valid frame, or not the frame expected
    next; the connection must be closed."""


class AuthenticationError(FrameError):
    """The peer failed to prove it holds the cluster's credentials, or a
    sealed frame failed authentication (altered, replayed, reordered)."""


def frame_header(body_length: int) -> bytes:
    """The 8-byte header of a frame whose body is ``body_length`` bytes."""
    return PREFIX + _LENGTH.pack(body_length)


def encode_frame(kind: FrameKind, parts: Sequence[Buffer] = ()) -> bytes:
    """A plain frame of ``kind`` whose payload is the concatenation of ``parts``
    (joined once, so a batch is copied once)."""
    length = 1 + sum(len(p) for p in parts)
    return b"".join((PREFIX, _LENGTH.pack(length), bytes((kind,)), *parts))


def split_body(body: Buffer) -> tuple[FrameKind, memoryview]:
    """The kind byte and payload of a plain frame body."""
    if len(body) == 0:
        raise FrameError("empty frame body (no kind byte)")
    kind = _KINDS.get(body[0])
    if kind is None:
        raise FrameError(f"unknown frame kind {body[0]}")
    return kind, memoryview(body)[1:]


SMALL_READ = 4096  # FrameDecoder: reads shorter than this are held in one bytearray


class FrameDecoder:
    """Splits a byte stream into frames, checking each header as soon as its
    bytes arrive: a stranger is rejected after at most 4 bytes, an oversized
    length after 8, before any body is buffered."""

    def __init__(self, max_frame_bytes: int = wire.MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        # The reads of a frame not complete yet, joined once it is (growing
        # one buffer read by read copied it again at every reallocation: a
        # 20 KB command workload's multi-megabyte frames cost a follower
        # 7 % of a core in appends alone, docs/benchmarks.md, session 32).
        self._parts: list[Buffer] = []
        self._held = 0  # bytes in _parts
        self._wanted = 0  # bytes _parts must reach before parsing again (0: parse every read)

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back; non-zero at end of stream
        means the last frame was truncated."""
        return self._held

    def feed(self, data: Buffer) -> list[tuple[bytes, memoryview]]:
        """Take the next bytes of the stream; return the ``(header, body)``
        of every frame they complete, in order."""
        return list(self.frames(data))

    def frames(self, data: Buffer) -> Iterator[tuple[bytes, memoryview]]:
        """``feed``, one frame at a time: each header is checked against
        ``max_frame_bytes`` as it is reached, so a receiver may raise the
        limit between frames (once its peer has authenticated).

        Each body is a read-only view of bytes that never change, not a copy
        (a 20 KB command crossed the decoder as two copies, a fifth of a
        follower's CPU): of ``data`` when that is ``bytes`` (else of a copy),
        or, for a frame that spanned reads, of its reads joined once."""
        chunk = data if type(data) is bytes else bytes(data)  # a bytearray or view the caller may reuse
        if self._wanted:  # the body of a frame whose header was checked
            missing = self._wanted - self._held
            if len(chunk) < missing:
                self._hold(chunk)
                return
            read = memoryview(chunk)
            frame = b"".join([*self._parts, read[:missing]])
            rest = _kept(read, missing)
            # Held until that frame is through: a consumer that stops there finds it at the next read.
            self._parts, self._held, self._wanted = ([rest], len(rest), 0) if rest else ([], 0, 0)
            yield from self._split(frame)
            self._parts, self._held = [], 0
            src: Buffer = rest
        elif self._parts:  # a header cut short, or what a reader that stopped early left
            src = b"".join([*self._parts, chunk])
            self._parts, self._held = [], 0
        else:
            src = chunk
        yield from self._split(src)

    def _hold(self, chunk: bytes) -> None:
        """Keep a read of an unfinished frame. Reads shorter than
        ``SMALL_READ`` go into one growing bytearray: a peer trickling a
        frame byte by byte would otherwise make this decoder hold an object
        (about 40 bytes) per byte it sent, far past what ``pending`` counts."""
        parts = self._parts
        if len(chunk) >= SMALL_READ:
            parts.append(chunk)
        elif parts and type(parts[-1]) is bytearray:
            parts[-1] += chunk
        else:
            parts.append(bytearray(chunk))
        self._held += len(chunk)

    def _split(self, src: Buffer) -> Iterator[tuple[bytes, memoryview]]:
        """The frames in ``src``; what is left of it (the start of the next
        frame) waits for the next read."""
        view = memoryview(src).toreadonly()
        end, pos, wanted = len(view), 0, 0
        try:
            while end - pos >= 4:
                if view[pos : pos + 4] != PREFIX:
                    raise FrameError(_bad_prefix(bytes(view[pos : pos + 4])))
                if end - pos < HEADER_LEN:
                    break
                (length,) = _LENGTH.unpack_from(view, pos + 4)
                if length > self.max_frame_bytes:
                    raise FrameError(f"frame of {length} bytes exceeds the {self.max_frame_bytes}-byte limit")
                stop = pos + HEADER_LEN + length
                if stop > end:
                    wanted = stop - pos
                    break
                header, body = bytes(view[pos : pos + HEADER_LEN]), view[pos + HEADER_LEN : stop]
                pos = stop
                yield header, body
        finally:
            if pos < end:
                self._parts, self._held, self._wanted = [_kept(memoryview(src), pos)], end - pos, wanted
            view.release()
        if 0 < self._held < 4 and not PREFIX.startswith(first := bytes(self._parts[0])):
            raise FrameError(_bad_prefix(first))


def _kept(view: memoryview, start: int) -> Buffer:
    """What a decoder keeps of ``view`` from ``start`` on: a view, or a copy
    when that is under half of the bytes the view keeps alive (a whole read:
    a peer may leave the next frame unfinished, and what is held must stay
    under twice ``pending``, which the transport's buffer budget counts)."""
    rest = view[start:]
    return bytes(rest) if 2 * len(rest) < memoryview(view.obj).nbytes else rest


def _bad_prefix(found: bytes) -> str:
    if found[:3] == MAGIC and len(found) == 4:
        return f"unsupported framing version {found[3]} (this build speaks {FRAME_VERSION})"
    return f"bad magic {found!r}: not a raftkit peer"


# -- payloads ---------------------------------------------------------------------


def encode_hello(src: NodeId, dst: NodeId) -> bytes:
    parts = []
    for name in (src, dst):
        raw = name.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise FrameError(f"node id of {len(raw)} bytes is too long")
        parts += [_ID_LENGTH.pack(len(raw)), raw]
    return b"".join(parts)


def decode_hello(payload: Buffer) -> tuple[NodeId, NodeId]:
    """The ``(sender, intended receiver)`` named by a HELLO payload."""
    view = memoryview(payload)
    names: list[str] = []
    pos = 0
    for _ in range(2):
        if len(view) - pos < 2:
            raise FrameError("HELLO: truncated")
        (size,) = _ID_LENGTH.unpack_from(view, pos)
        pos += 2
        if len(view) - pos < size:
            raise FrameError("HELLO: truncated node id")
        try:
            names.append(str(view[pos : pos + size], "utf-8"))
        except UnicodeDecodeError as exc:
            raise FrameError("HELLO: node id is not UTF-8") from exc
        pos += size
    if pos != len(view):
        raise FrameError(f"HELLO: {len(view) - pos} trailing bytes")
    if not names[0]:
        raise FrameError("HELLO: empty sender node id")
    return names[0], names[1]


def batch_parts(encoded: Sequence[bytes]) -> list[bytes]:
    """The payload pieces of a BATCH frame carrying these encoded messages."""
    return batch_pieces([(len(item), (item,)) for item in encoded])


def batch_pieces(encoded: Sequence[tuple[int, Sequence[bytes]]]) -> list[bytes]:
    """``batch_parts`` for messages encoded in pieces (``wire.encode_message_pieces``):
    the frame then joins every piece once, and no message is joined first."""
    parts: list[bytes] = []
    for size, pieces in encoded:
        parts.append(_LENGTH.pack(size))
        parts.extend(pieces)
    return parts


BATCH_ITEM_OVERHEAD = _LENGTH.size
"""Bytes a message costs in a batch on top of its wire encoding."""


def decode_batch(payload: Buffer, max_frame_bytes: int = wire.MAX_FRAME_BYTES) -> list[Message]:
    """Every message of a BATCH payload, or ``CodecError`` if any one is bad
    (so a bad batch delivers nothing)."""
    view = memoryview(payload)
    messages: list[Message] = []
    pos, end = 0, len(view)
    if end == 0:
        raise FrameError("BATCH: empty")
    while pos < end:
        if end - pos < _LENGTH.size:
            raise FrameError("BATCH: truncated length prefix")
        (size,) = _LENGTH.unpack_from(view, pos)
        pos += _LENGTH.size
        if size > end - pos:
            raise FrameError(f"BATCH: item of {size} bytes overruns the frame")
        messages.append(wire.decode_message(view[pos : pos + size], max_frame_bytes))
        pos += size
    return messages


class Channel:
    """The security layer of one connection, as seen by the frame code.

    This base class is the plain channel: established at once, bodies sent
    and read as they are. The encrypted transport's channel runs a handshake
    first (``established`` turns True when it succeeds; bytes to send are
    collected by ``take_output``) and seals every body afterwards.
    """

    established = True

    peer_id: NodeId | None = None
    """The node id the security layer authenticated for the other side
    (the password handshake binds it), or None when the layer names nobody
    (plain TCP; TLS, whose certificate the connection checks itself)."""

    def take_output(self) -> bytes:
        """Handshake bytes waiting to be written (none for a plain channel)."""
        return b""

    def seal(self, kind: FrameKind, parts: Sequence[Buffer] = ()) -> bytes:
        """One frame of ``kind`` ready for the socket."""
        return encode_frame(kind, parts)

    def open(self, header: bytes, body: Buffer) -> tuple[FrameKind, memoryview] | None:
        """Turn a received frame into ``(kind, payload)``, or None if the
        channel consumed it (a handshake step). Only data kinds pass."""
        kind, payload = split_body(body)
        if kind not in DATA_KINDS:
            raise FrameError(f"unexpected {kind.name} frame on an established connection")
        return kind, payload

    @property
    def overhead(self) -> int:
        """Bytes a sealed body adds to its plaintext (kind byte included)."""
        return 1
