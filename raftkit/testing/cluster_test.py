"""A ready-made Hypothesis test of YOUR state machine in a faulty cluster.

``cluster_test(factory, commands, model=..., query=...)`` returns a
``unittest`` TestCase class (pytest collects it) whose examples each build
a ``SimCluster`` in which every node runs ``factory()``, elect a leader,
and then interleave your commands, proposed on any node (and on the
leader), with faults: lost, duplicated, delayed and reordered messages,
late ones (held back for many steps, a copy from a node's earlier
incarnation, a TIMEOUT_NOW after its transfer expired), one- and two-way
partitions, crashes and restarts, a lost disk, log
compaction (so lagging followers install snapshots), leadership transfers
and membership changes: a new node (running ``factory()`` too) added as a
learner, promoted, demoted, removed (it keeps running), or a new voter set
through a joint configuration. Faults and changes never leave fewer than a
majority of any voter set up (a pending configuration entry's included),
and at most one node without its disk: the test is about safety, and at
the end the healed cluster must settle. After every step:

* the replicas agree (the simulator's own check: each index gives every
  node the same result or the same exception, and nodes at the same
  applied index hold the same state, by ``snapshot()`` bytes unless you
  pass ``digest`` or ``state_equal``);
* with a ``model`` (``init()``, ``step(state, command) -> (state,
  result)``, the same shape as ``raftkit.testing.linearizability.Model``;
  ``step`` must not change the state it is given), every command that
  committed returned what the model returns at its log position. The log
  order is the order the cluster acknowledged commands in, so this is the
  linearizability of what clients were told;
* with a ``query(sm)`` (what a client reads of your instance) and a model
  with ``read(state)`` (the same read of the model's state), reads on any
  node return what their mode promises, judged from what the test saw: a
  *local* read (answered at once from the node's state) equals the model's
  read at that node's applied index, a prefix of the log with no freshness
  promise; a *linearizable* read (a ReadIndex round, answered once the node
  has applied up to the index the leader confirmed) equals the model's
  read at some log position from the last index acknowledged to a client
  before the read was issued up to the last index seen committed when it
  was answered. A read that is never answered (its node crashed, its
  request was lost) promises nothing. Lease reads are not covered: the
  simulator models leases only with a clock (``raftkit.testing.clock``,
  which checks them itself), and this test runs without one.

A failure is shrunk by Hypothesis to a short sequence of steps, printed
with the failing check's message (``ModelMismatch``, ``ReadMismatch`` or
the simulator's ``InvariantViolation``)::

    from hypothesis import strategies as st
    from raftkit.testing.cluster_test import cluster_test

    def bank_commands():
        account = st.sampled_from(["ann", "bob"])
        return st.builds(lambda op, a, n: f"{op} {a} {n}".encode(),
                         st.sampled_from(["deposit", "withdraw"]), account, st.integers(1, 20))

    TestBank = cluster_test(Bank, bank_commands(), model=BankModel(),
                            query=lambda bank: dict(bank.balances), max_examples=50)

Each proposal carries an 8-byte sequence number in front of your command,
so equal commands stay distinct in the log; your state machine never sees
it (a wrapper strips it). For SyncObj consumers (batteries) and their
method calls, see ``consumer_cluster_test`` in
raftkit.testing.conformance.replicated_objects.
"""

from __future__ import annotations

import bisect
import unittest
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from raftkit.core.membership import decode_conf
from raftkit.core.types import EntryKind
from raftkit.state_machines.base import StateMachine
from raftkit.testing.sim import SimCluster
from raftkit.testing.sim_state import Outcome, _frozen

__all__ = ["ModelMismatch", "ReadMismatch", "cluster_test"]

_TAG = 8  # bytes of sequence number in front of each proposed command


class ModelMismatch(AssertionError):
    """A committed command's result is not what the model returns at its
    log position."""


class ReadMismatch(AssertionError):
    """A read returned what the model does not read at any log position
    its mode allows."""


@dataclass
class _Answer:
    """A read the test saw answered: where, in which mode, what it returned
    and the log positions its mode allows (``low`` to ``high``)."""

    node: str
    mode: str
    value: Any
    low: int  # local: the node's applied index; linearizable: the last index acknowledged before the read
    high: int  # the serving node's applied index, or the last index seen committed when it answered


class _Tagged(StateMachine):
    """The user's machine behind the sequence-number tag: it sees only its
    own command bytes. ``seen`` (shared by every node's wrapper) maps each
    applied index to the tag, which is how the test knows which command of
    its own sits where in the log."""

    def __init__(self, inner: StateMachine, seen: dict[int, int]) -> None:
        self.inner = inner
        self._seen = seen

    def apply_entry(self, index: int, command: bytes) -> Any:
        self._seen.setdefault(index, int.from_bytes(command[:_TAG], "big"))
        return self.inner.apply_entry(index, command[_TAG:])

    def apply(self, command: bytes) -> Any:
        return self.inner.apply(command[_TAG:])

    def snapshot(self) -> bytes:
        return self.inner.snapshot()

    def restore(self, data: bytes) -> None:
        self.inner.restore(data)


def _same(outcome: Outcome, expected: tuple[bool, Any]) -> bool:
    raised, value = expected
    if outcome.raised != raised:
        return False
    if raised:  # the same kind of failure; messages are the machine's own words
        return type(outcome.error) is type(value)
    return bool(outcome.value == value)


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # values that cannot be compared are not equal
        return False


def _show(raised: bool, value: Any) -> str:
    return f"raised {type(value).__name__}({value})" if raised else f"returned {value!r}"


def cluster_test(
    state_machine: Callable[[], StateMachine],
    commands: st.SearchStrategy[bytes],
    *,
    model: Any = None,
    nodes: int = 3,
    digest: Callable[[Any], Any] | None = None,
    state_equal: Callable[[Any, Any], bool] | None = None,
    close: Callable[[Any], None] | None = None,
    query: Callable[[Any], Any] | None = None,
    max_examples: int = 50,
    steps: int = 40,
) -> type[unittest.TestCase]:
    """A TestCase class that runs ``state_machine`` (a factory of fresh,
    empty instances) on ``nodes`` simulated nodes under ``commands`` and
    faults; see the module docstring. ``digest(sm)`` / ``state_equal(a, b)``
    receive your instances. ``close(sm)``, if given, is called on every
    instance an example made (crashed nodes' included) when the example
    ends, pass or fail: close files, remove directories. ``query(sm)``
    reads your instance (see the module docstring); with a model, the model
    needs ``read(state)``, the same read of its state."""
    if nodes < 1:
        raise ValueError(f"nodes must be at least 1, got {nodes}")
    if query is not None and model is not None and not callable(getattr(model, "read", None)):
        raise ValueError("with query=, the model needs read(state): what the query returns in that state")
    user_digest = None if digest is None else (lambda w: digest(w.inner))
    user_equal = None if state_equal is None else (lambda a, b: state_equal(a.inner, b.inner))
    spares = 2  # nodes a membership change may add, beyond the first ``nodes``
    node_ids = Bundle("nodes")  # every node started so far, removed ones included

    class ClusterTest(RuleBasedStateMachine):
        @initialize(target=node_ids, seed=st.integers(0, 2**16))
        def start(self, seed: int) -> Any:
            self.seen: dict[int, int] = {}
            self.made: list[Any] = []  # every instance of the user's machine, for ``close``
            self.sim = SimCluster(
                nodes, seed, state_machine=self._make,
                digest=user_digest, state_equal=user_equal,
            )
            self.sim.stabilize()  # start from a stable leader: examples do real work
            self.commands: dict[int, bytes] = {}
            self.model_state = None if model is None else model.init()
            self.checked = 0  # the model has stepped through every index up to here
            self.states: list[tuple[int, Any]] = [(0, self.model_state)]  # model state from each index on
            # Linearizable reads asked, by context: node, its incarnation, the last index acknowledged then.
            self.reads: dict[bytes, tuple[str, int, int]] = {}
            self.answers: list[_Answer] = []  # reads answered, not judged yet
            self.reads_checked = 0
            self.sim.read_listeners.append(self._served)
            return multiple(*self.sim.ids)

        def _make(self) -> _Tagged:
            # Every node runs this, nodes added by a membership change too
            # (SimCluster builds their machines with the same factory).
            inner = state_machine()
            self.made.append(inner)
            return _Tagged(inner, self.seen)

        def _down(self) -> set[str]:
            """Nodes that cannot vote now: crashed, or wiped and not readmitted
            (by the core's account, or not seen voting since by the test's)."""
            return {n for n, sn in self.sim.nodes.items() if not sn.alive or sn.lost_state or sn.amnesiac}

        def _voter_sets(self) -> list[frozenset[str]]:
            """Every voter set a leader may need a majority of: the committed
            configuration's, each live node's, every configuration entry some
            log holds above its commit index (a change still pending) or a
            message still carries (in flight, held back, or a late copy from
            an earlier incarnation), the outgoing half of a joint one too."""
            confs = [self.sim.current_conf()]
            for sn in self.sim.nodes.values():
                if sn.raw is not None:
                    confs.append(sn.raw.raft.conf)
                store = sn.store
                low = max(store.first_index(), store.hard_state().commit + 1)
                if low <= store.last_index():
                    tail = store.entries(low, store.last_index() + 1)
                    confs += [decode_conf(e.data) for e in tail if e.kind is EntryKind.CONFIG]
            for env in (*self.sim.inflight, *self.sim.parked, *self.sim.ghosts):
                confs += [decode_conf(e.data) for e in env.msg.entries if e.kind is EntryKind.CONFIG]
            return [v for c in confs for v in (c.voters, c.voters_outgoing) if v]

        def _keeps_majorities(self, down: set[str], voter_sets: list[frozenset[str]] | None = None) -> bool:
            """Whether a majority of every voter set stays up with ``down`` down."""
            sets = self._voter_sets() if voter_sets is None else voter_sets
            return all(len(down & v) <= (len(v) - 1) // 2 for v in sets)

        # -- your commands ------------------------------------------------------------

        # A few commands at once: rules are drawn evenly, and commands are
        # what an example is for.
        @rule(node=node_ids, batch=st.lists(commands, min_size=1, max_size=4))
        def propose(self, node: str, batch: list[bytes]) -> None:
            for command in batch:
                if not self.sim.nodes[node].alive:
                    return
                tag = len(self.commands) + 1
                self.commands[tag] = command
                self.sim.propose(node, tag.to_bytes(_TAG, "big") + command)

        # Most nodes refuse a proposal (only a leader takes one): this rule
        # makes sure examples commit commands.
        @rule(batch=st.lists(commands, min_size=1, max_size=4))
        def propose_on_leader(self, batch: list[bytes]) -> None:
            leader = self.sim.leader()
            if leader is not None:
                self.propose(leader, batch)

        # -- reads ------------------------------------------------------------------------

        @precondition(lambda self: query is not None)
        @rule(node=node_ids, mode=st.sampled_from(["local", "linearizable"]))
        def read(self, node: str, mode: str) -> None:
            """A local read answers at once from the node's state (any prefix
            of the log); a linearizable read asks for a ReadIndex and is
            answered, if ever, when the node has applied up to it."""
            sn = self.sim.nodes[node]
            if sn.raw is None:
                return
            if mode == "local":
                self._answered(node, "local", sn.applied_index, sn.applied_index)
                return
            context = f"read {len(self.reads) + 1}".encode()
            acked = [p.index for p in self.sim.proposals.values() if p.acked]
            self.reads[context] = (node, sn.incarnation, max(acked, default=0))
            self._start_read(node, context)

        def _start_read(self, node: str, context: bytes) -> None:
            self.sim.read(node, context)

        def _served(self, read: Any) -> None:
            """The simulator served a read: what the client is told now."""
            asked = self.reads.pop(read.context, None)
            if asked is None or self.sim.nodes[read.node].incarnation != asked[1]:
                return  # not ours, or its node restarted since: that client got no answer
            self._answered(read.node, "linearizable", asked[2], read.served_at)

        def _answered(self, node: str, mode: str, low: int, position: int) -> None:
            sm = self.sim.state_machine(node)
            assert query is not None and sm is not None
            value = _frozen(query(cast(_Tagged, sm).inner))  # every node's machine is wrapped
            high = position if mode == "local" else max([position, *self.seen])
            self.answers.append(_Answer(node, mode, value, low, high))

        # -- time and the network --------------------------------------------------------

        @rule(rounds=st.integers(1, 20), faulty=st.booleans())
        def run(self, rounds: int, faulty: bool) -> None:
            rates: dict[str, Any] = {
                "drop_rate": 0.1, "duplicate_rate": 0.05, "delay_rate": 0.1, "reorder": True
            }
            self.sim.run(rounds, **(rates if faulty else {}))

        # A few messages only, oldest first, no time passing: nodes stop
        # half-way through replication (a follower behind its leader's commit).
        @rule(count=st.integers(1, 6))
        def deliver_some(self, count: int) -> None:
            for _ in range(count):
                if self.sim.deliver(0) is None:
                    return

        @rule(node=node_ids)
        def isolate(self, node: str) -> None:
            self.sim.isolate(node)

        @rule(src=node_ids, dst=node_ids)
        def cut_one_way(self, src: str, dst: str) -> None:
            if src != dst:
                self.sim.cut(src, dst)

        @rule(split=st.integers(1, nodes + spares - 1))
        def partition(self, split: int) -> None:
            everyone = sorted(self.sim.ids)
            if split < len(everyone):
                self.sim.partition(everyone[:split], everyone[split:])

        @rule()
        def heal(self) -> None:
            self.sim.heal()

        # Late messages: one a node sent before it crashed or lost its disk,
        # a TIMEOUT_NOW after its transfer expired, one held back while the
        # other rules run.

        @precondition(lambda self: self.sim.ghosts)
        @rule(position=st.integers(0, 63))
        def replay_old_incarnation(self, position: int) -> None:
            self.sim.replay_ghost(position)

        @precondition(lambda self: self.sim.timeout_nows)
        @rule(position=st.integers(0, 63))
        def late_timeout_now(self, position: int) -> None:
            self.sim.replay_timeout_now(position)

        @precondition(lambda self: self.sim.inflight)
        @rule(position=st.integers(0, 63))
        def hold_back(self, position: int) -> None:
            self.sim.park(position)

        @precondition(lambda self: self.sim.parked)
        @rule(position=st.integers(0, 63))
        def release(self, position: int) -> None:
            self.sim.unpark(position)

        # -- nodes ---------------------------------------------------------------------------

        @rule(node=node_ids)
        def crash(self, node: str) -> None:
            if self.sim.nodes[node].alive and self._keeps_majorities(self._down() | {node}):
                self.sim.crash(node)

        @rule(node=node_ids)
        def restart(self, node: str) -> None:
            if not self.sim.nodes[node].alive:
                self.sim.restart(node)

        @rule(node=node_ids)
        def lose_disk(self, node: str) -> None:
            # One node at a time, a minority of every voter set, and no
            # membership change under way: raftkit survives that, not more.
            settled = all(v == self.sim.current_conf().voters for v in self._voter_sets())
            if settled and not self._down() - {node} and self._keeps_majorities({node}):
                self.sim.wipe(node)

        @rule(node=node_ids, keep=st.integers(0, 3))
        def compact(self, node: str, keep: int) -> None:
            if self.sim.nodes[node].alive:
                self.sim.compact(node, keep)

        @rule(node=node_ids)
        def restart_from_snapshot(self, node: str) -> None:
            # The path a real node takes after a crash: its latest snapshot,
            # then the log after it (what a snapshot() that misses state breaks).
            if self.sim.nodes[node].alive and self._keeps_majorities(self._down() | {node}):
                self.sim.compact(node)
                self.sim.crash(node)
                self.sim.restart(node)

        @rule(to=node_ids)
        def transfer_leadership(self, to: str) -> None:
            leader = self.sim.leader()
            if leader is not None and leader != to and self.sim.nodes[to].alive:
                self.sim.transfer_leadership(leader, to)

        # -- membership: changes proposed on the leader, one server at a time --------------
        # (or a joint change of voters). None leaves fewer than a majority of
        # the new voters up: a change the leader refuses changes nothing.

        def _leader_conf(self) -> Any:
            leader = self.sim.leader()
            raw = None if leader is None else self.sim.nodes[leader].raw
            return None if raw is None else raw.raft.conf

        def _fine_with(self, voters: frozenset[str]) -> bool:
            return bool(voters) and self._keeps_majorities(self._down(), [*self._voter_sets(), voters])

        @rule(target=node_ids)
        def add_learner(self) -> Any:
            """A new, empty node (running your factory) joins as a learner;
            or a node whose addition did not commit is proposed again."""
            waiting = sorted(set(self.sim.ids) - self.sim.ever_members())
            if waiting:
                self.sim.add_learner(waiting[0])
                return multiple()
            if len(self.sim.ids) >= nodes + spares or self._leader_conf() is None:
                return multiple()
            new = f"n{len(self.sim.ids) + 1}"
            self.sim.add_learner(new)
            return multiple(new)

        @rule(node=node_ids)
        def promote(self, node: str) -> None:
            conf = self._leader_conf()
            if conf is not None and node in conf.learners and self._fine_with(conf.voters | {node}):
                self.sim.promote(node)

        @rule(node=node_ids)
        def demote(self, node: str) -> None:
            conf = self._leader_conf()
            if conf is not None and node in conf.voters and self._fine_with(conf.voters - {node}):
                self.sim.demote(node)

        @rule(node=node_ids)
        def remove_member(self, node: str) -> None:
            """The node keeps running (the other rules still reach it) but
            no longer counts."""
            conf = self._leader_conf()
            if conf is not None and node in conf.members and self._fine_with(conf.voters - {node}):
                self.sim.remove_member(node)

        @rule(picks=st.integers(1, 2 ** (nodes + spares) - 1))
        def change_voters(self, picks: int) -> None:
            """Any voter set among the members (a bit mask over them, sorted):
            through a joint configuration when more than one voter changes."""
            conf = self._leader_conf()
            if conf is None:
                return
            members = sorted(conf.members)
            voters = frozenset(m for bit, m in enumerate(members) if picks >> bit & 1)
            if self._fine_with(voters):
                self.sim.change_voters(voters)

        # -- checks --------------------------------------------------------------------------

        @invariant()
        def committed_results_follow_the_model(self) -> None:
            if model is None or not hasattr(self, "sim"):
                return
            for index in sorted(i for i in self.seen if i > self.checked):
                outcome = self.sim.result_at(index)
                if outcome is None:  # seen on a node whose outcome is not recorded: wait
                    break
                command = self.commands[self.seen[index]]
                try:
                    self.model_state, result = model.step(self.model_state, command)
                    expected: tuple[bool, Any] = (False, result)
                except Exception as exc:  # the model says the command fails
                    expected = (True, exc)
                if not _same(outcome, expected):
                    seen = _show(outcome.raised, outcome.error if outcome.raised else outcome.value)
                    raise ModelMismatch(
                        f"the command at log index {index}, {command!r}, {seen} in the cluster, "
                        f"but the model {_show(*expected)}"
                    )
                self.checked = index
                self.states.append((index, self.model_state))

        def _state_at(self, position: int) -> Any:
            """The model's state once the log up to ``position`` is applied."""
            at = bisect.bisect_right(self.states, position, key=lambda pair: pair[0])
            return self.states[at - 1][1]

        @invariant()
        def reads_return_what_each_mode_promises(self) -> None:
            if model is None or not hasattr(self, "sim"):
                return
            self.committed_results_follow_the_model()
            waiting = []
            for answer in self.answers:
                if any(self.checked < i <= answer.high for i in self.seen):
                    waiting.append(answer)  # the model has not reached it yet
                    continue
                start = bisect.bisect_right(self.states, answer.low, key=lambda pair: pair[0]) - 1
                allowed = [(i, s) for i, s in self.states[start:] if i <= answer.high]
                if not any(_equal(model.read(s), answer.value) for _, s in allowed):
                    raise ReadMismatch(self._mismatch(answer))
                self.reads_checked += 1
            self.answers = waiting

        def _mismatch(self, answer: _Answer) -> str:
            where = f"a {answer.mode} read on {answer.node} returned {answer.value!r}"
            expected = model.read(self._state_at(answer.high))
            if answer.mode == "local":
                return f"{where} at its applied index {answer.high}, but the model reads {expected!r} there"
            promise = f"{where}: stale or wrong. Index {answer.low} was acknowledged before it was issued"
            if answer.low == answer.high:
                return f"{promise} and nothing later was committed: the model reads {expected!r} there"
            return (
                f"{promise}, so it must read the model at some index from {answer.low} to {answer.high}"
                f" (the last seen committed); the model reads {model.read(self._state_at(answer.low))!r}"
                f" at {answer.low} and {expected!r} at {answer.high}"
            )

        def teardown(self) -> None:
            if not hasattr(self, "made"):
                return
            try:
                if not hasattr(self, "sim"):
                    return
                # Heal and let everything settle: the checks then see every
                # node catch up, restarted ones included.
                self.sim.stabilize()  # heals, restarts every node, waits for one leader
                self.reads_return_what_each_mode_promises()
            finally:
                if close is not None:
                    for inner in self.made:
                        close(inner)

    name = f"ClusterTest_{getattr(state_machine, '__name__', 'state_machine')}"
    ClusterTest.__name__ = ClusterTest.__qualname__ = name
    case = ClusterTest.TestCase
    case.machine = ClusterTest  # type: ignore[attr-defined]  # to drive a fixed schedule by hand
    case.settings = settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    return case
