"""LmdbStateMachine: replicated state that lives on disk, in its own LMDB environment.

Why: state larger than memory cannot be pickled into a snapshot or rebuilt
from the whole log at every start. Here each log entry is applied in one
write transaction that also records its index (so it is applied exactly
once across crashes, and the node can resume from ``applied_index``), and a
snapshot is a consistent read transaction streamed record by record.

Layout of ``path`` (a directory)::

    raftkit-state.lock   exclusive flock: one owner per directory, across processes
    CURRENT              names the live generation ("state-00000003")
    state-00000003/      the LMDB environment: the declared named databases plus
                         "raftkit_meta" (format record, applied index as 8 big-endian
                         bytes + the CRC-32 of the key and those bytes)

The applied index decides which entries the node replays: a flipped bit
there would skip entries or apply them twice, silently, so it carries a
checksum and is written when the environment is created (a missing one is
damage, not "nothing applied"). Format 1 (no checksum) is upgraded on open.

``restore_from`` builds the next generation in a sibling directory, fsyncs
it and only then replaces ``CURRENT`` (temp file, fsync, rename, fsync the
directory): that rename is the commit point. Opening reads ``CURRENT`` and
deletes every other generation, so a crash before the rename recovers the
old state (the half-built one is dropped) and a crash after it the new one
(the old one is dropped). A state is never seen half-restored.

A snapshot is the stream of ``raftkit.state_machines.lmdb_snapshot_stream``: every
record of every declared database in key order, framed and checksummed. A
truncated, damaged or foreign stream is refused with ``SnapshotError`` and
the current state is kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import struct
import threading
import zlib
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, TypeVar, cast

import lmdb

from raftkit.errors import RaftkitError, SnapshotError
from raftkit.state_machines.base import SnapshotWriter, StateMachine
from raftkit.state_machines.lmdb_snapshot_stream import StreamReader, StreamWriter
from raftkit.storage._files import DirectoryLock, fsync_directory

__all__ = ["FORMAT_VERSION", "LmdbStateMachine", "SnapshotView", "StateStorageError"]

log = logging.getLogger(__name__)

MIB = 1 << 20
FORMAT_VERSION = 2
"""Version of the on-disk layout (the format record in "raftkit_meta").
Version 1 (an applied index without checksum) is read and upgraded."""

Durability = Literal["sync", "no-sync"]
T = TypeVar("T")

_META_DB = b"raftkit_meta"
_FORMAT_KEY = b"format"
_APPLIED_KEY = b"applied_index"
_FORMAT_RECORD = b"raftkit-lmdb-state" + struct.pack(">H", FORMAT_VERSION)
_FORMAT_V1 = b"raftkit-lmdb-state" + struct.pack(">H", 1)
_U64 = struct.Struct(">Q")
_APPLIED = struct.Struct(">QI")  # index, CRC-32 of the key and the index bytes
_GEN = re.compile(r"state-(\d{8})")
_CURRENT = "CURRENT"
_LOCK_FILE = "raftkit-state.lock"


class StateStorageError(RaftkitError):
    """The state's LMDB environment cannot be used (full at ``max_map_size``,
    damaged, closed, touched from a forked child). Never a command's
    outcome: the applied index did not advance and the replica cannot go on
    applying the log until the cause is fixed."""


_current_pid = os.getpid()


def _refresh_pid() -> None:
    global _current_pid
    _current_pid = os.getpid()


os.register_at_fork(after_in_child=_refresh_pid)


class _Gate:
    """Who may touch the environment. Short reads and snapshot streams share
    it. Growing the map or swapping the environment takes it alone (LMDB
    forbids both while any transaction is open in the process) and makes a
    stream in progress give up, so a long snapshot never stalls the applying
    thread. Aborting a write only holds the short reads off (py-lmdb 3 waits
    for every other thread to leave LMDB first: a stream of reads would
    starve it, one snapshot stream does not)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._streams = 0
        self._closed = False
        self.interrupt = False  # read by streams between records

    @contextlib.contextmanager
    def shared(self, stream: bool = False) -> Iterator[None]:
        with self._cond:
            while self._closed:
                self._cond.wait()
            if stream:
                self._streams += 1
            else:
                self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                if stream:
                    self._streams -= 1
                else:
                    self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self, streams_too: bool = True) -> Iterator[None]:
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._closed = True  # new readers wait from now on
            self.interrupt = streams_too
            while self._readers or (streams_too and self._streams):
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._closed = False
                self.interrupt = False
                self._cond.notify_all()


class LmdbStateMachine(StateMachine):
    """Base class of state machines whose state is an LMDB environment at ``path``.

    Subclasses name their databases in ``databases`` and implement
    ``apply_in_txn``; reads go through ``read_txn()``. The map starts at
    ``map_size`` and doubles when full, up to ``max_map_size`` (unbounded
    when None). ``durability="no-sync"`` skips fsyncs (process crashes stay
    safe, power loss may lose recent applies; tests only). A restore commits
    every ``restore_txn_bytes`` to bound LMDB's dirty-page memory.

    Thread-safe: the node applies on its thread while others read. Not
    fork-safe: an LMDB environment must never be used in a forked child.
    """

    databases: ClassVar[tuple[str, ...]] = ("data",)
    """Named databases holding the state; the first is each transaction's default."""

    fork_safe = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "sync",
        map_size: int = 64 * MIB,
        max_map_size: int | None = None,
        restore_txn_bytes: int = 32 * MIB,
    ) -> None:
        if durability not in ("sync", "no-sync"):
            raise ValueError(f"durability must be 'sync' or 'no-sync', got {durability!r}")
        if map_size <= 0 or (max_map_size is not None and max_map_size < map_size):
            raise ValueError(f"need 0 < map_size <= max_map_size, got {map_size} and {max_map_size}")
        if restore_txn_bytes < MIB:
            raise ValueError(f"restore_txn_bytes must be at least 1 MiB, got {restore_txn_bytes}")
        names = list(self.databases)
        if not names or len(set(names)) != len(names) or any(not n or n == _META_DB.decode() for n in names):
            raise TypeError(f"{type(self).__name__}.databases must be distinct, non-empty names "
                            f"other than {_META_DB.decode()!r}; got {self.databases!r}")
        self.path = Path(path)
        self.durability: Durability = durability
        self._map_size = map_size
        self._max_map_size = max_map_size
        self._restore_txn_bytes = restore_txn_bytes
        self._pid = _current_pid
        self._gate = _Gate()
        self._write_lock = threading.RLock()
        self._env: lmdb.Environment | None = None
        self._dbs: dict[str, Any] = {}
        self._meta: Any = None
        self._applied = 0
        self._generation = 0
        self._dirlock: DirectoryLock | None = None
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._dirlock = DirectoryLock(self.path, _LOCK_FILE)
        except BlockingIOError:
            raise StateStorageError(f"the state at {self.path} is already open (another process or object): "
                                    "only one state machine may use a directory") from None
        except OSError as exc:
            raise StateStorageError(f"cannot open the state directory {self.path}: {exc}") from exc
        try:
            self._open_current()
        except BaseException:
            self.close()
            raise

    # -- what subclasses write ------------------------------------------------------

    @abstractmethod
    def apply_in_txn(self, txn: lmdb.Transaction[bytes], command: bytes) -> Any:
        """Apply ``command`` inside ``txn`` (whose default database is
        ``databases[0]``; others via ``self.db(name)``) and return its outcome.
        Deterministic, touching only ``txn``: it may run again after the map
        grew. Raising aborts the change; never swallow ``lmdb.Error``."""

    def db(self, name: str) -> Any:
        """The handle of a declared database, for ``txn.get(k, db=...)``. Valid
        until the next restore: look it up inside each transaction."""
        try:
            return self._dbs[name]
        except KeyError:
            raise KeyError(f"{type(self).__name__} declares no database {name!r} "
                           f"(it has {list(self.databases)})") from None

    @contextlib.contextmanager
    def read_txn(self, db: str | None = None) -> Iterator[lmdb.Transaction[bytes]]:
        """A consistent read transaction (default database ``db`` or the
        first declared). Keep it short: map growth waits for it to end."""
        self._check_pid()
        with self._gate.shared():
            env = self._require_env()
            with env.begin(db=self.db(db or self.databases[0])) as txn:
                yield txn

    # -- StateMachine ------------------------------------------------------------------

    def apply(self, command: bytes) -> Any:
        """Apply without a log index (tests, callers outside a node): the
        applied index is left alone, so nothing guards against a replay."""
        with self._writing():
            return self._write(lambda txn: self.apply_in_txn(txn, command))

    def apply_entry(self, index: int, command: bytes) -> Any:
        """Apply entry ``index`` and record ``index`` in the same transaction.

        An entry at or below ``applied_index`` is already in the state: it is
        skipped and returns None (its original outcome is not kept; the node
        never replays such entries, it resumes from ``applied_index``). If the
        command raises, its changes are discarded, the index still advances
        (a second small transaction) and the exception is re-raised as the
        entry's outcome, the same on every replica.
        """
        with self._writing():
            if index <= self._applied:
                return None
            record = _applied_record(index)

            def body(txn: lmdb.Transaction[bytes]) -> Any:
                result = self.apply_in_txn(txn, command)
                txn.put(_APPLIED_KEY, record, db=self._meta)
                return result

            try:
                result = self._write(body)
            except StateStorageError:
                raise
            except Exception:
                self._write(lambda txn: txn.put(_APPLIED_KEY, record, db=self._meta))
                self._applied = index
                raise
            self._applied = index
            return result

    def apply_entries(self, index: int, commands: Sequence[bytes]) -> list[tuple[Any, BaseException | None]]:
        """Apply the commands of batch entry ``index`` and record ``index``,
        all in one transaction (one fsync): each command runs in a nested
        transaction, so one that raises leaves no change and becomes its
        outcome while the others stay; a storage failure applies none."""
        with self._writing():
            if index <= self._applied:
                return [(None, None)] * len(commands)
            record = _applied_record(index)
            default_db = self._dbs[self.databases[0]]

            def body(txn: lmdb.Transaction[bytes]) -> list[tuple[Any, BaseException | None]]:
                outcomes: list[tuple[Any, BaseException | None]] = []
                for command in commands:
                    child = self._require_env().begin(write=True, parent=txn, db=default_db)
                    try:
                        result = self.apply_in_txn(child, command)
                    except lmdb.Error as exc:
                        child.abort()
                        if not isinstance(exc, lmdb.BadValsizeError):
                            raise  # storage: _write grows the map and runs everything again, or fails
                        outcomes.append((None, exc))
                    except Exception as exc:  # the command's outcome
                        child.abort()
                        outcomes.append((None, exc))
                    else:
                        child.commit()
                        outcomes.append((result, None))
                txn.put(_APPLIED_KEY, record, db=self._meta)
                return outcomes

            outcomes = self._write(body)
            self._applied = index
            return outcomes

    @property
    def applied_index(self) -> int:
        """The last entry index whose effect is durably in the state."""
        return self._applied

    def snapshot(self) -> bytes:
        """The whole stream in memory: for small states and tests only."""
        buf = io.BytesIO()
        self.write_snapshot(buf)
        return buf.getvalue()

    def restore(self, data: bytes) -> None:
        view = memoryview(data)
        # Chunks are views, not copies: the stream reader takes any buffer.
        self.restore_from(cast("Iterable[bytes]", (view[i : i + MIB] for i in range(0, len(view), MIB))))

    def write_snapshot(self, out: SnapshotWriter) -> None:
        """Stream one consistent read transaction to ``out``, never holding
        more than about one chunk in memory. The header goes out as soon as
        the view is fixed, so a node capturing in a thread resumes applying
        at once. If the map must grow meanwhile, the stream stops with
        ``SnapshotError`` (the node retries the snapshot later)."""
        with self.open_snapshot() as view:
            view.write_to(out)

    def open_snapshot(self) -> SnapshotView:
        """Fix a consistent view now and stream it later (``write_to``): lets
        a container (several state machines in one snapshot) fix every view
        before its first write. Close it promptly: it pins old pages."""
        self._check_pid()
        return SnapshotView(self)

    def restore_from(self, chunks: Iterable[bytes]) -> None:
        """Replace the whole state with a stream from ``write_snapshot``: it is
        written to a fresh environment and swapped in atomically only once it
        checked out complete, so a refused stream leaves the state untouched."""
        with self._writing():
            name = f"state-{self._generation + 1:08d}"
            staging = self.path / name
            shutil.rmtree(staging, ignore_errors=True)
            try:
                applied = self._fill(staging, StreamReader(chunks))
                env, dbs, meta = self._open_env(staging)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            old_env, old_name = self._env, f"state-{self._generation:08d}"
            try:
                self._write_current(name)  # the commit point
            except OSError as exc:
                env.close()
                raise StateStorageError(f"cannot switch {self.path} to the restored state ({exc}); "
                                        "close and reopen the state machine") from exc
            with self._gate.exclusive():
                self._env, self._dbs, self._meta = env, dbs, meta
                self._applied, self._generation = applied, self._generation + 1
                if old_env is not None:
                    old_env.close()
            shutil.rmtree(self.path / old_name, ignore_errors=True)
            log.info("restored %s from a snapshot at index %d", self.path, applied)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def map_size(self) -> int:
        """The current LMDB map size in bytes (it grows on demand)."""
        with self._gate.shared():
            return int(self._require_env().info()["map_size"])

    def close(self) -> None:
        """Close the environment and release the directory; idempotent."""
        self._check_pid()
        with self._write_lock, self._gate.exclusive():
            if self._env is not None:
                self._env.close()
                self._env = None
            if self._dirlock is not None:
                self._dirlock.release()
                self._dirlock = None

    def __enter__(self: T) -> T:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, applied_index={self._applied})"

    # -- opening and recovery ---------------------------------------------------------------

    def _open_current(self) -> None:
        """Open the generation CURRENT names, dropping any other (an
        unfinished restore, or the state a finished one replaced)."""
        current = self._read_current()
        for entry in sorted(self.path.iterdir()):
            if entry.name in (_LOCK_FILE, _CURRENT, current):
                continue
            if _GEN.fullmatch(entry.name) or entry.name == _CURRENT + ".tmp":
                log.info("removing %s, left by an interrupted restore", entry)
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            else:
                raise StateStorageError(
                    f"{self.path} holds {entry.name!r}, so it is not (only) an LmdbStateMachine "
                    "directory: point the state machine at a directory of its own"
                )
        if current is None:
            current = "state-00000001"
            self._open_env(self.path / current)[0].close()
            self._write_current(current)
        self._env, self._dbs, self._meta = self._open_env(self.path / current)
        self._generation = int(current[len("state-") :])
        with self._env.begin(db=self._meta) as txn:
            self._applied = _decode_applied(txn.get(_APPLIED_KEY), self.path / current)

    def _read_current(self) -> str | None:
        try:
            name = (self.path / _CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        if not _GEN.fullmatch(name) or not (self.path / name).is_dir():
            raise StateStorageError(f"{self.path / _CURRENT} names {name!r}, which is not a state "
                                    "directory here: the state is damaged, restore it from a backup "
                                    "or remove the directory and let the node catch up from a snapshot")
        return name

    def _write_current(self, name: str) -> None:
        """Atomically point CURRENT at ``name`` and make that durable."""
        fsync_directory(self.path / name)
        tmp = self.path / (_CURRENT + ".tmp")
        with open(tmp, "w") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path / _CURRENT)
        fsync_directory(self.path)

    def _open_env(
        self, directory: Path, *, staging: bool = False, map_size: int = 0
    ) -> tuple[lmdb.Environment, dict[str, Any], Any]:
        """Open (or create) an environment and check it holds this class's data;
        a staging one (being restored into) skips fsyncs until it is complete."""
        data = directory / "data.mdb"
        size = data.stat().st_size if data.exists() else 0
        if data.exists() and size < 2 * os.sysconf("SC_PAGE_SIZE"):
            raise StateStorageError(f"{data} is truncated ({size} bytes): the state is damaged")
        sync = self.durability == "sync" and not staging
        try:
            env = lmdb.open(str(directory), map_size=max(self._map_size, map_size, size), subdir=True,
                            max_dbs=len(self.databases) + 1, sync=sync, metasync=sync)
        except lmdb.Error as exc:
            raise StateStorageError(f"cannot open the LMDB environment at {directory}: {exc}") from exc
        try:
            with env.begin(write=True) as txn:
                found = {key for key, _ in txn.cursor()}
                unknown = found - {_META_DB} - {n.encode() for n in self.databases}
                if unknown:
                    raise StateStorageError(
                        f"{directory} holds databases {sorted(unknown)} that {type(self).__name__} does not "
                        "declare: it belongs to another state machine"
                    )
                meta = env.open_db(_META_DB, txn=txn)
                dbs = {n: env.open_db(n.encode(), txn=txn) for n in self.databases}
                record = txn.get(_FORMAT_KEY, db=meta)
                if record is None and found:
                    raise StateStorageError(f"{directory} has no raftkit format record: not ours")
                if record is None:
                    txn.put(_FORMAT_KEY, _FORMAT_RECORD, db=meta)
                    txn.put(_APPLIED_KEY, _applied_record(0), db=meta)
                elif record == _FORMAT_V1:  # seal the applied index (format 2)
                    raw = txn.get(_APPLIED_KEY, db=meta)
                    if raw is None or len(raw) == _U64.size:
                        old = 0 if raw is None else _U64.unpack(raw)[0]
                        txn.put(_APPLIED_KEY, _applied_record(old), db=meta)
                    txn.put(_FORMAT_KEY, _FORMAT_RECORD, db=meta)
                elif record != _FORMAT_RECORD:
                    raise StateStorageError(f"{directory} has format {record!r}; this build reads "
                                            f"{_FORMAT_RECORD!r} (a newer raftkit wrote it?)")
        except BaseException:
            env.close()
            raise
        env.reader_check()
        return env, dbs, meta

    # -- writing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        self._check_pid()
        with self._write_lock:
            self._require_env()
            yield

    def _write(self, body: Callable[[lmdb.Transaction[bytes]], T]) -> T:
        """Run ``body`` in one write transaction, growing the map and running
        it again from scratch when the map is full. Exceptions from ``body``
        propagate (the command's outcome, or an empty or oversized key);
        storage failures become ``StateStorageError``."""
        while True:
            env = self._require_env()
            try:
                txn = env.begin(write=True, db=self._dbs[self.databases[0]])
            except lmdb.Error as exc:
                raise StateStorageError(f"cannot start a write on {self.path}: {exc}") from exc
            try:
                result = body(txn)
                txn.commit()
                return result
            except BaseException as exc:
                with self._gate.exclusive(streams_too=isinstance(exc, lmdb.MapFullError)):
                    txn.abort()
                    if isinstance(exc, lmdb.MapFullError):
                        self._grow(env)
                        continue
                if isinstance(exc, lmdb.Error) and not isinstance(exc, lmdb.BadValsizeError):
                    raise StateStorageError(f"writing the state at {self.path} failed: {exc} "
                                            "(disk full? the last committed state is kept)") from exc
                raise

    def _grow(self, env: lmdb.Environment, at_least: int = 0) -> None:
        """Double the map (more if ``at_least`` asks) up to ``max_map_size``.
        No transaction may be open on ``env`` (the caller holds the gate)."""
        current = env.info()["map_size"]
        limit = self._max_map_size
        if limit is not None and current >= limit:
            raise StateStorageError(
                f"the state at {self.path} is full: its LMDB map reached max_map_size={limit} bytes. Raise "
                "max_map_size (or free disk space); nothing of the failed write was stored"
            )
        new = max(current * 2, at_least)
        new = new if limit is None else min(new, limit)
        try:
            env.set_mapsize(new)
        except lmdb.Error as exc:
            raise StateStorageError(f"the LMDB map of {self.path} cannot grow to {new}: {exc}") from exc
        log.info("grew the LMDB map of %s from %d to %d bytes", self.path, current, new)

    def _fill(self, directory: Path, reader: StreamReader) -> int:
        """Write the stream into a fresh environment at ``directory``; return
        its applied index. Commits every ``restore_txn_bytes`` and keeps at
        least twice what a transaction may write free in the map, since a
        stream cannot be replayed after a MapFullError."""
        applied, hint = reader.header()
        if self._max_map_size is not None and hint > self._max_map_size:
            raise StateStorageError(f"the snapshot needs ~{hint} bytes > max_map_size {self._max_map_size}")
        env, dbs, meta = self._open_env(directory, staging=True, map_size=min(hint + hint // 4, 1 << 40))
        try:
            psize = env.stat()["psize"]
            budget = self._restore_txn_bytes

            def fresh_txn(need: int) -> tuple[lmdb.Transaction[bytes], int]:
                """A write txn and how much it may write: at most half the free map."""
                used = (env.info()["last_pgno"] + 1) * psize
                if env.info()["map_size"] - used < 2 * need:
                    self._grow(env, at_least=used + 2 * need)  # a private env: no gate
                free = env.info()["map_size"] - used
                if free < need:
                    raise StateStorageError(f"the snapshot does not fit in max_map_size={self._max_map_size}")
                return env.begin(write=True), min(free // 2, max(budget, need))

            txn, room = fresh_txn(budget)
            cursor: Any = None
            current, seen = "", set()
            for kind, key, value in reader.records():
                if kind == "D":
                    current = key.decode("utf-8", "replace")
                    if current not in dbs or current in seen:
                        raise SnapshotError(f"the snapshot holds database {current!r} twice, or one that "
                                            f"{type(self).__name__} does not declare")
                    seen.add(current)
                    cursor = txn.cursor(db=dbs[current])
                    continue
                if cursor is None:
                    raise SnapshotError("the snapshot stream has an item before any database record")
                cost = len(key) + len(value) + 16 + (psize if len(value) > psize // 4 else 0)
                if cost > room:
                    txn.commit()
                    txn, room = fresh_txn(max(budget, cost))
                    cursor = txn.cursor(db=dbs[current])
                if not cursor.put(key, value, append=True):
                    raise SnapshotError(f"snapshot keys of database {current!r} are not in order")
                room -= cost
            txn.put(_APPLIED_KEY, _applied_record(applied), db=meta)
            txn.commit()
            env.sync(True)
        except lmdb.Error as exc:
            raise StateStorageError(f"restoring into {directory} failed: {exc}") from exc
        finally:
            env.close()
        return applied

    # -- guards -------------------------------------------------------------------------------

    def _check_pid(self) -> None:
        if self._pid != _current_pid:
            raise StateStorageError(f"the LMDB state at {self.path} was opened by process {self._pid}; "
                                    f"it must not be used in a forked child (process {_current_pid})")

    def _require_env(self) -> lmdb.Environment:
        if self._env is None:
            raise StateStorageError(f"the state at {self.path} is closed")
        return self._env


class SnapshotView:
    """An open read transaction of an ``LmdbStateMachine``, ready to stream."""

    def __init__(self, sm: LmdbStateMachine) -> None:
        self._sm = sm
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(sm._gate.shared(stream=True))
        try:
            env = sm._require_env()
            self._hint = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
            self._txn = self._stack.enter_context(env.begin(buffers=True))
            self.applied_index = _decode_applied(self._txn.get(_APPLIED_KEY, db=sm._meta), sm.path)
        except BaseException:
            self._stack.close()
            raise

    def write_to(self, out: SnapshotWriter) -> None:
        sm, gate = self._sm, self._sm._gate
        writer = StreamWriter(out, self.applied_index, self._hint)
        writer.flush()  # the view is fixed: a capture in a thread learns it at once
        for name in sm.databases:
            writer.database(name)
            for key, value in self._txn.cursor(db=sm._dbs[name]).iternext():
                if gate.interrupt:
                    raise SnapshotError(f"the snapshot of {sm.path} was interrupted (its map had to grow, "
                                        "or it is closing or being restored): retry it")
                writer.item(key, value)
        writer.finish()

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> SnapshotView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _applied_record(index: int) -> bytes:
    return _APPLIED.pack(index, zlib.crc32(_U64.pack(index), zlib.crc32(_APPLIED_KEY)))


def _decode_applied(raw: bytes | memoryview | None, where: Path) -> int:
    if raw is not None and len(raw) == _APPLIED.size:
        index, crc = _APPLIED.unpack(raw)
        if zlib.crc32(bytes(raw[: _U64.size]), zlib.crc32(_APPLIED_KEY)) == crc:
            return int(index)
    problem = "missing" if raw is None else f"damaged ({len(raw)} bytes, checksum mismatch)"
    raise StateStorageError(
        f"the applied index record of the state in {where} is {problem}: the state cannot be trusted "
        "(the node would skip entries or apply them twice). Move the state directory aside (or restore "
        "it from a backup) and restart: the node rebuilds the state from its snapshot and log, or, if "
        "those do not reach back, rejoin it as a new member so the leader sends it a snapshot"
    )
