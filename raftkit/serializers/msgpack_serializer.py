"""The default serializer: msgpack, extended so Python values come back with
their exact types."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msgpack

from raftkit.errors import CodecError, SerializationError
from raftkit.serializers.base import Serializer

# Extension type codes. Stable: they are part of what a node writes into its
# log and snapshots, so they must never be renumbered.
#
# A tuple, set or frozenset is written as an ordinary array whose first item
# is an empty extension value marking its type: (1, 2) is [<ext 1>, 1, 2].
# Nesting the items inside the extension's payload instead would need one
# msgpack call per nesting level, and each call takes ~50 KiB of C stack:
# a few hundred levels of hostile input would crash the interpreter.
_EXT_TUPLE = 1
_EXT_SET = 2
_EXT_FROZENSET = 3
_EXT_BIGINT = 4  # an int outside msgpack's 64-bit range, signed big-endian

_MARK_BY_TYPE: dict[type, msgpack.ExtType] = {
    tuple: msgpack.ExtType(_EXT_TUPLE, b""),
    set: msgpack.ExtType(_EXT_SET, b""),
    frozenset: msgpack.ExtType(_EXT_FROZENSET, b""),
}


class _Mark:
    """A decoded type marker, waiting for its array to be completed."""

    __slots__ = ("build",)

    def __init__(self, build: type) -> None:
        self.build = build


_packers = threading.local()  # MsgpackSerializer.dumps's Packer of each thread
_KEEP_PACKER_BELOW = 64 << 10  # bytes: a Packer whose buffer grew past this is not kept
_DUMP_CHUNK = 1 << 20  # bytes per piece handed on by dump_to
_WALK_DEPTH = 8  # dump_to walks containers this deep at most
_WALK_ITEM_BYTES = 1024  # ... and a big one only when its values are about this big

_MARK_BY_CODE = {_EXT_TUPLE: _Mark(tuple), _EXT_SET: _Mark(set), _EXT_FROZENSET: _Mark(frozenset)}


class MsgpackSerializer(Serializer):
    """msgpack with extension types; safe for untrusted input.

    Round-trips exactly (same value, same type, at any nesting depth):
    ``None``, ``bool``, ``int`` (any size), ``float``, ``str``, ``bytes``,
    ``list``, ``tuple``, ``dict`` (keys of any of these hashable types, order
    kept), ``set`` and ``frozenset``. ``bytearray`` and ``memoryview`` are
    accepted but come back as ``bytes``.

    Anything else, including subclasses of the types above (an ``IntEnum``,
    an ``OrderedDict``), raises ``SerializationError`` rather than silently
    losing its type; use ``PickleSerializer`` over an authenticated link for
    arbitrary objects. Do not pass ``msgpack.ExtType`` values: codes 1-4 are
    taken by the types above.

    Decoding only ever builds the types above (plus ``msgpack.Timestamp``
    for msgpack's standard timestamp extension), so attacker bytes cannot run
    code, and it uses a bounded amount of stack whatever the nesting.
    """

    name = "msgpack"
    safe_for_untrusted = True

    def dumps(self, obj: Any) -> bytes:
        # A Packer per thread, reused: ``msgpack.packb`` builds one (and its
        # buffer) per call, which cost three quarters of encoding a small
        # call. Taken out while in use, so a nested dumps on the same thread
        # gets its own; dropped after a big value, so its grown buffer is not kept.
        mine = _packers.__dict__
        packer = mine.pop("packer", None)
        if packer is None:
            packer = msgpack.Packer(use_bin_type=True, strict_types=True, default=_encode, buf_size=4096)
        try:
            data: bytes = packer.pack(obj)  # the buffer is reset on error too
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            raise _encoding_error(obj, exc) from exc
        if len(data) <= _KEEP_PACKER_BELOW:
            mine["packer"] = packer
        return data

    def dump_to(self, obj: Any, write: Callable[[bytes], object], *, chunk: int = _DUMP_CHUNK) -> None:
        """``dumps(obj)``'s bytes, byte for byte, handed to ``write`` in
        pieces of about ``chunk`` bytes: a dict or list whose values are big
        (a string of 20 KB per key) is walked, its header and each item
        packed apart, so the whole encoding never sits in one buffer.
        Building 57 MB whole cost a forked snapshot child three times the
        CPU, nearly all in page faults (docs/benchmarks.md, session 30).
        ``obj`` must not change meanwhile."""
        packer = msgpack.Packer(use_bin_type=True, strict_types=True, default=_encode, autoreset=False)

        def flush() -> None:
            piece = packer.bytes()
            packer.reset()
            try:
                write(piece)
            except Exception as exc:  # the writer's own error (a closed pipe), not an encoding one
                raise _WriterFailed(exc) from exc

        def put(value: Any, depth: int) -> None:
            kind = type(value)
            if depth < _WALK_DEPTH and (kind is dict or kind is list) and _worth_walking(value):
                if kind is dict:
                    packer.pack_map_header(len(value))
                    for key, item in value.items():
                        packer.pack(key)
                        put(item, depth + 1)
                else:
                    packer.pack_array_header(len(value))
                    for item in value:
                        put(item, depth + 1)
            else:
                packer.pack(value)
            if len(packer.getbuffer()) >= chunk:
                flush()

        try:
            put(obj, 0)
            if packer.getbuffer().nbytes:
                flush()
        except _WriterFailed as failed:
            raise failed.error from None
        except (TypeError, ValueError) as exc:
            raise _encoding_error(obj, exc) from exc

    def loads(self, data: bytes) -> Any:
        # Most values hold no tuple or set: decode without a Python call per
        # array, and only if a type marker shows up decode again with them.
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_plain_ext_hook)
        except _HasMarks:
            pass
        except CodecError:
            raise
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise CodecError(f"malformed msgpack data ({type(exc).__name__}: {exc})") from exc
        decoder = _Decoder()
        try:
            value = msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=False,
                ext_hook=decoder.ext_hook,
                list_hook=decoder.list_hook,
            )
        except CodecError:
            raise
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            # TypeError: an unhashable dict key or set member.
            raise CodecError(f"malformed msgpack data ({type(exc).__name__}: {exc})") from exc
        if decoder.pending_marks:
            raise CodecError("malformed msgpack data: a type marker outside the head of an array")
        return value


def _encoding_error(obj: Any, exc: TypeError | ValueError) -> SerializationError:
    """What msgpack raised while encoding ``obj``, as the error ``dumps``
    promises (``_encode``'s own SerializationError is no TypeError: it passes as is)."""
    if isinstance(exc, UnicodeEncodeError):
        return SerializationError(
            f"MsgpackSerializer cannot encode a str that is not valid UTF-8 ({exc.reason})")
    # msgpack's own limits: nesting deeper than 511, objects over 4 GiB.
    return SerializationError(f"MsgpackSerializer cannot encode a value of type {type(obj).__name__}: {exc}")


class _WriterFailed(Exception):  # noqa: N818 - a carrier, not an error of its own
    """``dump_to``'s ``write`` raised ``error``: passed on as it is."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def _worth_walking(container: dict[Any, Any] | list[Any]) -> bool:
    """Whether ``dump_to`` should pack a container's items one by one: a
    small one costs little either way; a big one only pays off when its
    values are big (judged by its first value), a Python call per value
    would cost more than the buffer it saves for small ones."""
    if len(container) <= 16:
        return True
    first = next(iter(container.values() if type(container) is dict else container))
    kind = type(first)
    if kind is dict or kind is list:
        return True
    return (kind is str or kind is bytes) and len(first) >= _WALK_ITEM_BYTES


def _encode(obj: Any) -> Any:
    """Called by msgpack for every value it has no exact native type for."""
    kind = type(obj)
    mark = _MARK_BY_TYPE.get(kind)
    if mark is not None:
        return [mark, *obj]
    if kind is int:  # msgpack calls back only when the int overflows 64 bits
        size = (obj.bit_length() + 8) // 8  # + 1 bit for the sign, rounded up
        return msgpack.ExtType(_EXT_BIGINT, obj.to_bytes(size, "big", signed=True))
    raise SerializationError(f"MsgpackSerializer cannot encode a value of type {kind.__qualname__}")


class _HasMarks(Exception):  # noqa: N818 - a signal, not an error
    """The value holds a tuple or set: decode it again with the array hook."""


def _plain_ext_hook(code: int, payload: bytes) -> Any:
    if code == _EXT_BIGINT:
        return int.from_bytes(payload, "big", signed=True)
    if code in _MARK_BY_CODE:
        raise _HasMarks
    raise CodecError(f"unknown msgpack extension type {code}")


class _Decoder:
    """Per-call hooks. Every marker decoded must be consumed as the head of
    an array; counting them catches markers hidden anywhere else without
    scanning every array."""

    __slots__ = ("pending_marks",)

    def __init__(self) -> None:
        self.pending_marks = 0

    def ext_hook(self, code: int, payload: bytes) -> Any:
        if code == _EXT_BIGINT:
            return int.from_bytes(payload, "big", signed=True)
        mark = _MARK_BY_CODE.get(code)
        if mark is None:
            raise CodecError(f"unknown msgpack extension type {code}")
        if payload:
            raise CodecError(f"msgpack extension type {code} is a type marker and must be empty")
        self.pending_marks += 1
        return mark

    def list_hook(self, items: list[Any]) -> Any:
        if items and type(items[0]) is _Mark:
            self.pending_marks -= 1
            return items[0].build(items[1:])
        return items
