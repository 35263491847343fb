"""cluster_test, the ready-made Hypothesis cluster test, against a correct
bank and banks with planted bugs: it passes the correct one and reports
each bug, shrunk, with the check that caught it."""

from __future__ import annotations

import json
import random
import unittest

from hypothesis import strategies as st

from raftkit import StateMachine
from raftkit.testing.cluster_test import cluster_test


class Bank(StateMachine):
    def __init__(self) -> None:
        self.balances: dict[str, int] = {}

    def apply(self, command: bytes) -> int:
        op, account, amount = command.decode().split()
        if op == "deposit":
            self.balances[account] = self.balances.get(account, 0) + int(amount)
        elif self.balances.get(account, 0) < int(amount):
            raise ValueError(f"{account} has less than {amount}")
        else:
            self.balances[account] -= int(amount)
        return self.balances.get(account, 0)

    def snapshot(self) -> bytes:
        return json.dumps(self.balances, sort_keys=True).encode()

    def restore(self, data: bytes) -> None:
        self.balances = json.loads(data)


class BankModel:
    """The sequential specification: balances as a sorted tuple (hashable)."""

    def init(self) -> tuple[tuple[str, int], ...]:
        return ()

    def step(self, state: tuple[tuple[str, int], ...], command: bytes) -> tuple[tuple[tuple[str, int], ...], int]:
        op, account, amount = command.decode().split()
        balances = dict(state)
        if op == "withdraw" and balances.get(account, 0) < int(amount):
            raise ValueError("insufficient funds")
        balances[account] = balances.get(account, 0) + (int(amount) if op == "deposit" else -int(amount))
        return tuple(sorted(balances.items())), balances[account]


def bank_commands() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda op, account, amount: f"{op} {account} {amount}".encode(),
        st.sampled_from(["deposit", "withdraw"]),
        st.sampled_from(["ann", "bob"]),
        st.integers(1, 20),
    )


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


def test_a_correct_bank_passes() -> None:
    result = run(cluster_test(Bank, bank_commands(), model=BankModel(), max_examples=25, steps=30))
    assert result.wasSuccessful(), result.failures + result.errors
    assert result.testsRun == 1


def test_randomness_in_apply_is_caught_by_the_replicas_disagreeing() -> None:
    report = failure_of(cluster_test(LuckyBank, bank_commands(), max_examples=50, steps=30))
    assert "state machine outcomes differ at index" in report
    assert "propose(" in report  # the shrunk steps are printed


def test_an_overdraft_the_model_forbids_is_caught_by_the_model_check() -> None:
    report = failure_of(cluster_test(OverdraftBank, bank_commands(), model=BankModel(), max_examples=100, steps=30))
    assert "ModelMismatch" in report and "but the model raised ValueError" in report
    assert "withdraw" in report


def test_a_snapshot_that_forgets_state_is_caught() -> None:
    report = failure_of(cluster_test(ForgetfulBank, bank_commands(), max_examples=150, steps=40))
    assert "differ at" in report and "restored a snapshot" in report


def test_the_cluster_must_have_a_node() -> None:
    try:
        cluster_test(Bank, bank_commands(), nodes=0)
    except ValueError as exc:
        assert "at least 1" in str(exc)
    else:
        raise AssertionError("nodes=0 was accepted")
