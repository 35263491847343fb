"""The Snapshotter interface: where a node keeps state-machine snapshots.

A snapshot is taken in two steps, *capture then persist*: the driver first
captures the state machine's bytes (cheaply, e.g. in a forked child), then
streams them into a ``SnapshotSink`` that makes them durable. The same sink
receives a snapshot streamed from the leader (``install``), and a
``SnapshotSource`` streams a stored one to a lagging follower in chunks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from types import TracebackType

from raftkit.core.types import SnapshotMeta


class SnapshotSink(ABC):
    """A snapshot being written. Nothing is visible through the snapshotter
    until ``commit()`` returns; ``abort()`` (or leaving a ``with`` block
    without committing) discards it."""

    @property
    @abstractmethod
    def meta(self) -> SnapshotMeta:
        """The metadata the snapshot will be stored under."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Append ``data`` (any bytes-like object: a ``bytearray`` or
        ``memoryview`` the caller fills again later is copied, not kept).
        Raises ``SnapshotError`` after commit or abort."""

    @abstractmethod
    def commit(self) -> SnapshotMeta:
        """Make the snapshot durable and visible; return its metadata.
        Raises ``SnapshotError`` if already committed or aborted."""

    @abstractmethod
    def abort(self) -> None:
        """Discard the snapshot. A no-op after commit or a previous abort, so
        cleanup paths may call it unconditionally."""

    def __enter__(self) -> SnapshotSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


class SnapshotSource(ABC):
    """A stored snapshot opened for reading, like a binary file."""

    @property
    @abstractmethod
    def meta(self) -> SnapshotMeta:
        """The metadata the snapshot was committed with."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Total length of the snapshot in bytes."""

    @abstractmethod
    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all remaining bytes when ``n < 0``); ``b""`` at
        the end."""

    @abstractmethod
    def close(self) -> None:
        """Release the source; further reads are undefined."""

    def chunks(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The remaining bytes as chunks of at most ``chunk_size`` bytes, the
        shape ``Snapshotter.install`` and the transports stream."""
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        while chunk := self.read(chunk_size):
            yield chunk

    def __enter__(self) -> SnapshotSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Snapshotter(ABC):
    """Storage for one node's snapshots.

    Contract (every implementation is checked by
    ``raftkit.testing.conformance.snapshotter``):

    * ``create(meta)`` returns a sink; what is written to it becomes visible
      (through ``latest``, ``list`` and ``open``) only when ``commit()``
      returns, and never if it is aborted. Several sinks may be open at once.
    * Snapshots are identified and ordered by ``meta.index``: "newest" means
      the highest index. Committing a snapshot whose index is already stored
      replaces the stored one.
    * ``open(index)`` opens the snapshot at ``index`` (the newest when
      ``None``); it raises ``SnapshotError`` when there is no such snapshot.
      An open source stays readable, with the bytes it was opened on, until
      it is closed, even if that snapshot is pruned or replaced meanwhile:
      a follower may still be receiving it.
    * ``install(meta, chunks)`` stores a snapshot received from the leader;
      if ``chunks`` raises, nothing becomes visible.
    * ``prune(keep)`` deletes all but the newest ``keep >= 1`` snapshots.
      Implementations may also prune on their own after a commit (a retention
      setting) but never the snapshot just committed.
    """

    @abstractmethod
    def create(self, meta: SnapshotMeta) -> SnapshotSink:
        """Start writing a snapshot that covers the log up to ``meta.index``."""

    @abstractmethod
    def latest(self) -> SnapshotMeta | None:
        """Metadata of the newest committed snapshot, or ``None``."""

    @abstractmethod
    def open(self, index: int | None = None) -> SnapshotSource:
        """Open a committed snapshot for reading (the newest by default)."""

    @abstractmethod
    def list(self) -> list[SnapshotMeta]:
        """Metadata of every committed snapshot, newest first."""

    @abstractmethod
    def prune(self, keep: int) -> None:
        """Delete all but the newest ``keep`` snapshots. ``keep < 1`` raises
        ``ValueError``: the newest one backs the compacted log."""

    def install(self, meta: SnapshotMeta, chunks: Iterable[bytes]) -> SnapshotMeta:
        """Store a snapshot received in ``chunks``; return its metadata."""
        with self.create(meta) as sink:
            for chunk in chunks:
                sink.write(chunk)
            return sink.commit()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Further calls are undefined."""
