"""LmdbStateMachine's applied index (which entries the node replays) is
checksummed: a flipped bit or a lost record is an error, never a silently
wrong index; states written before the checksum (format 1) still open."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import pytest

from raftkit.state_machines.lmdb_machine import LmdbStateMachine, StateStorageError


class Counter(LmdbStateMachine):
    databases = ("kv",)

    def apply_in_txn(self, txn: lmdb.Transaction, command: bytes) -> Any:
        n = int(txn.get(b"n") or 0) + 1
        txn.put(b"n", b"%d" % n)
        return n


def _generation(path: Path) -> Path:
    return path / (path / "CURRENT").read_text().strip()


def _edit_meta(path: Path, change: Callable[[lmdb.Transaction, Any], None]) -> None:
    with lmdb.open(str(_generation(path)), max_dbs=4, subdir=True) as env, env.begin(write=True) as txn:
        change(txn, env.open_db(b"raftkit_meta", txn=txn))


def _applied_five(path: Path) -> None:
    with Counter(path) as sm:
        for index in range(1, 6):
            sm.apply_entry(index, b"incr")
        assert sm.applied_index == 5


@pytest.mark.parametrize("byte", [0, 7, 8, 11])
def test_a_flipped_bit_in_the_applied_index_is_refused(tmp_path: Path, byte: int) -> None:
    path = tmp_path / "state"
    _applied_five(path)

    def flip(txn: lmdb.Transaction, meta: Any) -> None:
        raw = bytearray(txn.get(b"applied_index", db=meta))
        raw[min(byte, len(raw) - 1)] ^= 0x04
        txn.put(b"applied_index", bytes(raw), db=meta)

    _edit_meta(path, flip)
    with pytest.raises(StateStorageError, match=r"applied index record .* is damaged.*Move the state"):
        Counter(path)


def test_a_missing_applied_index_is_refused_not_taken_for_zero(tmp_path: Path) -> None:
    path = tmp_path / "state"
    _applied_five(path)
    _edit_meta(path, lambda txn, meta: txn.delete(b"applied_index", db=meta))
    with pytest.raises(StateStorageError, match=r"applied index record .* is missing"):
        Counter(path)


def test_a_fresh_state_starts_at_zero(tmp_path: Path) -> None:
    with Counter(tmp_path / "state") as sm:
        assert sm.applied_index == 0
    with Counter(tmp_path / "state") as sm:
        assert sm.applied_index == 0


def test_a_format_1_state_opens_keeps_its_index_and_is_protected_afterwards(tmp_path: Path) -> None:
    path = tmp_path / "state"
    _applied_five(path)

    def downgrade(txn: lmdb.Transaction, meta: Any) -> None:  # as the previous release wrote it
        txn.put(b"format", b"raftkit-lmdb-state" + (1).to_bytes(2, "big"), db=meta)
        txn.put(b"applied_index", (5).to_bytes(8, "big"), db=meta)

    _edit_meta(path, downgrade)
    with Counter(path) as sm:
        assert sm.applied_index == 5
        assert sm.apply_entry(5, b"incr") is None  # not applied twice
        assert sm.apply_entry(6, b"incr") == 6
    with Counter(path) as sm:
        assert sm.applied_index == 6

    def flip(txn: lmdb.Transaction, meta: Any) -> None:
        raw = bytearray(txn.get(b"applied_index", db=meta))
        raw[7] ^= 0x01
        txn.put(b"applied_index", bytes(raw), db=meta)

    _edit_meta(path, flip)
    with pytest.raises(StateStorageError, match="applied index record .* is damaged"):
        Counter(path)


def test_a_format_1_state_that_never_applied_opens_at_zero(tmp_path: Path) -> None:
    path = tmp_path / "state"
    Counter(path).close()

    def downgrade(txn: lmdb.Transaction, meta: Any) -> None:
        txn.put(b"format", b"raftkit-lmdb-state" + (1).to_bytes(2, "big"), db=meta)
        txn.delete(b"applied_index", db=meta)

    _edit_meta(path, downgrade)
    with Counter(path) as sm:
        assert sm.applied_index == 0
