"""A Snapshotter that keeps snapshot bytes in memory: for tests, the simulator
and nodes whose state is small and rebuilt from peers after a restart."""

from __future__ import annotations

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
        self._snapshots: dict[int, tuple[SnapshotMeta, tuple[bytes, ...]]] = {}

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
                meta, pieces = self._snapshots[key]
            except KeyError:
                raise SnapshotError(
                    f"no snapshot at index {index}; stored indexes: {sorted(self._snapshots, reverse=True)}"
                ) from None
        return _MemorySource(meta, pieces)

    def list(self) -> list[SnapshotMeta]:
        with self._lock:
            return [self._snapshots[i][0] for i in sorted(self._snapshots, reverse=True)]

    def prune(self, keep: int) -> None:
        _check_keep(keep)
        with self._lock:
            self._prune_locked(keep)

    def _store(self, meta: SnapshotMeta, pieces: tuple[bytes, ...]) -> None:
        with self._lock:
            self._snapshots[meta.index] = (meta, pieces)
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


_SMALL_PIECE = 64 << 10  # bytes: smaller writes are gathered into pieces of at least this


class _MemorySink(SnapshotSink):
    """Keeps the written pieces as they are, never joined: joining a 60 MB
    snapshot took tens of milliseconds of the GIL (a copy and its page
    faults) on the capture's thread beside the loop, at every snapshot.
    Small writes are gathered first, so a state machine writing a record
    at a time does not leave a Python object per record behind."""

    def __init__(self, owner: MemorySnapshotter, meta: SnapshotMeta) -> None:
        self._owner = owner
        self._meta = meta
        self._pieces: list[bytes] | None = []
        self._small = bytearray()  # small writes not yet a piece
        self._committed = False

    @property
    def meta(self) -> SnapshotMeta:
        return self._meta

    def write(self, data: bytes) -> None:
        pieces = self._pieces_or_raise("write to")
        small = self._small
        if len(data) < _SMALL_PIECE:
            small += data
            if len(small) >= _SMALL_PIECE:
                pieces.append(bytes(small))
                small.clear()
            return
        if small:
            pieces.append(bytes(small))
            small.clear()
        # bytes are immutable and kept as they are; anything else (a reused
        # bytearray, a memoryview) is copied now, as the caller may change it.
        pieces.append(data if type(data) is bytes else bytes(data))

    def commit(self) -> SnapshotMeta:
        pieces = self._pieces_or_raise("commit")
        if self._small:
            pieces.append(bytes(self._small))
        self._pieces, self._small = None, bytearray()
        self._committed = True
        self._owner._store(self._meta, tuple(pieces))
        return self._meta

    def abort(self) -> None:
        self._pieces = None
        self._small = bytearray()

    def _pieces_or_raise(self, action: str) -> list[bytes]:
        if self._pieces is None:
            state = "committed" if self._committed else "aborted"
            raise SnapshotError(f"cannot {action} snapshot {self._meta.index}: the sink was already {state}")
        return self._pieces


class _MemorySource(SnapshotSource):
    """Reads across the stored pieces (each non-empty) without joining them."""

    def __init__(self, meta: SnapshotMeta, pieces: tuple[bytes, ...]) -> None:
        self._meta = meta
        self._pieces = pieces
        self._size = sum(map(len, pieces))
        self._next = 0  # index of the piece the next read starts in
        self._offset = 0  # ... and where in it

    @property
    def meta(self) -> SnapshotMeta:
        return self._meta

    @property
    def size(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        pieces = self._pieces
        out: list[bytes | memoryview] = []
        want = n if n >= 0 else self._size
        while want > 0 and self._next < len(pieces):
            piece = pieces[self._next]
            take = min(want, len(piece) - self._offset)
            if take == len(piece):
                out.append(piece)  # a whole piece: no copy
            else:
                out.append(memoryview(piece)[self._offset : self._offset + take])
            want -= take
            self._offset += take
            if self._offset == len(piece):
                self._next, self._offset = self._next + 1, 0
        if len(out) == 1 and type(out[0]) is bytes:
            return out[0]
        return b"".join(out)

    def close(self) -> None:
        self._pieces = ()
        self._next = self._offset = 0
