"""A user's state machine inside ``SimCluster`` (raftkit.testing.sim), and
the check that its replicas agree.

``SimCluster(..., state_machine=factory)`` gives every simulated node a real
instance from ``factory()`` (a ``raftkit.state_machines.StateMachine``) and
drives it as a node's runtime does (raftkit.runtime.applier): committed
NORMAL entries, the commands ``propose`` put in the log, are applied in log
order with ``apply_entry(index, command)``; raftkit's own NOOP and CONFIG
entries are not. A raised ``Exception`` is that command's outcome, like a
return value. Compaction snapshots the instance (``snapshot()``); a node
installing a snapshot, restarting or losing its disk starts from a fresh
instance (restored from its latest snapshot, if it has one) and the core
hands it the committed entries after it again.

``StateAgreement`` records what the simulator observed and judges it when
the invariants run (``Invariants.check_invariants``), never from the cores'
flags. Each ``factory()`` call must give a fresh, empty, in-memory
instance; results and digests are copied when taken, so a value that is a
view of the live state is judged as it was.

* **outcomes**: the outcome of each index (value, or exception type and
  message) is the same on every node that applied it, every time it did;
* **states**: every node at a given applied index holds the same state. With
  a ``digest(sm)`` (default: ``sm.snapshot()``), a node's digest is taken
  after each entry it applies and after each restore, and compared with the
  first digest taken at that index by any node, at any time (a node that
  restarts and re-applies is compared again). With ``state_equal(a, b)``,
  the live instances at the same applied index are compared pairwise
  whenever one of them moved (without ``digest``, only that is done, as
  instances cannot be kept for later).

Violations raise ``InvariantViolation`` (through the cluster's
``_violation``) naming the nodes, the index and what differs. The counters
``state_comparisons`` and ``outcome_comparisons`` say how much was compared.

The snapshot bytes the simulated disk holds are the simulator's own
bookkeeping and the user's ``snapshot()`` bytes side by side (``pack`` /
``unpack``); only the latter reach the user's ``restore``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from raftkit.core.types import Entry, EntryKind, NodeId
from raftkit.state_machines.base import StateMachine

__all__ = ["Outcome", "StateAgreement", "StateMachineFactory", "pack", "unpack"]

StateMachineFactory = Callable[[], StateMachine]

_SHOWN = 160  # characters of a state or value shown in a violation message


@dataclass(frozen=True)
class Outcome:
    """What applying one command gave on one node: its return value, or the
    exception it raised (``error``)."""

    value: Any = None
    error: Exception | None = None

    @property
    def raised(self) -> bool:
        return self.error is not None

    def unwrap(self) -> Any:
        """The value, or raise the exception, as a ``sync=True`` call does."""
        if self.error is not None:
            raise self.error
        return self.value

    def same_as(self, other: Outcome) -> bool:
        """Equal values, or exceptions of the same type with the same message."""
        if self.error is not None or other.error is not None:
            return (
                self.error is not None
                and other.error is not None
                and type(self.error) is type(other.error)
                and str(self.error) == str(other.error)
            )
        try:
            return bool(self.value == other.value)
        except Exception:  # a value whose comparison fails is not the same
            return False

    def __str__(self) -> str:
        if self.error is not None:
            return f"raised {type(self.error).__qualname__}({_show(str(self.error))})"
        return f"returned {_show(self.value)}"


def pack(bookkeeping: bytes, user: bytes) -> bytes:
    """The simulated snapshot file: the simulator's rows and the user's bytes."""
    packed: bytes = msgpack.packb([bookkeeping, user], use_bin_type=True)
    return packed


def unpack(data: bytes) -> tuple[bytes, bytes]:
    bookkeeping, user = msgpack.unpackb(data)
    return bookkeeping, user


class StateAgreement:
    """Each node's user state machine and the record of what it did.

    ``violation(message)`` reports a disagreement (the cluster's ``_violation``,
    which raises ``InvariantViolation``)."""

    def __init__(
        self,
        factory: StateMachineFactory,
        violation: Callable[[str], None],
        *,
        state_equal: Callable[[Any, Any], bool] | None = None,
        digest: Callable[[Any], Any] | None = None,
    ) -> None:
        self.factory = factory
        self._violation = violation
        self.state_equal = state_equal
        # Digests over time unless only state_equal was given.
        self.digest: Callable[[Any], Any] | None = digest
        if digest is None and state_equal is None:
            self.digest = _snapshot_digest
        self.instances: dict[NodeId, StateMachine] = {}  # live nodes only
        self.position: dict[NodeId, int] = {}  # index the instance holds everything up to
        self._origin: dict[NodeId, str] = {}  # how the instance started, for messages
        self._generation: dict[NodeId, int] = {}  # bumped with every new instance
        self.results: dict[int, dict[NodeId, Outcome]] = {}  # index -> node -> its latest outcome
        self.commands: dict[int, bytes] = {}
        # Observations not judged yet: (node, index, outcome or None, digest, has digest, origin).
        self._pending: list[tuple[NodeId, int, Outcome | None, Any, bool, str]] = []
        self._outcome_ref: dict[int, tuple[NodeId, Outcome, str]] = {}  # first outcome seen per index
        self._state_ref: dict[int, tuple[NodeId, Any, str]] = {}  # first digest seen per index
        self._live_seen: object = None
        self.state_comparisons = 0
        self.outcome_comparisons = 0

    # -- lifecycle (called by SimCluster) ---------------------------------------------------

    def start(self, node: NodeId) -> None:
        """A (re)started node: a fresh, empty instance."""
        self.instances[node] = self.factory()
        self.position[node] = 0
        self._origin[node] = "started empty"
        self._generation[node] = self._generation.get(node, 0) + 1

    def restore(self, node: NodeId, index: int, user_bytes: bytes) -> None:
        """A fresh instance restored from snapshot bytes covering up to ``index``."""
        sm = self.instances[node] = self.factory()
        sm.restore(user_bytes)
        self.position[node] = index
        self._origin[node] = f"restored a snapshot at {index}"
        self._generation[node] = self._generation.get(node, 0) + 1
        self._observe(node, index, None)

    def drop(self, node: NodeId) -> None:
        """A crash: the instance is lost."""
        self.instances.pop(node, None)
        self.position.pop(node, None)

    def snapshot(self, node: NodeId) -> bytes:
        return self.instances[node].snapshot()

    def apply(self, node: NodeId, e: Entry) -> None:
        """Entry ``e`` is committed and next in ``node``'s log order."""
        sm = self.instances[node]
        outcome = None
        if e.kind is EntryKind.NORMAL:
            try:
                outcome = Outcome(_frozen(sm.apply_entry(e.index, e.data)))
            except Exception as exc:  # an outcome like any other, as in the runtime's applier
                outcome = Outcome(error=exc)
            self.results.setdefault(e.index, {})[node] = outcome
            self.commands[e.index] = e.data
        self.position[node] = e.index
        self._observe(node, e.index, outcome)

    def _observe(self, node: NodeId, index: int, outcome: Outcome | None) -> None:
        origin = self._origin[node]
        if self.digest is None:
            self._pending.append((node, index, outcome, None, False, origin))
        else:
            dig = _frozen(self.digest(self.instances[node]))
            self._pending.append((node, index, outcome, dig, True, origin))

    # -- accessors ------------------------------------------------------------------------

    def result_at(self, index: int, node: NodeId | None = None) -> Outcome | None:
        """The outcome of the command at ``index`` (on ``node``, or the first
        one observed), or None when no node applied a command there."""
        if node is not None:
            return self.results.get(index, {}).get(node)
        ref = self._outcome_ref.get(index)
        if ref is not None:
            return ref[1]
        seen = self.results.get(index)
        return next(iter(seen.values())) if seen else None

    # -- the check ------------------------------------------------------------------------

    def check(self) -> None:
        """Judge what was observed since the last call (see the module docstring)."""
        pending, self._pending = self._pending, []
        for node, index, outcome, dig, has_digest, origin in pending:
            if outcome is not None:
                self._check_outcome(node, index, outcome, origin)
            if has_digest:
                self._check_digest(node, index, dig, origin)
        if self.state_equal is not None:
            self._check_live()

    def _check_outcome(self, node: NodeId, index: int, outcome: Outcome, origin: str) -> None:
        ref = self._outcome_ref.setdefault(index, (node, outcome, origin))
        if ref[0] == node and ref[1] is outcome:
            return
        self.outcome_comparisons += 1
        if not outcome.same_as(ref[1]):
            self._violation(
                f"state machine outcomes differ at index {index} (command {_show(self.commands.get(index))}):"
                f" {ref[0]} ({ref[2]}) {ref[1]}, but {node} ({origin}) {outcome}"
            )

    def _check_digest(self, node: NodeId, index: int, dig: Any, origin: str) -> None:
        ref = self._state_ref.setdefault(index, (node, dig, origin))
        if ref[0] == node and ref[1] is dig:
            return
        self.state_comparisons += 1
        if dig != ref[1]:
            self._violation(
                f"state machines differ at applied index {index}: {ref[0]} ({ref[2]}) had"
                f" {_diff(ref[1], dig)}, but {node} ({origin}) has {_diff(dig, ref[1])}"
            )

    def _check_live(self) -> None:
        assert self.state_equal is not None
        stamp = tuple(sorted((n, i, self._generation[n]) for n, i in self.position.items()))
        if stamp == self._live_seen:
            return
        self._live_seen = stamp
        first: dict[int, NodeId] = {}
        for node, index, _ in stamp:
            ref = first.setdefault(index, node)
            if ref == node:
                continue
            self.state_comparisons += 1
            a, b = self.instances[ref], self.instances[node]
            if not self.state_equal(a, b):
                self._violation(
                    f"state machines differ at applied index {index} (state_equal): {ref}"
                    f" ({self._origin[ref]}) has {_describe(a, b)}, but {node} ({self._origin[node]})"
                    f" has {_describe(b, a)}"
                )


def _snapshot_digest(sm: StateMachine) -> bytes:
    return sm.snapshot()


def _frozen(value: Any) -> Any:
    """A copy of ``value`` that later applies cannot change (a result or a
    digest may be a view of the live state), else ``value`` itself."""
    if isinstance(value, (bytes, str, int, float, type(None))):
        return value
    try:
        return copy.deepcopy(value)
    except Exception:  # not copyable: compared as it is
        return value


def _describe(sm: StateMachine, other: StateMachine) -> str:
    """A state for a message: its snapshot bytes, if it can give them."""
    try:
        return _diff(sm.snapshot(), other.snapshot())
    except Exception:
        return _show(sm)


def _diff(value: Any, other: Any) -> str:
    """``value`` shown around its first difference with ``other`` when long."""
    if isinstance(value, (bytes, str)) and isinstance(other, type(value)) and len(repr(value)) > _SHOWN:
        pairs = enumerate(zip(value, other, strict=False))
        k = next((i for i, (x, y) in pairs if x != y), min(len(value), len(other)))
        start = max(0, k - 40)
        head = "..." if start else ""
        return f"{head}{_show(value[start:])} (first difference at offset {k})"
    return _show(value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
