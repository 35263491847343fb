"""LmdbLogStore checksums: a damaged record is never read back as different
data (random bit flips in a real file, targeted damage to each kind of
record), and stores written by the previous release (format 1, records
without checksums) still open and read, and are protected afterwards."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import lmdb
import pytest

from raftkit.core.types import Entry, EntryKind, HardState
from raftkit.errors import LogStoreError
from raftkit.serializers.wire import encode_entry, encode_hard_state
from raftkit.storage.lmdb_log_store import LmdbLogStore
from raftkit.testing.conformance.log_store import make_entries

PAGE = 4096
RESTORE_HINT = r"rejoin as a fresh member"


def _key(index: int) -> bytes:
    return index.to_bytes(8, "big")


def _raw_env(path: Path) -> lmdb.Environment:
    """The store's LMDB environment opened directly, to damage it on purpose."""
    return lmdb.open(str(path), max_dbs=2, subdir=True)


def _rewrite(path: Path, db: bytes, key: bytes, change) -> None:  # noqa: ANN001 - a bytes -> bytes function
    with _raw_env(path) as env, env.begin(write=True) as txn:
        handle = env.open_db(db, txn=txn)
        txn.put(key, change(txn.get(key, db=handle)), db=handle)


def _flip_last_bit(value: bytes) -> bytes:
    return value[:-1] + bytes([value[-1] ^ 0x01])


def _sample_store(path: Path) -> list[Entry]:
    entries = [Entry(i, 2 + i // 50, EntryKind.NORMAL, b"value-%d" % i * 3) for i in range(1, 201)]
    with LmdbLogStore(path, durability="no-sync") as store:
        for lo in range(0, 200, 20):
            store.save(HardState(term=6, vote="n1", commit=lo + 20), entries[lo : lo + 20])
        store.compact(10)
    return entries[10:]


# -- random bit flips --------------------------------------------------------------

# Runs in a child process: LMDB reads the damaged file through a memory map,
# so a damage it does not check for could kill the reader; the test must see
# that as a failure, not die with it.
_FLIPPER = r"""
import json, os, random, shutil, sys
from raftkit.errors import RaftkitError
from raftkit.storage.lmdb_log_store import LmdbLogStore

base, work = sys.argv[1], sys.argv[2]
seed, data_trials, meta_trials = (int(a) for a in sys.argv[3:6])
PAGE = 4096

def read(path):
    with LmdbLogStore(path, durability="no-sync") as s:
        first, last, hs = s.first_index(), s.last_index(), s.hard_state()
        terms = [s.term(i) for i in range(first - 1, last + 1)]
        ents = s.entries(first, last + 1)
        ents = [[e.index, e.term, int(e.kind), e.data.hex()] for e in ents]
        return [first, last, [hs.term, hs.vote, hs.commit], terms, ents]

reference = read(base)
size = os.path.getsize(os.path.join(base, "data.mdb"))
rng = random.Random(seed)
for trial in range(data_trials + meta_trials):
    lo, hi = (2 * PAGE, size) if trial < data_trials else (0, 2 * PAGE)
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work, ignore=shutil.ignore_patterns("raftkit.lock"))
    flips = [(rng.randrange(lo, hi), rng.randrange(8)) for _ in range(rng.randint(1, 3))]
    with open(os.path.join(work, "data.mdb"), "r+b") as f:
        for offset, bit in flips:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ (1 << bit)]))
    try:
        outcome = "same" if read(work) == reference else "silent"
    except RaftkitError as exc:
        outcome = "error " + type(exc).__name__ + ": " + str(exc)
    except Exception as exc:
        outcome = "exception " + type(exc).__name__ + ": " + str(exc)
    print(json.dumps([trial, flips, outcome]), flush=True)
print("DONE", flush=True)
"""


def test_random_bit_flips_are_read_back_unchanged_or_reported(tmp_path: Path) -> None:
    """Flip 1 to 3 random bits in a real store (data pages, then the two
    meta pages), 70 times with a fixed seed: every read either returns
    exactly what was written or raises LogStoreError; nothing silently
    different, no raw lmdb exception, no dead reader."""
    base = tmp_path / "base"
    _sample_store(base)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FLIPPER), str(base), str(tmp_path / "work"), "7", "60", "10"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = proc.stdout.splitlines()
    died = (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert proc.returncode == 0 and lines[-1:] == ["DONE"], died
    results = [json.loads(line) for line in lines[:-1]]
    bad = [r for r in results if not (r[2] == "same" or r[2].startswith("error LogStoreError"))]
    assert not bad, bad
    errors = [r[2] for r in results if r[2] != "same"]
    assert len(errors) >= 10, f"too few flips reached a record to test anything: {results}"
    assert all(RESTORE_HINT in e for e in errors), errors


# -- targeted damage ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ((b"meta", b"hard_state", _flip_last_bit), r"hard state record in .*data\.mdb fails its checksum"),
        ((b"meta", b"boundary", _flip_last_bit), r"boundary record in .*data\.mdb fails its checksum"),
        ((b"meta", b"hard_state", lambda v: v[:6] + encode_hard_state(HardState(9))), "hard state.*checksum"),
    ],
)
def test_a_damaged_metadata_record_stops_the_open(tmp_path: Path, damage: tuple, message: str) -> None:
    path = tmp_path / "log"
    _sample_store(path)
    _rewrite(path, *damage)
    with pytest.raises(LogStoreError, match=message) as info:
        LmdbLogStore(path)
    assert RESTORE_HINT in str(info.value)


@pytest.mark.parametrize("key", [b"hard_state", b"boundary"])
def test_a_missing_metadata_record_stops_the_open(tmp_path: Path, key: bytes) -> None:
    """A lost hard state would silently forget the vote: refused."""
    path = tmp_path / "log"
    _sample_store(path)
    with _raw_env(path) as env, env.begin(write=True) as txn:
        assert txn.delete(key, db=env.open_db(b"meta", txn=txn))
    with pytest.raises(LogStoreError, match=rf"is missing from .*data\.mdb.*{RESTORE_HINT}"):
        LmdbLogStore(path)


def test_a_flipped_bit_in_an_entry_is_reported_with_its_index(tmp_path: Path) -> None:
    path = tmp_path / "log"
    entries = _sample_store(path)
    _rewrite(path, b"entries", _key(50), _flip_last_bit)
    with LmdbLogStore(path) as store:
        assert store.entries(11, 50) == entries[:39]
        with pytest.raises(LogStoreError, match=rf"entry 50 in .*data\.mdb fails its checks.*{RESTORE_HINT}"):
            store.entries(11, 201)
        with pytest.raises(LogStoreError, match="entry 50"):
            store.term(50)


def test_a_record_under_the_wrong_key_is_reported(tmp_path: Path) -> None:
    """The checksum covers the key: entry 51's intact record stored at 50."""
    path = tmp_path / "log"
    _sample_store(path)
    with _raw_env(path) as env, env.begin(write=True) as txn:
        db = env.open_db(b"entries", txn=txn)
        txn.put(_key(50), txn.get(_key(51), db=db), db=db)
    with LmdbLogStore(path) as store, pytest.raises(LogStoreError, match="entry 50 in .* fails its checksum"):
        store.entries(50, 51)


# Bits 0 and 1 can turn the ids into equal or still consecutive ones, which
# this check cannot tell from a healthy file (documented in docs/storage.md).
@pytest.mark.parametrize("bit", [2, 34, 63])
def test_a_flipped_transaction_id_in_a_meta_page_is_refused_not_rolled_back(tmp_path: Path, bit: int) -> None:
    """LMDB trusts the meta page with the higher transaction id: a flipped
    bit in the older page's id would silently undo the last transaction
    (here: the compaction, and with it the hard state saved after it)."""
    path = tmp_path / "log"
    _sample_store(path)
    with LmdbLogStore(path) as store:
        store.save(HardState(term=7, vote="n3", commit=200), [])
    data = path / "data.mdb"
    raw = bytearray(data.read_bytes())
    at = 16 + 4 + 4 + 8 + 8 + 2 * 48 + 8  # the id, in LMDB's 64-bit meta page layout
    ids = [int.from_bytes(raw[page * PAGE + at : page * PAGE + at + 8], "little") for page in (0, 1)]
    older = ids.index(min(ids))
    raw[older * PAGE + at + bit // 8] ^= 1 << (bit % 8)
    data.write_bytes(bytes(raw))
    with pytest.raises(LogStoreError, match=rf"meta pages of .*data\.mdb disagree.*{RESTORE_HINT}"):
        LmdbLogStore(path)


# -- the previous release's format ------------------------------------------------------


def _write_format1(
    path: Path, entries: list[Entry], hs: HardState | None, boundary: tuple[int, int] | None
) -> None:
    """A log store exactly as the previous release (format 1) wrote it: wire
    records stored as they are, no checksums."""
    path.mkdir()
    with lmdb.open(str(path), max_dbs=2, subdir=True) as env, env.begin(write=True) as txn:
        db = env.open_db(b"entries", txn=txn)
        meta = env.open_db(b"meta", txn=txn)
        txn.put(b"format", b"raftkit-log-store" + (1).to_bytes(2, "big"), db=meta)
        if hs is not None:
            txn.put(b"hard_state", encode_hard_state(hs), db=meta)
        if boundary is not None:
            txn.put(b"boundary", struct.pack(">QQ", *boundary), db=meta)
        for e in entries:
            txn.put(_key(e.index), encode_entry(e), db=db)


@pytest.mark.parametrize("batch", [10_000, 3])
def test_a_format_1_store_opens_reads_and_is_protected_afterwards(tmp_path: Path, batch: int) -> None:
    path = tmp_path / "log"
    old = make_entries(6, 31, term=2)
    hs = HardState(term=4, vote="n2", commit=25)
    _write_format1(path, old, hs, (5, 1))
    with LmdbLogStore(path, compact_batch_size=batch) as store:
        assert (store.first_index(), store.last_index(), store.term(5)) == (6, 30, 1)
        assert store.hard_state() == hs
        assert store.entries(6, 31) == old
        new = make_entries(31, 36, term=4)
        store.save(HardState(term=4, vote="n2", commit=33), new)
    with LmdbLogStore(path) as store:
        assert store.entries(6, 36) == old + new
        assert store.hard_state() == HardState(term=4, vote="n2", commit=33)
    # The old records are covered by checksums now.
    _rewrite(path, b"entries", _key(7), _flip_last_bit)
    with LmdbLogStore(path) as store, pytest.raises(LogStoreError, match="entry 7 in .* fails its checksum"):
        store.entries(6, 36)


def test_a_format_1_store_without_hard_state_or_boundary_opens(tmp_path: Path) -> None:
    path = tmp_path / "log"
    _write_format1(path, make_entries(1, 4), None, None)
    with LmdbLogStore(path) as store:
        assert (store.first_index(), store.last_index(), store.hard_state()) == (1, 3, HardState())
    _rewrite(path, b"meta", b"hard_state", _flip_last_bit)
    with pytest.raises(LogStoreError, match="hard state record .* fails its checksum"):
        LmdbLogStore(path)


def test_an_interrupted_upgrade_is_finished_at_the_next_open(tmp_path: Path) -> None:
    """A format-1 store in which some records are already checksummed (the
    process died while upgrading) opens, reads and upgrades the rest."""
    path = tmp_path / "log"
    entries = make_entries(1, 11)
    with LmdbLogStore(path) as store:
        store.save(HardState(term=1), entries[:5])
    with _raw_env(path) as env, env.begin(write=True) as txn:
        db, meta = env.open_db(b"entries", txn=txn), env.open_db(b"meta", txn=txn)
        txn.put(b"format", b"raftkit-log-store" + (1).to_bytes(2, "big"), db=meta)
        for e in entries[5:]:
            txn.put(_key(e.index), encode_entry(e), db=db)
    with LmdbLogStore(path) as store:
        assert store.entries(1, 11) == entries
    _rewrite(path, b"entries", _key(9), _flip_last_bit)
    with LmdbLogStore(path) as store, pytest.raises(LogStoreError, match="entry 9 in .* fails its checksum"):
        store.entries(1, 11)


def test_a_damaged_format_1_record_is_reported_while_upgrading(tmp_path: Path) -> None:
    path = tmp_path / "log"
    _write_format1(path, make_entries(1, 11), HardState(term=1), None)
    _rewrite(path, b"entries", _key(4), lambda v: b"RE\x01\xff garbage")
    with pytest.raises(LogStoreError, match=rf"entry 4 in .*data\.mdb is unreadable.*{RESTORE_HINT}"):
        LmdbLogStore(path)
    shutil.rmtree(path)
