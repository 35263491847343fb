"""The checks ``process_test`` makes of a run, from what it observed.

Two records come out of a run of real node processes:

* the **client history**: each command a client sent, to which node, when it
  was sent and when (if ever) its outcome came back, and that outcome;
* the **ledgers**: the tags of the commands each node's state machine
  applied, in order (``machine_node.Ledger``), read after the faults were
  healed and the nodes caught up.

From these alone (never from the nodes' own status flags) it checks:

1. the nodes applied the same commands in the same order;
2. no command was applied twice, none that no client sent, and **no
   acknowledged command is missing** (lost);
3. with a model, every acknowledged outcome is the model's outcome at that
   command's position in the log, and the log order respects real time (a
   command acknowledged before another was sent comes first in the log);
4. with a model, the history is linearizable by a Wing–Gong–Lowe search
   (``raftkit.testing.linearizability``), which knows nothing of the log:
   a failing history is shrunk to a short counterexample. Commands without
   an outcome are left open when the ledger holds them (applied, so they
   took effect before any command after them in the log was acknowledged)
   and dropped when it does not (they never took effect). Its times are
   milliseconds since the first command.

A model is ``init()`` and ``step(state, command) -> (state, result)``;
a ``step`` that raises means the command fails and leaves the state as it
was, and the cluster must then raise an exception of the same class name.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from raftkit.testing.linearizability import Operation, Result, check, format_counterexample

__all__ = ["ClientOp", "Findings", "check_run", "outcome_of_model"]

Outcome = tuple[str, Any]
"""``("returned", value)`` or ``("raised", exception class name)``."""


@dataclass
class ClientOp:
    """One command as its client saw it. ``outcome`` is None when none came
    back (``error`` says why); ``sent`` is False when the node refused it at
    once, so it was never proposed."""

    client: int
    tag: int
    command: bytes
    node: str
    call: float
    ret: float | None = None
    outcome: Outcome | None = None
    error: str | None = None
    sent: bool = True

    def describe(self) -> str:
        shown = "no outcome" if self.outcome is None else _show(self.outcome)
        return f"client {self.client} on {self.node}: {self.command!r} -> {shown}"


def _show(outcome: Outcome) -> str:
    kind, value = outcome
    return f"raised {value}" if kind == "raised" else f"returned {value!r}"


def outcome_of_model(model: Any, state: Any, command: bytes) -> tuple[Any, Outcome]:
    """``(state after, outcome)``: a raising step leaves ``state`` as it was."""
    try:
        new_state, result = model.step(state, command)
    except Exception as exc:
        return state, ("raised", type(exc).__name__)
    return new_state, ("returned", result)


class _Outcomes:
    """The user's model as the linearizability checker wants it: total
    (a raising step is an outcome), results in ``Outcome`` form."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def init(self) -> Any:
        return self.model.init()

    def step(self, state: Any, command: bytes) -> tuple[Any, Outcome]:
        return outcome_of_model(self.model, state, command)


@dataclass
class Findings:
    """What the checks found. ``problems`` is empty when the run passed;
    ``linearizable`` is the search's answer (None: not run, or it hit a
    limit, see ``search``)."""

    problems: list[str]
    order: list[int]
    linearizable: bool | None = None
    search: Result | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def check_run(
    ops: Iterable[ClientOp],
    ledgers: Mapping[str, list[int] | None],
    model: Any = None,
    *,
    time_limit: float = 30.0,
) -> Findings:
    """Every check of the module docstring. ``ledgers`` maps each node to
    its applied tags (None: the node could not be read)."""
    ops = list(ops)
    problems: list[str] = []
    read = {n: tags for n, tags in ledgers.items() if tags is not None}
    for n in sorted(set(ledgers) - set(read)):
        problems.append(f"node {n}'s ledger could not be read after the run")
    if not read:
        return Findings(problems, [])
    order = max(read.values(), key=len)
    for n, tags in sorted(read.items()):
        if tags != order[: len(tags)] or len(tags) != len(order):
            pairs = enumerate(zip(tags, order, strict=False))
            at = next((i for i, (a, b) in pairs if a != b), min(len(tags), len(order)))
            problems.append(
                f"node {n} applied {len(tags)} commands, another {len(order)}; they differ from position {at}"
            )
    by_tag = {op.tag: op for op in ops}
    position: dict[int, int] = {}
    for i, tag in enumerate(order):
        if tag in position:
            twice = f"positions {position[tag]}, {i}"
            problems.append(f"the command {_name(by_tag, tag)} was applied twice ({twice})")
        elif tag not in by_tag:
            problems.append(f"a command no client sent (tag {tag}) was applied at position {i}")
        else:
            position[tag] = i
    for op in ops:
        if op.outcome is not None and op.tag not in position:
            holders = sorted(n for n, tags in read.items() if op.tag in tags)
            where = (f"only {', '.join(holders)} applied it (not in the longest ledger)" if holders
                     else "no node applied it")
            problems.append(f"LOST: {op.describe()} was acknowledged but {where}")
        if not op.sent and op.tag in position:
            problems.append(f"{op.describe()} was refused at once ({op.error}) but applied")
    findings = Findings(problems, order)
    if model is not None:
        problems.extend(_log_order_problems(ops, order, position, by_tag, model))
        _search(findings, ops, order, position, model, time_limit)
    return findings


def _name(by_tag: Mapping[int, ClientOp], tag: int) -> str:
    op = by_tag.get(tag)
    return f"tag {tag}" if op is None else repr(op.command)


def _log_order_problems(
    ops: list[ClientOp], order: list[int], position: dict[int, int], by_tag: dict[int, ClientOp], model: Any
) -> list[str]:
    problems: list[str] = []
    state = model.init()
    for i, tag in enumerate(order):
        op = by_tag.get(tag)
        if op is None or position.get(tag) != i:
            continue
        state, expected = outcome_of_model(model, state, op.command)
        if op.outcome is not None and op.outcome != expected:
            problems.append(
                f"at log position {i}, {op.describe()}, but the model {_show(expected)} there"
            )
            break  # what follows is measured against a state the cluster did not have
    # Real time: an operation acknowledged before another was sent must come first.
    done = sorted((op.ret, position[op.tag], op) for op in ops if op.ret is not None and op.tag in position)
    rets = [r for r, _, _ in done]
    best: list[tuple[int, ClientOp]] = []  # prefix maximum of log positions by response time
    for _, pos, op in done:
        best.append(max(best[-1], (pos, op), key=lambda x: x[0]) if best else (pos, op))
    for op in ops:
        if op.tag not in position:
            continue
        k = bisect.bisect_left(rets, op.call)  # responses strictly before this call
        if k and best[k - 1][0] > position[op.tag]:
            earlier = best[k - 1][1]
            problems.append(
                f"real time: {earlier.describe()} was acknowledged before {op.describe()} was sent, "
                f"but comes after it in the log ({best[k - 1][0]} > {position[op.tag]})"
            )
            break
    return problems


def _ms(t: float, t0: float) -> float:
    return (t - t0) * 1000.0


def _search(
    findings: Findings, ops: list[ClientOp], order: list[int], position: dict[int, int], model: Any,
    time_limit: float,
) -> None:
    # A command with no outcome that the log holds took effect before any
    # command after it in the log was acknowledged: that bounds its interval.
    later_ack = [float("inf")] * (len(order) + 1)
    by_tag = {op.tag: op for op in ops}
    for i in range(len(order) - 1, -1, -1):
        op = by_tag.get(order[i])
        acked = op.ret if op is not None and op.ret is not None else float("inf")
        later_ack[i] = min(later_ack[i + 1], acked)
    history: list[Operation] = []
    t0 = min((op.call for op in ops), default=0.0)  # times in messages: milliseconds into the run
    for op in ops:
        label = f"{op.command!r} via {op.node}"
        call = _ms(op.call, t0)
        if op.outcome is not None:
            assert op.ret is not None
            history.append(Operation(op.client, call, _ms(op.ret, t0), op.command, op.outcome, label))
        elif op.tag in position:
            bound = later_ack[position[op.tag] + 1]
            ret = None if bound == float("inf") or bound < op.call else _ms(bound, t0)
            label += " (no outcome)"
            history.append(Operation(op.client, call, ret, op.command, None, label, observed=False))
    result = check(history, _Outcomes(model), time_limit=time_limit)
    findings.search = result
    findings.linearizable = result.ok
    if result.ok is False:
        findings.problems.append(format_counterexample(result))
