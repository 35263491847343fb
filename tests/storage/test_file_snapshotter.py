"""FileSnapshotter: the Snapshotter conformance suite (with reopen), then
damage (flipped bytes, truncation), fallback to an older snapshot, crashes
mid-write, other clusters' and newer formats' files, and streaming a big
snapshot in bounded memory."""

from __future__ import annotations

import logging
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftkit.errors import SnapshotError
from raftkit.storage.file_snapshotter import FORMAT_VERSION, FileSnapshotter, snapshot_file_name
from raftkit.storage.snapshotter import Snapshotter
from raftkit.testing.conformance.snapshotter import SnapshotterConformance, make_meta, payload


class TestFileSnapshotter(SnapshotterConformance):
    def make_snapshotter(self, tmp_path: Path) -> Snapshotter:
        return FileSnapshotter(tmp_path / "snaps", keep=3)

    def reopen_snapshotter(self, snapshotter: Snapshotter, tmp_path: Path) -> Snapshotter:
        snapshotter.close()
        return FileSnapshotter(tmp_path / "snaps", keep=3)


class TestFileSnapshotterWithClusterId(TestFileSnapshotter):
    def make_snapshotter(self, tmp_path: Path) -> Snapshotter:
        return FileSnapshotter(tmp_path / "snaps", cluster_id="prod-eu")

    def reopen_snapshotter(self, snapshotter: Snapshotter, tmp_path: Path) -> Snapshotter:
        snapshotter.close()
        return FileSnapshotter(tmp_path / "snaps", cluster_id="prod-eu")


# -- helpers ---------------------------------------------------------------


def _commit(snaps: FileSnapshotter, index: int, size: int = 5000) -> bytes:
    data = payload(index, size)
    snaps.install(make_meta(index), [data])
    return data


def _flip_byte(path: Path, offset: int) -> None:
    """Corrupt one byte; a negative offset counts from the end."""
    with open(path, "r+b") as f:
        f.seek(offset, os.SEEK_END if offset < 0 else os.SEEK_SET)
        where = f.tell()
        byte = f.read(1)
        f.seek(where)
        f.write(bytes([byte[0] ^ 0x5A]))


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock"))


def _read_all(snaps: FileSnapshotter, index: int | None = None) -> bytes:
    with snaps.open(index) as source:
        return b"".join(source.chunks(4096))


# -- layout ----------------------------------------------------------------


def test_one_self_describing_file_per_snapshot(tmp_path: Path) -> None:
    snaps = FileSnapshotter(tmp_path, cluster_id="c1")
    data = _commit(snaps, 42)
    assert _files(tmp_path) == ["snap-00000000000000000042.snap"]
    raw = (tmp_path / snapshot_file_name(42)).read_bytes()
    assert raw[:6] == b"RKSNAP" and raw[6:8] == FORMAT_VERSION.to_bytes(2, "big")
    assert b"c1" in raw[:100]
    assert raw[-4 - len(data) : -4] == data
    assert raw[-4:] == zlib.crc32(data).to_bytes(4, "big")
    snaps.close()


def test_default_retention_keeps_three(tmp_path: Path) -> None:
    snaps = FileSnapshotter(tmp_path)
    for index in (1, 2, 3, 4, 5):
        _commit(snaps, index)
    assert [m.index for m in snaps.list()] == [5, 4, 3]
    assert _files(tmp_path) == [snapshot_file_name(i) for i in (3, 4, 5)]
    snaps.close()


# -- corruption and fallback ---------------------------------------------------


def test_corrupted_payload_is_caught_while_streaming(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snaps = FileSnapshotter(tmp_path)
    _commit(snaps, 1)
    _commit(snaps, 2, size=100_000)
    path = tmp_path / snapshot_file_name(2)
    _flip_byte(path, -50)
    assert snaps.latest() == make_meta(2)  # the header is intact: not known yet
    with caplog.at_level(logging.WARNING), pytest.raises(SnapshotError) as info:
        _read_all(snaps, 2)
    message = str(info.value)
    assert f"snapshot {path} is corrupted (checksum mismatch)" in message
    assert "fall back to an older snapshot" in message and "restore from a peer" in message
    # Moved aside, kept for inspection; the older snapshot takes over.
    assert snaps.latest() == make_meta(1)
    assert _files(tmp_path) == [snapshot_file_name(1), snapshot_file_name(2) + ".corrupt"]
    assert "moved it to" in caplog.text
    snaps.close()


def test_corrupted_payload_fails_before_the_last_bytes_are_returned(tmp_path: Path) -> None:
    snaps = FileSnapshotter(tmp_path)
    _commit(snaps, 1, size=10_000)
    _flip_byte(tmp_path / snapshot_file_name(1), 100)
    with snaps.open(1) as source:
        assert len(source.read(9_000)) == 9_000
        with pytest.raises(SnapshotError, match="checksum mismatch"):
            source.read(1_000)
    snaps.close()


def test_verify(tmp_path: Path) -> None:
    snaps = FileSnapshotter(tmp_path)
    _commit(snaps, 1)
    _commit(snaps, 2)
    _flip_byte(tmp_path / snapshot_file_name(2), -5)  # the last payload byte
    assert snaps.verify(1) == make_meta(1)
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        snaps.verify(2)
    assert snaps.list() == [make_meta(1)]
    snaps.close()


def test_find_latest_valid_falls_back_past_damaged_snapshots(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snaps = FileSnapshotter(tmp_path, keep=4)
    good = {i: _commit(snaps, i) for i in (1, 2, 3, 4)}
    _flip_byte(tmp_path / snapshot_file_name(4), -100)  # payload
    _flip_byte(tmp_path / snapshot_file_name(3), -2)  # checksum trailer
    with caplog.at_level(logging.WARNING):
        assert snaps.find_latest_valid() == make_meta(2)
    assert "skipping snapshot 4" in caplog.text and "skipping snapshot 3" in caplog.text
    assert [m.index for m in snaps.list()] == [2, 1]
    assert _read_all(snaps) == good[2]
    snaps.close()
    # The damaged ones stay out after a restart.
    with caplog.at_level(logging.WARNING):
        reopened = FileSnapshotter(tmp_path, keep=4)
    assert [m.index for m in reopened.list()] == [2, 1]
    reopened.close()


def test_find_latest_valid_with_nothing_valid(tmp_path: Path) -> None:
    snaps = FileSnapshotter(tmp_path)
    assert snaps.find_latest_valid() is None
    _commit(snaps, 1)
    _flip_byte(tmp_path / snapshot_file_name(1), -10)
    assert snaps.find_latest_valid() is None
    assert snaps.latest() is None
    snaps.close()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: _flip_byte(p, 30), "corrupted header"),  # inside the metadata
        (lambda p: _flip_byte(p, 0), "bad magic"),
        (lambda p: os.truncate(p, p.stat().st_size - 1000), "is truncated"),
        (lambda p: os.truncate(p, 10), "is truncated"),
        (lambda p: p.write_bytes(p.read_bytes() + b"x"), "longer than its header says"),
    ],
)
def test_damage_found_at_open_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object, reason: str
) -> None:
    snaps = FileSnapshotter(tmp_path)
    older = _commit(snaps, 1)
    _commit(snaps, 2)
    snaps.close()
    damage(tmp_path / snapshot_file_name(2))  # type: ignore[operator]
    with caplog.at_level(logging.WARNING):
        snaps = FileSnapshotter(tmp_path)
    assert snaps.list() == [make_meta(1)]
    assert _read_all(snaps) == older
    assert reason in caplog.text and snapshot_file_name(2) in caplog.text
    assert (tmp_path / (snapshot_file_name(2) + ".corrupt")).exists()
    snaps.close()


def test_a_source_does_not_quarantine_a_newer_file_of_the_same_index(tmp_path: Path) -> None:
    snaps = FileSnapshotter(tmp_path)
    _commit(snaps, 5)
    _flip_byte(tmp_path / snapshot_file_name(5), -20)
    source = snaps.open(5)
    replacement = _commit(snaps, 5, size=777)  # re-committed while the bad one is being read
    with source, pytest.raises(SnapshotError, match="checksum mismatch"):
        source.read()
    assert snaps.list() == [make_meta(5)]
    assert _read_all(snaps, 5) == replacement
    snaps.close()


# -- other clusters, newer builds, other openers ----------------------------------------


def test_a_snapshot_of_another_cluster_is_refused(tmp_path: Path) -> None:
    blue = FileSnapshotter(tmp_path, cluster_id="blue")
    blue.install(make_meta(1), [b"blue state"])
    blue.close()
    with pytest.raises(SnapshotError, match=r"belongs to cluster 'blue', not 'green'.*another cluster"):
        FileSnapshotter(tmp_path, cluster_id="green")
    # Without an id of its own a snapshotter does not check; files without
    # an id are accepted by any cluster.
    snaps = FileSnapshotter(tmp_path)
    assert snaps.latest() == make_meta(1)
    snaps.install(make_meta(2), [b"no id"])
    snaps.prune(1)
    snaps.close()
    FileSnapshotter(tmp_path, cluster_id="green").close()


def test_a_newer_format_version_is_refused(tmp_path: Path) -> None:
    snaps = FileSnapshotter(tmp_path)
    _commit(snaps, 1)
    snaps.close()
    path = tmp_path / snapshot_file_name(1)
    raw = bytearray(path.read_bytes())
    raw[6:8] = (FORMAT_VERSION + 1).to_bytes(2, "big")
    path.write_bytes(bytes(raw))
    with pytest.raises(SnapshotError, match=rf"newer raftkit \(format version {FORMAT_VERSION + 1}.*upgrade"):
        FileSnapshotter(tmp_path)
    assert path.exists()  # not moved aside: it is not damaged, just not ours to read


def test_a_second_opener_is_refused(tmp_path: Path) -> None:
    first = FileSnapshotter(tmp_path)
    with pytest.raises(SnapshotError, match="already in use"):
        FileSnapshotter(tmp_path)
    first.close()
    FileSnapshotter(tmp_path).close()


def test_keep_and_cluster_id_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep must be >= 1"):
        FileSnapshotter(tmp_path, keep=0)
    with pytest.raises(ValueError, match="cluster_id"):
        FileSnapshotter(tmp_path, cluster_id="")


# -- crashes -------------------------------------------------------------------------------


def test_leftover_temp_files_are_removed_at_open(tmp_path: Path) -> None:
    snaps = FileSnapshotter(tmp_path)
    _commit(snaps, 1)
    sink = snaps.create(make_meta(2))
    sink.write(b"the node dies before committing")
    snaps.close()  # no abort: as after a crash
    assert len(_files(tmp_path)) == 2
    (tmp_path / "unrelated.txt").write_text("not ours")
    FileSnapshotter(tmp_path).close()
    assert _files(tmp_path) == [snapshot_file_name(1), "unrelated.txt"]


class _Child:
    """A child process we started, read line by line by waiting on its
    stdout pipe (never sleeping) until a deadline."""

    def __init__(self, code: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._pending = b""

    def read_lines(self, count: int, timeout: float = 30.0) -> list[bytes]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        lines: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(lines) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"child printed only {len(lines)} lines in {timeout}s"
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                stderr = self.proc.stderr.read().decode() if self.proc.stderr else ""
                pytest.fail(f"child exited ({self.proc.wait()}) after {len(lines)} lines:\n{stderr}")
            *complete, self._pending = (self._pending + chunk).split(b"\n")
            lines.extend(complete)
        return lines

    def kill(self, jitter: float = 0.0) -> list[bytes]:
        """SIGKILL the child, ``jitter`` seconds from now (not a wait for
        anything: it moves the kill to a random point of the child's next
        operation), and return the complete lines not read yet."""
        if jitter:
            time.sleep(jitter)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        rest = self._pending + self.proc.stdout.read()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()
        return rest.split(b"\n")[:-1]


def test_crash_mid_write_leaves_previous_snapshots_and_nothing_partial(tmp_path: Path) -> None:
    child = _Child(
        """
        import sys
        from raftkit.storage.file_snapshotter import FileSnapshotter
        from raftkit.testing.conformance.snapshotter import make_meta, payload
        snaps = FileSnapshotter(sys.argv[1])
        for index in (1, 2):
            snaps.install(make_meta(index), [payload(index, 50_000)])
        sink = snaps.create(make_meta(3))
        sink.write(payload(3, 1_000_000))
        print("mid-write", flush=True)
        sys.stdin.read()  # block here until killed
        """,
        str(tmp_path),
    )
    try:
        assert child.read_lines(1) == [b"mid-write"]
    finally:
        child.kill()
    assert any(name.endswith(".tmp") for name in _files(tmp_path))  # the partial write is there
    snaps = FileSnapshotter(tmp_path)
    assert snaps.list() == [make_meta(2), make_meta(1)]
    assert snaps.verify(2) == make_meta(2) and snaps.verify(1) == make_meta(1)
    assert _read_all(snaps) == payload(2, 50_000)
    assert _files(tmp_path) == [snapshot_file_name(1), snapshot_file_name(2)]
    snaps.close()


def test_sigkill_in_a_commit_loop_keeps_every_visible_snapshot_whole(tmp_path: Path) -> None:
    code = """
        import sys
        from raftkit.storage.file_snapshotter import FileSnapshotter
        from raftkit.testing.conformance.snapshotter import make_meta, payload
        snaps = FileSnapshotter(sys.argv[1])
        index = snaps.latest().index if snaps.latest() else 0
        while True:
            index += 1
            snaps.install(make_meta(index), [payload(index, 200_000)] * 2)
            print(index, flush=True)
        """
    rng = random.Random(11)
    for _ in range(4):
        child = _Child(code, str(tmp_path))
        jitter = 0.0
        lines: list[bytes] = []
        try:
            child.read_lines(3)
            started = time.monotonic()
            lines = child.read_lines(10)
            jitter = rng.uniform(0, 2 * (time.monotonic() - started) / len(lines))
        finally:
            lines += child.kill(jitter)
        snaps = FileSnapshotter(tmp_path)
        listed = snaps.list()
        assert listed[0].index >= int(lines[-1])  # the last commit that returned is there
        for meta in listed:
            assert snaps.verify(meta.index) == meta
            assert _read_all(snaps, meta.index) == payload(meta.index, 200_000) * 2
        assert not [n for n in _files(tmp_path) if not n.endswith(".snap")]
        snaps.close()


# -- big snapshots -------------------------------------------------------------------------


def test_a_50mb_snapshot_streams_in_bounded_memory(tmp_path: Path) -> None:
    size, chunk = 50 * 1024 * 1024, 1024 * 1024
    block = memoryview(bytes(random.Random(3).getrandbits(8) for _ in range(4096)) * (chunk // 4096))
    expected_crc = 0
    for _ in range(size // chunk):
        expected_crc = zlib.crc32(block, expected_crc)

    def chunks() -> Iterator[memoryview]:
        for _ in range(size // chunk):
            yield block

    snaps = FileSnapshotter(tmp_path)
    tracemalloc.start()
    try:
        snaps.install(make_meta(1), chunks())  # type: ignore[arg-type]
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        streamed, crc = 0, 0
        with snaps.open() as source:
            assert source.size == size
            for piece in source.chunks(chunk):
                streamed += len(piece)
                crc = zlib.crc32(piece, crc)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (streamed, crc) == (size, expected_crc)
    assert write_peak < 8 * 1024 * 1024, write_peak
    assert read_peak < 8 * 1024 * 1024, read_peak
    snaps.close()
