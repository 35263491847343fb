"""A linearizability checker for histories of client operations, for
testing a replicated state machine against a sequential model of it.

A *history* is what clients saw: each ``Operation`` has a client, the time
it was invoked (``call``), the time its response came back (``ret``, or
``None`` if none came: the operation may or may not have taken effect), the
command and the observed result. A *model* is the sequential specification:
``init()`` gives the initial state and ``step(state, command)`` returns
``(new_state, result)`` without changing ``state``. The history is
linearizable if some order of its operations (every completed one, and any
of the pending ones) respects real time (an operation whose response came
before another's invocation goes first) and gives every completed operation
its observed result when run through the model.

``check(history, model)`` searches for such an order with the Wing–Gong
algorithm and Lowe's memoization: it backtracks over the operations that may
go next and never explores the same (set of linearized operations, model
state) twice. The search is bounded (``max_states``, ``time_limit``): it
answers ``ok=None`` with a ``reason`` rather than running for ever. When the
history is not linearizable, the checker shrinks it to a short
counterexample, and ``format_counterexample`` renders it with the model's
view.

Shrinking *relaxes* completed operations rather than deleting them: a
relaxed operation's result no longer counts and it may or may not have
taken effect within its interval. Deleting a write would make a read of
its value look impossible, a contradiction the history never had;
relaxing it cannot. The checker relaxes whole clients, then runs of
operations, then single ones, keeping each relaxation after which the
search still finds the history not linearizable, until relaxing any one
more operation would make it linearizable (or the search limit leaves it
unknown: the ``reason`` says so). The counterexample is the
operations left unrelaxed: a sub-history that is not linearizable by
itself, nor whatever the other operations (its ``context``) did.

Costs and limits: the search is exponential in the number of operations
that overlap in time (it may try each order of them), and memoization
helps only as far as model states repeat; a register history of 1000
operations from 5 clients checks in milliseconds, 20 clients overflow a
million states. Each memoized configuration takes about 100-300 bytes
plus its key. Shrinking runs a search per candidate, and a relaxed write
lets any earlier value survive, so shrinking a long history costs far more
than checking it (seconds to tens of seconds for 1000 operations); the
time limit stops it with the shortest counterexample so far. There is no
partitioning: linearizability is local, so a key-value history can be
split by key and each part checked against a one-key model.

Timing conventions: ``a`` precedes ``b`` only if ``a.ret < b.call``; equal
times count as concurrent. A pending operation may take effect anywhere
after its call, or not at all (its observed result is ignored).

Model states are memoized by a key: ``key(state)`` if ``check`` is given a
``key``, else ``default_key``: the state itself if it is hashable, else its
pickle, else its ``repr``. Two states with equal keys must behave the same
(for ``repr`` that means the repr shows all of the state). A state that is
hashable but equal to states that behave differently (``1 == True``) needs
a ``key``.

Example: a register that was written 1 and later read as its old value::

    >>> class Register:
    ...     def init(self):
    ...         return None
    ...     def step(self, state, command):
    ...         if command[0] == "write":
    ...             return command[1], None
    ...         return state, state  # ("read",)
    >>> history = [
    ...     Operation("A", call=0, ret=1, command=("write", 1)),
    ...     Operation("B", call=2, ret=3, command=("read",), result=None),
    ...     Operation("C", call=4, ret=None, command=("write", 2)),
    ... ]
    >>> result = check(history, Register())
    >>> result.ok
    False
    >>> [op.client for op in result.counterexample]
    ['A', 'B']
    >>> print(format_counterexample(result))
    not linearizable: a counterexample of 2 operations (shrunk from 3)
      client  call..ret  command       observed
      'A'     0..1       ('write', 1)  None
      'B'     2..3       ('read',)     None
    whatever the other operation did (took effect within its interval, or after its call if pending, or never)
    the longest linearizable prefix (1 operation), then the state 1:
      1. 'A' ('write', 1) -> None
    no operation can go next; the ones that could:
      'B' ('read',) observed None, the model returns 1
    >>> check(history[:1] + [Operation("B", 2, 3, ("read",), 1)], Register()).ok
    True

The checker imports nothing from raftkit; ``raftkit.testing`` may import
any raftkit package but ``cli``, and only ``testing`` and ``cli`` import it.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

__all__ = ["Model", "Operation", "Result", "check", "default_key", "format_counterexample"]

S = TypeVar("S")

DEFAULT_MAX_STATES = 1_000_000
"""How many (linearized set, model state) configurations one search may
memoize before it gives up with ``ok=None``."""

DEFAULT_TIME_LIMIT = 30.0
"""Seconds ``check`` may take in all, the shrinking included."""


@dataclass(frozen=True)
class Operation:
    """One client operation as the client saw it.

    ``client`` is any hashable name. ``call`` is when the operation was
    invoked and ``ret`` when its response arrived, on one clock for the
    whole history; ``ret=None`` means no response was seen, so the
    operation may have taken effect at any time after ``call``, or never,
    and ``result`` is ignored. ``command`` goes to the model's ``step``
    and ``result`` is what the client observed. ``label``, if given, names
    the operation in messages instead of ``repr(command)``.
    ``observed=False`` with a ``ret`` says the operation ended by ``ret``
    but its result is unknown: it took effect within its interval, or
    never, and ``result`` is ignored (a command a client gave up on that is
    known to have been applied before some later response).
    """

    client: Hashable
    call: float
    ret: float | None
    command: Any
    result: Any = None
    label: str | None = None
    observed: bool = True

    def __post_init__(self) -> None:
        if self.ret is not None and self.ret < self.call:
            raise ValueError(f"operation returns before it is called: {self!r}")

    @property
    def pending(self) -> bool:
        """No response was seen: it may or may not have taken effect."""
        return self.ret is None

    def describe(self) -> str:
        """The client and the command, for messages."""
        return f"{self.client!r} {self.label if self.label is not None else repr(self.command)}"


class Model(Protocol[S]):
    """A sequential specification. ``step`` must be pure (it returns a new
    state and leaves ``state`` as it was) and total (it answers every
    command a history may hold, e.g. a dequeue from an empty queue)."""

    def init(self) -> S:
        """The initial state."""
        ...

    def step(self, state: S, command: Any) -> tuple[S, Any]:
        """``(the state after command, the result a client would see)``."""
        ...


@dataclass(frozen=True)
class Result:
    """What ``check`` found.

    ``ok`` is ``True`` (linearizable: ``linearization`` holds every
    completed operation and the pending ones that took effect, in an order
    that explains the history), ``False`` (not linearizable:
    ``counterexample`` is a short sub-history of completed operations, in
    the history's order, that is not linearizable by itself, nor whatever
    the operations in ``context`` (all the others) did) or ``None`` (the
    search hit a limit: ``reason`` says which; nothing is known).

    For a counterexample, ``prefix`` is the longest order the search could
    run through the model (counterexample operations with their observed
    results, and context operations that took effect), ``prefix_state``
    the model state after it, and ``stuck`` the counterexample operations
    that could go next (by real time) with the result the model gives each
    there: none matches what was observed. ``history_size`` is the number
    of operations checked; ``states`` how many configurations the search
    of the whole history memoized. The sequences are tuples.
    """

    ok: bool | None
    reason: str
    linearization: tuple[Operation, ...] = ()
    counterexample: tuple[Operation, ...] = ()
    context: tuple[Operation, ...] = ()
    prefix: tuple[Operation, ...] = ()
    prefix_state: Any = None
    stuck: tuple[tuple[Operation, Any], ...] = ()
    history_size: int = 0
    states: int = 0


_PICKLED = object()  # tags a key made from a pickle, so it equals no state
_REPR = object()  # tags a key made from a repr


def default_key(state: Any) -> Hashable:
    """The memoization key of ``state``: the state itself if hashable, else
    its pickle, else its ``repr``. Equal pickles mean equal states; equal
    states may pickle differently (a dict's order), which costs only
    repeated work. A ``repr`` must show all of the state."""
    try:
        hash(state)
        key: Hashable = state
        return key
    except TypeError:
        pass
    try:
        return (_PICKLED, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:
        return (_REPR, type(state), repr(state))


class _Entry:
    """A call or return event in the search's doubly linked list."""

    __slots__ = ("index", "is_call", "match", "prev", "next")

    def __init__(self, index: int, is_call: bool) -> None:
        self.index = index
        self.is_call = is_call
        self.match: _Entry | None = None  # a call's return event, if it has one
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _lift(entry: _Entry) -> None:
    """Take a call event and its return event out of the list."""
    for e in (entry, entry.match):
        if e is not None:
            e.prev.next = e.next  # type: ignore[union-attr]
            e.next.prev = e.prev  # type: ignore[union-attr]


def _unlift(entry: _Entry) -> None:
    """Put back what ``_lift(entry)`` took out (in the reverse order)."""
    for e in (entry.match, entry):
        if e is not None:
            e.prev.next = e  # type: ignore[union-attr]
            e.next.prev = e  # type: ignore[union-attr]


@dataclass
class _Outcome:
    ok: bool | None
    reason: str = ""
    # ok: the linearization; not ok: the deepest configuration's decisions, as
    # (index, took effect) in order (a relaxed operation may be left out)
    order: list[tuple[int, bool]] | None = None
    states: int = 0


class _Budget:
    """A deadline shared by every search of one ``check`` and a per-search
    cap on memoized configurations."""

    def __init__(self, max_states: int, time_limit: float | None) -> None:
        if max_states < 1:
            raise ValueError("max_states must be at least 1")
        if time_limit is not None and time_limit < 0:
            raise ValueError("time_limit must not be negative")
        self.max_states = max_states
        self.time_limit = time_limit
        self.deadline = None if time_limit is None else time.monotonic() + time_limit

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


def _search(
    ops: Sequence[Operation],
    relaxed: Sequence[bool],
    model: Model[Any],
    key: Callable[[Any], Hashable],
    budget: _Budget,
) -> _Outcome:
    """Wing–Gong–Lowe: walk the events in time order; a call event is an
    operation that may go next (no undecided operation returned before it
    was called): linearize it if the model agrees and the resulting
    configuration is new, else try the next one. Reaching the return event
    of an undecided operation means it can no longer go anywhere: backtrack;
    unless the operation is ``relaxed`` (its result ignored, and it may be
    left out): then leaving it out is the one choice left.

    A configuration is (the set of decided operations, the model state):
    what is left to do depends on nothing else, so none is explored twice.
    """
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))  # at equal times calls come first: concurrent
        if op.ret is not None:
            events.append((op.ret, 1, i))
    events.sort()
    head = _Entry(-1, False)
    tail = _Entry(-1, False)  # never reached while required operations remain (it is no call)
    calls: dict[int, _Entry] = {}
    prev = head
    for _, kind, i in events:
        e = _Entry(i, kind == 0)
        if kind == 0:
            calls[i] = e
        else:
            calls[i].match = e
        e.prev, prev.next = prev, e
        prev = e
    tail.prev, prev.next = prev, tail

    # required: completed and not relaxed, so it must take effect with its result
    required = [op.ret is not None and not r for op, r in zip(ops, relaxed, strict=True)]
    remaining = sum(required)  # required operations not yet linearized
    state = model.init()
    decided = 0
    seen: set[tuple[int, Hashable]] = set()
    stack: list[tuple[_Entry, Any, bool]] = []  # (call entry, state before, took effect)
    deepest: list[tuple[int, bool]] = []
    entry: _Entry = head.next  # type: ignore[assignment]
    steps = 0

    def push(call: _Entry, new_state: Any, applied: bool) -> bool:
        """Decide ``call``'s operation if the configuration is new."""
        nonlocal state, decided, remaining, deepest
        bits = decided | (1 << call.index)
        config = (bits, key(new_state))
        if config in seen:
            return False
        if len(seen) >= budget.max_states:
            raise _OutOfStates
        seen.add(config)
        stack.append((call, state, applied))
        state, decided = new_state, bits
        remaining -= required[call.index]
        _lift(call)
        if len(stack) > len(deepest):
            deepest = [(e.index, took) for e, _, took in stack]
        return True

    try:
        while remaining:
            steps += 1
            if not steps & 63 and budget.expired():
                return _Outcome(None, f"search limit: the time limit ({budget.time_limit:g} s) ran out "
                                f"after {len(seen)} states", states=len(seen))
            if entry.is_call:
                op = ops[entry.index]
                new_state, out = model.step(state, op.command)
                if (not required[entry.index] or out == op.result) and push(entry, new_state, True):
                    entry = head.next  # type: ignore[assignment]
                else:
                    entry = entry.next  # type: ignore[assignment]
                continue
            if entry.index >= 0 and relaxed[entry.index] and push(calls[entry.index], state, False):
                entry = head.next  # type: ignore[assignment]
                continue
            while True:  # backtrack to the last operation that took effect
                if not stack:
                    return _Outcome(False, "not linearizable", deepest, len(seen))
                call, state, applied = stack.pop()
                decided &= ~(1 << call.index)
                remaining += required[call.index]
                _unlift(call)
                if applied:  # try the operations after it instead
                    entry = call.next  # type: ignore[assignment]
                    break
                # left out at its return event, with every earlier call tried: nothing left here
    except _OutOfStates:
        return _Outcome(None, f"search limit: {budget.max_states} states (max_states) explored "
                        "without an answer", states=len(seen))
    return _Outcome(True, "linearizable", [(e.index, took) for e, _, took in stack], len(seen))


class _OutOfStates(Exception):
    """A search memoized ``max_states`` configurations."""


def _stuck(
    ops: Sequence[Operation], relaxed: Sequence[bool], model: Model[Any], deepest: list[tuple[int, bool]]
) -> tuple[Any, list[tuple[Operation, Any]]]:
    """The model state after the deepest configuration and, for each
    required operation that could go next by real time, the result the
    model gives it there (none is the observed one: else the search would
    have gone deeper)."""
    state = model.init()
    for i, took in deepest:
        if took:
            state, _ = model.step(state, ops[i].command)
    done = {i for i, _ in deepest}
    rest = [i for i in range(len(ops)) if i not in done]
    first_ret = min((ret for i in rest if (ret := ops[i].ret) is not None), default=float("inf"))
    return state, [
        (ops[i], model.step(state, ops[i].command)[1])
        for i in rest
        if ops[i].call <= first_ret and ops[i].ret is not None and not relaxed[i]
    ]


def _failing_prefix(
    ops: list[Operation], unobserved: list[bool], failed: _Outcome, model: Model[Any],
    key: Callable[[Any], Hashable], budget: _Budget,
) -> tuple[list[int], list[Operation], list[bool], _Outcome]:
    """The shortest prefix of the history (cut at a response time) that is
    still not linearizable, found by bisection: the first step of
    shrinking, and a cheap one (a long history's violation usually sits in
    a short stretch of it). Cutting at time ``t`` keeps the operations
    called by ``t``; those still running at ``t`` become pending. A prefix
    of a linearizable history is linearizable, so bisection is sound.
    Returns the indexes of the operations kept, the prefix, its flags and
    the search's outcome on it."""
    rets = sorted({op.ret for op in ops if op.ret is not None})
    best = (list(range(len(ops))), ops, unobserved, failed)
    lo, hi = 0, len(rets) - 1
    while lo < hi and not budget.expired():
        mid = (lo + hi) // 2
        cut = rets[mid]
        kept = [i for i, op in enumerate(ops) if op.call <= cut]
        prefix = [_pending_after(ops[i], cut) for i in kept]
        flags = [unobserved[i] for i in kept]
        found = _search(prefix, flags, model, key, budget)
        if found.ok is False:
            best, hi = (kept, prefix, flags, found), mid
        else:  # linearizable, or the search ran out: look later
            lo = mid + 1
    return best[0], list(best[1]), list(best[2]), best[3]


def _pending_after(op: Operation, cut: float) -> Operation:
    """``op`` as a history cut at ``cut`` sees it: running then, it is pending."""
    return op if op.ret is None or op.ret <= cut else replace(op, ret=None)


def _shrink(
    ops: list[Operation], failed: _Outcome, unobserved: list[bool], model: Model[Any],
    key: Callable[[Any], Hashable], budget: _Budget,
) -> tuple[list[bool], _Outcome, str]:
    """Relax completed operations (their results no longer count, and they
    may or may not have taken effect within their interval), greedily:
    whole clients, then runs, then single operations, keeping each
    relaxation the search shows leaves the history not linearizable.
    Returns which operations are relaxed, the search outcome with them
    relaxed, and what cut the shrinking short: "" (nothing), "time" (the
    deadline) or "states" (some candidates hit ``max_states``)."""
    relaxed = list(unobserved)
    outcome = failed
    unknown = 0  # candidates the search limit left undecided

    def attempt(indexes: list[int]) -> bool:
        nonlocal relaxed, outcome, unknown
        if not indexes or len(indexes) >= len(kept()):
            return False  # relaxing every observation leaves nothing to contradict
        candidate = list(relaxed)
        for i in indexes:
            candidate[i] = True
        found = _search(ops, candidate, model, key, budget)
        if found.ok is False:
            relaxed, outcome = candidate, found
            return True
        unknown += found.ok is None
        return False

    def kept() -> list[int]:
        return [i for i in range(len(ops)) if ops[i].ret is not None and not relaxed[i]]

    for client in dict.fromkeys(op.client for op in ops):
        if budget.expired():
            return relaxed, outcome, "time"
        attempt([i for i in kept() if ops[i].client == client])
    size = len(kept()) // 2
    while size >= 1:
        changed, n = False, 0
        while n < len(kept()):
            if budget.expired():
                return relaxed, outcome, "time"
            if attempt(kept()[n:n + size]):
                changed = True
            else:
                n += size
        if size == 1 and not changed:
            break  # a full pass relaxed nothing: relaxing any one more makes it linearizable
        size = max(1, size // 2)
    return relaxed, outcome, "states" if unknown else ""


def check(
    history: Iterable[Operation],
    model: Model[Any],
    *,
    key: Callable[[Any], Hashable] | None = None,
    max_states: int = DEFAULT_MAX_STATES,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    shrink: bool = True,
) -> Result:
    """Whether ``history`` is linearizable with respect to ``model``.

    ``key`` maps a model state to a hashable memoization key (default
    ``default_key``). Each search memoizes at most ``max_states``
    configurations, and the whole call (shrinking included) takes at most
    about ``time_limit`` seconds (``None``: no time limit; ``max_states``
    still bounds each search; the clock is read every 64 steps). A search
    that runs out answers ``ok=None``; shrinking that runs out keeps the
    shortest counterexample found so far (its ``reason`` says so).
    ``shrink=False`` reports every completed operation as the
    counterexample. The model's exceptions propagate.
    """
    ops = list(history)
    for op in ops:
        if not isinstance(op, Operation):
            raise TypeError(f"not an Operation: {op!r}")
    budget = _Budget(max_states, time_limit)
    keyf = default_key if key is None else key
    unobserved = [not op.observed for op in ops]
    outcome = _search(ops, unobserved, model, keyf, budget)
    if outcome.ok is None:
        return Result(None, outcome.reason, history_size=len(ops), states=outcome.states)
    if outcome.ok:
        order = tuple(ops[i] for i, took in outcome.order or () if took)
        return Result(True, outcome.reason, linearization=order, history_size=len(ops), states=outcome.states)
    reason = "not linearizable"
    history, kept = ops, list(range(len(ops)))
    relaxed, final = unobserved, outcome
    if shrink:
        kept, ops, unobserved, outcome = _failing_prefix(ops, unobserved, outcome, model, keyf, budget)
        relaxed, final, cut = _shrink(ops, outcome, unobserved, model, keyf, budget)
        if cut == "time":
            reason += " (shrinking stopped at the time limit: the counterexample may shrink further)"
        elif cut == "states":
            reason += " (some shrinking steps hit max_states: the counterexample may shrink further)"
    deepest = final.order or []
    state, stuck = _stuck(ops, relaxed, model, deepest)
    # Report the history's own operations (the prefix holds pending copies of some).
    original = {id(op): history[i] for op, i in zip(ops, kept, strict=True)}
    required = [op.ret is not None and not r for op, r in zip(ops, relaxed, strict=True)]
    counterexample = tuple(original[id(op)] for op, req in zip(ops, required, strict=True) if req)
    shown = {id(op) for op in counterexample}
    return Result(
        False,
        reason,
        counterexample=counterexample,
        context=tuple(op for op in history if id(op) not in shown),
        prefix=tuple(original[id(ops[i])] for i, took in deepest if took),
        prefix_state=state,
        stuck=tuple((original[id(op)], answer) for op, answer in stuck),
        history_size=len(history),
        states=outcome.states,
    )


def _interval(op: Operation) -> str:
    return f"{op.call:g}..{'pending' if op.ret is None else format(op.ret, 'g')}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


PREFIX_LINES = 20
"""``format_counterexample`` shows at most the last this many operations of the prefix."""

COUNTEREXAMPLE_LINES = 40
"""... and of the counterexample (``Result.counterexample`` holds them all)."""


def format_counterexample(result: Result) -> str:
    """``result`` as readable text: for a counterexample, a table of its
    operations (client, call..ret interval, command, observed result), the
    longest linearizable prefix with the model state after it, and what
    the model returns for each operation that could go next."""
    if result.ok is True:
        return f"linearizable ({_plural(result.history_size, 'operation')})"
    if result.ok is None:
        return f"unknown: {result.reason}"
    ops = result.counterexample
    lines = [f"not linearizable: a counterexample of {_plural(len(ops), 'operation')} "
             f"(shrunk from {result.history_size})" if len(ops) < result.history_size
             else f"not linearizable: no shorter counterexample than the {_plural(len(ops), 'operation')}"]
    if "may shrink further" in result.reason:
        lines.append(result.reason[result.reason.index("(") :])
    rows = [("client", "call..ret", "command", "observed")]
    if len(ops) > COUNTEREXAMPLE_LINES:
        lines.append(f"  ... {len(ops) - COUNTEREXAMPLE_LINES} earlier operations, then:")
    for op in ops[-COUNTEREXAMPLE_LINES:]:
        command = op.label if op.label is not None else repr(op.command)
        rows.append((repr(op.client), _interval(op), command, repr(op.result)))
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    lines += ["  " + "  ".join(r[c].ljust(widths[c]) for c in range(3)) + "  " + r[3] for r in rows]
    if result.context:
        other = "operation" if len(result.context) == 1 else f"{len(result.context)} operations"
        lines.append(f"whatever the other {other} did (took effect within its interval, "
                     "or after its call if pending, or never)")
    lines.append(f"the longest linearizable prefix ({_plural(len(result.prefix), 'operation')}), "
                 f"then the state {result.prefix_state!r}:")
    shown = list(enumerate(result.prefix, 1))[-PREFIX_LINES:]
    if len(shown) < len(result.prefix):
        lines.append(f"  ... {len(result.prefix) - len(shown)} earlier")
    in_counterexample = {id(op) for op in ops}
    for n, op in shown:
        applied = repr(op.result) if id(op) in in_counterexample else "(took effect; result not checked)"
        lines.append(f"  {n}. {op.describe()} -> {applied}")
    lines.append("no operation can go next; the ones that could:")
    for op, answer in result.stuck:
        lines.append(f"  {op.describe()} observed {op.result!r}, the model returns {answer!r}")
    return "\n".join(lines)
