"""FileSnapshotter: random bit flips anywhere in a snapshot file are caught
when the snapshot is loaded (header checksum at open, payload checksum while
streaming): a damaged snapshot is never restored as different data."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from raftkit.errors import SnapshotError
from raftkit.storage.file_snapshotter import FileSnapshotter, snapshot_file_name
from raftkit.testing.conformance.snapshotter import make_meta, payload


def test_random_bit_flips_in_a_snapshot_file_never_load_as_different_data(tmp_path: Path) -> None:
    base = tmp_path / "base"
    snaps = FileSnapshotter(base, cluster_id="c1")
    data = payload(7, 3000)
    snaps.install(make_meta(7), [data])
    snaps.close()
    size = (base / snapshot_file_name(7)).stat().st_size
    rng = random.Random(11)
    outcomes = {"detected": 0, "refused": 0}
    for trial in range(150):
        work = tmp_path / "work"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(base, work, ignore=shutil.ignore_patterns("*.lock"))
        path = work / snapshot_file_name(7)
        raw = bytearray(path.read_bytes())
        span = 80 if trial % 2 == 0 else size  # every other trial aims at the header
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(span)] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(raw))
        try:
            damaged = FileSnapshotter(work, cluster_id="c1")
        except SnapshotError:  # e.g. a flipped version field: refused, loudly
            outcomes["refused"] += 1
            continue
        try:
            meta = damaged.find_latest_valid()
            if meta is None:
                outcomes["detected"] += 1
                continue
            with damaged.open(meta.index) as source:
                got = b"".join(source.chunks(1000))
            assert (meta, got) == (make_meta(7), data), f"trial {trial}: a damaged snapshot loaded"
        finally:
            damaged.close()
    assert outcomes["detected"] > 100, outcomes


def test_a_flipped_version_field_is_not_taken_for_a_newer_release_only(tmp_path: Path) -> None:
    snaps = FileSnapshotter(tmp_path)
    snaps.install(make_meta(3), [payload(3)])
    snaps.close()
    path = tmp_path / snapshot_file_name(3)
    raw = bytearray(path.read_bytes())
    raw[7] ^= 0x04  # format version 1 -> 5; the header checksum no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(SnapshotError, match=r"newer raftkit \(format version 5.*or its header is damaged"):
        FileSnapshotter(tmp_path)
