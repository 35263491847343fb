"""LogWrites: only what Raft needs on disk costs a write. A Ready whose only
news is the commit index writes nothing until the next write that must be
durable (which carries it) or until the node stops."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from raftkit.core.types import Entry, HardState
from raftkit.runtime.log_writes import LogWrites
from raftkit.storage.memory import MemoryLogStore


class CountingStore(MemoryLogStore):
    def __init__(self) -> None:
        super().__init__()
        self.saves: list[tuple[HardState | None, int]] = []

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        self.saves.append((hard_state, len(entries)))
        super().save(hard_state, entries)


def test_a_commit_index_alone_waits_for_the_next_durable_write() -> None:
    store = CountingStore()
    writes = LogWrites(store)
    writes.save(HardState(term=1, vote="a", commit=0), [Entry(1, 1)])
    writes.save(HardState(term=1, vote="a", commit=1), [])  # only the commit moved
    assert store.saves == [(HardState(1, "a", 0), 1)] and writes.unsaved == HardState(1, "a", 1)
    writes.save(None, [Entry(2, 1)])  # entries: the waiting commit index goes with them
    assert store.saves[-1] == (HardState(1, "a", 1), 1) and writes.unsaved is None
    assert store.hard_state() == HardState(1, "a", 1)


def test_a_new_term_or_vote_is_written_at_once() -> None:
    store = CountingStore()
    writes = LogWrites(store)
    writes.save(HardState(term=2, vote=None, commit=0), [])
    writes.save(HardState(term=2, vote="b", commit=0), [])
    assert [hs for hs, _ in store.saves] == [HardState(2, None, 0), HardState(2, "b", 0)]


def test_flush_writes_what_waits_once() -> None:
    store = CountingStore()
    writes = LogWrites(store)
    writes.save(HardState(term=0, vote=None, commit=3), [])
    assert store.saves == []
    writes.flush()
    writes.flush()
    assert store.saves == [(HardState(0, None, 3), 0)]


def test_a_failed_write_keeps_the_waiting_commit_index() -> None:
    class Failing(CountingStore):
        def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
            raise OSError("disk full")

    writes = LogWrites(Failing())
    writes.save(HardState(term=0, commit=2), [])
    with pytest.raises(OSError, match="disk full"):
        writes.save(None, [Entry(1, 1)])
    assert writes.unsaved == HardState(term=0, commit=2)
