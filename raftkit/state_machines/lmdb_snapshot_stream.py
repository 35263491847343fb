"""The snapshot stream of an ``LmdbStateMachine``: a framed, checksummed
sequence of records that can be written and read a piece at a time.

Why a format of its own: a state larger than memory must travel as it is
read, record by record, and the receiver must be able to tell a complete
stream from a truncated or damaged one *before* it replaces its state.

Layout (integers big-endian)::

    header  b"RKLMDBSM" | version u16 | flags u16 (0) | applied index u64 | size hint u64
    db      b"D" | name length u16 | name                     starts a named database
    item    b"I" | key length u16 | value length u32 | key | value   in key order
    end     b"E" | item count u64 | crc32 u32 of every byte before the crc

The size hint (the source environment's size in bytes) lets the receiver
size its LMDB map up front. The writer hands its output over in pieces of
about ``chunk`` bytes; the reader accepts any chunking and holds at most
one chunk plus one record.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from raftkit.errors import SnapshotError
from raftkit.state_machines.base import SnapshotWriter

__all__ = ["MAX_KEY", "STREAM_VERSION", "StreamReader", "StreamWriter"]

STREAM_VERSION = 1
MAX_KEY = 511  # LMDB's default maximum key size
MIB = 1 << 20

_MAGIC = b"RKLMDBSM"
_HEADER = struct.Struct(">8sHHQQ")
_DB_HEAD = struct.Struct(">cH")
_ITEM_HEAD = struct.Struct(">cHI")
_END = struct.Struct(">cQ")
_CRC = struct.Struct(">I")


class StreamWriter:
    """Buffers records and hands ``out`` pieces of about ``chunk`` bytes,
    keeping the running checksum the end record carries."""

    def __init__(self, out: SnapshotWriter, applied_index: int, size_hint: int, chunk: int = MIB) -> None:
        self._out = out
        self._chunk = chunk
        self._buf = bytearray(_HEADER.pack(_MAGIC, STREAM_VERSION, 0, applied_index, size_hint))
        self._crc = 0
        self._count = 0

    def database(self, name: str) -> None:
        encoded = name.encode()
        self._buf += _DB_HEAD.pack(b"D", len(encoded))
        self._buf += encoded

    def item(self, key: bytes | memoryview, value: bytes | memoryview) -> None:
        self._buf += _ITEM_HEAD.pack(b"I", len(key), len(value))
        self._buf += key
        self._buf += value
        self._count += 1
        if len(self._buf) >= self._chunk:
            self.flush()

    def flush(self) -> None:
        """Hand over what is buffered (immutable bytes: ``out`` may keep them)."""
        data = bytes(self._buf)
        self._buf.clear()
        self._crc = zlib.crc32(data, self._crc)
        self._out.write(data)

    def finish(self) -> None:
        self._buf += _END.pack(b"E", self._count)
        self._crc = zlib.crc32(self._buf, self._crc)
        self._buf += _CRC.pack(self._crc)
        data = bytes(self._buf)
        self._buf.clear()
        self._out.write(data)


class StreamReader:
    """Parses a stream from chunks of any size: ``header()`` first, then
    ``records()``, which checks the end record, the checksum and that
    nothing follows. Any defect raises ``SnapshotError``."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = bytearray()
        self._pos = 0
        self._crc = 0

    def header(self) -> tuple[int, int]:
        """(applied index, size hint) after checking magic and version."""
        magic, version, _flags, applied, hint = self._unpack(_HEADER)
        if magic != _MAGIC:
            raise SnapshotError("not an LmdbStateMachine snapshot stream (bad magic)")
        if version != STREAM_VERSION:
            raise SnapshotError(f"snapshot stream version {version}; this build reads {STREAM_VERSION}")
        return applied, hint

    def records(self) -> Iterator[tuple[str, bytes, bytes]]:
        """``("D", name, b"")`` and ``("I", key, value)`` in stream order."""
        count = 0
        while True:
            tag = self._peek()
            if tag == b"I":
                _, klen, vlen = self._unpack(_ITEM_HEAD)
                if not 0 < klen <= MAX_KEY:
                    raise SnapshotError(f"snapshot item #{count} is malformed (a key of {klen} bytes)")
                count += 1
                yield "I", self._take(klen), self._take(vlen)
            elif tag == b"D":
                _, nlen = self._unpack(_DB_HEAD)
                yield "D", self._take(nlen), b""
            elif tag == b"E":
                _, total = self._unpack(_END)
                crc = self._consumed_crc()
                (expected,) = self._unpack(_CRC)
                if total != count or crc != expected:
                    raise SnapshotError("the snapshot stream is corrupted (checksum or item count)")
                if len(self._buf) > self._pos or any(len(chunk) for chunk in self._chunks):
                    raise SnapshotError("the snapshot stream has bytes after its end record")
                return
            else:
                raise SnapshotError(f"the snapshot stream is corrupted (unknown record {tag!r})")

    def _fill(self, n: int) -> None:
        while len(self._buf) - self._pos < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise SnapshotError("the snapshot stream is truncated")
            self._compact()
            self._buf += chunk

    def _compact(self) -> None:
        """Drop consumed bytes, folding them into the checksum first."""
        if self._pos:
            with memoryview(self._buf) as view:
                self._crc = zlib.crc32(view[: self._pos], self._crc)
            del self._buf[: self._pos]
            self._pos = 0

    def _consumed_crc(self) -> int:
        self._compact()
        return self._crc

    def _peek(self) -> bytes:
        self._fill(1)
        return bytes(self._buf[self._pos : self._pos + 1])

    def _take(self, n: int) -> bytes:
        self._fill(n)
        start = self._pos
        self._pos += n
        with memoryview(self._buf) as view:
            return bytes(view[start : self._pos])

    def _unpack(self, fmt: struct.Struct) -> tuple[Any, ...]:
        self._fill(fmt.size)
        values = fmt.unpack_from(self._buf, self._pos)
        self._pos += fmt.size
        return values
