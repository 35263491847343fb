"""``StateMachineConformance``: property tests for *your* state machine.

Raft replicates the log; each replica rebuilds the state by applying it.
That only works if ``apply`` is deterministic, snapshots capture the whole
state and a failing command fails the same way everywhere
(``raftkit.state_machines.base.StateMachine`` states the contract). This
suite checks those clauses with Hypothesis-generated command sequences.
Subclass it in a pytest module::

    from hypothesis import strategies as st

    from raftkit.state_machines.kv import KvStateMachine
    from raftkit.testing.conformance.state_machine import StateMachineConformance

    class TestKv(StateMachineConformance):
        max_examples = 25

        def make_state_machine(self, tmp_path):
            return KvStateMachine()

        def commands(self):
            keys = st.sampled_from(["a", "b", "c"])
            return st.one_of(
                st.builds(KvStateMachine.set_command, keys, st.integers(0, 9)),
                st.builds(KvStateMachine.incr_command, keys, st.integers(-3, 3)),
                st.builds(KvStateMachine.delete_command, keys),
            )

The checks, one test each; a failure names the command sequence (shrunk
by Hypothesis) and what differed:

* ``test_deterministic_in_process``: the same commands on two fresh
  replicas give the same results (or the same exception type and message)
  and the same state after every command;
* ``test_deterministic_across_processes``: the same, against replicas in
  child processes with another ``PYTHONHASHSEED``, clocks shifted by years
  and another ``random`` seed (``state_machine_child``: the child imports
  this suite class, so define it at module level or set ``child_suite``);
* ``test_snapshot_round_trip``: at a random point, ``snapshot()`` /
  ``restore()`` and streaming ``write_snapshot()`` / ``restore_from()``
  (re-chunked) give replicas whose state equals the original's and stays
  equal under further commands;
* ``test_failed_command_leaves_state_unchanged``: a command that raises
  leaves the state as it was (unless ``may_change_state_on_error`` says it
  may), and raises the same way on a fresh replica replaying the prefix;
* ``test_commands_and_results_survive_serializer``: commands and results
  come back equal (exact types) from the configured serializer.

Hooks: ``make_state_machine`` and ``commands`` are required; ``state_of``
(default: ``snapshot()`` bytes), ``apply_command``, ``encode_command``,
``serialized_command``, ``close_state_machine`` and
``may_change_state_on_error`` are optional. ``SyncObj`` objects and
batteries: ``raftkit.testing.conformance.replicated_objects``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import reprlib
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from raftkit.serializers import MsgpackSerializer, Serializer, get_serializer
from raftkit.state_machines.base import StateMachine
from raftkit.testing.conformance.state_machine_child import (
    DEFAULT_VARIANTS,
    ChildReplica,
    ProcessVariant,
    suite_reference,
)

__all__ = ["SKIP", "Observed", "StateMachineConformance", "Trace", "observe"]

Observed = tuple[Any, str]
"""(canonical key, short repr): keys are compared, reprs are shown."""
Trace = tuple[Observed, list[tuple[Observed, Observed]]]
"""(initial state, [(outcome, state after) for each command])."""

SKIP: Any = object()
"""``serialized_command`` returns it for commands the serializer never sees."""

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 160
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = 12
_short.maxlevel = 4


def _canonical(value: Any) -> Any:
    """A comparable, picklable form that keeps exact types (``1 != True``,
    ``(1,) != [1]``), keeps dict order (it is observable), ignores set
    order (it depends on the hash seed) and drops object addresses."""
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if value is None or kind in (bool, int, str, bytes):
        return (name, value)
    if kind is float:
        return (name, "nan" if value != value else value.hex())
    if kind in (list, tuple):
        return (name, tuple(_canonical(v) for v in value))
    if kind is dict:
        return (name, tuple((_canonical(k), _canonical(v)) for k, v in value.items()))
    if kind in (set, frozenset):
        return (name, tuple(sorted(repr(_canonical(v)) for v in value)))
    if isinstance(value, (bytearray, memoryview)):
        return (name, bytes(value))
    return (name, _ADDRESS.sub(" at 0x?", repr(value)))


def observe(value: Any) -> Observed:
    """``value`` as the suite compares (canonical form) and shows it."""
    return _canonical(value), _ADDRESS.sub(" at 0x?", _short.repr(value))


def _returned(value: Any) -> Observed:
    key, text = observe(value)
    return key, f"returned {text}"


def _raised(exc: BaseException) -> Observed:
    kind = type(exc)
    name = f"{kind.__module__}.{kind.__qualname__}"
    # Shown with its message as raised: str() of a KeyError is the repr of its
    # argument, which would quote it twice.
    message = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
    return ("raised", name, str(exc)), f"raised {kind.__qualname__}({_short.repr(message)})"


def _where_they_differ(a: str, b: str, before: int = 24, after: int = 16) -> list[str]:
    """For two long short forms, a line pointing at their first difference
    (a snapshot's bytes differ in a few characters out of hundreds)."""
    if min(len(a), len(b)) <= 60:
        return []
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    start = max(0, at - before)

    def part(text: str) -> str:
        dots = "..." if start else ""
        return f"{dots}{text[start : at + after]}{'...' if at + after < len(text) else ''}"

    return [f"first difference at character {at}: {part(a)}  vs  {part(b)}"]


def _is_raised(outcome: Observed) -> bool:
    return isinstance(outcome[0], tuple) and len(outcome[0]) == 3 and outcome[0][0] == "raised"


class _Collect:
    """A ``SnapshotWriter`` keeping what it is given."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(bytes(data))


class StateMachineConformance:
    """Base class of the suite: subclass it in a ``Test*`` class and
    implement ``make_state_machine`` and ``commands``."""

    max_examples: ClassVar[int] = 30
    """Hypothesis examples per check; raise it for soak runs."""
    max_commands: ClassVar[int] = 12
    """Longest command sequence a check draws."""
    serializer: ClassVar[Serializer | str | None] = None
    """What commands and results travel with: a ``Serializer``, a built-in
    name (``"msgpack"``, ``"json"``...), or None for the state machine's
    declared ``serializer``, else msgpack (raftkit's default)."""
    process_variants: ClassVar[tuple[ProcessVariant, ...]] = DEFAULT_VARIANTS
    """One child process each in ``test_deterministic_across_processes``."""
    child_timeout: ClassVar[float] = 60.0
    """Seconds a child may take to answer one sequence."""
    child_start_timeout: ClassVar[float] = 60.0
    """Seconds a child may take to start (import this suite's module)."""
    child_suite: ClassVar[str | None] = None
    """``"module:QualName"`` of the class a child process builds replicas
    with; None: this class itself (it must be importable)."""
    hypothesis_settings: ClassVar[dict[str, Any]] = {}
    """Extra ``hypothesis.settings`` for every check (``derandomize``,
    ``database``...)."""

    # -- hooks ----------------------------------------------------------------------

    def make_state_machine(self, tmp_path: Path) -> StateMachine:
        """Return a fresh, empty replica (files, if any, under ``tmp_path``:
        an empty folder of its own)."""
        raise NotImplementedError("implement make_state_machine(tmp_path) to return a fresh state machine")

    def commands(self) -> st.SearchStrategy[Any]:
        """A strategy of commands: ``bytes`` for a ``StateMachine``, or any
        value ``encode_command`` turns into bytes."""
        raise NotImplementedError("implement commands() to return a Hypothesis strategy of commands")

    def state_of(self, sm: StateMachine) -> Any:
        """The replica's state, to compare: equal states must compare equal
        (exact types, dict order, set order ignored). Default: the
        ``snapshot()`` bytes; override when they hold more than the state
        (an LMDB stream's size hint) or less (what snapshot forgets only
        shows when later commands behave differently)."""
        return sm.snapshot()

    def serializer_for(self, sm: StateMachine) -> Serializer:
        """The serializer of ``serializer`` (the ClassVar), resolved."""
        chosen = self.serializer
        if isinstance(chosen, str):
            return get_serializer(chosen)
        if chosen is not None:
            return chosen
        declared = getattr(sm, "serializer", None)
        return declared if isinstance(declared, Serializer) else MsgpackSerializer()

    def encode_command(self, sm: StateMachine, command: Any) -> bytes:
        """The log entry for ``command``: bytes as they are, anything else
        encoded with ``serializer_for(sm)``."""
        if isinstance(command, (bytes, bytearray, memoryview)):
            return bytes(command)
        return self.serializer_for(sm).dumps(command)

    def serialized_command(self, command: Any) -> Any:
        """The value the serializer carries for ``command`` (checked to round
        trip), or ``SKIP``: bytes are already the log's form."""
        return SKIP if isinstance(command, (bytes, bytearray, memoryview)) else command

    def apply_command(self, sm: StateMachine, command: Any, index: int) -> Any:
        """Apply ``command`` as log entry ``index`` (1, 2, ...): return its
        result or raise its exception. Default: ``sm.apply(encoded)``."""
        return sm.apply(self.encode_command(sm, command))

    def close_state_machine(self, sm: StateMachine) -> None:
        """Release a replica (default: its ``close()``, if it has one)."""
        close = getattr(sm, "close", None)
        if callable(close):
            close()

    def may_change_state_on_error(self, command: Any, exception: Exception) -> bool:
        """True if ``command`` may change the state although it raised
        (every replica must still end in the same state). Default: never."""
        return False

    def describe_command(self, command: Any) -> str:
        """How a failure message shows one command."""
        return _short.repr(command)

    # -- plumbing -------------------------------------------------------------------

    @cached_property
    def _one_command(self) -> st.SearchStrategy[Any]:
        # Built once per test: Hypothesis needs one strategy object per run
        # to replay and shrink consistently.
        return self.commands()

    @cached_property
    def _command_lists(self) -> st.SearchStrategy[list[Any]]:
        return st.lists(self._one_command, min_size=1, max_size=self.max_commands)

    def _settings(self) -> settings:
        options: dict[str, Any] = {
            "max_examples": self.max_examples,
            "deadline": None,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
        }
        options.update(self.hypothesis_settings)
        return settings(**options)

    @cached_property
    def _numbers(self) -> Iterator[int]:
        return itertools.count()

    @contextmanager
    def _replicas(self, base: Path) -> Iterator[Callable[[], StateMachine]]:
        """``new()`` makes a replica in a folder of its own; all are closed
        (and their folders removed) on the way out, even after a failure."""
        made: list[tuple[StateMachine, Path]] = []

        def new() -> StateMachine:
            path = base / f"replica-{next(self._numbers)}"
            path.mkdir()
            sm = self.make_state_machine(path)
            made.append((sm, path))
            return sm

        try:
            yield new
        finally:
            errors: list[Exception] = []
            for sm, path in made:  # close every one, even if one close fails
                try:
                    self.close_state_machine(sm)
                except Exception as exc:
                    errors.append(exc)
                shutil.rmtree(path, ignore_errors=True)
            if errors:
                raise errors[0]

    def _state(self, sm: StateMachine) -> Observed:
        return observe(self.state_of(sm))

    def _outcome(self, sm: StateMachine, command: Any, index: int) -> Observed:
        try:
            return _returned(self.apply_command(sm, command, index))
        except Exception as exc:  # the command's outcome, compared like a result
            return _raised(exc)

    def _step(self, sm: StateMachine, command: Any, index: int) -> tuple[Observed, Observed]:
        outcome = self._outcome(sm, command, index)
        return outcome, self._state(sm)

    def trace(self, tmp_path: Path, commands: Sequence[Any]) -> Trace:
        """Run ``commands`` on a fresh replica made in ``tmp_path`` (then
        closed): its initial state, and each command's outcome and the state
        after it. What the child processes send back."""
        sm = self.make_state_machine(tmp_path)
        try:
            initial = self._state(sm)
            return initial, [self._step(sm, c, i) for i, c in enumerate(commands, 1)]
        finally:
            self.close_state_machine(sm)

    def _sequence(self, commands: Sequence[Any], mark: int | None = None) -> str:
        lines = [f"commands ({len(commands)}, as shrunk by Hypothesis):"]
        for i, command in enumerate(commands):
            arrow = "  <-- here" if i == mark else ""
            lines.append(f"  #{i} {self.describe_command(command)}{arrow}")
        return "\n".join(lines)

    def _compare(
        self,
        check: str,
        commands: Sequence[Any],
        a: Trace,
        b: Trace,
        a_name: str,
        b_name: str,
        offset: int = 0,
    ) -> None:
        """Fail at the first difference between two traces of ``commands``
        (``b`` may cover only ``commands[offset:]``, after a restore)."""
        if a[0][0] != b[0][0]:
            self._fail(check, commands, None, "the initial states differ", [(a_name, a[0]), (b_name, b[0])])
        for i, ((out_a, state_a), (out_b, state_b)) in enumerate(zip(a[1], b[1], strict=True), offset):
            if out_a[0] != out_b[0]:
                what = f"command #{i} has different outcomes"
                self._fail(check, commands, i, what, [(a_name, out_a), (b_name, out_b)])
            if state_a[0] != state_b[0]:
                what = f"the states differ after command #{i} (which {out_a[1]} on both)"
                self._fail(check, commands, i, what, [(a_name, state_a), (b_name, state_b)])

    def _fail(
        self,
        check: str,
        commands: Sequence[Any],
        at: int | None,
        what: str,
        shown: list[tuple[str, Observed]],
    ) -> NoReturn:
        lines = [f"{check}: {what}", self._sequence(commands, at)]
        for name, (_, text) in shown:
            lines.append(f"{name}: {text}")
        if len(shown) > 1 and len({text for _, (_, text) in shown}) == 1:
            lines.append("(the values differ beyond what the short forms show, or in exact types)")
        elif len(shown) == 2:
            lines.extend(_where_they_differ(shown[0][1][1], shown[1][1][1]))
        raise AssertionError("\n".join(lines))

    # -- 1. determinism in one process ------------------------------------------------

    def test_deterministic_in_process(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        """Two fresh replicas given the same commands return the same
        outcomes and hold the same state after every command."""
        base = tmp_path_factory.mktemp("sm-determinism")

        @self._settings()
        @given(data=st.data())
        def run(data: st.DataObject) -> None:
            commands = data.draw(self._command_lists, label="commands")
            with self._replicas(base) as new:
                first = self.trace_on(new(), commands)
                second = self.trace_on(new(), commands)
            check = "determinism (in-process)"
            self._compare(check, commands, first, second, "first replica", "second replica")

        run()

    def trace_on(self, sm: StateMachine, commands: Sequence[Any], start: int = 1) -> Trace:
        """``trace`` on an existing replica, numbering entries from ``start``."""
        initial = self._state(sm)
        return initial, [self._step(sm, c, i) for i, c in enumerate(commands, start)]

    # -- 2. determinism across processes ------------------------------------------------

    def test_deterministic_across_processes(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        """Replicas in child processes with another hash seed, shifted
        clocks and another random seed agree with this process's replica."""
        ref = suite_reference(type(self), self.child_suite)
        base = tmp_path_factory.mktemp("sm-processes")
        here = os.environ.get("PYTHONHASHSEED", "random" if sys.flags.hash_randomization else "0")
        parent = f"this process (PYTHONHASHSEED={here}, real clocks, random.seed(0) by Hypothesis)"
        children: list[ChildReplica] = []
        try:
            for n, variant in enumerate(self.process_variants):
                if here == str(variant.hash_seed):  # this process runs with it: use another
                    variant = dataclasses.replace(variant, hash_seed=variant.hash_seed + 1000)
                workdir = base / f"child-{n}"
                workdir.mkdir()
                child = ChildReplica(ref, variant, workdir, self.child_timeout, self.child_start_timeout)
                children.append(child)
            for child in children:  # started together, so they start in parallel
                child.wait_ready()

            @self._settings()
            @given(data=st.data())
            def run(data: st.DataObject) -> None:
                commands = data.draw(self._command_lists, label="commands")
                with self._replicas(base) as new:
                    mine = self.trace_on(new(), commands)
                for child in children:
                    theirs = child.trace(commands)
                    check = "determinism (across processes)"
                    self._compare(check, commands, mine, theirs, parent, child.variant.describe())

            run()
        finally:
            for child in children:
                child.close()

    # -- 3. snapshots -------------------------------------------------------------------

    def test_snapshot_round_trip(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        """A replica restored from a snapshot taken at a random point, by
        ``snapshot``/``restore`` and by ``write_snapshot``/``restore_from``,
        equals the original then and after every further command."""
        base = tmp_path_factory.mktemp("sm-snapshots")

        @self._settings()
        @given(data=st.data())
        def run(data: st.DataObject) -> None:
            # Two lists, not one and a cut: Hypothesis then shrinks the commands
            # before the snapshot and after it each on its own.
            before = data.draw(st.lists(self._one_command, max_size=self.max_commands),
                               label="commands before the snapshot")
            after = data.draw(st.lists(self._one_command, max_size=self.max_commands - len(before)),
                              label="commands after it")
            commands, cut = before + after, len(before)
            chunk = data.draw(st.sampled_from([1, 7, 64, 1 << 20]), label="restore_from chunk size")
            note(f"snapshot after {cut} commands, streamed back in chunks of {chunk} bytes")
            with self._replicas(base) as new:
                original = new()
                self.trace_on(original, commands[:cut])
                check = f"snapshot round trip (snapshot taken after command #{cut - 1})"
                try:
                    copies = self._restored_copies(original, new, chunk)
                except Exception as exc:
                    what = f"taking or restoring the snapshot raised {exc!r}"
                    self._fail(check, commands, cut - 1 if cut else None, what, [])
                now = self._state(original)
                for how, copy in copies.items():
                    state = self._state(copy)
                    if state[0] != now[0]:
                        what = f"the replica restored by {how} differs from the original right after"
                        self._fail(check, commands, cut - 1 if cut else None, what,
                                   [("original", now), ("restored", state)])
                for i, command in enumerate(commands[cut:], cut):
                    expected = self._step(original, command, i + 1)
                    for how, copy in copies.items():
                        got = self._step(copy, command, i + 1)
                        self._compare(check, commands, (now, [expected]), (now, [got]),
                                      "original", f"restored by {how}", offset=i)

        run()

    def _restored_copies(
        self, original: StateMachine, new: Callable[[], StateMachine], chunk: int
    ) -> dict[str, StateMachine]:
        by_bytes = new()
        by_bytes.restore(original.snapshot())
        out = _Collect()
        original.write_snapshot(out)
        data = b"".join(out.chunks)
        by_stream = new()
        by_stream.restore_from(data[i : i + chunk] for i in range(0, len(data), chunk))
        return {"snapshot()/restore()": by_bytes, "write_snapshot()/restore_from()": by_stream}

    # -- 4. failing commands ----------------------------------------------------------------

    def test_failed_command_leaves_state_unchanged(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        """A command that raises leaves the state as it was, and raises the
        same way (type and message) on a fresh replica replaying the prefix."""
        base = tmp_path_factory.mktemp("sm-failures")
        check = "failing command"

        @self._settings()
        @given(data=st.data())
        def run(data: st.DataObject) -> None:
            commands = data.draw(self._command_lists, label="commands")
            with self._replicas(base) as new:
                replica, replay = new(), new()
                for i, command in enumerate(commands):
                    before = self._state(replica)
                    error: Exception | None = None
                    try:
                        outcome = _returned(self.apply_command(replica, command, i + 1))
                    except Exception as exc:
                        error, outcome = exc, _raised(exc)
                    after = self._state(replica)
                    again, again_state = self._step(replay, command, i + 1)
                    if error is None and not _is_raised(again):
                        continue
                    if outcome[0] != again[0]:
                        what = f"command #{i} does not raise the same way on a fresh replica (same prefix)"
                        self._fail(check, commands, i, what, [("replica", outcome), ("fresh replica", again)])
                    assert error is not None
                    if after[0] != before[0] and not self.may_change_state_on_error(command, error):
                        what = f"command #{i} {outcome[1]} but changed the state"
                        shown = [("state before", before), ("state after", after)]
                        self._fail(check, commands, i, what, shown)
                    if again_state[0] != after[0]:
                        what = f"after command #{i} {outcome[1]}, the fresh replica's state differs"
                        shown = [("replica", after), ("fresh replica", again_state)]
                        self._fail(check, commands, i, what, shown)

        run()

    # -- 5. the serializer ---------------------------------------------------------------------

    def test_commands_and_results_survive_serializer(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        """Every command (as the serializer carries it) and every result
        comes back from ``dumps``/``loads`` equal, with the same types."""
        base = tmp_path_factory.mktemp("sm-serializer")

        @self._settings()
        @given(data=st.data())
        def run(data: st.DataObject) -> None:
            commands = data.draw(self._command_lists, label="commands")
            with self._replicas(base) as new:
                sm = new()
                serializer = self.serializer_for(sm)
                for i, command in enumerate(commands):
                    payload = self.serialized_command(command)
                    if payload is not SKIP:
                        self._round_trip(serializer, commands, i, "the command", payload)
                    try:
                        result = self.apply_command(sm, command, i + 1)
                    except Exception:
                        continue  # exceptions stay on the node that applied the command
                    self._round_trip(serializer, commands, i, "the result", result)

        run()

    def _round_trip(
        self, serializer: Serializer, commands: Sequence[Any], i: int, what: str, value: Any
    ) -> None:
        check = f"serializer ({type(serializer).__name__})"
        try:
            back = serializer.loads(serializer.dumps(value))
        except Exception as exc:
            self._fail(check, commands, i, f"{what} of command #{i} cannot be carried: {exc!r}",
                       [("value", observe(value))])
        if _canonical(back) != _canonical(value):
            detail = ""
            if type(back) is not type(value):
                detail = f" ({type(value).__name__} came back as {type(back).__name__})"
            self._fail(check, commands, i, f"{what} of command #{i} does not come back equal{detail}",
                       [("sent", observe(value)), ("received", observe(back))])
