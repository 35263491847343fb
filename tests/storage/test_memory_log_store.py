"""MemoryLogStore against the LogStore conformance suite, plus its own checks."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from raftkit.errors import LogStoreError
from raftkit.storage.log_store import LogStore
from raftkit.storage.memory import MemoryLogStore
from raftkit.testing.conformance.log_store import LogStoreConformance, make_entries


class TestMemoryLogStore(LogStoreConformance):
    def make_store(self, tmp_path: Path) -> LogStore:
        return MemoryLogStore()

    def reopen_store(self, store: LogStore, tmp_path: Path) -> LogStore:
        # A deep copy stands in for the on-disk image, so the suite's
        # persistence tests run too (and prove the store has no hidden state).
        image = copy.deepcopy(store)
        store.close()
        return image


class _GenericTruncateStore(MemoryLogStore):
    """Uses LogStore's default truncate_suffix instead of the fast override."""

    truncate_suffix = LogStore.truncate_suffix


class TestDefaultTruncateSuffix(TestMemoryLogStore):
    """The ABC's generic truncate_suffix must satisfy the contract as well."""

    def make_store(self, tmp_path: Path) -> LogStore:
        return _GenericTruncateStore()


def test_inverted_range_is_rejected() -> None:
    store = MemoryLogStore()
    store.save(None, make_entries(1, 4))
    with pytest.raises(LogStoreError, match="lo is greater than hi"):
        store.entries(3, 2)


def test_reset_rejects_negative_boundary() -> None:
    with pytest.raises(LogStoreError, match=">= 0"):
        MemoryLogStore().reset(-1, 0)


def test_hole_error_names_the_valid_range() -> None:
    store = MemoryLogStore()
    store.save(None, make_entries(1, 4))
    with pytest.raises(LogStoreError, match=r"starting at index 6: it must lie in 1\.\.4"):
        store.save(None, make_entries(6, 7))


def test_long_log_compacts_and_reads_by_offset() -> None:
    store = MemoryLogStore()
    store.save(None, make_entries(1, 100_001))
    store.compact(60_000)
    assert store.entries(99_998, 100_001) == make_entries(99_998, 100_001)
    assert store.term(60_000) == 1
    size = make_entries(60_001, 60_002)[0].size  # every entry here has the same size
    assert store.entries(60_001, 100_001, max_bytes=1000) == make_entries(60_001, 60_001 + 1000 // size)
