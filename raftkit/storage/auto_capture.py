"""``snapshot_mode="auto"``: fork or thread, whichever held the loop less.

Both captures stall the node, in different ways:

* a fork stops the process while the kernel copies its page tables, which
  grows with the process's memory, not with the state (4 to 20 ms for a
  190 MB node at 100,000 commands/s here), and every page the process
  writes afterwards faults once more;
* a thread capture holds the applies, and for a state serialized in
  Python the GIL, while the state machine builds its view: under a
  millisecond for 3 MB of strings, 25 to 75 ms for 4 MB of small dicts
  (msgpack and pickle here, docs/benchmarks.md).

Neither cost is known before trying, so the first capture forks and each
later one takes whichever measured less: the loop's time inside the last
fork, against the last measure of serializing the state in this process
(the last successful thread capture's hold, or, until one ran, how long
the forked child's ``write_snapshot`` took but for its writes into the
pipe: its other waits count, since a thread capture holds the applies
through them). Once a thread capture held longer than a fork, the node
forks until a fork stalls longer than that hold. The child's time is a
stand-in: a child may stream the state (``SnapshotWriter.frozen_state``)
where a thread builds it whole, and it does not wait for the GIL. A fork
the kernel refuses (strict overcommit, a process limit) is replaced by a
thread capture at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from raftkit.state_machines.base import StateMachine
from raftkit.storage.capture import CaptureJob, CaptureReport, SnapshotCapture, ThreadCapture
from raftkit.storage.fork_snapshotter import ForkCapture
from raftkit.storage.snapshotter import SnapshotSink

__all__ = ["AutoCapture"]

log = logging.getLogger(__name__)


class AutoCapture(SnapshotCapture):
    """Chooses a ``ForkCapture`` or a ``ThreadCapture`` per snapshot (see the module docstring)."""

    name = "fork"  # the capture started last (the first one forks)

    def __init__(self, thread_name: str = "raftkit-snapshot",
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.fork = ForkCapture(thread_name)
        self.thread = ThreadCapture(thread_name)
        self._clock = clock
        self.fork_stall: float | None = None
        """Seconds the loop spent in the last ``fork``."""
        self.thread_hold: float | None = None
        """The last successful thread capture's hold (written on its thread)."""
        self._last_fork: tuple[CaptureJob, _Outcome] | None = None

    @property
    def serialize_stall(self) -> float | None:
        """Seconds serializing the state is expected to hold this process: the
        last thread capture's hold or, until one succeeded, how long the last
        forked child's ``write_snapshot`` took (once that fork succeeded)."""
        if self.thread_hold is not None or self._last_fork is None:
            return self.thread_hold
        job, outcome = self._last_fork
        return job.serialize_seconds if outcome.done and outcome.ok else None

    def measurements(self) -> dict[str, float | None]:
        """What the next choice compares (any thread: reads only)."""
        return {"fork_s": self.fork_stall, "serialize_s": self.serialize_stall}

    def choice(self) -> SnapshotCapture:
        """The capture ``start`` would use now."""
        fork, serialize = self.fork_stall, self.serialize_stall
        if fork is not None and serialize is not None and serialize < fork:
            return self.thread
        return self.fork

    def start(self, state_machine: StateMachine, sink: SnapshotSink, report: CaptureReport) -> CaptureJob:
        if self.choice() is self.fork:
            started = self._clock()
            outcome = _Outcome(report)
            try:
                job = self.fork.start(state_machine, sink, outcome)
            except OSError as exc:  # ENOMEM, EAGAIN: nothing was started; the thread can still capture
                log.warning("fork refused (%s): capturing this snapshot in a thread instead", exc)
            else:
                self.fork_stall = self._clock() - started
                self._last_fork = (job, outcome)
                self._chose(self.fork)
                return job
        self._chose(self.thread)
        started = self._clock()
        return self.thread.start(state_machine, sink, _TimedHold(self, report, self._clock, started))

    def _chose(self, capture: SnapshotCapture) -> None:
        self.name, self.holds_applies, self.reads_live_state = (
            capture.name, capture.holds_applies, capture.reads_live_state)


class _Outcome:
    """Passes a fork capture's report on, noting how it ended."""

    def __init__(self, report: CaptureReport) -> None:
        self._report = report
        self.done = False
        self.ok = False

    def view_fixed(self) -> None:
        self._report.view_fixed()

    def finished(self, error: BaseException | None) -> None:
        self.ok, self.done = error is None, True  # before the node hears of it (and starts the next)
        self._report.finished(error)


class _TimedHold:
    """Passes a thread capture's report on, timing its hold: from ``start``
    to the view being fixed (called on the capture's thread); kept once the
    capture succeeded (a failing one may fix its view at once)."""

    def __init__(self, auto: AutoCapture, report: CaptureReport, clock: Callable[[], float],
                 started: float) -> None:
        self._auto = auto
        self._report = report
        self._clock = clock
        self._started = started
        self._hold: float | None = None

    def view_fixed(self) -> None:
        if self._hold is None:
            self._hold = self._clock() - self._started
        self._report.view_fixed()

    def finished(self, error: BaseException | None) -> None:
        if error is None and self._hold is not None:  # before the node hears of it (and starts the next)
            self._auto.thread_hold = self._hold
        self._report.finished(error)
