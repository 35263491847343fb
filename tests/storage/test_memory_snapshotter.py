"""MemorySnapshotter against the Snapshotter conformance suite, plus its own checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkit.errors import SnapshotError
from raftkit.storage.memory_snapshotter import MemorySnapshotter
from raftkit.storage.snapshotter import Snapshotter
from raftkit.testing.conformance.snapshotter import SnapshotterConformance, make_meta


class TestMemorySnapshotter(SnapshotterConformance):
    def make_snapshotter(self, tmp_path: Path) -> Snapshotter:
        return MemorySnapshotter(keep=3)

    def reopen_snapshotter(self, snapshotter: Snapshotter, tmp_path: Path) -> Snapshotter:
        # "Restart" by copying what is committed through the public API, so
        # the suite's persistence tests run too.
        image = MemorySnapshotter(keep=3)
        for meta in reversed(snapshotter.list()):
            with snapshotter.open(meta.index) as source:
                image.install(meta, source.chunks())
        snapshotter.close()
        return image


def _commit(snaps: MemorySnapshotter, index: int) -> None:
    snaps.install(make_meta(index), [b"%d" % index])


def test_default_retention_keeps_two() -> None:
    snaps = MemorySnapshotter()
    for index in (1, 2, 3):
        _commit(snaps, index)
    assert [m.index for m in snaps.list()] == [3, 2]


def test_retention_spares_an_older_snapshot_just_committed() -> None:
    snaps = MemorySnapshotter(keep=2)
    for index in (10, 20, 5):
        _commit(snaps, index)
    assert [m.index for m in snaps.list()] == [20, 10, 5]
    with snaps.open(5) as source:
        assert source.read() == b"5"
    _commit(snaps, 30)
    assert [m.index for m in snaps.list()] == [30, 20]


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError, match="keep must be >= 1"):
        MemorySnapshotter(keep=0)


def test_missing_snapshot_error_names_what_is_stored() -> None:
    snaps = MemorySnapshotter()
    with pytest.raises(SnapshotError, match="none has been committed"):
        snaps.open()
    _commit(snaps, 4)
    with pytest.raises(SnapshotError, match=r"no snapshot at index 3; stored indexes: \[4\]"):
        snaps.open(3)


def test_chunk_size_must_be_positive() -> None:
    snaps = MemorySnapshotter()
    _commit(snaps, 1)
    with snaps.open() as source, pytest.raises(ValueError, match="chunk_size"):
        next(source.chunks(0))
