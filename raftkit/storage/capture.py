"""How a snapshot's bytes are produced from the state machine: a strategy.

A snapshot must show the state machine exactly as it was after applying
entry ``meta.index``, yet serializing a large state takes long enough to
starve the event loop (missed heartbeats become elections: PySyncObj blocks
1-2 s per 20 MiB). Three strategies, one contract:

* ``InlineCapture``: ``write_snapshot`` runs on the loop. Deterministic and
  simple; for tests, the simulator and tiny states only.
* ``ThreadCapture``: ``write_snapshot`` runs in a worker thread. The node
  holds back applying entries until the state machine has fixed its view
  (reported at the first ``write``, or when it returns), then applies on
  while the thread streams. For state machines that stream a consistent
  view they opened first (an LMDB read transaction), and for in-memory ones
  whose ``write_snapshot`` builds all bytes before writing (the default).
* ``ForkCapture`` (``raftkit.storage.fork_snapshotter``): a forked child
  serializes the copy-on-write image; the parent stops only for the fork.
* ``AutoCapture`` (``raftkit.storage.auto_capture``, ``snapshot_mode="auto"``):
  fork or thread per snapshot, whichever held the loop less when last measured.

Every strategy writes into a ``SnapshotSink`` and commits it (or aborts it)
itself, off the loop where it can, then reports through a
``CaptureReport`` exactly once. Reports may come from any thread; the node
routes them back onto its loop.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import Protocol

from raftkit.errors import SnapshotError
from raftkit.state_machines.base import StateMachine
from raftkit.storage.snapshotter import SnapshotSink

__all__ = [
    "CaptureCancelledError",
    "CaptureJob",
    "CaptureReport",
    "InlineCapture",
    "SnapshotCapture",
    "ThreadCapture",
]

log = logging.getLogger(__name__)


class CaptureCancelledError(SnapshotError):
    """The capture was cancelled (the node is stopping)."""


class CaptureReport(Protocol):
    """Where a capture reports; the calls may come from any thread."""

    def view_fixed(self) -> None:
        """The state machine's view is captured: it may change again."""

    def finished(self, error: BaseException | None) -> None:
        """The sink was committed (``error`` None) or aborted. Called once."""


class CaptureJob(ABC):
    """A capture in progress."""

    serialize_seconds: float | None = None
    """Seconds the state machine's ``write_snapshot`` took in another
    process (a fork child), but for its writes (waits for the parent to read
    them), once it succeeded; None for captures in this one."""

    @abstractmethod
    def cancel(self, reason: str = "the node is stopping") -> None:
        """Stop as soon as possible (the sink is aborted); it still reports,
        with a ``CaptureCancelledError`` carrying ``reason``."""

    @abstractmethod
    def join(self, timeout: float | None = None) -> None:
        """Wait for the capture's worker (thread, child) to end."""


class SnapshotCapture(ABC):
    """A strategy for capturing a state machine into a sink."""

    # Read by the node once ``start`` has returned, for the capture it
    # started (a strategy that chooses per capture sets them in ``start``).
    name: str = "capture"
    holds_applies: bool = False
    """True when the node must not apply entries from ``start`` until the
    report's ``view_fixed``: the capture reads the live state machine."""
    reads_live_state: bool = False
    """True when the capture reads the state machine in this process while
    it runs: installing a received snapshot must wait until it is over."""

    @abstractmethod
    def start(self, state_machine: StateMachine, sink: SnapshotSink, report: CaptureReport) -> CaptureJob:
        """Begin capturing; called on the node's loop between applies."""

    def measurements(self) -> dict[str, float | None]:
        """What the strategy measured to choose its captures (for status); none by default."""
        return {}


class _Done(CaptureJob):
    def cancel(self, reason: str = "the node is stopping") -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass


class InlineCapture(SnapshotCapture):
    """``write_snapshot`` and ``commit`` on the caller's thread (the loop)."""

    name = "inline"

    def start(self, state_machine: StateMachine, sink: SnapshotSink, report: CaptureReport) -> CaptureJob:
        try:
            state_machine.write_snapshot(sink)
            sink.commit()
        except Exception as exc:
            sink.abort()
            report.finished(exc)
        else:
            report.finished(None)
        return _Done()


class _CancellableWriter:
    """The sink as the state machine sees it in a worker: reports the view
    fixed at the first write and raises once the capture is cancelled."""

    def __init__(self, sink: SnapshotSink, report: CaptureReport) -> None:
        self._sink = sink
        self._report = report
        self.fixed = False
        self.cancelled: str | None = None  # the reason, once cancelled

    def fix(self) -> None:
        if not self.fixed:
            self.fixed = True
            self._report.view_fixed()

    def write(self, data: bytes) -> None:
        if self.cancelled is not None:
            raise CaptureCancelledError(f"the snapshot was cancelled: {self.cancelled}")
        self.fix()
        self._sink.write(data)


class _ThreadJob(CaptureJob):
    def __init__(self, thread: threading.Thread, writer: _CancellableWriter) -> None:
        self._thread = thread
        self._writer = writer

    def cancel(self, reason: str = "the node is stopping") -> None:
        self._writer.cancelled = reason

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


class ThreadCapture(SnapshotCapture):
    """``write_snapshot`` in a worker thread; applies wait for its view.

    Contract for the state machine: capture a consistent view *before* the
    first ``write`` (open a read transaction, or build the bytes), because
    the node resumes applying entries as soon as that write happens. The
    default ``write_snapshot`` (``out.write(self.snapshot())``) qualifies.
    """

    name = "thread"
    holds_applies = True
    reads_live_state = True

    def __init__(self, thread_name: str = "raftkit-snapshot") -> None:
        self._thread_name = thread_name

    def start(self, state_machine: StateMachine, sink: SnapshotSink, report: CaptureReport) -> CaptureJob:
        writer = _CancellableWriter(sink, report)

        def run() -> None:
            try:
                state_machine.write_snapshot(writer)
                writer.fix()  # a state machine that wrote nothing has a view too
                if writer.cancelled is not None:
                    raise CaptureCancelledError(f"the snapshot was cancelled: {writer.cancelled}")
                sink.commit()  # fsync and rename happen here, off the loop
            except BaseException as exc:
                sink.abort()
                writer.fix()
                report.finished(exc)
            else:
                report.finished(None)

        thread = threading.Thread(target=run, name=self._thread_name, daemon=True)
        thread.start()
        return _ThreadJob(thread, writer)
