"""raftkit.testing.linearizability: the checker agrees with a brute-force
search over every order of small random histories (random results, and
results of a simulated linearizable run, perturbed), rejects hand-made
non-linearizable histories with small shrunk counterexamples, handles
pending operations both ways, and answers "unknown" at its limits."""

from __future__ import annotations

import doctest
import time
from collections import Counter as Multiset
from dataclasses import replace
from itertools import combinations, permutations
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkit.testing import linearizability
from raftkit.testing.linearizability import Operation, Result, check, default_key, format_counterexample


class Register:
    """A register, initially None: ("write", v) -> None, ("read",) -> value."""

    def init(self) -> Any:
        return None

    def step(self, state: Any, command: tuple) -> tuple[Any, Any]:
        if command[0] == "write":
            return command[1], None
        return state, state


class CounterModel:
    """A counter from 0: ("inc",) -> None (a blind increment), ("get",) -> value."""

    def init(self) -> int:
        return 0

    def step(self, state: int, command: tuple) -> tuple[int, Any]:
        if command[0] == "inc":
            return state + 1, None
        return state, state


class Queue:
    """A FIFO queue: ("enq", v) -> None, ("deq",) -> the head, or None if empty."""

    def init(self) -> tuple:
        return ()

    def step(self, state: tuple, command: tuple) -> tuple[tuple, Any]:
        if command[0] == "enq":
            return state + (command[1],), None
        return (state[1:], state[0]) if state else (state, None)


class ListQueue(Queue):
    """The same queue with an unhashable (list) state, copied on every step."""

    def init(self) -> list:  # type: ignore[override]
        return []

    def step(self, state: list, command: tuple) -> tuple[list, Any]:  # type: ignore[override]
        new, out = super().step(tuple(state), command)
        return list(new), out


# model name -> (model, commands, possible results of a command)
MODELS: dict[str, tuple[Any, list[tuple], Any]] = {
    "register": (Register(), [("write", 1), ("write", 2), ("read",)],
                 lambda c: [None] if c[0] == "write" else [None, 1, 2]),
    "counter": (CounterModel(), [("inc",), ("get",)],
                lambda c: [None] if c[0] == "inc" else [0, 1, 2, 3]),
    "queue": (Queue(), [("enq", 1), ("enq", 2), ("deq",)],
              lambda c: [None] if c[0] == "enq" else [None, 1, 2]),
}


# -- the brute-force oracle ---------------------------------------------------


def respects_real_time(order: tuple[Operation, ...]) -> bool:
    """No operation is placed before one that returned before it was called."""
    return all(
        not (b.ret is not None and b.ret < a.call) for i, a in enumerate(order) for b in order[i + 1:]
    )


def replays(order: tuple[Operation, ...], model: Any, unchecked: frozenset[int] = frozenset()) -> bool:
    """The model gives every completed operation in ``order`` its observed
    result, except those whose id is in ``unchecked``."""
    state = model.init()
    for op in order:
        state, out = model.step(state, op.command)
        if op.ret is not None and id(op) not in unchecked and out != op.result:
            return False
    return True


def brute_force(history: list[Operation], model: Any, relaxed: Any = ()) -> bool:
    """Every completed operation and any subset of the pending ones, in
    every order real time allows. ``relaxed`` operations (of the history)
    are optional too and their results are not checked."""
    loose = frozenset(id(op) for op in relaxed)
    required = [op for op in history if op.ret is not None and id(op) not in loose]
    optional = [op for op in history if op.ret is None or id(op) in loose]
    for k in range(len(optional) + 1):
        for chosen in combinations(optional, k):
            for order in permutations(required + list(chosen)):
                if respects_real_time(order) and replays(order, model, loose):
                    return True
    return False


def assert_agrees(history: list[Operation], model: Any) -> Result:
    """check() agrees with brute force; its linearization is valid; its
    counterexample is not linearizable by itself nor with the rest relaxed,
    relaxing any one more of its operations makes the history linearizable,
    and its explanation holds."""
    expected = brute_force(history, model)
    result = check(history, model, time_limit=None)
    assert result.ok is expected, format_counterexample(result)
    if result.ok:
        order = result.linearization
        assert len({id(op) for op in order}) == len(order)
        assert {id(op) for op in history if op.ret is not None} <= {id(op) for op in order}
        assert {id(op) for op in order} <= {id(op) for op in history}
        assert respects_real_time(order) and replays(order, model)
    else:
        cx, context = list(result.counterexample), list(result.context)
        assert [op for op in history if any(op is c for c in cx)] == cx  # a sub-history, in order
        assert Multiset(map(id, cx + context)) == Multiset(map(id, history))
        assert cx and all(op.ret is not None for op in cx)
        assert not brute_force(cx, model)
        assert not brute_force(history, model, relaxed=context)
        for op in cx:
            # relaxing any one more operation makes the history linearizable
            assert brute_force(history, model, relaxed=[*context, op])
        # the explanation: a valid prefix, then every operation that could go next disagrees
        loose = frozenset(id(op) for op in context)
        assert respects_real_time(result.prefix) and replays(result.prefix, model, loose)
        assert result.stuck
        for op, answer in result.stuck:
            assert any(op is c for c in cx) and answer != op.result
        assert "no operation can go next" in format_counterexample(result)
    return result


# -- history generators -------------------------------------------------------


@st.composite
def intervals(draw: st.DrawFn) -> list[tuple[int, int, int | None]]:
    """(client, call, ret) for 1-6 operations of 1-3 sequential clients on a
    small integer clock (so times often tie); a client's last operation may
    be pending."""
    n_clients = draw(st.sampled_from([3, 2, 1]))
    clock = [0] * n_clients
    stopped: set[int] = set()
    out: list[tuple[int, int, int | None]] = []
    for _ in range(draw(st.sampled_from([6, 5, 4, 3, 2, 1]))):  # larger ones first
        live = [c for c in range(n_clients) if c not in stopped]
        if not live:
            break
        client = draw(st.sampled_from(live))
        call = clock[client] + draw(st.integers(0, 3))
        if draw(st.integers(0, 6)) == 0:
            stopped.add(client)
            out.append((client, call, None))
        else:
            ret = call + draw(st.integers(0, 4))
            clock[client] = ret
            out.append((client, call, ret))
    return out


NO_RESPONSE = "no response"
"""A pending operation's result: no model returns it, so a checker that
looks at it fails."""


def client_name(c: int) -> str:
    return "ABC"[c]


@st.composite
def random_histories(draw: st.DrawFn) -> tuple[str, list[Operation]]:
    """Commands and results drawn at random: mostly not linearizable."""
    name = draw(st.sampled_from(sorted(MODELS)))
    _, commands, results = MODELS[name]
    history = []
    for client, call, ret in draw(intervals()):
        command = draw(st.sampled_from(commands))
        result = draw(st.sampled_from(results(command))) if ret is not None else NO_RESPONSE
        history.append(Operation(client_name(client), call, ret, command, result))
    return name, history


@st.composite
def simulated_histories(draw: st.DrawFn) -> tuple[str, list[Operation], bool]:
    """A linearizable run: each operation takes effect at a point of its
    interval (a pending one, at a point after its call or never) and sees
    the model's result there; then maybe one result is perturbed.
    Returns (model name, history, perturbed)."""
    name = draw(st.sampled_from(sorted(MODELS)))
    model, commands, results = MODELS[name]
    spans = draw(intervals())
    ops = [(client, call, ret, draw(st.sampled_from(commands))) for client, call, ret in spans]
    points = []
    for i, (_, call, ret, _) in enumerate(ops):
        if ret is None:
            if draw(st.booleans()):
                continue  # never took effect
            point = draw(st.integers(2 * call, 2 * call + 12))
        else:
            point = draw(st.integers(2 * call, 2 * ret))  # half steps: strictly inside or at an end
        points.append((point, draw(st.integers(0, 9)), i))
    observed: dict[int, Any] = {}
    state = model.init()
    for _, _, i in sorted(points):
        state, observed[i] = model.step(state, ops[i][3])
    history = [
        Operation(client_name(client), call, ret, command, NO_RESPONSE if ret is None else observed[i])
        for i, (client, call, ret, command) in enumerate(ops)
    ]
    # perturb: one completed read, get or dequeue observes another value
    readers = [i for i, op in enumerate(history) if op.ret is not None and len(results(op.command)) > 1]
    perturbed = bool(readers) and draw(st.booleans())
    if perturbed:
        op = history[i := draw(st.sampled_from(readers))]
        wrong = draw(st.sampled_from([r for r in results(op.command) if r != op.result]))
        history[i] = Operation(op.client, op.call, op.ret, op.command, wrong)
    return name, history, perturbed


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(random_histories())
def test_random_histories_agree_with_brute_force(case: tuple[str, list[Operation]]) -> None:
    name, history = case
    assert_agrees(history, MODELS[name][0])


@FAST
@given(simulated_histories())
def test_simulated_and_perturbed_histories_agree_with_brute_force(
    case: tuple[str, list[Operation], bool],
) -> None:
    name, history, perturbed = case
    result = assert_agrees(history, MODELS[name][0])
    if not perturbed:
        assert result.ok is True


@settings(max_examples=60, deadline=None)
@given(random_histories())
def test_unhashable_states_memoize_through_the_default_key(case: tuple[str, list[Operation]]) -> None:
    name, history = case
    if name == "queue":
        assert check(history, ListQueue()).ok is brute_force(history, Queue())


# -- hand-made non-linearizable histories --------------------------------------


def test_a_stale_read_after_a_completed_write() -> None:
    write = Operation("A", 0, 1, ("write", 1))
    stale = Operation("B", 2, 3, ("read",), None)
    history = [
        write,
            Operation("C", -2, -1, ("read",), None),
        stale,
        Operation("C", 4, 5, ("write", 7)),
        Operation("D", 4.5, 6, ("write", 8)),
        Operation("D", 7, 8, ("read",), 8),
    ]
    result = check(history, Register())
    assert result.ok is False
    assert result.counterexample == (write, stale)
    assert [op for op in result.prefix if op in result.counterexample] == [write]
    assert result.prefix_state == 1 and result.stuck == ((stale, 1),)
    text = format_counterexample(result)
    assert "counterexample of 2 operations (shrunk from 6)" in text
    assert "whatever the other 4 operations did" in text
    assert "'B' ('read',) observed None, the model returns 1" in text
    assert "2..3" in text


def test_a_read_of_an_overwritten_value_keeps_the_write_that_made_it_possible() -> None:
    first, second = Operation("A", 0, 1, ("write", 1)), Operation("A", 2, 3, ("write", 2))
    stale = Operation("B", 4, 5, ("read",), 1)
    result = check([first, second, stale], Register())
    assert result.ok is False
    # relaxed, not deleted: the first write stays as context, so the read of 1
    # is not reported as a read of a value nothing wrote
    assert result.counterexample == (second, stale) and result.context == (first,)
    assert result.stuck == ((stale, 2),)


def test_two_readers_seeing_concurrent_writes_in_opposite_orders() -> None:
    core = [
        Operation("A", 0, 10, ("write", 1)),
        Operation("B", 0, 10, ("write", 2)),
        Operation("C", 1, 2, ("read",), 1),
        Operation("C", 3, 4, ("read",), 2),
        Operation("D", 1, 2, ("read",), 2),
        Operation("D", 3, 4, ("read",), 1),
    ]
    noise = [Operation("E", -5, -4, ("write", 0)), Operation("E", -3, -2, ("read",), 0)]
    result = check(noise + core, Register())
    assert result.ok is False
    # the four reads contradict each other whatever the writes did (and a
    # write is relaxed, not dropped: a read of 1 stays possible)
    assert list(result.counterexample) == core[2:]
    assert list(result.context) == noise + core[:2]
    assert "shrunk from 8" in format_counterexample(result)


def test_a_lost_increment() -> None:
    incs = [Operation("A", 0, 1, ("inc",)), Operation("B", 0.5, 1.5, ("inc",))]
    lost = Operation("C", 2, 3, ("get",), 1)
    history = [Operation("D", -2, -1, ("get",), 0), *incs, lost, Operation("E", 4, 5, ("inc",))]
    result = check(history, CounterModel())
    assert result.ok is False
    assert list(result.counterexample) == [*incs, lost]
    assert result.stuck == ((lost, 2),)


def test_a_dequeue_of_a_value_never_enqueued() -> None:
    ghost = Operation("B", 4, 5, ("deq",), 9, label="dequeue")
    history = [
        Operation("A", 0, 1, ("enq", 1)),
        Operation("B", 2, 3, ("deq",), 1),
        Operation("A", 2, 6, ("enq", 2)),
        ghost,
    ]
    result = check(history, Queue())
    assert result.ok is False
    assert result.counterexample == (ghost,)
    [(op, answer)] = result.stuck
    assert op is ghost and answer != 9
    assert f"'B' dequeue observed 9, the model returns {answer!r}" in format_counterexample(result)


def test_without_shrinking_the_whole_history_is_the_counterexample() -> None:
    history = [Operation("A", 0, 1, ("write", 1)), Operation("B", 2, 3, ("read",), None),
               Operation("C", 4, 5, ("write", 2))]
    result = check(history, Register(), shrink=False)
    assert result.ok is False and result.counterexample == tuple(history)
    assert "no shorter counterexample" in format_counterexample(result)


# -- pending operations --------------------------------------------------------


def test_a_pending_write_a_later_read_saw_took_effect() -> None:
    write = Operation("A", 0, None, ("write", 1), result="ignored")
    history = [Operation("B", 1, 2, ("read",), None), write, Operation("B", 3, 4, ("read",), 1)]
    result = check(history, Register())
    assert result.ok is True
    assert [op.command for op in result.linearization] == [("read",), ("write", 1), ("read",)]


def test_a_pending_write_no_read_saw_is_left_out_or_last() -> None:
    write = Operation("A", 0, None, ("write", 1))
    history = [write, Operation("B", 1, 2, ("read",), None), Operation("B", 3, 4, ("read",), None)]
    result = check(history, Register())
    assert result.ok is True
    order = list(result.linearization)
    assert write not in order[:-1]  # it did not take effect before either read
    # the same write completed (a response seen) must have taken effect before the reads
    assert check([Operation("A", 0, 0.5, ("write", 1)), *history[1:]], Register()).ok is False


def test_a_pending_enqueue_counts_only_when_its_value_is_dequeued() -> None:
    enq = Operation("A", 0, None, ("enq", 5))
    assert check([enq, Operation("B", 1, 2, ("deq",), 5)], Queue()).ok is True
    assert check([enq, Operation("B", 1, 2, ("deq",), None)], Queue()).ok is True
    # pending, it cannot take effect before its call
    too_early = [Operation("B", 0, 1, ("deq",), 5), Operation("A", 2, None, ("enq", 5))]
    assert check(too_early, Queue()).ok is False


# -- limits, keys, errors --------------------------------------------------------


def impossible_counter_history(n: int) -> list[Operation]:
    """n concurrent increments and a concurrent get of -1: every subset of
    the increments is a distinct configuration to explore before failing."""
    return [Operation(f"c{i}", 0, 100, ("inc",)) for i in range(n)] + [Operation("g", 0, 100, ("get",), -1)]


def test_the_state_limit_answers_unknown() -> None:
    result = check(impossible_counter_history(30), CounterModel(), max_states=2000)
    assert result.ok is None
    assert result.reason.startswith("search limit") and "max_states" in result.reason
    assert result.states == 2000 and result.counterexample == ()
    assert format_counterexample(result).startswith("unknown: search limit")


def test_the_time_limit_answers_unknown_instead_of_hanging() -> None:
    start = time.monotonic()
    result = check(impossible_counter_history(40), CounterModel(), time_limit=0.2)
    assert time.monotonic() - start < 3
    assert result.ok is None and "time limit" in result.reason


def test_shrinking_stops_at_the_time_limit_with_a_valid_counterexample() -> None:
    history = [Operation("A", 0, 1, ("write", 1)), Operation("B", 2, 3, ("read",), None),
               Operation("C", 4, 5, ("write", 2))]
    result = check(history, Register(), time_limit=0)  # the first search needs fewer than 64 steps
    assert result.ok is False and "shrinking stopped" in result.reason
    assert result.counterexample == tuple(history)


def test_shrinking_steps_that_hit_the_state_limit_are_reported() -> None:
    history = impossible_counter_history(8)  # the whole search memoizes 2**8 - 1 states
    assert check(history, CounterModel(), shrink=False).states == 255
    cut = check(history, CounterModel(), max_states=255)  # enough to check, not to relax
    assert cut.ok is False and "hit max_states" in cut.reason
    assert cut.counterexample == tuple(history)
    assert "hit max_states" in format_counterexample(cut)
    assert check(history, CounterModel()).counterexample == (history[-1],)  # get -> -1 alone


def test_a_long_simulated_history_checks_quickly_and_a_stale_read_in_it_shrinks() -> None:
    import random

    rng = random.Random(7)
    clock = [0.0] * 5
    ops, points = [], []
    for n in range(200):
        c = rng.randrange(5)
        call = clock[c] + rng.random()
        ret = call + rng.random() * 3
        clock[c] = ret
        command = ("write", n) if rng.random() < 0.5 else ("read",)
        ops.append((f"c{c}", call, ret, command))
        points.append((rng.uniform(call, ret), len(ops) - 1))
    state, observed = None, {}
    for _, i in sorted(points):
        state, observed[i] = Register().step(state, ops[i][3])
    history = [Operation(c, call, ret, command, observed[i]) for i, (c, call, ret, command) in enumerate(ops)]
    start = time.monotonic()
    assert check(history, Register()).ok is True
    # a read long after a write returns the value from before it
    first_write = next(op for op in history if op.command[0] == "write")
    stale = Operation("late", history[-1].ret + 10, history[-1].ret + 11, ("read",), first_write.command[1])
    result = check([*history, stale], Register())
    assert result.ok is False
    assert stale in result.counterexample and len(result.counterexample) <= 3
    assert time.monotonic() - start < 5


def test_a_custom_key_is_used_for_memoization() -> None:
    seen: list[Any] = []

    def key(state: list) -> tuple:
        seen.append(state)
        return tuple(state)

    history = [Operation("A", 0, 1, ("enq", 1)), Operation("B", 0, 1, ("enq", 2)),
               Operation("C", 2, 3, ("deq",), 2)]
    assert check(history, ListQueue(), key=key).ok is True
    assert seen and all(isinstance(s, list) for s in seen)


def test_default_key() -> None:
    assert default_key((1, "a")) == (1, "a")
    assert default_key([1, 2]) == default_key([1, 2]) != default_key([2, 1])
    assert default_key([1, 2]) != default_key((1, 2))
    unpicklable = [lambda: None]
    assert default_key(unpicklable) == default_key(unpicklable)
    hash(default_key(unpicklable))


def test_malformed_input_is_refused() -> None:
    with pytest.raises(ValueError):
        Operation("A", 2, 1, ("read",))
    with pytest.raises(TypeError):
        check([("A", 0, 1)], Register())  # type: ignore[list-item]
    with pytest.raises(ValueError):
        check([], Register(), max_states=0)


def test_the_empty_history_is_linearizable() -> None:
    result = check([], Register())
    assert result.ok is True and result.linearization == ()
    assert format_counterexample(result) == "linearizable (0 operations)"


def test_the_module_docstring_example_runs() -> None:
    failures, tried = doctest.testmod(linearizability)
    assert tried > 0 and failures == 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_histories(), st.data())
def test_unobserved_operations_are_optional_and_unchecked(case: tuple[str, list[Operation]], data) -> None:
    """observed=False: the operation ended by its ret but its result is unknown;
    the verdict must be brute force's with that operation relaxed."""
    name, history = case
    completed = [i for i, op in enumerate(history) if op.ret is not None]
    chosen = data.draw(st.sets(st.sampled_from(completed)) if completed else st.just(set()))
    marked = [replace(op, observed=False) if i in chosen else op for i, op in enumerate(history)]
    model = MODELS[name][0]
    result = check(marked, model, time_limit=None)
    assert result.ok is brute_force(marked, model, relaxed=[marked[i] for i in chosen])
    if result.ok is False:
        assert all(op.observed for op in result.counterexample)


def test_a_stale_read_in_a_long_history_shrinks_to_the_write_and_the_read() -> None:
    # 200 good writes and reads, one stale read at the 10th operation: the
    # counterexample comes from the first few operations, not from all 200.
    history, t = [], 0
    for i in range(100):
        history.append(Operation("A", t, t + 1, ("write", i)))
        history.append(Operation("B", t + 2, t + 3, ("read",), i if i != 4 else 3))
        t += 4
    result = check(history, Register(), time_limit=10)
    assert result.ok is False
    assert [op.command for op in result.counterexample] == [("write", 4), ("read",)]
    assert len(result.context) == 198
