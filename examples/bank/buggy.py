"""The bank of ``bank.py`` with one planted bug each: mistakes real state
machines make. The tutorial (README.md) shows the report that catches
each one and how to fix it.

``BUGS`` maps each variant to the ``StateMachineConformance`` check that
reports it.
"""

from __future__ import annotations

import datetime
import random
from typing import Any

from bank import Bank

__all__ = [
    "BUGS",
    "ClockBank",
    "ForgetfulSnapshotBank",
    "HalfAppliedBank",
    "HashOrderBank",
    "RandomBank",
    "TupleResultBank",
]


class RandomBank(Bank):
    """Receipt numbers drawn from ``random`` ("unique ids, why not"): every
    replica draws its own, so clients get different answers from different
    nodes."""

    def _receipt(self) -> int:
        self.receipts += 1
        return random.randrange(1_000_000)


class ClockBank(Bank):
    """The day an account was opened, read from the wall clock: replicas
    apply the same command at different times (a follower catching up
    applies it days later), so their states differ."""

    def do_open(self, name: str) -> int:
        receipt = super().do_open(name)
        self.opened[name] = datetime.date.today().isoformat()
        return receipt


class HashOrderBank(Bank):
    """The payout remainder handed out in set order, which follows the
    process's hash seed (``PYTHONHASHSEED``): every node picks other
    accounts for the extra coins."""

    def payout_order(self) -> list[str]:
        return list(set(self.balances))


class HalfAppliedBank(Bank):
    """A transfer that debits the source before it checks the destination:
    a transfer to a missing account raises with the money already gone."""

    def do_transfer(self, src: str, dst: str, amount: int) -> int:
        if self._account(src) < amount:
            raise ValueError(f"{src} cannot send {amount}: balance {self.balances[src]}")
        self.balances[src] -= amount
        self.balances[dst] = self._account(dst) + amount
        return self._receipt()


class ForgetfulSnapshotBank(Bank):
    """A snapshot that forgets the receipt counter (a field added later,
    never added to the snapshot): a replica restored from it numbers
    receipts from 1 again."""

    def state(self) -> dict[str, Any]:
        return {"balances": self.balances, "opened": self.opened}


class TupleResultBank(Bank):
    """A statement returned as a tuple: JSON brings it back to the client as
    a list, so the client sees another type than the node computed."""

    def do_statement(self, name: str) -> Any:
        return (self._account(name), self.receipts)


BUGS: dict[type[Bank], str] = {
    RandomBank: "test_deterministic_in_process",
    ClockBank: "test_deterministic_across_processes",
    HashOrderBank: "test_deterministic_across_processes",
    HalfAppliedBank: "test_failed_command_leaves_state_unchanged",
    ForgetfulSnapshotBank: "test_snapshot_round_trip",
    TupleResultBank: "test_commands_and_results_survive_serializer",
}
"""Each variant -> the StateMachineConformance check that reports it."""
