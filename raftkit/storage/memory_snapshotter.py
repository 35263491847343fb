"""A Snapshotter that keeps snapshot bytes in memory: for tests, the simulator
and nodes whose state is small and rebuilt from peers after a restart."""

from __future__ import annotations

import io
import threading

from raftkit.core.types import SnapshotMeta
from raftkit.errors import SnapshotError
from raftkit.storage.snapshotter import SnapshotSink, SnapshotSource, Snapshotter


class MemorySnapshotter(Snapshotter):
    """Snapshots as ``bytes`` in a dict keyed by index.

    After each commit only the newest ``keep`` snapshots are retained (plus
    the one just committed, should it be older than those).
    Thread-safe: a background capture may commit while the event loop opens
    or prunes.
    """

    def __init__(self, keep: int = 2) -> None:
        _check_keep(keep)
        self._keep = keep
        self._lock = threading.Lock()
        self._snapshots: dict[int, tuple[SnapshotMeta, bytes]] = {}

    def create(self, meta: SnapshotMeta) -> SnapshotSink:
        return _MemorySink(self, meta)

    def latest(self) -> SnapshotMeta | None:
        with self._lock:
            if not self._snapshots:
                return None
            return self._snapshots[max(self._snapshots)][0]

    def open(self, index: int | None = None) -> SnapshotSource:
        with self._lock:
            if not self._snapshots:
                raise SnapshotError("cannot open a snapshot: none has been committed")
            key = max(self._snapshots) if index is None else index
            try:
                meta, data = self._snapshots[key]
            except KeyError:
                raise SnapshotError(
                    f"no snapshot at index {index}; stored indexes: {sorted(self._snapshots, reverse=True)}"
                ) from None
        return _MemorySource(meta, data)

    def list(self) -> list[SnapshotMeta]:
        with self._lock:
            return [self._snapshots[i][0] for i in sorted(self._snapshots, reverse=True)]

    def prune(self, keep: int) -> None:
        _check_keep(keep)
        with self._lock:
            self._prune_locked(keep)

    def _store(self, meta: SnapshotMeta, data: bytes) -> None:
        with self._lock:
            self._snapshots[meta.index] = (meta, data)
            self._prune_locked(self._keep, spare=meta.index)

    def _prune_locked(self, keep: int, spare: int | None = None) -> None:
        """Drop all but the newest ``keep``, never the one at ``spare``
        (a just-committed snapshot older than the retained ones)."""
        for index in sorted(self._snapshots, reverse=True)[keep:]:
            if index != spare:
                del self._snapshots[index]


def _check_keep(keep: int) -> None:
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the newest snapshot backs the compacted log), got {keep}")


class _MemorySink(SnapshotSink):
    """Keeps the written pieces and joins them once at commit: one copy of
    the snapshot, not a growing buffer copied again into ``bytes`` (at 60 MB
    that is tens of milliseconds of the GIL, on a thread beside the loop)."""

    def __init__(self, owner: MemorySnapshotter, meta: SnapshotMeta) -> None:
        self._owner = owner
        self._meta = meta
        self._pieces: list[bytes] | None = []
        self._committed = False

    @property
    def meta(self) -> SnapshotMeta:
        return self._meta

    def write(self, data: bytes) -> None:
        pieces = self._pieces_or_raise("write to")
        # bytes are immutable and kept as they are; anything else (a reused
        # bytearray, a memoryview) is copied now, as the caller may change it.
        pieces.append(data if type(data) is bytes else bytes(data))

    def commit(self) -> SnapshotMeta:
        data = b"".join(self._pieces_or_raise("commit"))
        self._pieces = None
        self._committed = True
        self._owner._store(self._meta, data)
        return self._meta

    def abort(self) -> None:
        self._pieces = None

    def _pieces_or_raise(self, action: str) -> list[bytes]:
        if self._pieces is None:
            state = "committed" if self._committed else "aborted"
            raise SnapshotError(f"cannot {action} snapshot {self._meta.index}: the sink was already {state}")
        return self._pieces


class _MemorySource(SnapshotSource):
    def __init__(self, meta: SnapshotMeta, data: bytes) -> None:
        self._meta = meta
        self._size = len(data)
        self._stream = io.BytesIO(data)

    @property
    def meta(self) -> SnapshotMeta:
        return self._meta

    @property
    def size(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(n)

    def close(self) -> None:
        self._stream.close()
