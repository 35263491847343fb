"""The LogStore interface: where a node keeps its Raft log and hard state."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from raftkit.core.types import Entry, HardState
from raftkit.errors import LogStoreError


class LogStore(ABC):
    """Durable (or not) storage for one node's Raft log and hard state.

    Contract (every implementation is checked by
    ``raftkit.testing.conformance.log_store``):

    * The log holds a contiguous run of entries ``first_index() ..
      last_index()``; it is empty when ``last_index() == first_index() - 1``.
      The entry just before the run (index ``first_index() - 1``) is the
      *compaction boundary*: its term is still answered by ``term()`` so that
      the consistency check of the next append works after compaction.
      A fresh store has ``first_index() == 1`` and boundary term 0.
    * ``save(hard_state, entries)`` is the one write primitive and is atomic:
      after a crash either all of it is visible or none is. ``entries`` must
      be contiguous and ``entries[0].index`` must lie in
      ``first_index() .. last_index() + 1``; any stored entries at or after
      ``entries[0].index`` are replaced (suffix truncation happens as part
      of the same write). ``hard_state`` may be ``None`` (unchanged) and
      ``entries`` may be empty. A save that breaks these rules raises
      ``LogStoreError`` and changes nothing.
    * ``compact(index)`` drops entries up to and including ``index`` (which
      must be ``<= last_index()``, else ``LogStoreError``), remembering the
      term at ``index`` as the new boundary; it never leaves a hole and
      compacting at or below the current boundary is a no-op.
    * ``reset(index, term)`` discards the whole log and sets the boundary to
      ``(index, term)``: used when a snapshot is installed.
    * Reads of compacted indexes raise ``LogCompactedError``; reads past the
      end raise ``LogUnavailableError``.
    """

    @abstractmethod
    def first_index(self) -> int:
        """Index of the first stored entry (boundary index + 1)."""

    @abstractmethod
    def last_index(self) -> int:
        """Index of the last stored entry (the boundary index when empty)."""

    @abstractmethod
    def term(self, index: int) -> int:
        """Term of the entry at ``index``; also valid for the boundary."""

    @abstractmethod
    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``lo <= i < hi``. With ``max_bytes``, stop before the
        total ``Entry.size`` would exceed it, but always return at least one
        entry when ``lo < hi``."""

    @abstractmethod
    def hard_state(self) -> HardState:
        """The last saved hard state (``HardState()`` when none was saved)."""

    @abstractmethod
    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Atomically persist hard state and entries (see the class doc)."""

    @abstractmethod
    def compact(self, index: int) -> None:
        """Drop entries ``<= index``; never leaves a hole."""

    @abstractmethod
    def reset(self, index: int, term: int) -> None:
        """Discard the log; the new boundary is ``(index, term)``."""

    def truncate_suffix(self, index: int) -> None:
        """Drop entries ``>= index`` (a no-op past the end; ``LogStoreError``
        at or before the compaction boundary). Default: an empty ``save``
        cannot express this, so the generic version rewrites the kept tail
        with ``reset`` then ``save``; that is two writes and not crash-atomic,
        so durable stores should override it."""
        if index > self.last_index():
            return
        if index <= self.first_index() - 1:
            raise LogStoreError(f"cannot truncate at {index}: at or before the compaction boundary")
        kept = self.entries(self.first_index(), index)
        boundary = self.first_index() - 1
        self.reset(boundary, self.term(boundary))
        if kept:
            self.save(None, kept)

    @property
    def writes_wait_for_disk(self) -> bool:
        """True when ``save`` returns only once the disk holds the write (an
        fsync): the node then applies the committed entries it already
        holds before such a write rather than after it. Default False."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Further calls are undefined."""
