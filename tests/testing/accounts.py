"""A small accounts state machine and its sequential model, for the tests
of ``cluster_test`` and ``process_test`` (process_test's node processes
import it by name, so it lives in a module of its own).

Commands are ``b"deposit ann 5"`` / ``b"withdraw ann 5"``; each returns the
new balance, and a withdrawal beyond the balance raises ValueError.
"""

from __future__ import annotations

import json
import random

from hypothesis import strategies as st

from raftkit.state_machines.base import StateMachine


def _step(balances: dict[str, int], command: bytes) -> int:
    op, name, text = command.decode().split()
    amount = int(text)
    have = balances.get(name, 0)
    if op == "withdraw":
        if have < amount:
            raise ValueError(f"{name} has {have}, cannot withdraw {amount}")
        amount = -amount
    balances[name] = have + amount
    return balances[name]


class Accounts(StateMachine):
    def __init__(self) -> None:
        self.balances: dict[str, int] = {}

    def apply(self, command: bytes) -> int:
        return _step(self.balances, command)

    def snapshot(self) -> bytes:
        return json.dumps(self.balances, sort_keys=True).encode()

    def restore(self, data: bytes) -> None:
        self.balances = json.loads(data)


class LuckyAccounts(Accounts):
    """A planted bug: every deposit earns a random bonus, different on each replica."""

    def apply(self, command: bytes) -> int:
        balance = super().apply(command)
        if command.startswith(b"deposit"):
            self.balances[command.split()[1].decode()] += random.randint(0, 1)
        return balance


Balances = tuple[tuple[str, int], ...]


class AccountsModel:
    """The sequential specification: state is a sorted tuple of balances."""

    def init(self) -> Balances:
        return ()

    def step(self, state: Balances, command: bytes) -> tuple[Balances, int]:
        balances = dict(state)
        result = _step(balances, command)  # raises as the machine does, leaving state as it was
        return tuple(sorted(balances.items())), result

    def read(self, state: Balances) -> dict[str, int]:
        """What a client reads (cluster_test's ``query``)."""
        return dict(state)


def account_commands() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda op, name, amount: f"{op} {name} {amount}".encode(),
        st.sampled_from(["deposit", "withdraw"]),
        st.sampled_from(["ann", "bob"]),
        st.integers(1, 20),
    )


class Receipt(Exception):
    """A result that pickles but does not unpickle (its ``__init__`` takes two arguments)."""

    def __init__(self, name: str, balance: int) -> None:
        super().__init__(f"{name} has {balance}")


class ChattyAccounts(Accounts):
    """Correct, but prints as it applies (debugging output on stdout), and
    answers a deposit to bob with a ``Receipt`` the test cannot unpickle."""

    def apply(self, command: bytes) -> int | Receipt:
        print("applying", command, end=" ")
        balance = super().apply(command)
        return Receipt("bob", balance) if command.startswith(b"deposit bob") else balance
