"""A LogStore on LMDB: the Raft log and hard state in one memory-mapped
B+tree, written with one transaction (one durable commit) per ``save``.

Layout of the LMDB environment (a directory holding ``data.mdb`` and
``lock.mdb``), two named databases:

* ``entries``: key = the index as 8 big-endian bytes (so LMDB's byte order
  is log order and appends can use ``MDB_APPEND``), value = the entry as a
  versioned wire record (``raftkit.serializers.wire.encode_entry``), sealed;
* ``meta``: ``format`` (magic + format version of this layout),
  ``hard_state`` (a wire record, sealed) and ``boundary`` (index and term of
  the compaction boundary, 2 x 8 big-endian bytes, sealed). Both are written
  when the store is created, so a missing one is damage (format 1 wrote them
  only when first needed: absent there means ``HardState()`` and ``(0, 0)``).

Sealed (format version 2) means prefixed with a 6-byte header: a magic
(``0xAD 0xBA``) and the CRC-32 of the key followed by the record. LMDB checks
the shape of its pages, not their contents: without the checksum a flipped
bit in a record is read back as a different entry (another command to apply,
another term). CRC-32 detects every burst of up to 32 flipped bits and all
but 2**-32 of the rest, which is what bit rot and torn copies produce; it is
no defence against someone who can write the file (nothing stored locally
is). Covering the key too means a record found under the wrong key fails.
Every read verifies the seal; a mismatch, like any LMDB error that means a
damaged file, is a ``LogStoreError`` naming the file and the index and saying
how to restore the node. A format-1 store (the previous release, records
without a header) is sealed in place when it is first opened.

Keys at or below the boundary are garbage: readers consult the boundary and
never look at them. That is what lets ``compact`` delete in small batches
without ever exposing a hole: the new boundary is committed first (with the
first batch), so a process killed between batches reopens to a consistent
log and merely finishes deleting the garbage.
"""

from __future__ import annotations

import functools
import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar

import lmdb

from raftkit.core.types import Entry, HardState
from raftkit.errors import CodecError, LogCompactedError, LogStoreError, LogUnavailableError
from raftkit.serializers.wire import decode_entry, decode_hard_state, encode_entry, encode_hard_state
from raftkit.storage._files import DirectoryLock
from raftkit.storage.log_store import LogStore

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""The on-disk layout version this build writes and the newest it reads.
Version 1 (records without checksums) is read and upgraded on open."""

MIB = 1 << 20
DEFAULT_MAP_SIZE = 64 * MIB
DEFAULT_COMPACT_BATCH = 10_000

Durability = Literal["sync", "no-sync"]

_FORMAT_MAGIC = b"raftkit-log-store"
_VERSION = struct.Struct(">H")
_KEY = struct.Struct(">Q")
_BOUNDARY = struct.Struct(">QQ")
# Far from the wire magics b"RE" and b"RH" (13 or more bits differ), so a few
# flipped bits never make a sealed record pass for a format-1 one.
_SEAL_MAGIC = b"\xad\xba"
_SEAL = struct.Struct(">2sI")  # magic, CRC-32 of key + record
_CRC_FIELD = struct.Struct(">I")
# LMDB's meta pages (pages 0 and 1), in the machine's byte order, 64-bit
# layout: a 16-byte page header, then the magic, version, map address and
# size, two 48-byte database records and the last page number precede the id.
_LMDB_MAGIC = 0xBEEFC0DE
_META_MAGIC = struct.Struct("=I")
_META_TXNID = struct.Struct("=Q")
_META_TXNID_AT = 16 + 4 + 4 + 8 + 8 + 2 * 48 + 8
# LMDB errors that mean the file is damaged, not that the call was wrong.
_LMDB_DAMAGE = (
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.InvalidError,
    lmdb.IncompatibleError,
    lmdb.BadValsizeError,
    lmdb.BadDbiError,
    lmdb.PanicError,
    lmdb.VersionMismatchError,
)
_ENTRIES_DB = b"entries"
_META_DB = b"meta"
_FORMAT_KEY = b"format"
_HARD_STATE_KEY = b"hard_state"
_BOUNDARY_KEY = b"boundary"
_DATA_FILE = "data.mdb"
_LOCK_FILE = "raftkit.lock"

T = TypeVar("T")

# The pid of the current process, refreshed in forked children (cheaper than
# calling os.getpid() on every read). A store compares it with the pid it was
# opened in: LMDB environments must never be used across fork().
_current_pid = os.getpid()


def _refresh_pid() -> None:
    global _current_pid
    _current_pid = os.getpid()


os.register_at_fork(after_in_child=_refresh_pid)


def _seal(key: bytes, record: bytes) -> bytes:
    return _SEAL.pack(_SEAL_MAGIC, zlib.crc32(record, zlib.crc32(key))) + record


def _is_sealed(value: bytes) -> bool:
    return value[:2] == _SEAL_MAGIC


def _format_record(version: int) -> bytes:
    # Left unsealed, so that older builds can read it and ask to be upgraded;
    # a damaged one is refused, and one that reads 1 by accident still makes
    # every sealed record verify its checksum.
    return _FORMAT_MAGIC + _VERSION.pack(version)


class LmdbLogStore(LogStore):
    """A durable LogStore in an LMDB environment at ``path`` (a directory).

    ``durability="sync"`` (the default) makes every ``save`` durable before
    it returns: LMDB flushes the data pages, then the meta page. This is
    what Raft's safety needs (a vote or an acknowledged entry must survive a
    power loss). ``"no-sync"`` skips both flushes: the store stays
    consistent after a crash of the process, but a power loss or kernel crash
    may forget recent saves, and a node that forgets votes or acknowledged
    entries can break Raft's guarantees. Use it only for tests and throwaway
    clusters.

    The map (LMDB's address-space reservation, not disk usage) starts at
    ``map_size`` and doubles whenever a write finds it full, up to
    ``max_map_size`` (unbounded when ``None``).

    Safe to call from several threads (calls are serialized); never from a
    forked child (``LogStoreError``). Only one store may have ``path`` open
    at a time, across processes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "sync",
        map_size: int = DEFAULT_MAP_SIZE,
        max_map_size: int | None = None,
        compact_batch_size: int = DEFAULT_COMPACT_BATCH,
    ) -> None:
        if durability not in ("sync", "no-sync"):
            raise ValueError(f"durability must be 'sync' or 'no-sync', got {durability!r}")
        if map_size <= 0:
            raise ValueError(f"map_size must be positive, got {map_size}")
        if max_map_size is not None and max_map_size < map_size:
            raise ValueError(f"max_map_size ({max_map_size}) must be at least map_size ({map_size})")
        if compact_batch_size < 1:
            raise ValueError(f"compact_batch_size must be >= 1, got {compact_batch_size}")
        self.path = Path(path)
        self._data = self.path / _DATA_FILE
        self._bare_ok = False  # True while a format-1 store may hold unsealed records
        self.durability: Durability = durability
        self._max_map_size = max_map_size
        self._batch = compact_batch_size
        self._pid = _current_pid
        self._lock = threading.Lock()
        self._dirlock: DirectoryLock | None = None
        self._env: lmdb.Environment | None = None
        self._open(map_size)

    @property
    def writes_wait_for_disk(self) -> bool:
        return self.durability == "sync"

    # -- opening -------------------------------------------------------------

    def _open(self, map_size: int) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise LogStoreError(
                f"{self.path} is a file, not an LMDB log store directory: "
                "point the store at a directory (it is created if missing)"
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._dirlock = DirectoryLock(self.path, _LOCK_FILE)
        except BlockingIOError:
            raise LogStoreError(
                f"the log store at {self.path} is already open (in another process, or another "
                "LmdbLogStore in this one): only one node may use a log directory"
            ) from None
        except OSError as exc:
            raise LogStoreError(f"cannot open the log store directory {self.path}: {exc}") from exc
        try:
            try:
                self._env = self._open_env(map_size)
                self._load()
            except lmdb.Error as exc:
                raise self._lmdb_error(exc, "opening it") from exc
        except BaseException:
            self._release()
            raise

    def _open_env(self, map_size: int) -> lmdb.Environment:
        data = self.path / _DATA_FILE
        existing = data.exists()
        file_size = data.stat().st_size if existing else 0
        page = os.sysconf("SC_PAGE_SIZE")
        if existing and file_size < 2 * page:
            # LMDB would take an empty file for a new environment and
            # silently forget every vote and entry.
            raise LogStoreError(self._damaged(f"{data} is truncated ({file_size} bytes)"))
        sync = self.durability == "sync"
        try:
            env = lmdb.open(
                str(self.path),
                map_size=max(map_size, file_size),
                max_dbs=2,
                subdir=True,
                sync=sync,
                metasync=sync,
                lock=True,
            )
        except lmdb.InvalidError as exc:
            raise LogStoreError(self._damaged(f"{data} is not an LMDB environment ({exc})")) from exc
        except lmdb.Error as exc:
            raise LogStoreError(f"cannot open the LMDB environment at {self.path}: {exc}") from exc
        # Touching a page past the end of a truncated file is SIGBUS, not an
        # exception: check the size before reading anything.
        needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
        if existing and file_size < needed:
            env.close()
            raise LogStoreError(
                self._damaged(f"{data} is truncated ({file_size} bytes, its header needs {needed})")
            )
        if existing:
            try:
                self._check_meta_pages(data, env.stat()["psize"])
            except BaseException:
                env.close()
                raise
        env.reader_check()  # forget reader slots of killed processes: they pin old pages
        return env

    def _check_meta_pages(self, data: Path, page_size: int) -> None:
        """LMDB writes its two meta pages in turn, so their transaction ids
        are equal or consecutive, and it trusts the higher one. A flipped bit
        in an id would silently take the store back to an older transaction
        (forgetting the last saves, votes included), which no record checksum
        can see: refuse that. (A flip in an id's lowest two bits can leave
        the ids equal or consecutive; that rare case goes unnoticed.)"""
        try:
            with open(data, "rb") as f:
                head = f.read(2 * page_size)
        except OSError as exc:
            raise LogStoreError(f"cannot read {data}: {exc}") from exc
        ids = []
        for base in (0, page_size):
            if (
                len(head) < base + _META_TXNID_AT + 8
                or _META_MAGIC.unpack_from(head, base + 16)[0] != _LMDB_MAGIC
            ):
                return  # not the 64-bit layout this check knows: leave the judgement to LMDB
            ids.append(_META_TXNID.unpack_from(head, base + _META_TXNID_AT)[0])
        if abs(ids[0] - ids[1]) > 1:
            raise LogStoreError(
                self._damaged(
                    f"the two LMDB meta pages of {data} disagree (transaction ids {ids[0]} and {ids[1]}, "
                    "which are always consecutive): the file is damaged, and LMDB would silently go back "
                    "to an older state"
                )
            )

    def _damaged(self, what: str) -> str:
        return (
            f"{what}. The log store cannot be trusted: restore {self.path} from a backup, or move it "
            "aside and let this node rejoin as a fresh member (remove it from the cluster and add it "
            "back) so it catches up from its peers"
        )

    def _load(self) -> None:
        """Recognise the environment, create or check the format record and
        fill the in-memory caches."""
        env = self._require_env()
        expected = {_ENTRIES_DB, _META_DB}
        with env.begin() as txn:
            names = {key for key, _ in txn.cursor()}
        if names and names != expected:
            raise LogStoreError(
                f"{self.path} holds an LMDB environment that is not a raftkit log store "
                f"(databases {sorted(n.decode(errors='replace') for n in names)}): use another directory"
            )
        with env.begin(write=True) as txn:
            self._entries = env.open_db(_ENTRIES_DB, txn=txn)
            self._meta = env.open_db(_META_DB, txn=txn)
            if not names:
                txn.put(_FORMAT_KEY, _format_record(FORMAT_VERSION), db=self._meta)
                txn.put(
                    _HARD_STATE_KEY, _seal(_HARD_STATE_KEY, encode_hard_state(HardState())), db=self._meta
                )
                txn.put(_BOUNDARY_KEY, _seal(_BOUNDARY_KEY, _BOUNDARY.pack(0, 0)), db=self._meta)
        with env.begin(db=self._meta) as txn:
            version = self._check_format(txn.get(_FORMAT_KEY))
            self._bare_ok = version < 2
            raw_boundary = txn.get(_BOUNDARY_KEY)
            raw_hs = txn.get(_HARD_STATE_KEY)
        self._boundary_index, self._boundary_term = self._read_boundary(raw_boundary)
        self._hard_state = self._read_hard_state(raw_hs)
        while self._write(lambda txn: self._delete_garbage(txn, self._boundary_index)):
            pass  # a compaction was interrupted: finish it
        if self._bare_ok:
            self._upgrade()
        with env.begin(db=self._entries) as txn:
            cursor = txn.cursor()
            last_key = cursor.key() if cursor.last() else None
            count = txn.stat(self._entries)["entries"]
            self._last_index = self._boundary_index if last_key is None else _KEY.unpack(last_key)[0]
            if last_key is not None and self._last_index > self._boundary_index:
                self._last_term = self._decode(self._last_index, cursor.value(), last_key).term
            else:
                self._last_index, self._last_term = self._boundary_index, self._boundary_term
        if count != self._last_index - self._boundary_index:
            raise LogStoreError(
                self._damaged(
                    f"the log in {self.path} has a hole: {count} entries stored for indexes "
                    f"{self._boundary_index + 1}..{self._last_index}"
                )
            )

    def _read_boundary(self, raw: bytes | None) -> tuple[int, int]:
        if raw is None:
            if self._bare_ok:  # format 1 wrote no boundary before the first compaction
                return 0, 0
            raise LogStoreError(self._damaged(f"the compaction boundary record is missing from {self._data}"))
        record = self._unseal(_BOUNDARY_KEY, raw, "the compaction boundary record")
        if len(record) != _BOUNDARY.size:
            raise LogStoreError(self._damaged(f"the boundary record in {self._data} is malformed"))
        index, term = _BOUNDARY.unpack(record)
        return index, term

    def _read_hard_state(self, raw: bytes | None) -> HardState:
        if raw is None:
            if self._bare_ok:  # format 1 wrote no hard state before the first save of one
                return HardState()
            raise LogStoreError(
                self._damaged(f"the hard state record (term, vote) is missing from {self._data}")
            )
        try:
            return decode_hard_state(self._unseal(_HARD_STATE_KEY, raw, "the hard state record"))
        except CodecError as exc:
            raise LogStoreError(
                self._damaged(f"the hard state in {self._data} is unreadable ({exc})")
            ) from exc

    def _upgrade(self) -> None:
        """Seal every record of a format-1 store, then mark it format 2.
        Entries are sealed in batches of ``compact_batch_size``; a process
        killed midway leaves a format-1 store holding some sealed records,
        which reads fine and is finished at the next open."""
        log.info(
            "upgrading the log store at %s to format %d (a checksum on every record)",
            self.path,
            FORMAT_VERSION,
        )
        after: bytes | None = b""
        while after is not None:
            after = self._write(functools.partial(self._seal_batch, start=after))
        hs_record = _seal(_HARD_STATE_KEY, encode_hard_state(self._hard_state))
        boundary = _seal(_BOUNDARY_KEY, _BOUNDARY.pack(self._boundary_index, self._boundary_term))

        def finish(txn: lmdb.Transaction[bytes]) -> None:
            txn.put(_HARD_STATE_KEY, hs_record, db=self._meta)
            txn.put(_BOUNDARY_KEY, boundary, db=self._meta)
            txn.put(_FORMAT_KEY, _format_record(FORMAT_VERSION), db=self._meta)

        self._write(finish)
        self._bare_ok = False

    def _seal_batch(self, txn: lmdb.Transaction[bytes], start: bytes) -> bytes | None:
        """Seal the unsealed entries among the next batch of keys from
        ``start`` (checking each first); return the key to go on from."""
        cursor = txn.cursor(db=self._entries)
        found = cursor.set_range(start) if start else cursor.first()
        sealed: list[tuple[bytes, bytes]] = []
        for _ in range(self._batch):
            if not found:
                break
            key, value = cursor.item()
            if not _is_sealed(value):
                self._decode(_KEY.unpack(key)[0], value, key)
                sealed.append((key, _seal(key, value)))
            found = cursor.next()
        after = cursor.key() if found else None
        for key, value in sealed:
            txn.put(key, value, db=self._entries)
        return after

    def _check_format(self, record: bytes | None) -> int:
        n = len(_FORMAT_MAGIC)
        if record is None or len(record) != n + _VERSION.size or record[:n] != _FORMAT_MAGIC:
            raise LogStoreError(
                f"{self.path} is an LMDB environment without a valid raftkit format record: "
                "it was not written by LmdbLogStore, or is damaged; use another directory"
            )
        (version,) = _VERSION.unpack(record[n:])
        if version > FORMAT_VERSION:
            raise LogStoreError(
                f"the log store at {self.path} was written by a newer raftkit (format version {version}; "
                f"this build reads up to {FORMAT_VERSION}): upgrade raftkit on this node to open it"
            )
        if version < 1:
            raise LogStoreError(self._damaged(f"{self.path} has an invalid format version {version}"))
        return int(version)

    # -- reads -----------------------------------------------------------------

    def first_index(self) -> int:
        with self._locked():
            return self._boundary_index + 1

    def last_index(self) -> int:
        with self._locked():
            return self._last_index

    def term(self, index: int) -> int:
        with self._locked():
            return self._term(index)

    def hard_state(self) -> HardState:
        with self._locked():
            return self._hard_state

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        with self._locked():
            if lo > hi:
                raise LogStoreError(f"invalid entry range [{lo}, {hi}): lo is greater than hi")
            self._check_readable(lo, hi)
            out: list[Entry] = []
            if lo == hi:
                return out
            total = 0
            try:
                with self._read_txn() as txn:
                    cursor = txn.cursor()
                    if not cursor.set_key(_KEY.pack(lo)):
                        raise LogStoreError(self._damaged(f"entry {lo} is missing from {self._data}"))
                    # _decode checks each record's own index: a missing key shows
                    # up as the next record arriving where this one was expected.
                    for index, (key, value) in zip(range(lo, hi), cursor.iternext(), strict=False):
                        entry = self._decode(index, value, key)
                        total += entry.size
                        if max_bytes is not None and total > max_bytes and out:
                            return out
                        out.append(entry)
            except lmdb.Error as exc:
                raise self._lmdb_error(exc, f"reading entries {lo}..{hi - 1}") from exc
            if len(out) < hi - lo:  # the cursor ran off the end of the database
                raise LogStoreError(self._damaged(f"entry {lo + len(out)} is missing from {self.path}"))
            return out

    def _term(self, index: int) -> int:
        if index == self._boundary_index:
            return self._boundary_term
        if index == self._last_index:
            return self._last_term
        self._check_readable(index, index + 1)
        key = _KEY.pack(index)
        try:
            with self._read_txn() as txn:
                return self._decode(index, txn.get(key), key).term
        except lmdb.Error as exc:
            raise self._lmdb_error(exc, f"reading entry {index}") from exc

    def _check_readable(self, lo: int, hi: int) -> None:
        if lo <= self._boundary_index:
            raise LogCompactedError(lo, self._boundary_index + 1)
        if hi > self._last_index + 1:
            raise LogUnavailableError(hi - 1, self._last_index)

    def _read_txn(self) -> lmdb.Transaction[bytes]:
        # buffers=False: the decoder is faster on bytes than on memoryviews,
        # which more than pays for LMDB's copy.
        return self._require_env().begin(db=self._entries)

    def _decode(self, index: int, value: bytes | None, key: bytes) -> Entry:
        if value is None:
            raise LogStoreError(self._damaged(f"entry {index} is missing from {self._data}"))
        # The common case inline (the read path of every append round):
        record = value[_SEAL.size :]
        if (
            len(value) < _SEAL.size
            or value[:2] != _SEAL_MAGIC
            or zlib.crc32(record, zlib.crc32(key)) != _CRC_FIELD.unpack_from(value, 2)[0]
        ):
            record = self._unseal(key, value, f"entry {index}")  # format 1, or damage
        try:
            entry = decode_entry(record)
        except CodecError as exc:
            raise LogStoreError(
                self._damaged(f"entry {index} in {self._data} is unreadable ({exc})")
            ) from exc
        if entry.index != index:
            damage = f"the record at index {index} in {self._data} holds index {entry.index}"
            raise LogStoreError(self._damaged(damage))
        return entry

    def _unseal(self, key: bytes, value: bytes, what: str) -> bytes:
        """The record inside ``value``, once its checksum matches."""
        if value[:2] == _SEAL_MAGIC and len(value) >= _SEAL.size:
            _, crc = _SEAL.unpack_from(value)
            record = value[_SEAL.size :]
            if zlib.crc32(record, zlib.crc32(key)) == crc:
                return record
            raise LogStoreError(
                self._damaged(f"{what} in {self._data} fails its checksum (the file is damaged)")
            )
        if self._bare_ok:  # a format-1 store being upgraded: records may predate checksums
            return value
        raise LogStoreError(
            self._damaged(f"{what} in {self._data} has no checksum header (the file is damaged)")
        )

    def _lmdb_error(self, exc: lmdb.Error, doing: str) -> LogStoreError:
        if isinstance(exc, _LMDB_DAMAGE):
            return LogStoreError(self._damaged(f"{self._data} is damaged (LMDB error while {doing}: {exc})"))
        return LogStoreError(f"the log store at {self.path} failed while {doing}: {exc}")

    # -- writes ------------------------------------------------------------------

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        with self._locked():
            if hard_state is None and not entries:
                return
            items: list[tuple[bytes, bytes]] = []
            if entries:
                start = entries[0].index
                if not self._boundary_index < start <= self._last_index + 1:
                    raise LogStoreError(
                        f"cannot save entries starting at index {start}: it must lie in "
                        f"{self._boundary_index + 1}..{self._last_index + 1} "
                        "(first index .. last index + 1), "
                        "otherwise the log would have a hole or overwrite compacted entries"
                    )
                for prev, cur in pairwise(entries):
                    if cur.index != prev.index + 1:
                        raise LogStoreError(
                            f"cannot save non-contiguous entries: index {cur.index} follows {prev.index}"
                        )
                items = []
                for e in entries:
                    key = _KEY.pack(e.index)
                    items.append((key, _seal(key, encode_entry(e))))
            hs_record = None if hard_state is None else _seal(_HARD_STATE_KEY, encode_hard_state(hard_state))
            replaces = bool(entries) and entries[0].index <= self._last_index

            def write(txn: lmdb.Transaction[bytes]) -> None:
                if replaces:
                    self._delete_suffix(txn, entries[0].index)
                if items:
                    # Every remaining key is below entries[0].index: the
                    # append fast path (no tree search, packed pages) applies.
                    _, added = txn.cursor(db=self._entries).putmulti(items, append=True)
                    if added != len(items):
                        raise LogStoreError(self._damaged(f"appending to {self.path} found existing keys"))
                if hs_record is not None:
                    txn.put(_HARD_STATE_KEY, hs_record, db=self._meta)

            self._write(write)
            if entries:
                self._last_index, self._last_term = entries[-1].index, entries[-1].term
            if hard_state is not None:
                self._hard_state = hard_state

    def compact(self, index: int) -> None:
        """Drop entries ``<= index``. The new boundary is committed with the
        first batch of deletions; the rest follow in transactions of at most
        ``compact_batch_size`` deletions, with other calls free to run in
        between. Never exposes a hole, even if the process dies midway."""
        with self._locked():
            if index <= self._boundary_index:
                return
            if index > self._last_index:
                raise LogStoreError(
                    f"cannot compact up to index {index}: past the last index {self._last_index}"
                )
            term = self._term(index)
            record = _seal(_BOUNDARY_KEY, _BOUNDARY.pack(index, term))

            def write(txn: lmdb.Transaction[bytes]) -> bool:
                txn.put(_BOUNDARY_KEY, record, db=self._meta)
                return self._delete_garbage(txn, index)

            more = self._write(write)
            self._boundary_index, self._boundary_term = index, term
        while more:
            with self._locked():
                # Always up to the *current* boundary: a reset meanwhile may
                # have lowered it, and what lies above it is live again.
                more = self._write(lambda txn: self._delete_garbage(txn, self._boundary_index))

    def reset(self, index: int, term: int) -> None:
        if index < 0 or term < 0:
            raise LogStoreError(f"cannot reset to boundary ({index}, {term}): index and term must be >= 0")
        with self._locked():
            record = _seal(_BOUNDARY_KEY, _BOUNDARY.pack(index, term))

            def write(txn: lmdb.Transaction[bytes]) -> None:
                # mdb_drop frees whole pages (it does not visit every key).
                txn.drop(self._entries, delete=False)
                txn.put(_BOUNDARY_KEY, record, db=self._meta)

            self._write(write)
            self._boundary_index, self._boundary_term = index, term
            self._last_index, self._last_term = index, term

    def truncate_suffix(self, index: int) -> None:
        """Drop entries ``>= index`` in one transaction (crash-atomic)."""
        with self._locked():
            if index > self._last_index:
                return
            if index <= self._boundary_index:
                raise LogStoreError(
                    f"cannot truncate at index {index}: at or before the compaction boundary "
                    f"{self._boundary_index}"
                )
            new_last_term = self._term(index - 1)
            self._write(lambda txn: self._delete_suffix(txn, index))
            self._last_index, self._last_term = index - 1, new_last_term

    def _delete_suffix(self, txn: lmdb.Transaction[bytes], start: int) -> None:
        cursor = txn.cursor(db=self._entries)
        if cursor.set_range(_KEY.pack(start)):
            while cursor.delete():
                pass

    def _delete_garbage(self, txn: lmdb.Transaction[bytes], up_to: int) -> bool:
        """Delete at most one batch of keys ``<= up_to`` (all garbage below
        the boundary); return whether some remain."""
        cursor = txn.cursor(db=self._entries)
        if not cursor.first():
            return False
        limit = _KEY.pack(up_to)
        for _ in range(self._batch):
            key = cursor.key()
            if not key or key > limit:  # big-endian: byte order is numeric order
                return False
            cursor.delete()
        key = cursor.key()
        return bool(key) and key <= limit

    def _write(self, body: Callable[[lmdb.Transaction[bytes]], T]) -> T:
        """Run ``body`` in one write transaction (one durable commit),
        growing the map and retrying from scratch when it is full. ``body``
        must only touch the transaction: it may run more than once."""
        env = self._require_env()
        advanced = False
        while True:
            try:
                with env.begin(write=True) as txn:
                    return body(txn)
            except lmdb.MapFullError:
                if self._grow_map(env):
                    continue
                if not advanced and self._advance(env):
                    advanced = True
                    continue
                raise LogStoreError(
                    f"the log store at {self.path} is full: its LMDB map reached max_map_size="
                    f"{self._max_map_size} bytes. Take a snapshot so the log can be compacted, raise "
                    "max_map_size, or check that the disk has room; nothing of the failed write was stored"
                ) from None
            except _LMDB_DAMAGE as exc:
                raise self._lmdb_error(exc, "writing") from exc
            except lmdb.Error as exc:
                raise LogStoreError(
                    f"writing to the log store at {self.path} failed: {exc} (if the disk is full, free "
                    "space; the store keeps its last committed state)"
                ) from exc

    def _grow_map(self, env: lmdb.Environment) -> bool:
        """Double the map (up to ``max_map_size``); False at the limit."""
        current = env.info()["map_size"]
        limit = self._max_map_size
        if limit is not None and current >= limit:
            return False
        new = current * 2 if limit is None else min(current * 2, limit)
        try:
            env.set_mapsize(new)  # safe: no transaction is open (we hold the lock)
        except lmdb.Error as exc:
            raise LogStoreError(
                f"the log store at {self.path} is full and its LMDB map cannot grow to {new} bytes "
                f"({exc}): free disk or address space, or set max_map_size"
            ) from exc
        log.info("grew the LMDB map of %s from %d to %d bytes", self.path, current, new)
        return True

    def _advance(self, env: lmdb.Environment) -> bool:
        """Commit a tiny transaction. LMDB reuses the pages a transaction
        freed only once a later one has committed, and a failed write commits
        nothing: without this, a map that is full at ``max_map_size`` would
        stay full even after a compaction freed most of it."""
        try:
            with env.begin(write=True, db=self._meta) as txn:
                record = txn.get(_FORMAT_KEY)
                assert record is not None  # checked at open
                txn.put(_FORMAT_KEY, record)
        except lmdb.MapFullError:
            return False
        return True

    # -- lifecycle -----------------------------------------------------------------

    @property
    def map_size(self) -> int:
        """The current size of the LMDB map in bytes (it grows on demand)."""
        with self._locked():
            return int(self._require_env().info()["map_size"])

    def close(self) -> None:
        """Close the environment and release the directory; idempotent."""
        self._check_pid()
        with self._lock:
            self._release()

    def _release(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
        if self._dirlock is not None:
            self._dirlock.release()
            self._dirlock = None

    def __enter__(self) -> LmdbLogStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LmdbLogStore({str(self.path)!r}, durability={self.durability!r})"

    def _check_pid(self) -> None:
        # Before taking self._lock: a fork may have copied it locked.
        if self._pid != _current_pid:
            raise LogStoreError(
                f"LMDB environments must not be used in a forked child: the log store at {self.path} "
                f"was opened by process {self._pid} and this is process {_current_pid}. Do storage work "
                "in the parent (or open a store of your own after the parent has closed it)"
            )

    def _locked(self) -> _Guard:
        self._check_pid()
        return _Guard(self)

    def _require_env(self) -> lmdb.Environment:
        if self._env is None:
            raise LogStoreError(f"the log store at {self.path} is closed")
        return self._env


class _Guard:
    """``with store._locked():`` takes the store's lock and checks that the
    store is still open (an ordinary context manager, cheaper than
    ``contextlib.contextmanager`` on the read path)."""

    __slots__ = ("_store",)

    def __init__(self, store: LmdbLogStore) -> None:
        self._store = store

    def __enter__(self) -> None:
        self._store._lock.acquire()
        if self._store._env is None:
            self._store._lock.release()
            raise LogStoreError(f"the log store at {self._store.path} is closed")

    def __exit__(self, *exc: object) -> None:
        self._store._lock.release()
