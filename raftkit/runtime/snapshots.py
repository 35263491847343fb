"""The node's snapshot pipeline: recovery at start, taking snapshots off the
event loop, compacting the log behind them, installing received ones.

The node owns the Raft core and the order of its ``Ready`` loop; this
module owns everything a snapshot involves, so ``node.py`` stays one idea:

* ``recover()`` (once, before the core exists) picks the newest snapshot
  that restores, never restores a durable state machine that already holds
  more (``applied_index``), aligns the log with the snapshot, and refuses to
  start, with ``RecoveryError``, when the stored state cannot be rebuilt
  (a compacted log with no usable snapshot behind it), rather than starting
  empty.
* ``maybe_take()`` asks the ``CompactionPolicy`` and starts a capture with
  the chosen ``SnapshotCapture`` strategy (fork, thread or inline); the
  capture reports back through ``post`` (onto the loop), where the log is
  compacted up to ``snapshot index - keep`` and the core told
  (``snapshot_created``).
* ``restore()`` streams a stored snapshot into ``restore_from`` in chunks:
  never a whole snapshot in memory by the node.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raftkit.core.types import ConfState, NodeId, SnapshotMeta
from raftkit.errors import LogCompactedError, LogUnavailableError, NoLeaderError, RaftkitError, SnapshotError
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.snapshot_policy import CompactionPolicy, Progress
from raftkit.state_machines.base import StateMachine
from raftkit.storage.capture import CaptureJob, InlineCapture, SnapshotCapture, ThreadCapture
from raftkit.storage.log_store import LogStore
from raftkit.storage.snapshotter import SnapshotSink, Snapshotter

__all__ = [
    "Recovery",
    "RecoveryError",
    "SnapshotPipeline",
    "StorageUnavailableError",
    "choose_capture",
]

log = logging.getLogger(__name__)

_COMPACT_STEP = 10_000  # log entries dropped per loop iteration

Position = tuple[int, int, ConfState]
"""(applied index, its term, the membership in force there)."""


class RecoveryError(RaftkitError):
    """The node's stored state cannot be used to start it; the message says
    what is missing and what to do. Raised instead of starting empty."""


class StorageUnavailableError(NoLeaderError):
    """This node cannot write its log (disk full, I/O error): it stopped
    taking commands until the write succeeds. Retry on another node."""


def choose_capture(
    mode: str, state_machine: StateMachine, snapshotter: Snapshotter, thread_name: str = "raftkit-snapshot"
) -> SnapshotCapture:
    """The capture strategy for ``NodeConfig.snapshot_mode``; ``ValueError``
    for a combination that cannot work. A ``ForkSnapshotter`` asks for fork
    captures whatever the mode says (unless it says ``inline``)."""
    from raftkit.storage.auto_capture import AutoCapture
    from raftkit.storage.fork_snapshotter import ForkCapture, ForkSnapshotter, fork_available

    fork_safe = state_machine.fork_safe
    if isinstance(snapshotter, ForkSnapshotter) and mode != "inline":
        if not fork_safe:
            raise ValueError(
                f"ForkSnapshotter needs a fork_safe state machine; {type(state_machine).__name__} is not "
                "(it holds files, sockets or locks): use a plain snapshotter (captured in a thread)"
            )
        return ForkCapture(thread_name)
    if mode == "fork":
        if not fork_available():
            raise ValueError("snapshot_mode='fork' needs os.fork(), which this platform lacks (POSIX only)")
        if not fork_safe:
            raise ValueError(
                f"snapshot_mode='fork' needs a fork_safe state machine; {type(state_machine).__name__} is not"
            )
        return ForkCapture(thread_name)
    if mode == "inline":
        return InlineCapture()
    if mode == "thread" or not (fork_safe and fork_available()):
        return ThreadCapture(thread_name)
    return AutoCapture(thread_name)  # auto: fork or thread, whichever measured less


@dataclass
class Recovery:
    """What ``recover`` found and did (reported in ``Node.status()``)."""

    snapshot: SnapshotMeta | None  # newest usable snapshot (the core sends it to lagging followers)
    applied: int  # the state machine holds everything up to here
    applied_term: int
    restored: bool  # the state machine was restored from ``snapshot``
    log_first: int
    log_last: int
    commit: int
    skipped: list[str] = field(default_factory=list)  # snapshots that could not be restored

    def describe(self) -> dict[str, Any]:
        return {
            "snapshot_index": self.snapshot.index if self.snapshot else 0,
            "restored": self.restored,
            "applied": self.applied,
            "log_first_index": self.log_first,
            "log_last_index": self.log_last,
            "commit_index": self.commit,
            "replay": max(0, self.commit - self.applied),
            "skipped_snapshots": list(self.skipped),
        }


class _CountingSink(SnapshotSink):
    """Counts what a capture writes (for logs and status)."""

    def __init__(self, inner: SnapshotSink) -> None:
        self._inner = inner
        self.bytes = 0

    @property
    def meta(self) -> SnapshotMeta:
        return self._inner.meta

    def write(self, data: bytes) -> None:
        self._inner.write(data)
        self.bytes += len(data)

    def commit(self) -> SnapshotMeta:
        return self._inner.commit()

    def abort(self) -> None:
        self._inner.abort()


@dataclass
class _Capture:
    """The capture in flight."""

    meta: SnapshotMeta
    sink: _CountingSink
    reason: str
    started: float
    job: CaptureJob | None = None
    timer: asyncio.TimerHandle | None = None


class _Report:
    """The capture's report, routed onto the node's loop; stale reports
    (from a capture the pipeline gave up on) are ignored there."""

    def __init__(self, pipeline: SnapshotPipeline, capture: _Capture) -> None:
        self._pipeline = pipeline
        self._capture = capture

    def view_fixed(self) -> None:
        self._pipeline._post(lambda: self._pipeline._view_fixed(self._capture))

    def finished(self, error: BaseException | None) -> None:
        self._pipeline._post(lambda: self._pipeline._finished(self._capture, error))


class SnapshotPipeline:
    """Snapshots of one node (see the module docstring). Loop thread only,
    except ``status``."""

    def __init__(
        self,
        node_id: NodeId,
        state_machine: StateMachine,
        snapshotter: Snapshotter,
        log_store: LogStore,
        config: NodeConfig,
        capture: SnapshotCapture,
        *,
        position: Callable[[], Position],
        post: Callable[[Callable[[], None]], None],
        call_later: Callable[[float, Callable[[], None]], asyncio.TimerHandle],
        created: Callable[[SnapshotMeta], None],
        resumed: Callable[[], None],
        rng: random.Random | None = None,
        install_pending: Callable[[], bool] = lambda: False,
    ) -> None:
        """``rng``: draws the spread of the byte trigger (the node's, seeded in the simulator);
        ``install_pending``: a snapshot from the leader waits to replace the state (no capture then)."""
        self.id = node_id
        self.state_machine = state_machine
        self.snapshotter = snapshotter
        self.log_store = log_store
        self.config = config
        self.capture = capture
        self._position = position
        self._post = post
        self._call_later = call_later
        self._created = created
        self._resumed = resumed
        self._install_pending = install_pending
        self.policy = CompactionPolicy.from_config(config, now=time.monotonic(), rng=rng)
        self._applied_bytes = 0
        self._current: _Capture | None = None
        self._holding = False
        self._waiters: list[tuple[int, concurrent.futures.Future[SnapshotMeta | None]]] = []
        self._close_error: BaseException | None = None  # set by close(); what later requests get
        self._compaction: tuple[SnapshotMeta, int] | None = None  # (snapshot, log index) in progress
        self.taken = 0
        self.last: dict[str, Any] | None = None  # the last capture: index, seconds, bytes, reason
        self.last_error: str | None = None

    # -- start-up --------------------------------------------------------------------

    def recover(self) -> Recovery:
        """Rebuild the state machine from storage (see the module docstring)."""
        sm, store = self.state_machine, self.log_store
        held = sm.applied_index
        candidates = self.snapshotter.list()
        boundary = store.first_index() - 1
        chosen: SnapshotMeta | None = None
        restored = False
        skipped: list[str] = []
        for meta in candidates:
            if held >= meta.index:
                chosen = meta  # a durable state machine already holds it: no restore, no replay
                break
            if meta.index < boundary:  # the log lost the entries after it: useless, do not load it
                skipped.append(f"{meta.index}: older than the log, which starts at {boundary + 1}")
                continue
            try:
                self._restore_stored(meta)
            except SnapshotError as exc:
                log.warning("%s: cannot restore snapshot %d (%s); trying older", self.id, meta.index, exc)
                skipped.append(f"{meta.index}: {exc}")
                continue
            chosen, restored = meta, True
            break
        applied = max(held, chosen.index if chosen else 0)
        if chosen is not None:
            self._align_log(chosen)
        first, last = store.first_index(), store.last_index()
        if applied < first - 1:
            raise RecoveryError(self._gap_message(first, applied, candidates, skipped))
        if chosen is None and candidates and last < candidates[0].index:
            raise RecoveryError(
                f"{self.id}: snapshots up to index {candidates[0].index} existed but none could be "
                f"restored ({'; '.join(skipped) or 'all damaged'}) and the log only reaches index {last}, so "
                "the state cannot be rebuilt. Restore the snapshot directory from a backup, or move this "
                "node's data aside and let it rejoin as a new member (the leader then sends it a snapshot)"
            )
        if chosen is not None and applied == chosen.index:
            term = chosen.term
        elif first - 1 <= applied <= last:
            term = store.term(applied)
        else:
            term = 0
        if chosen is not None:
            self.policy.last_index = chosen.index
        recovery = Recovery(chosen, applied, term, restored, first, last, store.hard_state().commit, skipped)
        if chosen is not None or last >= first:
            how = "restored" if restored else "already held by the state machine"
            log.info(
                "%s: recovered: snapshot %d (%s), applied %d; replaying log entries %d..%d",
                self.id, recovery.snapshot.index if recovery.snapshot else 0, how if chosen else "none",
                applied, applied + 1, max(applied, recovery.commit),
            )
        return recovery

    def _align_log(self, snap: SnapshotMeta) -> None:
        """Make the log continue from ``snap``: a log that stops before it
        (the node died between installing a snapshot and resetting its log)
        or disagrees at its index (an uncommitted branch) restarts there."""
        store = self.log_store
        if snap.index > store.last_index():
            store.reset(snap.index, snap.term)
            return
        try:
            term = store.term(snap.index)
        except (LogCompactedError, LogUnavailableError):
            return  # compacted past it: recover() decides whether that is a gap
        if term != snap.term:
            store.reset(snap.index, snap.term)

    def _gap_message(
        self, first: int, applied: int, candidates: list[SnapshotMeta], skipped: list[str]
    ) -> str:
        inner = getattr(self.snapshotter, "inner", self.snapshotter)  # a ForkSnapshotter's storage
        where = getattr(inner, "directory", None) or type(inner).__name__
        if skipped:
            why = f"the snapshots that cover them could not be restored ({'; '.join(skipped)})"
        elif candidates:
            why = f"the newest snapshot ({candidates[0].index}) is older than that"
        else:
            why = f"no snapshot was found in {where} (look for *.corrupt files there)"
        return (
            f"{self.id}: cannot start: the log starts at index {first} (entries up to {first - 1} were "
            f"compacted into snapshots) but the state machine holds only up to {applied}, and {why}. "
            "Restore the snapshot directory from a backup, or move this node's data directory aside and "
            "let it rejoin as a new member so that the leader sends it a snapshot"
        )

    # -- applying -----------------------------------------------------------------------

    @property
    def holds_applies(self) -> bool:
        """True while a capture reads the live state: do not apply entries."""
        return self._holding

    @property
    def reads_live_state(self) -> bool:
        """True while a capture in this process may read the state machine
        (installing a received snapshot must wait)."""
        return self._current is not None and self.capture.reads_live_state

    @property
    def busy(self) -> bool:
        return self._current is not None

    def note_applied(self, size: int) -> None:
        self._applied_bytes += size

    def _progress(self) -> Progress:
        return Progress(self._position()[0], self._applied_bytes, time.monotonic())

    # -- taking snapshots -------------------------------------------------------------------

    def maybe_take(self) -> None:
        """Start a capture if the policy says one is due (cheap otherwise)."""
        if self._current is not None or self._close_error is not None:
            return
        if self._waiters and self._compaction is None:
            # Requested while a snapshot from the leader waited to be installed
            # (callers of a capture whose log is still being compacted are
            # answered when that ends: _settle_waiters).
            self._start("requested")
            return
        reason = self.policy.due(self._progress())
        if reason is not None:
            self._start(reason)

    def request(self) -> concurrent.futures.Future[SnapshotMeta | None]:
        """Snapshot the applied state now (PySyncObj's forceLogCompaction);
        the future gets the snapshot's metadata once it is durable and the
        log compacted (None when nothing was applied since the last one)."""
        fut: concurrent.futures.Future[SnapshotMeta | None] = concurrent.futures.Future()
        if self._close_error is not None:  # queued on the loop just before the node closed
            fut.set_exception(self._close_error)
            return fut
        applied = self._position()[0]
        if applied <= self.policy.last_index and self._current is None:
            fut.set_result(self.snapshotter.latest())
            return fut
        self._waiters.append((applied, fut))
        if self._current is None:
            self._start("requested")
        return fut

    def _start(self, reason: str) -> None:
        if self._install_pending():
            # A thread capture would read the state while the install replaces it
            # (a fork would not, but the snapshot would be stale at once): after it.
            return
        applied, term, conf = self._position()
        if applied <= 0 or term <= 0:
            # Nothing applied, or a durable state machine ahead of the log
            # whose last term is unknown until the next entry is applied.
            self._settle_waiters(self.snapshotter.latest(), None)
            return
        meta = SnapshotMeta(applied, term, conf)
        progress = self._progress()
        try:
            sink = _CountingSink(self.snapshotter.create(meta))
        except Exception as exc:
            self._failed(meta, exc, progress)
            return
        capture = _Capture(meta, sink, reason, time.monotonic())
        self._current = capture
        self.policy.started(progress)
        try:
            capture.job = self.capture.start(self.state_machine, sink, _Report(self, capture))
        except Exception as exc:
            sink.abort()
            self._current, self._holding = None, False
            self._failed(meta, exc, progress)
            return
        # Set after ``start`` (an auto capture chooses there), before any
        # apply: its report reaches this loop only after this returns.
        self._holding = self.capture.holds_applies
        timeout = self.config.snapshot_timeout
        job = capture.job
        capture.timer = self._call_later(
            timeout, lambda: job.cancel(f"it took longer than snapshot_timeout={timeout:g}s")
        )
        log.debug("%s: snapshot at %d started (%s, %s)", self.id, applied, self.capture.name, reason)

    def _view_fixed(self, capture: _Capture) -> None:
        if capture is self._current and self._holding:
            self._holding = False
            self._resumed()

    def _finished(self, capture: _Capture, error: BaseException | None) -> None:
        if capture is not self._current:
            return
        self._current = None
        if capture.timer is not None:
            capture.timer.cancel()
        if self._holding:
            self._holding = False
            self._resumed()
        if self._close_error is not None:
            return
        if error is not None:
            self._failed(capture.meta, error, self._progress())
            return
        meta = capture.meta
        self.policy.succeeded(meta.index, capture.sink.bytes)
        self.taken += 1
        self.last_error = None
        seconds = time.monotonic() - capture.started
        self.last = {"index": meta.index, "seconds": round(seconds, 3), "bytes": capture.sink.bytes,
                     "reason": capture.reason, "mode": self.capture.name}
        self._created(meta)  # lagging followers get this one from now on
        target = max(self.policy.compact_to(meta.index), self.log_store.first_index() - 1)
        log.info(
            "%s: snapshot at %d (term %d, %d bytes, %s, %.2fs: %s); compacting the log up to %d",
            self.id, meta.index, meta.term, capture.sink.bytes, self.capture.name, seconds, capture.reason,
            target,
        )
        self._compaction = (meta, target)
        self._compact_step()

    def _compact_step(self) -> None:
        """Drop the log up to ``keep`` entries behind the snapshot, at most
        ``_COMPACT_STEP`` entries per loop iteration (deleting 100,000 LMDB
        entries at once holds the loop for tens of milliseconds). A failure
        only means the log stays longer (logged), never a lost snapshot.
        Callers waiting for the snapshot are answered once it is done."""
        if self._compaction is None or self._close_error is not None:
            return
        meta, target = self._compaction
        store = self.log_store
        boundary = store.first_index() - 1
        upto = min(target, boundary + _COMPACT_STEP, store.last_index())
        if upto > boundary:
            try:
                store.compact(upto)
            except Exception as exc:
                log.warning("%s: compacting the log up to %d failed: %s", self.id, upto, exc)
                upto = target
        if upto < target:
            self._post(self._compact_step)
            return
        self._compaction = None
        self._settle_waiters(meta, None)

    def _failed(self, meta: SnapshotMeta, error: BaseException, progress: Progress) -> None:
        backoff = self.policy.failed(progress)
        self.last_error = f"{type(error).__name__}: {error}"
        log.error(
            "%s: snapshot at %d failed (%s); retrying after %d more entries and %.1fs",
            self.id, meta.index, self.last_error, self.policy.min_entries, backoff,
        )
        self._settle_waiters(None, error)

    def _settle_waiters(self, meta: SnapshotMeta | None, error: BaseException | None) -> None:
        waiters, self._waiters = self._waiters, []
        later = []
        for target, fut in waiters:
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
            elif meta is None or meta.index >= target:
                fut.set_result(meta)
            else:
                later.append((target, fut))
        self._waiters = later
        if later and self._current is None and self._close_error is None:
            self._start("requested")

    # -- installing ---------------------------------------------------------------------------

    def restore(self, meta: SnapshotMeta) -> None:
        """Replace the state with the stored snapshot at ``meta.index``
        (received from the leader), streamed in chunks."""
        self._restore_stored(meta)
        self.policy.installed(meta.index, self._progress())

    def _restore_stored(self, meta: SnapshotMeta) -> None:
        with self.snapshotter.open(meta.index) as source:
            self.state_machine.restore_from(source.chunks(self.config.snapshot_chunk_size))

    # -- shutdown and status ------------------------------------------------------------------

    def close(self, error: BaseException, timeout: float = 5.0) -> None:
        """Cancel the capture in flight (killing a fork child) and fail the
        callers waiting for a snapshot with ``error``."""
        self._close_error = error
        capture, self._current = self._current, None
        self._holding = False
        if capture is not None and capture.job is not None:
            if capture.timer is not None:
                capture.timer.cancel()
            capture.job.cancel()
            capture.job.join(timeout)
        waiters, self._waiters = self._waiters, []
        for _, fut in waiters:
            if not fut.done():
                fut.set_exception(error)

    def status(self) -> dict[str, Any]:
        current = self._current
        return {
            "mode": self.capture.name,
            "measured": self.capture.measurements(),  # what "auto" chooses by
            "index": self.policy.last_index,
            "in_progress": current.meta.index if current is not None else None,
            "taken": self.taken,
            "last": dict(self.last) if self.last else None,
            "error": self.last_error,
        }
