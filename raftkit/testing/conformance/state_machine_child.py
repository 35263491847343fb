"""Replicas of a state machine in child processes that differ from the
parent in what a deterministic ``apply`` must not depend on: the per-process
hash seed (``PYTHONHASHSEED``), the clocks and the ``random`` seed.

``StateMachineConformance.test_deterministic_across_processes`` uses it; it
is a module of its own so the child's side imports nothing of the suite
before its clocks are shifted. Each ``ChildReplica`` is one long-lived
``sys.executable`` process serving every Hypothesis example of one test
(starting a process per example would cost half a second each): the parent
sends a command sequence, the child runs it on a fresh replica built by the
same suite class and sends back what each command returned and the state
after it. Every wait is bounded by a timeout.

How the child builds the state machine: it imports the suite class by
reference (its module, found on the parent's ``sys.path`` or loaded from the
module's file, and its qualified name) and calls the same hooks. A class
defined inside a function cannot be found that way; set ``child_suite =
"module:QualName"`` on it to name an importable class with the same hooks.

Example (what the suite does)::

    from raftkit.testing.conformance.state_machine_child import (
        ChildReplica, ProcessVariant, suite_reference)

    ref = suite_reference(TestMyMachine)          # a module-level suite class
    with ChildReplica(ref, ProcessVariant(1, 86400.0, 1), tmp_path, timeout=60) as child:
        child.wait_ready()
        initial, steps = child.trace([b"cmd1", b"cmd2"])
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import importlib.util
import os
import pickle
import queue
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

__all__ = [
    "DEFAULT_VARIANTS",
    "ChildReplica",
    "ProcessVariant",
    "ReplicaProcessError",
    "child_main",
    "load_suite",
    "shift_clocks",
    "suite_reference",
]

_LEN = struct.Struct(">I")
_BOOT = (
    "import sys; sys.path[:0] = {path!r}; "
    "from raftkit.testing.conformance.state_machine_child import child_main; child_main()"
)


class ReplicaProcessError(RuntimeError):
    """A child replica could not be started, crashed or did not answer in
    time; the message includes the end of its stderr."""


@dataclass(frozen=True)
class ProcessVariant:
    """How one child process differs from the parent."""

    hash_seed: int
    """``PYTHONHASHSEED`` of the child: ``str``/``bytes`` hashes, hence set
    iteration order, differ from the parent's (random) seed."""
    clock_offset: float
    """Seconds added to every clock the child reads (``time.time``,
    ``monotonic``, ``perf_counter``, ``datetime.now``, ``date.today``...)."""
    random_seed: int
    """``random.seed`` before each sequence (Hypothesis seeds the parent's
    ``random`` with 0 for each example)."""

    def describe(self) -> str:
        days = self.clock_offset / 86400
        return (
            f"child process with PYTHONHASHSEED={self.hash_seed}, clocks shifted by "
            f"{self.clock_offset:+.3f}s ({days:+.1f} days), random.seed({self.random_seed})"
        )


# Far apart in time, in both directions, and not whole days, so dates,
# hours and "same second" all differ from the parent's.
DEFAULT_VARIANTS: tuple[ProcessVariant, ...] = (
    ProcessVariant(hash_seed=1, clock_offset=3 * 365.25 * 86400 + 12_345.678, random_seed=1),
    ProcessVariant(hash_seed=2, clock_offset=-400 * 86400 - 7_777.25, random_seed=2),
)


# -- finding the suite class in another process ----------------------------------------


def suite_reference(cls: Callable[..., Any], override: str | None = None) -> dict[str, Any]:
    """What a child needs to import ``cls`` (or the class ``override``
    names, ``"module:QualName"``); ReplicaProcessError if it cannot."""
    if override is not None:
        module_name, sep, qualname = override.partition(":")
        if not sep or not module_name or not qualname:
            raise ReplicaProcessError(f"child_suite must be 'module:QualName', got {override!r}")
        return {"module": module_name, "file": None, "qualname": qualname}
    qualname = cls.__qualname__
    if "<locals>" in qualname:
        raise ReplicaProcessError(
            f"{qualname} is defined inside a function, so a child process cannot import it to build "
            "the state machine: define the suite class at module level, or set child_suite = "
            "'module:QualName' to an importable class with the same hooks"
        )
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if cls.__module__ == "__main__" and file is None:
        raise ReplicaProcessError(
            f"{qualname} lives in an interactive __main__ with no file: a child process cannot import it"
        )
    return {"module": cls.__module__, "file": file, "qualname": qualname}


def load_suite(ref: dict[str, Any]) -> Any:
    """An instance of the suite class ``ref`` names (``suite_reference``)."""
    name, file = ref["module"], ref["file"]
    module = None
    if name != "__main__":
        try:
            module = importlib.import_module(name)
        except ImportError:
            if file is None:
                raise
    if module is None:
        # Not importable by name (a test module under importmode=importlib,
        # a script run as __main__): load it from its file instead.
        alias = name if name != "__main__" else "__raftkit_suite__"
        spec = importlib.util.spec_from_file_location(alias, file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load the suite's module from {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[alias] = module
        spec.loader.exec_module(module)
    obj: Any = module
    for part in ref["qualname"].split("."):
        obj = getattr(obj, part)
    return obj()


# -- the child's side ------------------------------------------------------------------


def shift_clocks(offset: float) -> None:
    """Make every clock of this process read ``offset`` seconds later.

    Patches the ``time`` functions and ``datetime.date`` / ``datetime.datetime``
    module attributes, so code imported afterwards (the state machine under
    test) sees shifted clocks whether it calls ``time.time()`` or did
    ``from datetime import datetime``. Names bound before (``from time
    import time`` in an already imported module) keep the real clock."""
    real = {name: getattr(time, name) for name in ("time", "monotonic", "perf_counter")}
    real_ns = {name: getattr(time, name + "_ns") for name in real}
    shift_ns = int(offset * 1e9)
    for name, func in real.items():
        setattr(time, name, lambda f=func: f() + offset)
        setattr(time, name + "_ns", lambda f=real_ns[name]: f() + shift_ns)
    for name in ("localtime", "gmtime", "ctime"):
        func = getattr(time, name)
        setattr(time, name, lambda secs=None, f=func: f(time.time() if secs is None else secs))
    real_strftime = time.strftime
    time.strftime = lambda fmt, t=None: real_strftime(fmt, time.localtime() if t is None else t)

    class _Date(datetime.date):
        @classmethod
        def today(cls) -> Any:
            return cls.fromtimestamp(time.time())

    class _DateTime(datetime.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return cls.fromtimestamp(time.time(), tz)

        @classmethod
        def today(cls) -> Any:
            return cls.fromtimestamp(time.time())

        @classmethod
        def utcnow(cls) -> Any:
            return cls.fromtimestamp(time.time(), datetime.timezone.utc).replace(tzinfo=None)

    datetime.date = _Date  # type: ignore[misc]
    datetime.datetime = _DateTime  # type: ignore[misc]


def _send(out: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LEN.pack(len(data)) + data)
    out.flush()


def _receive(inp: IO[bytes]) -> Any:
    head = inp.read(_LEN.size)
    if len(head) < _LEN.size:
        return None  # the parent closed the pipe
    (n,) = _LEN.unpack(head)
    return pickle.loads(inp.read(n))  # noqa: S301 - our own parent, same code


def child_main() -> None:
    """The child's loop: read the header, shift clocks, import the suite,
    then answer ``("trace", commands)`` requests until ``("stop",)`` or EOF."""
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")  # the protocol's own channel...
    os.dup2(2, 1)  # ...so that prints of the code under test go to stderr
    header = _receive(inp)
    if header is None:
        return
    shift_clocks(header["clock_offset"])  # before anything of the user's is imported
    os.chdir(header["cwd"])
    try:
        suite = load_suite(header["suite"])
    except Exception:
        _send(out, ("error", "cannot build the suite in the child:\n" + traceback.format_exc()))
        return
    _send(out, ("ready", None))
    workdir = Path(header["workdir"])
    for n in range(1 << 62):  # bounded by the parent: it stops us or closes the pipe
        request = _receive(inp)
        if request is None or request[0] == "stop":
            return
        random.seed(header["random_seed"])
        path = workdir / f"replica-{n}"
        path.mkdir(parents=True)
        try:
            _send(out, ("trace", suite.trace(path, request[1])))
        except Exception:
            _send(out, ("error", traceback.format_exc()))
        finally:
            shutil.rmtree(path, ignore_errors=True)


# -- the parent's side ------------------------------------------------------------------


class ChildReplica:
    """One child process running the suite's ``trace`` for the parent."""

    def __init__(
        self,
        suite: dict[str, Any],
        variant: ProcessVariant,
        workdir: Path,
        timeout: float,
        start_timeout: float = 60.0,
    ) -> None:
        """``timeout``: seconds to answer one request; ``start_timeout``: to
        start (an interpreter and the imports: slower on a loaded machine)."""
        self.variant = variant
        self._timeout = timeout
        self._start_timeout = start_timeout
        # A file, not a pipe: a chatty child never blocks on it. Closed in close().
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        env = dict(os.environ, PYTHONHASHSEED=str(variant.hash_seed))
        paths = [p for p in sys.path if isinstance(p, str)]
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", _BOOT.format(path=paths)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self._replies: queue.Queue[Any] = queue.Queue()
        assert self._proc.stdout is not None
        self._reader = threading.Thread(target=self._read_replies, args=(self._proc.stdout,), daemon=True)
        self._reader.start()
        header = {
            "suite": suite,
            "clock_offset": variant.clock_offset,
            "random_seed": variant.random_seed,
            "cwd": os.getcwd(),
            "workdir": str(workdir),
        }
        self._closed = False
        self._failure: ReplicaProcessError | None = None
        self._request(header)

    def wait_ready(self) -> None:
        """Wait until the child has imported the suite (started apart from
        this, so several children start in parallel)."""
        self.wait_reply("starting", self._start_timeout)

    def _read_replies(self, stream: IO[bytes]) -> None:
        for _ in range(1 << 62):  # ends at EOF, when the child exits
            try:
                message = _receive(stream)
            except Exception as exc:  # a torn frame: the child died mid-write
                self._replies.put(("error", f"unreadable reply: {exc!r}"))
                return
            self._replies.put(message)
            if message is None:
                return

    def _request(self, message: Any) -> None:
        assert self._proc.stdin is not None
        with contextlib.suppress(OSError):  # the child is gone: wait_reply reports it with its stderr
            _send(self._proc.stdin, message)

    def wait_reply(self, what: str, timeout: float | None = None) -> Any:
        if self._failure is not None:  # dead: every later request fails alike, at once
            raise self._failure
        limit = self._timeout if timeout is None else timeout
        try:
            reply = self._replies.get(timeout=limit)
        except queue.Empty:
            self._die(f"did not answer within {limit:.0f}s ({what})")
        if reply is None:
            self._die(f"exited ({what})")
        if reply[0] == "error":
            raise ReplicaProcessError(f"the {self.variant.describe()} failed ({what}):\n{reply[1]}")
        return reply[1]

    def _die(self, why: str) -> NoReturn:
        if self._proc.poll() is None:
            self._proc.kill()  # hung, or closed its end of the pipe: it is of no more use
        self._proc.wait(timeout=5)  # so its stderr is complete
        self._failure = ReplicaProcessError(f"the {self.variant.describe()} {why}{self._stderr_tail()}")
        self.close()
        raise self._failure

    def trace(self, commands: list[Any]) -> Any:
        """The suite's ``trace`` of ``commands`` on a fresh replica in the child."""
        self._request(("trace", commands))
        return self.wait_reply("running a command sequence")

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        tail = self._stderr.read()[-4000:].decode(errors="replace").strip()
        return f"; its stderr ends with:\n{tail}" if tail else ""

    def close(self) -> None:
        """Stop the child (politely, then by force), bounded in time; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._proc.poll() is None:
            self._request(("stop",))
            try:
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
                self._proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._reader.join(timeout=5)  # the child is gone: its stdout is at EOF
        if self._proc.stdout is not None and not self._reader.is_alive():
            self._proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> ChildReplica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
