"""A bank as a raftkit state machine: the example of README.md (the
tutorial on testing your own state machine).

Every replica of the service holds one ``Bank`` and applies the same
commands in the same order, so every replica must end in the same state:
``apply`` may depend on nothing but the state and the command (no clock, no
``random``, no set order), a command that fails must leave the state as it
was, and ``snapshot()`` must hold all of the state.

A command is a JSON object, made by ``command(op, **args)``:

* ``open``: a new account (``name``) with balance 0;
* ``deposit`` / ``withdraw``: ``amount`` into or out of ``name``;
* ``transfer``: ``amount`` from ``src`` to ``dst``;
* ``payout``: ``amount`` split evenly over every account, the remainder
  one each to the first accounts in alphabetical order;
* ``statement``: ``[balance of name, receipts issued so far]``.

Each money movement (and each opening) returns a receipt number: 1, 2, 3...
Four accounts with 100 each exist from the start.
"""

from __future__ import annotations

import json
from typing import Any

from raftkit import StateMachine
from raftkit.serializers import JsonSerializer

__all__ = ["FOUNDERS", "Bank", "command"]

FOUNDERS = ["ann", "bob", "cy", "dee"]
"""The accounts that exist from the start, with 100 each."""


def command(op: str, **args: Any) -> bytes:
    """The bytes a client proposes, e.g. ``command("deposit", name="ann", amount=5)``."""
    return json.dumps({"op": op, **args}, sort_keys=True).encode()


class Bank(StateMachine):
    """Accounts and their balances, plus a counter of receipts."""

    # Results travel back to clients as JSON (raftkit's default is msgpack).
    serializer = JsonSerializer()

    def __init__(self) -> None:
        self.balances: dict[str, int] = {name: 100 for name in FOUNDERS}
        self.receipts = 0  # receipts issued so far
        self.opened: dict[str, str] = {}  # account -> the day it was opened (if anyone records it)

    # -- applying commands -----------------------------------------------------------

    def apply(self, command: bytes) -> Any:
        """Run one committed command: ``do_<op>(**args)``. Its return value
        goes back to the client; an exception goes back as the failure."""
        args = json.loads(command)
        op = args.pop("op")
        return getattr(self, "do_" + op)(**args)

    def _account(self, name: str) -> int:
        """``name``'s balance; KeyError if there is no such account."""
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
        # Every check first, then the changes: a transfer that fails changes nothing.
        if self._account(src) < amount:
            raise ValueError(f"{src} cannot send {amount}: balance {self.balances[src]}")
        self._account(dst)
        self.balances[src] -= amount
        self.balances[dst] += amount
        return self._receipt()

    def payout_order(self) -> list[str]:
        """Who gets the remainder of a payout first: alphabetical, the same everywhere."""
        return sorted(self.balances)

    def do_payout(self, amount: int) -> int:
        order = self.payout_order()
        share, rest = divmod(amount, len(order))
        for i, name in enumerate(order):
            self.balances[name] += share + (1 if i < rest else 0)
        return self._receipt()

    def do_statement(self, name: str) -> Any:
        return [self._account(name), self.receipts]  # a list: JSON has no tuples

    # -- snapshots -----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """All of the state: what a snapshot must carry."""
        return {"balances": self.balances, "receipts": self.receipts, "opened": self.opened}

    def snapshot(self) -> bytes:
        return json.dumps(self.state(), sort_keys=True).encode()  # sorted keys: the same bytes everywhere

    def restore(self, data: bytes) -> None:
        state = json.loads(data)
        self.balances = state["balances"]
        self.receipts = state.get("receipts", 0)
        self.opened = state.get("opened", {})
