"""Snapshots as files: one self-describing, checksummed file per snapshot.

A snapshot at index 42 lives in ``snap-00000000000000000042.snap`` (the
index zero-padded to 20 digits, so names sort like indexes and re-committing
an index atomically replaces its file)::

    fixed header   magic "RKSNAP" | format version u16 | flags u16 (0)
                   | meta length u32 | cluster id length u16 | payload length u64
    meta           wire.encode_snapshot_meta(meta)   (index, term, membership)
    cluster id     UTF-8, empty when none was configured
    header crc     crc32 of everything above, u32
    payload        the state machine's bytes
    payload crc    crc32 of the payload, u32

(all integers big-endian). A snapshot is written to a temporary file in the
same directory, fsynced, renamed into place and the directory fsynced, so a
crash leaves either the whole new file or none of it; leftover temporary
files are removed when the snapshotter is opened.

Checking is layered so that start-up stays cheap: opening the snapshotter
reads only headers (magic, version, header checksum, cluster id, and file
size against the recorded payload length, which catches truncation); the
payload checksum is verified while a snapshot is streamed (``open``) or by
``verify``. A damaged file is moved aside as ``<name>.corrupt`` (kept for
inspection, never deleted by raftkit) and the snapshotter falls back to the
next older snapshot (``find_latest_valid``).
"""

from __future__ import annotations

import logging
import os
import re
import struct
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from raftkit.core.types import SnapshotMeta
from raftkit.errors import CodecError, SnapshotError
from raftkit.serializers.wire import decode_snapshot_meta, encode_snapshot_meta
from raftkit.storage._files import DirectoryLock, fsync_directory
from raftkit.storage.snapshotter import SnapshotSink, SnapshotSource, Snapshotter

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""The snapshot file format this build writes and the newest it reads."""

_MAGIC = b"RKSNAP"
_FIXED = struct.Struct(">6sHHIHQ")  # magic, version, flags, meta len, cluster id len, payload len
_CRC = struct.Struct(">I")
_MAX_META = 1 << 20  # a membership of thousands of nodes still fits
_MAX_CLUSTER_ID = 255
_NAME = re.compile(r"snap-(\d{20})\.snap")
_TEMP = re.compile(r"snap-\d{20}-.*\.tmp")
_CORRUPT_SUFFIX = ".corrupt"
_LOCK_FILE = "raftkit-snapshots.lock"


def snapshot_file_name(index: int) -> str:
    """The file name a snapshot at ``index`` is stored under."""
    return f"snap-{index:020d}.snap"


class _Damaged(SnapshotError):
    """A snapshot file that is truncated or corrupted (as opposed to one we
    must not read, such as a newer format): it gets moved aside."""


@dataclass(frozen=True)
class _Stored:
    meta: SnapshotMeta
    path: Path
    payload_offset: int
    payload_len: int


class FileSnapshotter(Snapshotter):
    """Durable snapshots in ``directory`` (created if missing).

    After each commit only the newest ``keep`` snapshots are kept (plus the
    one just committed, should it be older). With ``cluster_id`` set, every
    snapshot written carries it, and opening a directory that holds a
    snapshot of another cluster raises ``SnapshotError`` (files written
    without an id are accepted). Snapshots are streamed in chunks and never
    held in memory whole. Thread-safe; only one snapshotter may use a
    directory at a time.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, keep: int = 3, cluster_id: str | None = None
    ) -> None:
        _check_keep(keep)
        encoded_id = b"" if cluster_id is None else cluster_id.encode("utf-8")
        if cluster_id is not None and not 0 < len(encoded_id) <= _MAX_CLUSTER_ID:
            raise ValueError(f"cluster_id must be 1..{_MAX_CLUSTER_ID} bytes of UTF-8, got {cluster_id!r}")
        self.directory = Path(directory)
        self.cluster_id = cluster_id
        self._cluster_bytes = encoded_id
        self._keep = keep
        self._lock = threading.Lock()
        self._snapshots: dict[int, _Stored] = {}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._dirlock: DirectoryLock | None = DirectoryLock(self.directory, _LOCK_FILE)
        except BlockingIOError:
            raise SnapshotError(
                f"the snapshot directory {self.directory} is already in use (by another process, or "
                "another FileSnapshotter in this one): only one node may use a snapshot directory"
            ) from None
        except OSError as exc:
            raise SnapshotError(f"cannot open the snapshot directory {self.directory}: {exc}") from exc
        try:
            self._scan()
        except BaseException:
            self.close()
            raise

    # -- start-up ------------------------------------------------------------

    def _scan(self) -> None:
        for path in sorted(self.directory.iterdir()):
            if _TEMP.fullmatch(path.name):
                log.info("removing %s: a snapshot that was being written when the node stopped", path)
                path.unlink(missing_ok=True)
                continue
            match = _NAME.fullmatch(path.name)
            if not match:
                continue
            try:
                with open(path, "rb") as f:
                    stored = self._read_header(f, path)
                if stored.meta.index != int(match.group(1)):
                    raise _Damaged(f"snapshot {path} holds index {stored.meta.index}, not its name's")
            except _Damaged as exc:
                self._quarantine(path, str(exc))
                continue
            self._snapshots[stored.meta.index] = stored

    def _read_header(self, f: BinaryIO, path: Path) -> _Stored:
        """Parse and check the header of an open snapshot file; raise
        ``_Damaged`` for damage and ``SnapshotError`` for files this
        snapshotter must not use (newer format, another cluster)."""
        fixed = f.read(_FIXED.size)
        if len(fixed) < _FIXED.size:
            raise _Damaged(f"snapshot {path} is truncated ({len(fixed)} bytes, shorter than its header)")
        magic, version, flags, meta_len, id_len, payload_len = _FIXED.unpack(fixed)
        if magic != _MAGIC:
            raise _Damaged(f"snapshot {path} is not a raftkit snapshot file (bad magic {magic!r})")
        if version > FORMAT_VERSION:
            # A flipped bit in the version field reads as "newer" too: say so
            # when the header fails its checksum under this build's layout.
            rest = f.read(meta_len + id_len + _CRC.size) if meta_len <= _MAX_META else b""
            intact = (
                len(rest) == meta_len + id_len + _CRC.size
                and zlib.crc32(fixed + rest[: -_CRC.size]) == _CRC.unpack(rest[-_CRC.size :])[0]
            )
            damaged = "" if intact else ", or its header is damaged (its checksum does not match)"
            raise SnapshotError(
                f"snapshot {path} was written by a newer raftkit (format version {version}; this build "
                f"reads up to {FORMAT_VERSION}){damaged}: upgrade raftkit on this node, or move the file "
                "away and let the node fetch a snapshot from the leader"
            )
        if version < 1 or flags != 0 or meta_len > _MAX_META:
            raise _Damaged(f"snapshot {path} has a corrupted header")
        rest = f.read(meta_len + id_len + _CRC.size)
        if len(rest) < meta_len + id_len + _CRC.size:
            raise _Damaged(f"snapshot {path} is truncated (in its header)")
        header = fixed + rest[: -_CRC.size]
        if zlib.crc32(header) != _CRC.unpack(rest[-_CRC.size :])[0]:
            raise _Damaged(f"snapshot {path} has a corrupted header (checksum mismatch)")
        try:
            meta = decode_snapshot_meta(rest[:meta_len])
            cluster_id = rest[meta_len : meta_len + id_len].decode("utf-8")
        except (CodecError, UnicodeDecodeError) as exc:
            raise _Damaged(f"snapshot {path} has a corrupted header ({exc})") from exc
        if cluster_id and self.cluster_id is not None and cluster_id != self.cluster_id:
            raise SnapshotError(
                f"snapshot {path} belongs to cluster {cluster_id!r}, not {self.cluster_id!r}: this "
                "directory holds another cluster's data; point the node at its own snapshot directory"
            )
        offset = len(header) + _CRC.size
        expected = offset + payload_len + _CRC.size
        size = os.fstat(f.fileno()).st_size
        if size != expected:
            what = "truncated" if size < expected else "longer than its header says"
            raise _Damaged(f"snapshot {path} is {what} ({size} bytes, expected {expected})")
        return _Stored(meta, path, offset, payload_len)

    def _quarantine(self, path: Path, reason: str) -> None:
        """Move a damaged file aside (kept for inspection) so it is never
        offered again; the caller then falls back to an older snapshot."""
        target = path.with_name(path.name + _CORRUPT_SUFFIX)
        try:
            os.replace(path, target)
        except OSError as exc:
            log.warning("%s; could not move it aside (%s)", reason, exc)
            return
        log.warning("%s; moved it to %s and will use an older snapshot", reason, target)

    # -- the Snapshotter API ---------------------------------------------------

    def create(self, meta: SnapshotMeta) -> SnapshotSink:
        return _FileSink(self, meta)

    def latest(self) -> SnapshotMeta | None:
        """The newest snapshot whose header is intact (its payload checksum
        is checked by ``open``/``verify``; see ``find_latest_valid``)."""
        with self._lock:
            return self._snapshots[max(self._snapshots)].meta if self._snapshots else None

    def list(self) -> list[SnapshotMeta]:
        with self._lock:
            return [self._snapshots[i].meta for i in sorted(self._snapshots, reverse=True)]

    def open(self, index: int | None = None) -> SnapshotSource:
        """Open a snapshot for streaming. The payload checksum is checked as
        the last bytes are read: a mismatch raises ``SnapshotError`` then
        (and moves the file aside), so a consumer never completes on
        corrupted data."""
        with self._lock:
            if not self._snapshots:
                raise SnapshotError(f"cannot open a snapshot: none is stored in {self.directory}")
            key = max(self._snapshots) if index is None else index
            stored = self._snapshots.get(key)
            if stored is None:
                raise SnapshotError(
                    f"no snapshot at index {index} in {self.directory}; "
                    f"stored indexes: {sorted(self._snapshots, reverse=True)}"
                )
            try:
                f = open(stored.path, "rb")  # noqa: SIM115 - the source owns and closes it
            except FileNotFoundError:
                del self._snapshots[key]
                raise SnapshotError(f"snapshot {stored.path} disappeared (removed by hand?)") from None
            try:
                current = self._read_header(f, stored.path)
            except _Damaged as exc:
                f.close()
                del self._snapshots[key]
                self._quarantine(stored.path, str(exc))
                raise
            except BaseException:
                f.close()
                raise
        return _FileSource(self, current, f)

    def verify(self, index: int) -> SnapshotMeta:
        """Read the whole snapshot at ``index`` and check its checksum;
        ``SnapshotError`` (and the file moved aside) if it is damaged."""
        with self.open(index) as source:
            for _ in source.chunks():
                pass
            return source.meta

    def find_latest_valid(self) -> SnapshotMeta | None:
        """The newest snapshot that verifies, moving damaged ones aside on
        the way (each is logged): what a node should restore from."""
        for meta in self.list():
            try:
                return self.verify(meta.index)
            except SnapshotError as exc:
                log.warning("skipping snapshot %d: %s", meta.index, exc)
        return None

    def prune(self, keep: int) -> None:
        _check_keep(keep)
        with self._lock:
            self._prune_locked(keep)

    def close(self) -> None:
        """Release the directory. Sources already open stay readable."""
        if self._dirlock is not None:
            self._dirlock.release()
            self._dirlock = None

    # -- internals ---------------------------------------------------------------

    def _prune_locked(self, keep: int, spare: int | None = None) -> None:
        doomed = [i for i in sorted(self._snapshots, reverse=True)[keep:] if i != spare]
        for index in doomed:
            self._snapshots.pop(index).path.unlink(missing_ok=True)
        if doomed:
            fsync_directory(self.directory)  # a restart must not resurrect them

    def _publish(self, temp: Path, stored: _Stored) -> None:
        """Rename a fully written, fsynced temp file into place."""
        with self._lock:
            os.replace(temp, stored.path)
            fsync_directory(self.directory)
            self._snapshots[stored.meta.index] = stored
            self._prune_locked(self._keep, spare=stored.meta.index)

    def _discard_if_current(self, source_file: BinaryIO, stored: _Stored, reason: str) -> None:
        """Move aside the file behind a source that found it corrupted,
        unless it was replaced or removed since the source was opened."""
        with self._lock:
            try:
                same = os.path.samestat(os.fstat(source_file.fileno()), os.stat(stored.path))
            except OSError:
                return
            if same:
                self._snapshots.pop(stored.meta.index, None)
                self._quarantine(stored.path, reason)


def _check_keep(keep: int) -> None:
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the newest snapshot backs the compacted log), got {keep}")


def _header(meta: SnapshotMeta, cluster_id: bytes, payload_len: int) -> bytes:
    meta_bytes = encode_snapshot_meta(meta)
    head = (
        _FIXED.pack(_MAGIC, FORMAT_VERSION, 0, len(meta_bytes), len(cluster_id), payload_len)
        + meta_bytes
        + cluster_id
    )
    return head + _CRC.pack(zlib.crc32(head))


class _FileSink(SnapshotSink):
    """Writes into ``snap-<index>-<random>.tmp``; ``commit`` patches the
    payload length into the header, appends the checksum, fsyncs and
    renames."""

    def __init__(self, owner: FileSnapshotter, meta: SnapshotMeta) -> None:
        self._owner = owner
        self._meta = meta
        self._header_len = len(_header(meta, owner._cluster_bytes, 0))
        fd, temp = tempfile.mkstemp(dir=owner.directory, prefix=f"snap-{meta.index:020d}-", suffix=".tmp")
        self._temp = Path(temp)
        self._file: BinaryIO | None = os.fdopen(fd, "w+b")
        self._state = "open"
        self._crc = 0
        self._size = 0
        try:
            self._file.seek(self._header_len)  # the header is written at commit
        except BaseException:
            self.abort()
            raise

    @property
    def meta(self) -> SnapshotMeta:
        return self._meta

    def write(self, data: bytes) -> None:
        f = self._file_or_raise("write to")
        try:
            f.write(data)
        except OSError as exc:
            self.abort()
            raise SnapshotError(f"cannot write snapshot {self._meta.index} to {self._temp}: {exc}") from exc
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)

    def commit(self) -> SnapshotMeta:
        f = self._file_or_raise("commit")
        owner = self._owner
        try:
            f.write(_CRC.pack(self._crc))
            f.seek(0)
            f.write(_header(self._meta, owner._cluster_bytes, self._size))
            f.flush()
            os.fsync(f.fileno())
            f.close()
            self._file = None
            target = owner.directory / snapshot_file_name(self._meta.index)
            owner._publish(self._temp, _Stored(self._meta, target, self._header_len, self._size))
        except OSError as exc:
            self.abort()
            raise SnapshotError(
                f"cannot commit snapshot {self._meta.index} in {owner.directory}: {exc}"
            ) from exc
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        return self._meta

    def abort(self) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        if self._file is not None:
            self._file.close()
            self._file = None
        self._temp.unlink(missing_ok=True)

    def _file_or_raise(self, action: str) -> BinaryIO:
        if self._state != "open" or self._file is None:
            raise SnapshotError(
                f"cannot {action} snapshot {self._meta.index}: the sink was already {self._state}"
            )
        return self._file


class _FileSource(SnapshotSource):
    """Streams the payload from an open descriptor (so pruning or replacing
    the file meanwhile does not disturb it), checking the checksum at the
    end."""

    def __init__(self, owner: FileSnapshotter, stored: _Stored, f: BinaryIO) -> None:
        self._owner = owner
        self._stored = stored
        self._file = f
        self._remaining = stored.payload_len
        self._crc = 0
        self._verified = False
        f.seek(stored.payload_offset)

    @property
    def meta(self) -> SnapshotMeta:
        return self._stored.meta

    @property
    def size(self) -> int:
        return self._stored.payload_len

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._remaining:
            n = self._remaining
        data = self._file.read(n)
        if len(data) < n:
            self._fail(f"snapshot {self._stored.path} is truncated (it shrank while being read)")
        self._crc = zlib.crc32(data, self._crc)
        self._remaining -= len(data)
        if self._remaining == 0 and not self._verified:
            trailer = self._file.read(_CRC.size)
            if len(trailer) < _CRC.size or _CRC.unpack(trailer)[0] != self._crc:
                self._fail(
                    f"snapshot {self._stored.path} is corrupted (checksum mismatch); the node will fall "
                    "back to an older snapshot: remove the file or restore from a peer"
                )
            self._verified = True
        return data

    def _fail(self, reason: str) -> None:
        self._owner._discard_if_current(self._file, self._stored, reason)
        raise SnapshotError(reason)

    def close(self) -> None:
        self._file.close()
