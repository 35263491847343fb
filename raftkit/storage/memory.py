"""An in-memory LogStore: the reference implementation and the simulator's store.

Entries live in one Python list offset by the compaction boundary, so
``term()`` is O(1) and ``entries()`` is O(k) in the number returned.
Nothing survives the process; a "crash" in the simulator is modelled by the
simulator keeping the store object alive across the node's restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from raftkit.core.types import Entry, HardState
from raftkit.errors import LogCompactedError, LogStoreError, LogUnavailableError
from raftkit.storage.log_store import LogStore


class MemoryLogStore(LogStore):
    """A LogStore held in process memory (see ``LogStore`` for the contract)."""

    def __init__(self) -> None:
        self._boundary_index = 0
        self._boundary_term = 0
        # _entries[i] holds the entry at index _boundary_index + 1 + i.
        self._entries: list[Entry] = []
        self._hard_state = HardState()

    def first_index(self) -> int:
        return self._boundary_index + 1

    def last_index(self) -> int:
        return self._boundary_index + len(self._entries)

    def term(self, index: int) -> int:
        if index == self._boundary_index:
            return self._boundary_term
        self._check_readable(index, index + 1)
        return self._entries[index - self._boundary_index - 1].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        if lo > hi:
            raise LogStoreError(f"invalid entry range [{lo}, {hi}): lo is greater than hi")
        self._check_readable(lo, hi)
        start = lo - self._boundary_index - 1
        stop = hi - self._boundary_index - 1
        if max_bytes is None:
            return self._entries[start:stop]
        # Walk only as far as the budget allows; the first entry always goes.
        total = 0
        end = start
        while end < stop:
            total += self._entries[end].size
            if total > max_bytes and end > start:
                break
            end += 1
        return self._entries[start:end]

    def hard_state(self) -> HardState:
        return self._hard_state

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        # Validate everything before mutating anything: a rejected save must
        # leave the store exactly as it was (the atomicity clause).
        if entries:
            start = entries[0].index
            if not self.first_index() <= start <= self.last_index() + 1:
                raise LogStoreError(
                    f"cannot save entries starting at index {start}: it must lie in "
                    f"{self.first_index()}..{self.last_index() + 1} (first index .. last index + 1), "
                    "otherwise the log would have a hole or overwrite compacted entries"
                )
            for prev, cur in pairwise(entries):
                if cur.index != prev.index + 1:
                    raise LogStoreError(
                        f"cannot save non-contiguous entries: index {cur.index} follows {prev.index}"
                    )
            del self._entries[start - self._boundary_index - 1 :]
            self._entries.extend(entries)
        if hard_state is not None:
            self._hard_state = hard_state

    def compact(self, index: int) -> None:
        if index <= self._boundary_index:
            return
        if index > self.last_index():
            raise LogStoreError(
                f"cannot compact up to index {index}: past the last index {self.last_index()}"
            )
        offset = index - self._boundary_index
        self._boundary_term = self._entries[offset - 1].term
        self._boundary_index = index
        del self._entries[:offset]

    def reset(self, index: int, term: int) -> None:
        if index < 0 or term < 0:
            raise LogStoreError(f"cannot reset to boundary ({index}, {term}): index and term must be >= 0")
        self._boundary_index = index
        self._boundary_term = term
        self._entries = []

    def truncate_suffix(self, index: int) -> None:
        if index > self.last_index():
            return
        if index <= self._boundary_index:
            raise LogStoreError(
                f"cannot truncate at index {index}: at or before the compaction boundary "
                f"{self._boundary_index}"
            )
        del self._entries[index - self._boundary_index - 1 :]

    def _check_readable(self, lo: int, hi: int) -> None:
        """Raise the contract's error when ``[lo, hi)`` is not fully stored."""
        if lo <= self._boundary_index:
            raise LogCompactedError(lo, self.first_index())
        if hi > self.last_index() + 1:
            raise LogUnavailableError(hi - 1, self.last_index())
