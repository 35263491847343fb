"""LmdbStateMachine and the LmdbDict battery: exactly-once applies across
crashes, failing commands, streamed snapshots (round trip, refusal of bad
streams, atomic swap under SIGKILL, bounded memory), map growth, and
replication through real nodes."""

from __future__ import annotations

import hashlib
import io
import os
import random
import select
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest

from raftkit.batteries import LmdbDict, LmdbDictStateMachine
from raftkit.errors import SnapshotError
from raftkit.state_machines.lmdb_machine import LmdbStateMachine, StateStorageError
from raftkit.state_machines.lmdb_snapshot_stream import STREAM_VERSION
from raftkit.syncobj.facade import SyncObj
from raftkit.testing.cluster import LocalCluster, fast_conf, fast_config, wait_until

MIB = 1 << 20
HERE = Path(__file__).parent


class CounterSM(LmdbStateMachine):
    """Two databases. Commands: ``set <k> <v>``, ``incr`` (not idempotent:
    it shows a double apply), ``fail`` (writes, then raises)."""

    databases = ("kv", "counters")

    def apply_in_txn(self, txn: lmdb.Transaction, command: bytes) -> Any:
        op, _, rest = command.partition(b" ")
        if op == b"set":
            key, _, value = rest.partition(b" ")
            txn.put(key, value)
            return None
        if op == b"incr":
            n = int(txn.get(b"n", db=self.db("counters")) or 0) + 1
            txn.put(b"n", b"%d" % n, db=self.db("counters"))
            return n
        if op == b"fail":
            txn.put(b"junk", b"written before the failure")
            raise ValueError("refused")
        raise ValueError(f"unknown command {command!r}")


def records(sm: LmdbStateMachine) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every record of every database: what 'the same state' means."""
    out = {}
    for name in sm.databases:
        with sm.read_txn(name) as txn:
            out[name] = list(txn.cursor().iternext())
    return out


def fill(sm: CounterSM, start: int, count: int, size: int = 100, tag: bytes = b"v") -> int:
    for i in range(start, start + count):
        sm.apply_entry(i, b"set k%06d %s" % (i, tag * size))
    return start + count - 1


def snapshot_file(sm: LmdbStateMachine, path: Path) -> Path:
    with open(path, "wb") as f:
        sm.write_snapshot(f)
    return path


def chunks_of(path: Path, size: int = MIB) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


class Child:
    """A Python child process we started; reads its lines against a deadline
    (select on the pipe, never a sleep) and is killed only by its PID."""

    def __init__(self, code: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(HERE), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self._pending = b""

    def lines(self, count: int, timeout: float = 30.0) -> list[str]:
        assert self.proc.stdout is not None
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            if b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                out.append(line.decode())
                continue
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the child printed {out} within {timeout}s"
            if select.select([self.proc.stdout], [], [], remaining)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    pytest.fail(f"the child exited ({self.proc.wait()}) after {out}:\n{err}")
                self._pending += chunk
        return out

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL to this PID only
        self.proc.wait(timeout=30)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


_CHILD_PRELUDE = """
import sys
sys.path.insert(0, sys.argv[1])
from test_lmdb_state_machine import CounterSM
"""


# -- applying exactly once -----------------------------------------------------------------


def test_an_entry_is_applied_exactly_once_across_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "sm"
    code = _CHILD_PRELUDE + """
sm = CounterSM(sys.argv[2])
i = sm.applied_index
while True:
    i += 1
    sm.apply_entry(i, b"incr")
    print(i, flush=True)
"""
    for _ in range(3):  # each round resumes from what the previous one left
        child = Child(code, str(path))
        try:
            printed = int(child.lines(25)[-1])
        finally:
            child.kill()
        with CounterSM(path) as sm:
            applied = sm.applied_index
            assert applied >= printed  # everything acknowledged is durable
            counter = int(dict(records(sm)["counters"])[b"n"])
            assert counter == applied  # and nothing was applied twice
            # A node replaying the log from the start changes nothing it holds.
            assert all(sm.apply_entry(i, b"incr") is None for i in range(1, applied + 1))
            assert sm.apply_entry(applied + 1, b"incr") == applied + 1


def test_state_and_index_survive_a_process_that_exits_without_closing(tmp_path: Path) -> None:
    code = _CHILD_PRELUDE + """
import os
sm = CounterSM(sys.argv[2])
for i in range(1, 11):
    sm.apply_entry(i, b"set k%d v%d" % (i, i))
os._exit(0)
"""
    child = Child(code, str(tmp_path / "sm"))
    assert child.proc.wait(timeout=60) == 0
    child.kill()
    with CounterSM(tmp_path / "sm") as sm:
        assert sm.applied_index == 10
        assert records(sm)["kv"] == sorted((b"k%d" % i, b"v%d" % i) for i in range(1, 11))


def test_a_failing_command_advances_the_index_and_changes_nothing(tmp_path: Path) -> None:
    with CounterSM(tmp_path / "sm", durability="no-sync") as sm:
        fill(sm, 1, 5)
        before = records(sm)
        with pytest.raises(ValueError, match="refused"):
            sm.apply_entry(6, b"fail")
        assert sm.applied_index == 6
        assert records(sm) == before
        assert sm.apply_entry(6, b"incr") is None  # already applied: not again
        assert sm.apply_entry(7, b"incr") == 1
    with CounterSM(tmp_path / "sm") as sm:
        assert sm.applied_index == 7
        assert b"junk" not in dict(records(sm)["kv"])


def test_an_oversized_key_is_the_commands_outcome_not_a_storage_failure(tmp_path: Path) -> None:
    with CounterSM(tmp_path / "sm", durability="no-sync") as sm:
        with pytest.raises(lmdb.BadValsizeError):
            sm.apply_entry(1, b"set " + b"k" * 600 + b" v")
        assert sm.applied_index == 1


def test_a_batch_entry_is_one_transaction_with_an_outcome_per_command(tmp_path: Path) -> None:
    """A failing command in a batch leaves no change and is its outcome;
    the others stay; the index is recorded once, and a replay is skipped."""
    with CounterSM(tmp_path / "sm", durability="no-sync") as sm:
        fill(sm, 1, 2)
        outcomes = sm.apply_entries(3, [b"incr", b"fail", b"set " + b"k" * 600 + b" v", b"incr", b"set a b"])
        assert outcomes[0] == (1, None) and outcomes[3] == (2, None) and outcomes[4] == (None, None)
        assert isinstance(outcomes[1][1], ValueError) and isinstance(outcomes[2][1], lmdb.BadValsizeError)
        assert sm.applied_index == 3
        kv = dict(records(sm)["kv"])
        assert kv[b"a"] == b"b" and b"junk" not in kv
        assert sm.apply_entries(3, [b"incr", b"incr"]) == [(None, None)] * 2  # already applied: not again
    with CounterSM(tmp_path / "sm") as sm:
        assert sm.applied_index == 3
        assert dict(records(sm)["counters"]) == {b"n": b"2"}


def test_a_batch_that_does_not_fit_applies_none_of_its_commands(tmp_path: Path) -> None:
    with CounterSM(tmp_path / "sm", durability="no-sync", map_size=256 * 1024,
                   max_map_size=512 * 1024) as sm:
        fill(sm, 1, 2)
        before = records(sm)
        with pytest.raises(StateStorageError, match="max_map_size"):
            sm.apply_entries(3, [b"set k%d %s" % (i, b"v" * 8000) for i in range(100)])
        assert sm.applied_index == 2
        assert records(sm) == before


def test_a_batch_grows_the_map_and_runs_again_from_scratch(tmp_path: Path) -> None:
    with CounterSM(tmp_path / "sm", durability="no-sync", map_size=64 * 1024) as sm:
        sets = [b"set k%d %s" % (i, b"v" * 8000) for i in range(60)]
        outcomes = sm.apply_entries(1, [b"incr", *sets, b"incr"])
        assert outcomes[0] == (1, None) and outcomes[-1] == (2, None)  # the rerun did not count twice
        assert sm.map_size > 64 * 1024 and len(records(sm)["kv"]) == 60


# -- snapshots -----------------------------------------------------------------------------


def test_a_streamed_snapshot_restores_every_record_into_a_fresh_environment(tmp_path: Path) -> None:
    with CounterSM(tmp_path / "a", durability="no-sync") as src, CounterSM(tmp_path / "b") as dst:
        last = fill(src, 1, 3000, size=300)
        src.apply_entry(last + 1, b"incr")
        src.apply_entry(last + 2, b"set big " + b"x" * (3 * MIB))  # spans chunks and pages
        fill(dst, 1, 10, tag=b"old")  # whatever the target held goes away
        stream = snapshot_file(src, tmp_path / "snap")
        dst.restore_from(chunks_of(stream, 7777))  # boundaries inside records
        assert records(dst) == records(src)
        assert dst.applied_index == src.applied_index == last + 2
        assert dst.snapshot() == snapshot_file(dst, tmp_path / "again").read_bytes()
    with CounterSM(tmp_path / "b") as reopened:  # the swap is durable
        assert reopened.applied_index == last + 2
        assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
            "CURRENT", "raftkit-state.lock", "state-00000002"
        ]


def test_snapshot_and_restore_round_trip_in_memory(tmp_path: Path) -> None:
    with CounterSM(tmp_path / "a", durability="no-sync") as a, CounterSM(tmp_path / "b") as b:
        fill(a, 1, 50)
        b.restore(a.snapshot())
        assert records(b) == records(a)
        a.restore(b.snapshot())
        assert records(a) == records(b)


def _damaged_streams(good: bytes) -> dict[str, bytes]:
    header = 8 + 2 + 2 + 8 + 8
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x01
    wrong_db = good.replace(b"D\x00\x08counters", b"D\x00\x08counterz", 1)
    return {
        "empty": b"",
        "header only": good[:header],
        "cut in a record": good[: len(good) // 2],
        "no end record": good[:-13],
        "cut checksum": good[:-2],
        "flipped bit": bytes(flipped),
        "wrong magic": b"XKLMDBSM" + good[8:],
        "newer version": good[:8] + (STREAM_VERSION + 1).to_bytes(2, "big") + good[10:],
        "trailing bytes": good + b"\x00",
        "unknown database": wrong_db,
        "unknown record": good[:header] + b"Z" + good[header + 1 :],
    }


@pytest.mark.parametrize("damage", list(_damaged_streams(b"x" * 100)))
def test_a_damaged_stream_is_refused_and_the_state_is_untouched(tmp_path: Path, damage: str) -> None:
    with CounterSM(tmp_path / "src", durability="no-sync") as src:
        fill(src, 1, 200, size=50)
        good = src.snapshot()
    bad = _damaged_streams(good)[damage]
    with CounterSM(tmp_path / "sm", durability="no-sync") as sm:
        fill(sm, 1, 20, tag=b"mine")
        before, applied = records(sm), sm.applied_index
        with pytest.raises(SnapshotError):
            sm.restore_from([bad[i : i + 1000] for i in range(0, len(bad), 1000)])
        assert records(sm) == before and sm.applied_index == applied
        assert sorted(p.name for p in (tmp_path / "sm").iterdir()) == [
            "CURRENT", "raftkit-state.lock", "state-00000001"
        ]  # the half-built environment is gone
        sm.restore(good)  # and the state machine still works
        assert sm.applied_index == 200


def test_keys_out_of_order_are_refused(tmp_path: Path) -> None:
    with CounterSM(tmp_path / "src", durability="no-sync") as src:
        src.apply_entry(1, b"set a 1")
        src.apply_entry(2, b"set b 2")
        good = src.snapshot()
    swapped = good.replace(b"I\x00\x01\x00\x00\x00\x01a1", b"I\x00\x01\x00\x00\x00\x01c1")
    with CounterSM(tmp_path / "sm") as sm, pytest.raises(SnapshotError, match="not in order"):
        sm.restore_from([swapped])


# Each stage blocks the child at one point of restore_from; the parent then
# SIGKILLs it. Before CURRENT is replaced the old state must come back, after it the new.
_RESTORE_CHILD = _CHILD_PRELUDE + """
import raftkit.state_machines.lmdb_machine as m
path, stage, stream = sys.argv[2], sys.argv[3], sys.argv[4]

def block(what):
    print(what, flush=True)
    sys.stdin.readline()  # never answered: we are killed here

def chunks():
    with open(stream, "rb") as f:
        for n, chunk in enumerate(iter(lambda: f.read(256 * 1024), b"")):
            if n == 12 and stage == "mid-stream":
                block(stage)  # a few staging transactions are committed by now
            yield chunk

original = m.LmdbStateMachine._write_current
def write_current(self, name):
    if stage == "before-commit":
        block(stage)
    original(self, name)
    if stage == "after-commit":
        block(stage)
m.LmdbStateMachine._write_current = write_current
sm = CounterSM(path, restore_txn_bytes=1 << 20)
sm.restore_from(chunks())
print("done", flush=True)
"""


@pytest.mark.parametrize(("stage", "expect"), [
    ("mid-stream", "old"), ("before-commit", "old"), ("after-commit", "new"), ("done", "new"),
])
def test_a_restore_killed_at_any_point_leaves_the_old_or_the_new_state(
    tmp_path: Path, stage: str, expect: str
) -> None:
    with CounterSM(tmp_path / "new", durability="no-sync") as new:
        fill(new, 1, 400, size=10_000, tag=b"n")
        stream = snapshot_file(new, tmp_path / "snap")
        expected_new = records(new)
    with CounterSM(tmp_path / "sm", durability="no-sync") as old:
        fill(old, 1, 30, tag=b"o")
        expected_old = records(old)
    child = Child(_RESTORE_CHILD, str(tmp_path / "sm"), stage, str(stream))
    try:
        assert child.lines(1) == [stage]
    finally:
        child.kill()
    with CounterSM(tmp_path / "sm") as sm:
        assert records(sm) == (expected_old if expect == "old" else expected_new)
        assert sm.applied_index == (30 if expect == "old" else 400)
        assert len([p for p in (tmp_path / "sm").iterdir() if p.name.startswith("state-")]) == 1


def test_write_and_restore_of_50_mib_stay_within_10_mib_of_python_memory(tmp_path: Path) -> None:
    with CounterSM(tmp_path / "a", durability="no-sync") as src, CounterSM(tmp_path / "b") as dst:
        for i in range(1, 43):  # 42 values of 1 MiB, then 10 MB of small ones
            src.apply_entry(i, b"set big%03d %s" % (i, b"v" * MIB))
        fill(src, 43, 10_000, size=1000)
        tracemalloc.start()
        try:
            snapshot_file(src, tmp_path / "snap")
            _, write_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            dst.restore_from(chunks_of(tmp_path / "snap"))
            _, restore_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert (tmp_path / "snap").stat().st_size > 50 * MIB
        assert write_peak < 10 * MIB and restore_peak < 10 * MIB, (write_peak, restore_peak)
        assert dst.applied_index == src.applied_index
        assert digest(dst) == digest(src)


def digest(sm: LmdbStateMachine) -> str:
    h = hashlib.blake2b()
    for name in sm.databases:
        with sm.read_txn(name) as txn:
            for key, value in txn.cursor().iternext():
                h.update(b"%d:%s%d:%s" % (len(key), key, len(value), value))
    return h.hexdigest()


def test_a_snapshot_view_is_fixed_when_opened_and_applies_go_on_meanwhile(tmp_path: Path) -> None:
    with CounterSM(tmp_path / "a", durability="no-sync") as sm, CounterSM(tmp_path / "b") as copy:
        fill(sm, 1, 100)
        expected = records(sm)
        with sm.open_snapshot() as view:
            assert view.applied_index == 100
            fill(sm, 101, 50)  # the node applies on while a thread streams the view
            with pytest.raises(ValueError):
                sm.apply_entry(151, b"fail")  # an aborted write does not wait for the stream
            out = io.BytesIO()
            view.write_to(out)
        copy.restore(out.getvalue())
        assert records(copy) == expected and copy.applied_index == 100


def test_map_growth_interrupts_a_snapshot_stream_instead_of_waiting_for_it(tmp_path: Path) -> None:
    with CounterSM(tmp_path / "sm", durability="no-sync", map_size=256 * 1024) as sm:
        fill(sm, 1, 20, size=2000)
        view = sm.open_snapshot()
        grower = threading.Thread(target=fill, args=(sm, 21, 200, 4000))
        grower.start()  # its map growth needs the stream gone
        try:
            wait_until(lambda: sm._gate.interrupt, 10, what="the growth to ask the stream to stop")
            with pytest.raises(SnapshotError, match="interrupted"):
                view.write_to(io.BytesIO())
        finally:
            view.close()
            grower.join(10)
        assert not grower.is_alive() and sm.applied_index == 220 and sm.map_size > 256 * 1024
        assert sm.snapshot()  # and the next snapshot goes through


# -- the map -------------------------------------------------------------------------------


def test_the_map_grows_while_other_threads_read(tmp_path: Path) -> None:
    with CounterSM(tmp_path / "sm", durability="no-sync", map_size=64 * 1024) as sm:
        stop = threading.Event()
        errors: list[BaseException] = []

        def reader() -> None:
            while not stop.is_set():
                try:
                    records(sm)
                except BaseException as exc:  # pragma: no cover - the failure we look for
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            fill(sm, 1, 400, size=4000)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors
        assert sm.map_size > 64 * 1024
        assert len(records(sm)["kv"]) == 400


def test_a_full_map_at_max_map_size_is_a_clear_error_and_keeps_the_state(tmp_path: Path) -> None:
    with CounterSM(tmp_path / "sm", durability="no-sync", map_size=256 * 1024,
                   max_map_size=512 * 1024) as sm:
        last = 0
        with pytest.raises(StateStorageError, match="max_map_size"):
            for i in range(1, 1000):
                sm.apply_entry(i, b"set k%d %s" % (i, b"v" * 8000))
                last = i
        assert sm.applied_index == last  # the entry that did not fit was not applied
        assert len(records(sm)["kv"]) == last
    with CounterSM(tmp_path / "big", durability="no-sync") as big:
        fill(big, 1, 200, size=8000)
        stream = big.snapshot()
    with CounterSM(tmp_path / "small", map_size=64 * 1024, max_map_size=512 * 1024) as small:
        with pytest.raises(StateStorageError):
            small.restore(stream)
        assert small.applied_index == 0
    with CounterSM(tmp_path / "grows", map_size=64 * 1024) as grows:  # no limit: the map grows
        grows.restore(without_size_hint(stream))  # so it grows while the stream is written
        assert grows.applied_index == 200 and grows.map_size > 1 * MIB
        assert len(records(grows)["kv"]) == 200


def without_size_hint(stream: bytes) -> bytes:
    """The same stream with its size hint zeroed (and the checksum fixed)."""
    body = stream[:20] + bytes(8) + stream[28:-4]
    return body + zlib.crc32(body).to_bytes(4, "big")


# -- ownership -----------------------------------------------------------------------------


def test_one_owner_per_directory_and_no_forked_children(tmp_path: Path) -> None:
    sm = CounterSM(tmp_path / "sm")
    with pytest.raises(StateStorageError, match="already open"):
        CounterSM(tmp_path / "sm")
    assert sm.fork_safe is False
    pid = os.fork()
    if pid == 0:
        try:
            records(sm)
            os._exit(1)
        except StateStorageError:
            os._exit(0)
        except BaseException:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    sm.close()
    sm.close()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(StateStorageError, match="not \\(only\\) an LmdbStateMachine"):
        CounterSM(tmp_path / "other")
    with LmdbDictStateMachine(tmp_path / "dict") as d:
        d.apply_entry(1, LmdbDictStateMachine.set_command("k", 1))
    with pytest.raises(StateStorageError, match="does not declare"):
        CounterSM(tmp_path / "dict")


# -- LmdbDict ------------------------------------------------------------------------------


def test_lmdb_dict_state_machine_commands_and_reads(tmp_path: Path) -> None:
    S = LmdbDictStateMachine  # noqa: N806
    with S(tmp_path / "d", durability="no-sync") as d:
        d.apply_entry(1, S.set_command("a", [1, 2]))
        d.apply_entry(2, S.update_command({(1, "t"): {"n": None}, 3: b"raw", 1.5: 2.5}))
        assert d.apply_entry(3, S.pop_command("a", "none")) == [1, 2]
        assert d.apply_entry(4, S.pop_command("a", "none")) == "none"
        assert d[(1, "t")] == {"n": None} and d.get(3) == b"raw" and 1.5 in d and "a" not in d
        assert len(d) == 3 and sorted(map(repr, d.keys())) == sorted(map(repr, [(1, "t"), 3, 1.5]))
        with pytest.raises(KeyError):
            d["missing"]
        with pytest.raises(TypeError):
            S.set_command(frozenset({"x"}), 1)  # its encoding depends on the hash seed
        with pytest.raises(ValueError, match="511"):
            S.set_command("k" * 600, 1)
        d.apply_entry(5, S.update_command({i: i for i in range(2500)}))  # iterates across pages
        assert dict(d.items()) == {**{i: i for i in range(2500)}, (1, "t"): {"n": None}, 3: 3, 1.5: 2.5}
        d.apply_entry(6, S.clear_command())
        assert len(d) == 0 and list(d.items()) == []


def test_lmdb_dict_as_a_syncobj_consumer(tmp_path: Path) -> None:
    class App(SyncObj):
        def __init__(self, address: str, partners: list[str], transport: Any, d: LmdbDict) -> None:
            # The default capture mode must notice the LMDB consumer is not
            # fork-safe and snapshot in a thread instead.
            super().__init__(address, partners, fast_conf(), consumers=[d], transport=transport)

    dicts = {a: LmdbDict(str(tmp_path / a), durability="no-sync") for a in ("node1", "node2", "node3")}
    try:
        with LocalCluster(3) as cluster:
            cluster.add_syncobjs(lambda a, p, t: App(a, p, t, dicts[a]))
            leader = cluster.wait_leader(10)
            d = dicts[leader]
            d.set("a", 1, sync=True, timeout=10)
            d.update({"b": 2, "c": [3]}, sync=True, timeout=10)
            assert d.pop("a", sync=True, timeout=10) == 1
            cluster.objs[leader].force_log_compaction().result(10)  # the dict rides in the snapshot
            for x in dicts.values():
                wait_until(lambda x=x: dict(x.items()) == {"b": 2, "c": [3]}, 10, what="replicas to agree")
            d.clear(sync=True, timeout=10)
            wait_until(lambda: all(len(x) == 0 for x in dicts.values()), 10, what="the clear")
    finally:
        for x in dicts.values():
            x.close()


class ProbeDict(LmdbDictStateMachine):
    """Records whether the node went through the in-memory snapshot pair."""

    materialized = False

    def snapshot(self) -> bytes:
        self.materialized = True
        return super().snapshot()

    def restore(self, data: bytes) -> None:
        self.materialized = True
        super().restore(data)


def test_a_new_node_catches_up_on_30_mib_through_a_streamed_snapshot(tmp_path: Path) -> None:
    config = fast_config(log_compaction_min_entries=10**9, log_compaction_keep=0, command_timeout=30)
    sms = {a: ProbeDict(tmp_path / a, durability="no-sync") for a in ("node1", "node2", "node3")}
    rng = random.Random(1)
    try:
        with LocalCluster(3) as cluster:
            # A majority starts (a first start: no restart markers); node3 has never run.
            for address in ("node1", "node2"):
                cluster.add_node(address, sms[address], config)
            leader = cluster.wait_leader(10)
            for batch in range(30):  # 30 entries of 1 MiB
                values = {f"k{batch:02d}-{i:02d}": rng.randbytes(64 * 1024) for i in range(16)}
                cluster.nodes[leader].propose(LmdbDictStateMachine.update_command(values), timeout=30)
            for address in ("node1", "node2"):
                cluster.nodes[address].request_log_compaction().result(30)
            assert cluster.nodes[leader].status()["log_first_index"] > 2
            cluster.add_node("node3", sms["node3"], config)
            target = cluster.nodes[leader].status()["applied_index"]
            wait_until(lambda: cluster.nodes["node3"].status()["applied_index"] >= target, 30,
                       what="node3 to catch up")
            assert len(sms["node3"]) == 480
            assert digest(sms["node3"]) == digest(sms[leader])
            assert sms["node3"].applied_index == sms[leader].applied_index > 0, "apply_entry not used"
            assert not sms[leader].materialized and not sms["node3"].materialized, "not streamed"
    finally:
        for sm in sms.values():
            sm.close()
