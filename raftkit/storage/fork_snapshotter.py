"""Fork snapshots: a copy-on-write child serializes the state, the parent
keeps applying and serving.

``os.fork()`` gives the child an instant, consistent image of the parent's
memory at no copying cost (pages are shared until one side writes them).
The child calls the state machine's ``write_snapshot`` into a pipe and
leaves with ``os._exit``; a thread in the parent reads the pipe into the
wrapped snapshotter's sink (a file for ``FileSnapshotter``, bytes for
``MemorySnapshotter``), reaps the child, and commits. Only then does the
node, back on its loop, compact the log.

Why the parent, not the child, writes the sink: the sink's bookkeeping
(checksum, header, fsync, atomic rename, retention, the snapshotter's index
of what exists) lives in the parent's objects and under the parent's locks.
A child must not touch locks: only the thread that called ``fork()``
survives in the child, so a lock another thread held at that moment stays
locked there forever. The child therefore does nothing but serialize: it
first closes every inherited descriptor (sockets, LMDB environments,
directory locks; ``LmdbLogStore`` refuses use from a forked child anyway),
points stdin/stdout at ``/dev/null`` and keeps only the pipe and stderr.

Trade-offs (see docs/storage.md):

* POSIX only. Building a ``ForkSnapshotter`` where ``os.fork`` is missing
  raises ``SnapshotError`` saying so; ``snapshot_mode="auto"`` then uses a
  worker thread instead.
* Memory: every page the parent writes while the child runs is copied, so
  under heavy writes memory use can approach twice the state's size; the
  kernel must also allow the fork (``vm.overcommit_memory=2`` can refuse it).
* Threads: the child has one thread. A state machine whose
  ``write_snapshot`` takes a lock, or needs a file or socket, must declare
  ``fork_safe = False`` (it is then captured in a thread). A child that
  hangs anyway (a lock taken inside a library) is killed after the node's
  ``snapshot_timeout``.
* The child serializes at a lower priority (``CHILD_NICENESS``): it yields
  the CPU to the nodes, and takes longer on a machine with no idle CPU.
* The serialized bytes cross a pipe (a memory copy) rather than being
  written by the child directly: cheap next to serializing them, and it is
  what keeps the child free of the sink's locks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import struct
import threading
import time
import warnings
from collections.abc import Iterable
from types import ModuleType

from raftkit.core.types import SnapshotMeta
from raftkit.errors import SnapshotError
from raftkit.state_machines.base import StateMachine
from raftkit.storage.capture import (
    CaptureCancelledError,
    CaptureJob,
    CaptureReport,
    SnapshotCapture,
)
from raftkit.storage.memory_snapshotter import MemorySnapshotter
from raftkit.storage.snapshotter import SnapshotSink, SnapshotSource, Snapshotter

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: fork is missing too
    fcntl = None

__all__ = ["ForkCapture", "ForkSnapshotter", "fork_available"]

log = logging.getLogger(__name__)

CHILD_NICENESS = 10
"""Added to the child's nice value: the serializing child yields the CPU
to the node processes' loops. On the 2-core benchmark machine (3 nodes,
20 KB values, half of capacity) a capture's child competing at the same
priority set the p99: 30.2-83.2 ms against 20.9-52.5 with it (8 pairs;
5.2-6.3 without any snapshot; docs/benchmarks.md, session 37)."""

_PIPE_CHUNK = 1 << 20
_ERROR_LIMIT = 8192  # bytes of the child's error message passed back
_OK = b"\x00ok"  # the child's last word on success: all bytes were written...
_SECONDS = struct.Struct(">d")  # ...then how long its write_snapshot took, but for writing the pipe


def fork_available() -> bool:
    """Whether this platform can fork (POSIX)."""
    return hasattr(os, "fork")


def require_fork() -> None:
    if not fork_available():
        raise SnapshotError(
            "fork snapshots need os.fork(), which this platform lacks (it is POSIX only): use "
            "snapshot_mode='thread' (or 'auto', which picks it), or a plain snapshotter"
        )


class ForkSnapshotter(Snapshotter):
    """A snapshotter that captures by forking, storing into ``inner``.

    Storage (``create``, ``open``, ``install``, retention...) is ``inner``'s
    (a ``MemorySnapshotter`` by default); what this class adds is the
    capture strategy the node uses to take snapshots, ``capture``. Give it
    to the builder to ask for fork snapshots explicitly::

        .snapshotter(ForkSnapshotter(FileSnapshotter("/var/lib/app/snapshots")))

    The state machine must be ``fork_safe`` (the builder checks).
    """

    def __init__(self, inner: Snapshotter | None = None) -> None:
        require_fork()
        if isinstance(inner, ForkSnapshotter):
            inner = inner.inner
        self.inner: Snapshotter = inner if inner is not None else MemorySnapshotter()
        self.capture = ForkCapture()

    def create(self, meta: SnapshotMeta) -> SnapshotSink:
        return self.inner.create(meta)

    def latest(self) -> SnapshotMeta | None:
        return self.inner.latest()

    def open(self, index: int | None = None) -> SnapshotSource:
        return self.inner.open(index)

    def list(self) -> list[SnapshotMeta]:
        return self.inner.list()

    def prune(self, keep: int) -> None:
        self.inner.prune(keep)

    def install(self, meta: SnapshotMeta, chunks: Iterable[bytes]) -> SnapshotMeta:
        return self.inner.install(meta, chunks)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"ForkSnapshotter({self.inner!r})"


class ForkCapture(SnapshotCapture):
    """Capture by ``os.fork()``: see the module docstring."""

    name = "fork"

    def __init__(self, thread_name: str = "raftkit-snapshot") -> None:
        require_fork()
        self._thread_name = thread_name

    def start(self, state_machine: StateMachine, sink: SnapshotSink, report: CaptureReport) -> CaptureJob:
        if not state_machine.fork_safe:
            raise SnapshotError(
                f"{type(state_machine).__name__} is not fork_safe: it cannot be captured in a forked child"
            )
        r, w = os.pipe()
        try:
            er, ew = os.pipe()
        except BaseException:  # EMFILE: an auto capture goes on in a thread, without these two
            os.close(r)
            os.close(w)
            raise
        _widen(r)
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns about fork() in a threaded process; the
                # child here runs no code that needs another thread or a lock.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except BaseException:
            for fd in (r, w, er, ew):
                os.close(fd)
            raise
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            _child(state_machine, r, w, er, ew)
        os.close(w)
        os.close(ew)
        report.view_fixed()  # the fork was the instant of the capture
        job = _ForkJob(pid, r, er, sink, report)
        job.thread = threading.Thread(target=job.pump, name=self._thread_name, daemon=True)
        job.thread.start()
        return job


def _widen(fd: int) -> None:
    """Ask for a pipe as large as a read (Linux: up to
    /proc/sys/fs/pipe-max-size, 1 MiB by default), so the pump thread takes
    the GIL once a megabyte rather than once per 64 KiB; the default size
    where that is refused or not supported."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if fcntl is not None and set_size is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, set_size, _PIPE_CHUNK)


def _child(state_machine: StateMachine, r: int, w: int, er: int, ew: int) -> None:  # pragma: no cover
    """The forked child: serialize into the pipe, report an error, leave."""
    code = 1
    try:
        try:
            w, ew = _above_stdio(w), _above_stdio(ew)
            _detach(keep=(w, ew))
            with contextlib.suppress(OSError):
                os.nice(CHILD_NICENESS)  # lower priority: never needs a privilege
            writer, started, queued = _PipeWriter(w), time.monotonic(), _cpu_wait()
            state_machine.write_snapshot(writer)
            # Not the waits for the parent to drain the pipe (no thread
            # capture has those), nor for a CPU: at CHILD_NICENESS the child
            # waits while the nodes run, which a thread capture would not.
            took = max(0.0, time.monotonic() - started - writer.writing - (_cpu_wait() - queued))
            os.close(w)  # the parent sees EOF before the marker: the data is complete
            _write_all(ew, _OK + _SECONDS.pack(took))
            code = 0
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")[:_ERROR_LIMIT]
            with contextlib.suppress(OSError):
                _write_all(ew, message)
    finally:
        os._exit(code)


def _cpu_wait() -> float:
    """Seconds this process's (only) thread has waited for a CPU so far
    (Linux schedstat ``run_delay``); 0.0 where that is not available."""
    try:
        with open("/proc/self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _above_stdio(fd: int) -> int:  # pragma: no cover - child only
    """``fd``, or a copy of it at 3 or above: in a process started with stdin
    or stdout closed the pipes get those numbers, and ``_detach`` points 0
    and 1 at /dev/null (the child then wrote its snapshot there: an empty
    snapshot was committed as a success)."""
    if fd > 2:
        return fd
    assert fcntl is not None  # POSIX: it forked
    high: int = fcntl.fcntl(fd, fcntl.F_DUPFD, 3)
    os.close(fd)
    return high


def _detach(keep: tuple[int, ...]) -> None:  # pragma: no cover - child only
    """Close every inherited descriptor but ``keep`` and stderr, so the child
    holds no socket (a restarted node can bind its port at once), no LMDB
    environment and no lock file; stdin/stdout become /dev/null (the
    parent's may be a pipe someone waits on)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _max_fd())


def _max_fd() -> int:  # pragma: no cover - child only
    try:
        value = os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        value = 65536
    return value if value > 0 else 65536


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class _PipeWriter:
    """What the child's ``write_snapshot`` writes into."""

    # The child's copy of the state never changes while it is written: a state
    # machine may stream it straight from its live structures (SnapshotWriter).
    frozen_state = True

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.writing = 0.0  # seconds inside write (most of it waiting for the parent to read)

    def write(self, data: bytes) -> None:  # pragma: no cover - child only
        started = time.monotonic()
        _write_all(self._fd, data)
        self.writing += time.monotonic() - started


class _ForkJob(CaptureJob):
    """The parent's side of one fork capture: a thread pumps the pipe into
    the sink, reaps the child and reports."""

    thread: threading.Thread

    def __init__(self, pid: int, r: int, er: int, sink: SnapshotSink, report: CaptureReport) -> None:
        self.pid = pid
        self._r = r
        self._er = er
        self._sink = sink
        self._report = report
        self._lock = threading.Lock()
        self._exited = False  # the child is a zombie (or gone): never signal its pid again
        self._cancelled: str | None = None

    def cancel(self, reason: str = "the node is stopping") -> None:
        self._cancelled = reason
        self._kill()

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def _kill(self) -> None:
        with self._lock:
            if not self._exited:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)

    def pump(self) -> None:
        error: BaseException | None = None
        try:
            try:
                while True:
                    data = os.read(self._r, _PIPE_CHUNK)  # blocks without holding the GIL
                    if not data:
                        break
                    if self._cancelled is None:
                        self._sink.write(data)
            except BaseException as exc:  # the sink failed (disk full...): stop the child
                error = exc
                self._kill()
            finally:
                os.close(self._r)
            said = self._read_error()
            status = self._reap()
            if error is None and self._cancelled is not None:
                error = CaptureCancelledError(f"the snapshot was cancelled: {self._cancelled}")
            elif error is None and (status != 0 or not _succeeded(said)):
                error = SnapshotError(_describe(self.pid, status, said))
            if error is None:
                self.serialize_seconds = _SECONDS.unpack_from(said, len(_OK))[0]
                self._sink.commit()  # fsync and rename, off the loop
        except BaseException as exc:
            error = error or exc
        if error is not None:
            self._sink.abort()
        self._report.finished(error)

    def _read_error(self) -> bytes:
        """The child's last word: ``_OK``, an error message, or nothing
        (it died without a word)."""
        chunks = []
        try:
            while chunk := os.read(self._er, _ERROR_LIMIT):
                chunks.append(chunk)
        finally:
            os.close(self._er)
        return b"".join(chunks)

    def _reap(self) -> int:
        """Wait for the child without reaping it first (so ``_kill`` can
        never hit a recycled pid), mark it exited, then reap it."""
        if hasattr(os, "waitid"):
            while True:
                try:
                    os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
                    break
                except ChildProcessError:
                    break
                except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                    continue
        with self._lock:
            self._exited = True
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:  # somebody else reaped it (a SIGCHLD handler):
                return 0  # then the child's own "ok" marker decides
        return os.waitstatus_to_exitcode(status)


def _succeeded(said: bytes) -> bool:
    return len(said) == len(_OK) + _SECONDS.size and said.startswith(_OK)


def _describe(pid: int, code: int, said: bytes) -> str:
    child_error = "" if _succeeded(said) else said.decode("utf-8", "replace").strip()
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        how = f"was killed by {name}"
    elif code == 0:
        how = "ended without finishing the snapshot"
    else:
        how = f"exited with status {code}"
    detail = f": {child_error}" if child_error else ""
    return f"the snapshot child process {pid} {how}{detail}"
