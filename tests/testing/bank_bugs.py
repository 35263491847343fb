"""A small bank-account state machine and variants of it with one planted
bug each, for the tests of ``StateMachineConformance``.

Commands are JSON objects (``command(op, **args)``): ``open``, ``deposit``,
``withdraw``, ``transfer``, ``payout`` (splits an amount over every
account) and ``statement``. Money movements return a receipt number.
Four accounts with 100 each exist from the start, so a payout has several
to split over and a transfer has money to move.
"""

from __future__ import annotations

import datetime
import json
import random
from typing import Any

from hypothesis import strategies as st

from raftkit.serializers import JsonSerializer
from raftkit.state_machines.base import StateMachine

__all__ = [
    "BUGGY",
    "Bank",
    "ClockBank",
    "ForgetfulSnapshotBank",
    "HalfAppliedBank",
    "HashOrderBank",
    "RandomBank",
    "TupleResultBank",
    "bank_commands",
    "command",
]

NAMES = ["alice", "bob", "carol", "dave", "erin", "zed"]  # erin and zed do not exist at first


def command(op: str, **args: Any) -> bytes:
    return json.dumps({"op": op, **args}, sort_keys=True).encode()


def bank_commands() -> st.SearchStrategy[bytes]:
    names = st.sampled_from(NAMES)
    amounts = st.integers(1, 50)
    return st.one_of(
        st.builds(lambda n: command("open", name=n), names),
        st.builds(lambda n, a: command("deposit", name=n, amount=a), names, amounts),
        st.builds(lambda n, a: command("withdraw", name=n, amount=a), names, amounts),
        st.builds(lambda s, d, a: command("transfer", src=s, dst=d, amount=a), names, names, amounts),
        st.builds(lambda a: command("payout", amount=a), amounts),
        st.builds(lambda n: command("statement", name=n), names),
    )


class Bank(StateMachine):
    """The correct bank."""

    serializer = JsonSerializer()  # results travel as JSON

    def __init__(self) -> None:
        self.balances: dict[str, int] = {n: 100 for n in NAMES[:4]}
        self.receipts = 0
        self.opened: dict[str, str] = {}  # name -> the day it was opened (ClockBank fills it)

    # -- applying ---------------------------------------------------------------

    def apply(self, command: bytes) -> Any:
        op = json.loads(command)
        args = {k: v for k, v in op.items() if k != "op"}
        return getattr(self, "do_" + op["op"])(**args)

    def _account(self, name: str) -> int:
        if name not in self.balances:
            raise KeyError(f"no account {name!r}")
        return self.balances[name]

    def _receipt(self) -> int:
        self.receipts += 1
        return self.receipts

    def do_open(self, name: str) -> int:
        if name in self.balances:
            raise ValueError(f"account {name!r} exists")
        self.balances[name] = 0
        return self._receipt()

    def do_deposit(self, name: str, amount: int) -> int:
        self.balances[name] = self._account(name) + amount
        return self._receipt()

    def do_withdraw(self, name: str, amount: int) -> int:
        if self._account(name) < amount:
            raise ValueError(f"{name} cannot withdraw {amount}: balance {self.balances[name]}")
        self.balances[name] -= amount
        return self._receipt()

    def do_transfer(self, src: str, dst: str, amount: int) -> int:
        if self._account(src) < amount:
            raise ValueError(f"{src} cannot send {amount}: balance {self.balances[src]}")
        self._account(dst)
        self.balances[src] -= amount
        self.balances[dst] += amount
        return self._receipt()

    def payout_order(self) -> list[str]:
        return sorted(self.balances)

    def do_payout(self, amount: int) -> int:
        """``amount`` split evenly; the remainder, one each, to the first accounts."""
        order = self.payout_order()
        share, rest = divmod(amount, len(order))
        for i, name in enumerate(order):
            self.balances[name] += share + (1 if i < rest else 0)
        return self._receipt()

    def do_statement(self, name: str) -> Any:
        return [self._account(name), self.receipts]

    # -- snapshots -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"balances": self.balances, "receipts": self.receipts, "opened": self.opened}

    def snapshot(self) -> bytes:
        return json.dumps(self.state(), sort_keys=True).encode()

    def restore(self, data: bytes) -> None:
        state = json.loads(data)
        self.balances = state["balances"]
        self.receipts = state.get("receipts", 0)
        self.opened = state.get("opened", {})


class RandomBank(Bank):
    """Bug: receipt numbers are random (caught in-process)."""

    def _receipt(self) -> int:
        self.receipts += 1
        return random.randrange(1_000_000)


class ClockBank(Bank):
    """Bug: records the day an account was opened from the wall clock
    (the same all day in one process: caught across processes)."""

    def do_open(self, name: str) -> int:
        receipt = super().do_open(name)
        self.opened[name] = datetime.date.today().isoformat()
        return receipt


class HashOrderBank(Bank):
    """Bug: the payout remainder goes to accounts in set order, which
    follows the hash seed (caught across processes)."""

    def payout_order(self) -> list[str]:
        return list(set(self.balances))


class HalfAppliedBank(Bank):
    """Bug: a transfer debits the source before it checks the
    destination, then raises with the money gone."""

    def do_transfer(self, src: str, dst: str, amount: int) -> int:
        if self._account(src) < amount:
            raise ValueError(f"{src} cannot send {amount}: balance {self.balances[src]}")
        self.balances[src] -= amount
        self.balances[dst] = self._account(dst) + amount
        return self._receipt()


class ForgetfulSnapshotBank(Bank):
    """Bug: the snapshot forgets the receipt counter, so a restored
    replica numbers receipts from 1 again."""

    def state(self) -> dict[str, Any]:
        return {"balances": self.balances, "opened": self.opened}


class TupleResultBank(Bank):
    """Bug: a statement is a tuple, which JSON brings back as a list."""

    def do_statement(self, name: str) -> Any:
        return (self._account(name), self.receipts)


# variant -> the check that must report it
BUGGY: dict[type[Bank], str] = {
    RandomBank: "test_deterministic_in_process",
    ClockBank: "test_deterministic_across_processes",
    HashOrderBank: "test_deterministic_across_processes",
    HalfAppliedBank: "test_failed_command_leaves_state_unchanged",
    ForgetfulSnapshotBank: "test_snapshot_round_trip",
    TupleResultBank: "test_commands_and_results_survive_serializer",
}
