"""Tests of the bank (bank.py) with raftkit.testing, as you would write them
for your own state machine. Run them with:

    python -m pytest examples/bank/test_bank.py

The tutorial (README.md) runs them against the buggy banks of buggy.py too:
``BANK=RandomBank python -m pytest ...`` tests ``buggy.RandomBank`` instead
of ``Bank``. (An environment variable, not a pytest option: the
cross-process check imports this module again in child processes, which
see the environment but not pytest's command line.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import buggy
from bank import FOUNDERS, Bank, command
from hypothesis import strategies as st

from raftkit.testing.cluster_test import cluster_test
from raftkit.testing.conformance.state_machine import StateMachineConformance
from raftkit.testing.sim import SimCluster

BANK: type[Bank] = getattr(buggy, os.environ["BANK"]) if os.environ.get("BANK") else Bank
NAMES = [*FOUNDERS, "eve", "zed"]  # eve and zed have no account until they open one


def bank_commands() -> st.SearchStrategy[bytes]:
    """Any command, on any name (existing or not), any amount."""
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


# -- 1. every clause of the StateMachine contract, on one machine ----------------------


class TestBankConformance(StateMachineConformance):
    """Determinism (also across processes), snapshots, failing commands and
    the serializer; a failure shows the command sequence shrunk by Hypothesis."""

    max_examples = 25
    # The same examples on every run, so the reports README.md quotes are
    # the ones you get. Drop it to let each run search afresh.
    hypothesis_settings = {"derandomize": True, "database": None}

    def make_state_machine(self, tmp_path: Path) -> Bank:
        return BANK()

    def commands(self) -> st.SearchStrategy[bytes]:
        return bank_commands()


# -- 2. a simulated cluster under faults, checked against a model ------------------------


class BankModel:
    """What the bank should do, as plainly as possible: the state is
    (balances as a sorted tuple of pairs, receipts issued)."""

    def init(self) -> Any:
        return (tuple((name, 100) for name in FOUNDERS), 0)

    def step(self, state: Any, cmd: bytes) -> tuple[Any, Any]:
        pairs, receipts = state
        balances = dict(pairs)
        c = json.loads(cmd)
        op, amount = c["op"], c.get("amount", 0)

        def check(name: str, at_least: int = 0) -> None:  # in the bank's order: exists, then funds
            if name not in balances:
                raise KeyError(name)
            if balances[name] < at_least:
                raise ValueError("insufficient funds")

        if op == "open":
            if c["name"] in balances:
                raise ValueError("exists")
            balances[c["name"]] = 0
        elif op in ("deposit", "withdraw", "statement"):
            check(c["name"], amount if op == "withdraw" else 0)
            if op == "statement":
                return state, [balances[c["name"]], receipts]
            balances[c["name"]] += amount if op == "deposit" else -amount
        elif op == "transfer":
            check(c["src"], amount)
            check(c["dst"])
            balances[c["src"]] -= amount
            balances[c["dst"]] += amount
        else:  # payout: an even share each, the remainder one each to the first names alphabetically
            share, rest = divmod(amount, len(balances))
            for i, name in enumerate(sorted(balances)):
                balances[name] += share + (i < rest)
        return (tuple(sorted(balances.items())), receipts + 1), receipts + 1


TestBankCluster = cluster_test(BANK, bank_commands(), model=BankModel(), max_examples=10, steps=20)


# -- 3. a scenario of your own in the simulator ---------------------------------------------


def test_a_restarted_follower_catches_up_from_a_snapshot() -> None:
    sim = SimCluster(3, seed=1, state_machine=BANK)  # every node runs its own BANK()
    sim.stabilize()  # elect a leader
    leader = sim.leader()
    follower = next(n for n in sim.ids if n != leader)
    first = [
        command("open", name="eve"),
        command("transfer", src="ann", dst="eve", amount=30),
        command("transfer", src="bob", dst="zed", amount=5),  # no account zed: fails, changes nothing
    ]
    indexes = [sim.propose(leader, c) for c in first]
    sim.stabilize()
    sim.compact(follower)  # the follower snapshots its bank and drops its log
    sim.crash(follower)
    later = sim.propose(leader, command("payout", amount=7))
    sim.restart(follower)  # a fresh bank, restored from the snapshot, then the log after it
    sim.stabilize()  # the simulator checked after every step that the replicas agree

    assert [sim.result_at(i).value for i in indexes[:2]] == [1, 2]  # receipts
    assert isinstance(sim.result_at(indexes[2]).error, KeyError)
    assert sim.result_at(later).value == 3
    for node in sim.ids:
        bank = sim.state_machine(node)
        assert bank.balances == {"ann": 72, "bob": 102, "cy": 101, "dee": 101, "eve": 31}
