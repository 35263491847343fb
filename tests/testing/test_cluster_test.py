"""cluster_test, the ready-made Hypothesis cluster test, against a correct
bank and banks with planted bugs: it passes the correct one and reports
each bug, shrunk, with the check that caught it."""

from __future__ import annotations

import random
import re
import unittest
from types import SimpleNamespace
from typing import Any

import pytest
from accounts import Accounts, AccountsModel, account_commands
from hypothesis import settings

from raftkit import StateMachine
from raftkit.testing.cluster_test import ModelMismatch, ReadMismatch, cluster_test
from raftkit.testing.sim import InvariantViolation

Bank, BankModel, bank_commands = Accounts, AccountsModel, account_commands  # this module's names


def balances(bank: Bank) -> dict[str, int]:
    """The query: what a client reads of a bank."""
    return dict(bank.balances)


class LuckyBank(Bank):
    """Bug: apply draws from ``random``, differently on every replica."""

    def apply(self, command: bytes) -> int:
        return super().apply(command) + random.randint(0, 1000)


class OverdraftBank(Bank):
    """Bug: every replica agrees, but a withdrawal may overdraw (the model
    refuses it): only the model check can see this one."""

    def apply(self, command: bytes) -> int:
        op, account, amount = command.decode().split()
        sign = 1 if op == "deposit" else -1
        self.balances[account] = self.balances.get(account, 0) + sign * int(amount)
        return self.balances[account]


class ForgetfulBank(Bank):
    """Bug: a counter of operations that ``snapshot()`` leaves out, so a
    node restored from a snapshot answers differently afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.operations = 0

    def apply(self, command: bytes) -> int:
        self.operations += 1
        try:
            return super().apply(command) * 1000 + self.operations
        except ValueError:
            return -self.operations


def run(case: type[unittest.TestCase]) -> unittest.TestResult:
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(case)
    result = unittest.TestResult()
    suite.run(result)
    return result


def failure_of(case: type[unittest.TestCase]) -> str:
    result = run(case)
    problems = result.failures + result.errors
    assert problems, "the planted bug was not found"
    return problems[0][1]


def started(state_machine: type[StateMachine], **options: Any) -> Any:
    """The test's own machine, driven by hand through its rules: a fixed
    schedule, to show each check catches its bug (fast and deterministic)."""
    machine = cluster_test(state_machine, bank_commands(), **options).machine()  # type: ignore[attr-defined]
    machine.start(seed=0)
    return machine


def test_a_correct_bank_passes() -> None:
    case = cluster_test(Bank, bank_commands(), model=BankModel(), query=balances, max_examples=10, steps=25)
    result = run(case)
    assert result.wasSuccessful(), result.failures + result.errors
    assert result.testsRun == 1


def test_a_correct_bank_survives_every_fault_rule_by_hand() -> None:
    m = started(Bank, model=BankModel())
    follower = next(n for n in m.sim.ids if n != m.sim.leader())
    m.propose(m.sim.leader(), [b"deposit ann 5", b"withdraw ann 9", b"deposit bob 1"])
    m.run(10, faulty=True)
    m.restart_from_snapshot(follower)
    m.lose_disk(follower)
    m.restart(follower)
    m.partition(1)
    m.propose(m.sim.leader() or "n1", [b"deposit ann 1"])
    m.heal()
    m.transfer_leadership(follower)
    m.run(20, faulty=False)
    m.committed_results_follow_the_model()
    m.teardown()
    assert len(m.seen) >= 4 and m.checked >= 4  # the model stepped through them


def test_randomness_in_apply_is_caught_by_the_replicas_disagreeing() -> None:
    m = started(LuckyBank)
    with pytest.raises(InvariantViolation, match="state machine outcomes differ at index"):
        m.propose(m.sim.leader(), [b"deposit ann 5"])
        m.run(10, faulty=False)


def test_an_overdraft_the_model_forbids_is_caught_by_the_model_check() -> None:
    m = started(OverdraftBank, model=BankModel())
    m.propose(m.sim.leader(), [b"deposit ann 5", b"withdraw ann 9"])
    m.run(10, faulty=False)
    expected = r"b'withdraw ann 9', returned -4 in the cluster, but the model raised"
    with pytest.raises(ModelMismatch, match=expected):
        m.committed_results_follow_the_model()


def test_a_snapshot_that_forgets_state_is_caught_after_a_restart_from_it() -> None:
    m = started(ForgetfulBank)
    follower = next(n for n in m.sim.ids if n != m.sim.leader())
    m.propose(m.sim.leader(), [b"deposit ann 5", b"deposit ann 5"])
    m.run(10, faulty=False)
    m.restart_from_snapshot(follower)
    with pytest.raises(InvariantViolation, match="restored a snapshot"):
        m.propose(m.sim.leader(), [b"deposit ann 5"])
        m.run(10, faulty=False)


def test_members_join_get_promoted_and_leave_by_hand() -> None:
    made: list[Bank] = []

    class CountedBank(Bank):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    m = started(CountedBank, model=BankModel())
    m.propose_on_leader([b"deposit ann 5", b"deposit bob 3"])
    m.run(10, faulty=False)
    m.add_learner()  # n4, a new node running the factory
    m.run(20, faulty=False)
    assert "n4" in m.sim.members() and m.sim.state_machine("n4").inner in made
    m.promote("n4")
    m.run(20, faulty=False)
    assert "n4" in m.sim.current_conf().voters
    gone = next(n for n in ("n1", "n2", "n3") if n != m.sim.leader())
    m.remove_member(gone)
    m.run(20, faulty=False)
    assert gone not in m.sim.members()
    m.propose_on_leader([b"withdraw ann 2"])
    m.run(10, faulty=False)
    m.committed_results_follow_the_model()
    assert m.checked >= 3 and m.sim.state_machine("n4").inner.balances == {"ann": 3, "bob": 3}
    m.teardown()


def test_a_snapshot_that_forgets_state_is_caught_on_a_node_that_joins_from_it() -> None:
    m = started(ForgetfulBank)
    leader = m.sim.leader()
    m.propose(leader, [b"deposit ann 5", b"deposit ann 5"])
    m.run(10, faulty=False)
    m.compact(leader, 0)  # the new node can only start from the snapshot
    m.add_learner()
    with pytest.raises(InvariantViolation, match="restored a snapshot"):
        m.run(20, faulty=False)
        m.propose_on_leader([b"deposit ann 5"])
        m.run(10, faulty=False)


def test_no_disk_is_lost_that_a_pending_membership_change_needs() -> None:
    # A joint change to voters {n1} is in the leader's log, not applied:
    # wiping n1 now would leave the new configuration without a majority
    # for good (teardown would never settle).
    m = started(Bank)
    m.change_voters(picks=1)
    m.lose_disk("n1")
    assert not m.sim.nodes["n1"].lost_state
    m.teardown()
    assert m.sim.current_conf().voters == {"n1"}


class CachedBank(Bank):
    """Bug: reads come from a cache refreshed only every second command."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: dict[str, int] = {}
        self.applied = 0

    def apply(self, command: bytes) -> int:
        result = super().apply(command)
        self.applied += 1
        if self.applied % 2 == 0:
            self.cache = dict(self.balances)
        return result


def cached_balances(bank: CachedBank) -> dict[str, int]:
    return dict(bank.cache)


class NoBarrier:
    """Bug planted in the test's own client: a "linearizable" read answered
    at once from the node's state, without the ReadIndex round."""

    def _start_read(self, node: str, context: bytes) -> None:
        at = self.sim.nodes[node].applied_index
        self._served(SimpleNamespace(context=context, node=node, served_at=at))


def lagging_follower_schedule(m: Any) -> str:
    """A follower cut off from the leader, then a write acknowledged by the
    rest, then a linearizable read on the follower."""
    follower = next(n for n in m.sim.ids if n != m.sim.leader())
    m.propose_on_leader([b"deposit ann 5"])
    m.run(10, faulty=False)
    m.isolate(follower)
    m.propose_on_leader([b"deposit ann 7"])
    m.run(10, faulty=False)
    m.read(follower, "linearizable")
    return str(follower)


def test_reads_in_both_modes_return_what_they_promise_by_hand() -> None:
    m = started(Bank, model=BankModel(), query=balances)
    follower = lagging_follower_schedule(m)  # the read waits: the follower cannot reach the leader
    m.read(follower, "local")  # at once, from its stale state: allowed for a local read
    m.reads_return_what_each_mode_promises()
    assert m.reads_checked == 1 and len(m.reads) == 1
    m.heal()
    m.run(20, faulty=False)
    for node in m.sim.ids:
        m.read(node, "linearizable")
        m.read(node, "local")
    m.run(10, faulty=False)
    m.reads_return_what_each_mode_promises()
    # Every read answered and judged, but the first: its request to the
    # leader was lost in the partition (no answer: no promise).
    assert m.reads_checked == 7 and len(m.reads) == 1
    m.teardown()


def test_a_linearizable_read_without_its_barrier_is_caught() -> None:
    machine = cluster_test(Bank, bank_commands(), model=BankModel(), query=balances).machine  # type: ignore[attr-defined]
    m = type("NoBarrierTest", (NoBarrier, machine), {})()
    m.start(seed=0)
    lagging_follower_schedule(m)
    with pytest.raises(ReadMismatch, match=r"a linearizable read on n\d returned \{'ann': 5\}: stale"):
        m.reads_return_what_each_mode_promises()


def test_a_read_that_misses_applied_commands_is_caught() -> None:
    m = started(CachedBank, model=BankModel(), query=cached_balances)
    m.propose_on_leader([b"deposit ann 5"])
    m.run(10, faulty=False)
    m.read(m.sim.leader(), "local")
    with pytest.raises(ReadMismatch, match=r"a local read on n\d returned \{\} at its applied index"):
        m.reads_return_what_each_mode_promises()


def test_a_query_needs_a_model_that_reads() -> None:
    class NoRead:
        init, step = BankModel.init, BankModel.step

    with pytest.raises(ValueError, match=r"needs read\(state\)"):
        cluster_test(Bank, bank_commands(), model=NoRead(), query=balances)


@pytest.mark.soak
@pytest.mark.parametrize(
    ("state_machine", "model", "message"),
    [
        (LuckyBank, None, "state machine outcomes differ at index"),
        (OverdraftBank, BankModel(), "but the model raised ValueError"),
        (ForgetfulBank, None, "restored a snapshot"),
    ],
)
def test_hypothesis_finds_each_bug_and_shrinks_it(state_machine: Any, model: Any, message: str) -> None:
    case = cluster_test(state_machine, bank_commands(), model=model, max_examples=500, steps=40)
    case.settings = settings(case.settings, database=None)  # type: ignore[attr-defined]  # find it afresh
    report = failure_of(case)
    # The check's words, then the shrunk steps (Hypothesis may report the
    # same bug twice, seen by two checks: an exception group).
    assert message in report and re.search(r"state\.propose(_on_leader)?\(", report)


@pytest.mark.soak
def test_hypothesis_finds_a_read_without_its_barrier() -> None:
    machine = cluster_test(Bank, bank_commands(), model=BankModel(), query=balances).machine  # type: ignore[attr-defined]
    case = type("NoBarrierTest", (NoBarrier, machine), {}).TestCase
    case.settings = settings(machine.TestCase.settings, max_examples=2000, database=None)
    report = failure_of(case)
    assert "linearizable read" in report and "stale" in report and "read(" in report


def test_the_cluster_must_have_a_node() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        cluster_test(Bank, bank_commands(), nodes=0)
