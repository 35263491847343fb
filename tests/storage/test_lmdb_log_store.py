"""LmdbLogStore: the LogStore conformance suite (with reopen), then what only
a durable store has to get right: crashes, damaged files, map growth, format
versions, fork safety, and staying small and fast under churn."""

from __future__ import annotations

import os
import random
import select
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lmdb
import pytest

from raftkit.core.types import Entry, HardState
from raftkit.errors import LogStoreError
from raftkit.storage.lmdb_log_store import FORMAT_VERSION, LmdbLogStore
from raftkit.storage.log_store import LogStore
from raftkit.testing.conformance.log_store import LogStoreConformance, make_entries


class TestLmdbLogStore(LogStoreConformance):
    """The production configuration: fsync on every save."""

    def make_store(self, tmp_path: Path) -> LogStore:
        return LmdbLogStore(tmp_path / "log")

    def reopen_store(self, store: LogStore, tmp_path: Path) -> LogStore:
        store.close()
        return LmdbLogStore(tmp_path / "log")


class TestLmdbLogStoreTinyBatchesAndMap(LogStoreConformance):
    """Compaction in batches of 2 and a map that must grow: the multi-batch
    and MapFullError paths run under the suite's model-based test too."""

    def make_store(self, tmp_path: Path) -> LogStore:
        return LmdbLogStore(tmp_path / "log", durability="no-sync", map_size=64 * 1024, compact_batch_size=2)

    def reopen_store(self, store: LogStore, tmp_path: Path) -> LogStore:
        store.close()
        return LmdbLogStore(tmp_path / "log", durability="no-sync", map_size=64 * 1024, compact_batch_size=2)


# -- helpers ---------------------------------------------------------------


def _raw_env(path: Path) -> lmdb.Environment:
    """The store's LMDB environment opened directly, to damage it on purpose."""
    return lmdb.open(str(path), max_dbs=2, subdir=True)


def _assert_contiguous(store: LogStore) -> list[Entry]:
    first, last = store.first_index(), store.last_index()
    got = store.entries(first, last + 1)
    assert [e.index for e in got] == list(range(first, last + 1))
    return got


def _spawn(code: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


class _Child:
    """A child process we started, read line by line from its stdout by
    waiting on the pipe (never sleeping) until a deadline."""

    def __init__(self, code: str, *args: str) -> None:
        self.proc = _spawn(code, *args)
        self._pending = b""

    def read_lines(self, count: int, timeout: float = 30.0) -> list[bytes]:
        """At least ``count`` more complete lines."""
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
        """SIGKILL the child, ``jitter`` seconds from now, and return the
        complete lines it printed that were not read yet. The jitter is not a
        wait for anything: it moves the kill to a random point inside the
        child's next operation instead of always right after a print."""
        if jitter:
            time.sleep(jitter)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        rest = self._pending + self.proc.stdout.read()
        self.proc.stdout.close()
        if self.proc.stderr:
            self.proc.stderr.close()
        return rest.split(b"\n")[:-1]


# -- durability and crash safety ---------------------------------------------------


@pytest.mark.parametrize("durability", ["sync", "no-sync"])
def test_saves_survive_a_process_that_exits_without_closing(tmp_path: Path, durability: str) -> None:
    child = _spawn(
        """
        import os, sys
        from raftkit.core.types import Entry, HardState
        from raftkit.storage.lmdb_log_store import LmdbLogStore
        store = LmdbLogStore(sys.argv[1], durability=sys.argv[2])
        for i in range(1, 501, 10):
            batch = [Entry(j, 2, data=b"%d" % j) for j in range(i, i + 10)]
            store.save(HardState(term=2, vote="n1", commit=i), batch)
        store.compact(100)
        os._exit(0)  # no close(): as if the process died right after the last save
        """,
        str(tmp_path / "log"),
        durability,
    )
    assert child.wait(timeout=60) == 0, child.stderr.read() if child.stderr else ""
    with LmdbLogStore(tmp_path / "log") as store:
        assert (store.first_index(), store.last_index()) == (101, 500)
        assert store.hard_state() == HardState(term=2, vote="n1", commit=491)
        assert store.entries(101, 501) == [Entry(j, 2, data=b"%d" % j) for j in range(101, 501)]


# The child appends, sometimes replaces a suffix with a higher term, sometimes
# compacts (in batches of 7, so kills land between batches too), and prints
# "last term" after every save returns. Each save carries a hard state that
# names the log's end, so a torn write would show as a mismatch.
_CRASH_LOOP = """
import sys
from raftkit.core.types import Entry, HardState
from raftkit.storage.lmdb_log_store import LmdbLogStore

store = LmdbLogStore(sys.argv[1], compact_batch_size=7)
term = max(store.hard_state().term, 1)
step = 0
while True:
    step += 1
    last = store.last_index()
    if step % 5 == 0 and last - store.first_index() > 3:
        term += 1
        start = last - 2  # replace a suffix: the new entries win
    else:
        start = last + 1
    entries = [Entry(i, term, data=b"%d-%d" % (i, term)) for i in range(start, start + 1 + step % 4 + 3)]
    store.save(HardState(term=term, vote="n1", commit=entries[-1].index), entries)
    if step % 40 == 0:
        store.compact(store.last_index() - 30)
    print(entries[-1].index, term, flush=True)
"""


def test_sigkill_in_a_save_loop_never_tears_a_write(tmp_path: Path) -> None:
    path = tmp_path / "log"
    rng = random.Random(7)
    for _ in range(6):  # each round restarts from what the previous one left
        child = _Child(_CRASH_LOOP, str(path))
        jitter = 0.0
        lines: list[bytes] = []
        try:
            child.read_lines(20)  # the child is up and saving
            started = time.monotonic()
            lines = child.read_lines(100)
            # Kill somewhere within the next one or two saves.
            jitter = rng.uniform(0, 2 * (time.monotonic() - started) / len(lines))
        finally:
            lines += child.kill(jitter)
        printed_last, printed_term = map(int, lines[-1].split())
        with LmdbLogStore(path) as store:
            entries = _assert_contiguous(store)
            hs = store.hard_state()
            last = store.last_index()
            # The last save that returned is durable; at most one more may be.
            assert last >= printed_last
            assert hs.commit == last and hs.term == store.term(last) >= printed_term
            assert all(e.data == b"%d-%d" % (e.index, e.term) for e in entries)
            assert [e.term for e in entries] == sorted(e.term for e in entries)


def test_compaction_killed_between_batches_leaves_no_hole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LmdbLogStore(tmp_path / "log", compact_batch_size=10)
    store.save(HardState(term=1, commit=100), make_entries(1, 101))
    real = LmdbLogStore._delete_garbage
    batches = 0

    def die_after_first_batch(self: LmdbLogStore, txn: lmdb.Transaction, up_to: int) -> bool:
        nonlocal batches
        batches += 1
        if batches > 1:
            raise KeyboardInterrupt("killed")  # aborts the second batch's transaction
        return real(self, txn, up_to)

    monkeypatch.setattr(LmdbLogStore, "_delete_garbage", die_after_first_batch)
    with pytest.raises(KeyboardInterrupt):
        store.compact(60)
    # The new boundary went in with the first batch: already consistent.
    assert (store.first_index(), store.last_index()) == (61, 100)
    store.close()
    with _raw_env(tmp_path / "log") as env:
        entries_db = env.open_db(b"entries")
        with env.begin() as txn:
            assert txn.stat(entries_db)["entries"] == 90  # 50 garbage keys wait below the boundary
    monkeypatch.undo()
    with LmdbLogStore(tmp_path / "log") as store:
        assert (store.first_index(), store.last_index()) == (61, 100)
        assert store.term(60) == 1
        assert store.entries(61, 101) == make_entries(61, 101)
    with _raw_env(tmp_path / "log") as env:
        entries_db = env.open_db(b"entries")
        with env.begin() as txn:
            assert txn.stat(entries_db)["entries"] == 40  # reopening finished the compaction


# -- staying small and fast ----------------------------------------------------------


def test_churn_keeps_file_size_and_append_latency_bounded(tmp_path: Path) -> None:
    """Append, truncate and compact thousands of times: LMDB must reuse the
    freed pages (file size stays flat) and appends must not slow down."""
    store = LmdbLogStore(tmp_path / "log", durability="no-sync")
    data_file = tmp_path / "log" / "data.mdb"
    payload = b"p" * 100
    last, written, iterations = 0, 0, 3000
    latencies: list[float] = []
    size_early = 0
    for it in range(iterations):
        batch = [Entry(i, 1, data=payload) for i in range(last + 1, last + 21)]
        started = time.perf_counter()
        store.save(HardState(term=1, commit=last), batch)
        latencies.append(time.perf_counter() - started)
        written += sum(e.size for e in batch)
        last += 20
        store.truncate_suffix(last - 4)
        last -= 5
        if it % 10 == 0 and last > 500:
            store.compact(last - 500)
        if it == 300:
            size_early = data_file.stat().st_size
    size_late = data_file.stat().st_size
    store.close()
    assert written > 5_000_000
    assert size_late <= 2 * size_early + 256 * 1024, (size_early, size_late)
    assert size_late < 2 * 1024 * 1024, size_late
    early = statistics.median(latencies[100:400])
    late = statistics.median(latencies[-300:])
    assert late < 5 * early, (early, late)


# -- map growth ------------------------------------------------------------------------


def test_map_grows_when_full(tmp_path: Path) -> None:
    store = LmdbLogStore(tmp_path / "log", map_size=128 * 1024)
    blob = b"b" * 1000
    for start in range(1, 2001, 100):
        store.save(None, [Entry(i, 1, data=blob) for i in range(start, start + 100)])
    assert store.map_size >= 2 * 1024 * 1024
    store.close()
    with LmdbLogStore(tmp_path / "log", map_size=128 * 1024) as store:
        assert store.entries(1, 2001) == [Entry(i, 1, data=blob) for i in range(1, 2001)]
        store.save(None, [Entry(2001, 1, data=blob)])


def test_full_map_at_max_size_fails_cleanly_and_recovers_after_compaction(tmp_path: Path) -> None:
    store = LmdbLogStore(tmp_path / "log", map_size=256 * 1024, max_map_size=512 * 1024)
    blob = b"f" * 1000
    last = 0
    with pytest.raises(LogStoreError, match=r"is full.*max_map_size=524288.*snapshot") as info:
        for _ in range(1000):
            store.save(
                HardState(term=1, commit=last), [Entry(i, 1, data=blob) for i in range(last + 1, last + 21)]
            )
            last += 20
    assert str(tmp_path / "log") in str(info.value)
    # The failed save stored nothing and the store is still usable.
    assert store.last_index() == last
    assert store.hard_state() == HardState(term=1, commit=last - 20)
    assert store.entries(last, last + 1) == [Entry(last, 1, data=blob)]
    store.compact(last - 20)  # what a snapshot allows
    for _ in range(20):
        store.save(None, [Entry(i, 1, data=blob) for i in range(last + 1, last + 21)])
        last += 20
        store.compact(last - 20)
    assert store.map_size == 512 * 1024
    store.close()


# -- damaged or foreign files ---------------------------------------------------------------


def test_a_file_at_the_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(os.urandom(10_000))
    with pytest.raises(LogStoreError, match=f"{path} is a file, not an LMDB log store directory"):
        LmdbLogStore(path)


def test_garbage_data_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.mkdir()
    (path / "data.mdb").write_bytes(os.urandom(64 * 1024))
    with pytest.raises(LogStoreError, match="is not an LMDB environment") as info:
        LmdbLogStore(path)
    assert str(path) in str(info.value) and "restore" in str(info.value)


@pytest.mark.parametrize("keep_fraction", [0.0, 0.5])
def test_truncated_data_file_is_refused(tmp_path: Path, keep_fraction: float) -> None:
    path = tmp_path / "log"
    with LmdbLogStore(path, durability="no-sync") as store:
        store.save(HardState(term=1), [Entry(i, 1, data=b"t" * 500) for i in range(1, 2001)])
    data = path / "data.mdb"
    os.truncate(data, int(data.stat().st_size * keep_fraction))
    with pytest.raises(LogStoreError, match=r"data\.mdb is truncated") as info:
        LmdbLogStore(path)
    assert "let this node rejoin" in str(info.value)


def test_a_missing_entry_is_reported_as_a_hole(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with LmdbLogStore(path) as store:
        store.save(None, make_entries(1, 11))
    with _raw_env(path) as env, env.begin(write=True) as txn:
        txn.delete((5).to_bytes(8, "big"), db=env.open_db(b"entries", txn=txn))
    with pytest.raises(LogStoreError, match=r"has a hole: 9 entries stored for indexes 1\.\.10"):
        LmdbLogStore(path)


def test_a_corrupted_entry_names_its_index(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with LmdbLogStore(path) as store:
        store.save(None, make_entries(1, 11))
    with _raw_env(path) as env, env.begin(write=True) as txn:
        txn.put((4).to_bytes(8, "big"), b"RE\x01\xff garbage", db=env.open_db(b"entries", txn=txn))
    with LmdbLogStore(path) as store:
        assert store.entries(1, 4) == make_entries(1, 4)
        with pytest.raises(LogStoreError, match=r"entry 4 in .*data\.mdb (is unreadable|has no checksum)"):
            store.entries(1, 11)
        with pytest.raises(LogStoreError, match="entry 4"):
            store.term(4)


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log"
    LmdbLogStore(path).close()
    with _raw_env(path) as env, env.begin(write=True) as txn:
        meta = env.open_db(b"meta", txn=txn)
        txn.put(b"format", b"raftkit-log-store" + (FORMAT_VERSION + 1).to_bytes(2, "big"), db=meta)
    with pytest.raises(LogStoreError, match=rf"newer raftkit \(format version {FORMAT_VERSION + 1}.*upgrade"):
        LmdbLogStore(path)


def test_a_foreign_lmdb_environment_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with _raw_env(path) as env:
        env.open_db(b"users")
    with pytest.raises(LogStoreError, match=r"not a raftkit log store \(databases \['users'\]\)"):
        LmdbLogStore(path)


# -- ownership: one opener, no forked children ------------------------------------------------


def test_a_second_opener_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = LmdbLogStore(tmp_path / "log")
    with pytest.raises(LogStoreError, match="already open"):
        LmdbLogStore(tmp_path / "log")
    first.save(HardState(term=3), [])
    first.close()
    with LmdbLogStore(tmp_path / "log") as second:
        assert second.hard_state() == HardState(term=3)


def test_a_forked_child_may_not_use_the_store(tmp_path: Path) -> None:
    store = LmdbLogStore(tmp_path / "log")
    store.save(None, make_entries(1, 4))
    pid = os.fork()
    if pid == 0:  # the child: every use must be refused, close() included
        code = 0
        for use in (store.last_index, lambda: store.entries(1, 2), store.close):
            try:
                use()
                code = 1
            except LogStoreError as exc:
                if "must not be used in a forked child" not in str(exc):
                    code = 2
            except BaseException:
                code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.save(None, make_entries(4, 5))  # the parent carries on
    assert store.last_index() == 4
    store.close()


def test_use_after_close_is_refused(tmp_path: Path) -> None:
    store = LmdbLogStore(tmp_path / "log")
    store.close()
    store.close()  # idempotent
    with pytest.raises(LogStoreError, match="is closed"):
        store.last_index()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"durability": "fast"}, "durability must be"),
        ({"map_size": 0}, "map_size must be positive"),
        ({"map_size": 1 << 20, "max_map_size": 1 << 10}, "max_map_size"),
        ({"compact_batch_size": 0}, "compact_batch_size"),
    ],
)
def test_bad_settings_are_rejected(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LmdbLogStore(tmp_path / "log", **kwargs)  # type: ignore[arg-type]
