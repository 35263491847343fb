"""MemorySnapshotter against the Snapshotter conformance suite, plus its own checks."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkit.errors import SnapshotError
from raftkit.storage import memory_snapshotter
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


@settings(max_examples=300)
@given(
    pieces=st.lists(st.binary(max_size=40), max_size=12),
    reads=st.lists(st.integers(-1, 50), max_size=20),
    as_bytearray=st.booleans(),
)
def test_reads_of_any_sizes_across_the_written_pieces_give_the_bytes_written(
    pieces: list[bytes], reads: list[int], as_bytearray: bool
) -> None:
    """Pieces are stored as written (never joined); a read of n bytes may span
    several of them, stop inside one, or take all that is left (n < 0)."""
    snaps = MemorySnapshotter()
    with mock.patch.object(memory_snapshotter, "_SMALL_PIECE", 16):  # both paths: gathered and kept
        sink = snaps.create(make_meta(1))
        for piece in pieces:
            sink.write(bytearray(piece) if as_bytearray else piece)
        sink.commit()
    whole = b"".join(pieces)
    with snaps.open(1) as source:
        assert source.size == len(whole)
        got = b""
        for n in reads:
            chunk = source.read(n)
            assert type(chunk) is bytes
            expected = whole[len(got):] if n < 0 else whole[len(got) : len(got) + n]
            assert chunk == expected
            got += chunk
        assert got + source.read() == whole and source.read(10) == b""


def test_small_writes_are_gathered_into_big_pieces() -> None:
    """A state machine writing a byte at a time leaves a few pieces of at
    least 64 KiB behind, not a Python object per byte."""
    snaps = MemorySnapshotter()
    sink = snaps.create(make_meta(1))
    for i in range(200_000):
        sink.write(b"%c" % (i % 256))
    sink.write(b"x" * 100_000)  # a big write after small ones keeps the order
    sink.commit()
    stored = snaps._snapshots[1][1]  # the pieces kept (private: what this test is about)
    assert [len(piece) for piece in stored] == [64 << 10] * 3 + [200_000 - 3 * (64 << 10), 100_000]
    with snaps.open(1) as source:
        assert source.read() == bytes(i % 256 for i in range(200_000)) + b"x" * 100_000
