"""StateMachineConformance: the child-process machinery (a suite that
cannot be imported, one named by ``child_suite``, a child that dies or
hangs), raftkit's own state machine, and the batteries through the
replicated-object adapters. The planted bugs of the bank example, each
reported by its check: test_bank_tutorial.py."""

from __future__ import annotations

import os
import random
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest
import test_bank  # examples/bank/test_bank.py (conftest.py puts it on sys.path); not collected here
from hypothesis import Phase
from hypothesis import strategies as st

from raftkit.batteries import LmdbDict, ReplCounter, ReplDict, ReplLockManager, ReplPriorityQueue
from raftkit.state_machines.base import StateMachine
from raftkit.state_machines.kv import KvStateMachine
from raftkit.syncobj import SyncObj, SyncObjConf, replicated
from raftkit.testing.conformance.replicated_objects import ConsumerConformance, SyncObjConformance
from raftkit.testing.conformance.state_machine import StateMachineConformance
from raftkit.testing.conformance.state_machine_child import ReplicaProcessError
from raftkit.transports.memory import MemoryNetwork, MemoryTransport


class BankSuite(test_bank.TestBankConformance):
    """The example's suite over the correct bank (module level: child
    processes import it); not collected (the example's tests run it)."""


def test_a_suite_defined_in_a_function_cannot_run_in_a_child(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    class Local(BankSuite):
        pass

    with pytest.raises(ReplicaProcessError, match="defined inside a function.*child_suite"):
        Local().test_deterministic_across_processes(tmp_path_factory)


def test_child_suite_names_an_importable_class(tmp_path_factory: pytest.TempPathFactory) -> None:
    class Local(BankSuite):
        max_examples = 3
        child_suite = "test_bank:TestBankConformance"

    Local().test_deterministic_across_processes(tmp_path_factory)


class DyingChildSuite(BankSuite):
    """Its replicas kill a child process (the child runs ``python -c``)."""

    max_examples = 2
    child_timeout = 1.0

    def make_state_machine(self, tmp_path: Path) -> StateMachine:
        if sys.argv[0] == "-c":
            print("dying on purpose", file=sys.stderr, flush=True)
            os._exit(3)
        return super().make_state_machine(tmp_path)


class HangingChildSuite(DyingChildSuite):
    def make_state_machine(self, tmp_path: Path) -> StateMachine:
        if sys.argv[0] == "-c":
            threading.Event().wait(30)  # far past child_timeout: the parent kills it
        return BankSuite.make_state_machine(self, tmp_path)


def test_a_child_that_dies_or_hangs_is_reported(tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(ReplicaProcessError, match="(?s)exited.*dying on purpose"):
        DyingChildSuite().test_deterministic_across_processes(tmp_path_factory)
    with pytest.raises(ReplicaProcessError, match="did not answer within 1s"):
        HangingChildSuite().test_deterministic_across_processes(tmp_path_factory)


class TestKvStateMachine(StateMachineConformance):
    """The example of the suite's docstring, on raftkit's KvStateMachine."""

    max_examples = 20

    def make_state_machine(self, tmp_path: Path) -> StateMachine:
        return KvStateMachine()

    def commands(self) -> st.SearchStrategy[bytes]:
        keys = st.sampled_from(["a", "b", "c"])
        values = st.integers(-(2**63), 2**63 - 1) | st.text(max_size=3) | st.none()  # what msgpack packs
        return st.one_of(
            st.builds(KvStateMachine.set_command, keys, values),
            st.builds(KvStateMachine.incr_command, keys, st.integers(-3, 3)),
            st.builds(KvStateMachine.delete_command, keys),
        )


# -- a SyncObj subclass, with a consumer ------------------------------------------------


class Inventory(SyncObj):
    """A SyncObj with replicated methods of its own and a ReplCounter of
    orders (consumer 0). Its node never starts: autoTick=False."""

    def __init__(self) -> None:
        transport = MemoryTransport(MemoryNetwork())  # no socket
        super().__init__("inventory:1", [], SyncObjConf(autoTick=False), [ReplCounter()], transport=transport)
        self.stock: dict[str, int] = {}

    @replicated
    def add(self, item: str, count: int = 1) -> int:
        self.stock[item] = self.stock.get(item, 0) + count
        return self.stock[item]

    @replicated
    def take(self, item: str, count: int = 1) -> int:
        have = self.stock.get(item, 0)
        if have < count:
            raise ValueError(f"only {have} {item} left")
        self.stock[item] = have - count
        return self.stock[item]


class TestInventoryConformance(SyncObjConformance):
    max_examples = 20

    def make_syncobj(self, tmp_path: Path) -> SyncObj:
        return Inventory()

    def commands(self) -> st.SearchStrategy[Any]:
        items = st.sampled_from(["nut", "bolt"])
        counts = st.integers(0, 3)
        return st.one_of(
            call("add", items, counts),
            st.tuples(st.just("take"), st.tuples(items), st.fixed_dictionaries({"count": counts})),
            st.tuples(st.just(0), st.just("add"), st.tuples(counts), st.just({})),  # the counter
            st.tuples(st.just(0), st.just("inc"), st.just(()), st.just({})),
        )


class SloppyInventory(Inventory):
    """Bug: ``add`` throws in a random extra item."""

    @replicated
    def add(self, item: str, count: int = 1) -> int:
        self.stock[item] = self.stock.get(item, 0) + count + random.randrange(2)
        return self.stock[item]


class SloppyInventorySuite(TestInventoryConformance):
    hypothesis_settings: ClassVar[dict[str, Any]] = {"derandomize": True, "database": None}

    def make_syncobj(self, tmp_path: Path) -> SyncObj:
        return SloppyInventory()


def test_the_syncobj_adapter_reports_calls(tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(AssertionError, match=r"(?s)determinism \(in-process\).*#0 \.add\('(nut|bolt)', \d\)"):
        SloppyInventorySuite().test_deterministic_in_process(tmp_path_factory)


# -- batteries through the replicated-object adapter ------------------------------------

KEYS = st.sampled_from(["a", "b", "c"]) | st.integers(0, 2) | st.tuples(st.integers(0, 1))
BAD_KEYS = st.lists(st.integers(0, 1), max_size=1) | st.sets(st.integers(0, 1), max_size=1)
VALUES = (
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
    | st.tuples(st.integers(0, 3), st.text(max_size=2))
    | st.frozensets(st.sampled_from(["x", "y", "z"]))
    | st.floats(allow_nan=False, width=32)
)


Call = tuple[str, tuple[Any, ...], dict[str, Any]]


def call(name: str, *args: st.SearchStrategy[Any]) -> st.SearchStrategy[Call]:
    """A strategy of ``(name, args, {})`` calls."""
    return st.tuples(st.just(name), st.tuples(*args), st.just({}))


class TestReplDictConformance(ConsumerConformance):
    max_examples = 25

    def make_consumers(self, tmp_path: Path) -> list[Any]:
        return [ReplDict()]

    def commands(self) -> st.SearchStrategy[Any]:
        keys = KEYS | BAD_KEYS
        pairs = st.tuples(keys, VALUES)
        return st.one_of(
            call("set", keys, VALUES),
            call("__setitem__", keys, VALUES),
            call("setdefault", keys, VALUES),
            call("pop", keys, VALUES),
            call("update", st.dictionaries(KEYS, VALUES, max_size=3) | st.lists(pairs, max_size=3)),
            call("reset", st.dictionaries(KEYS, VALUES, max_size=3) | st.lists(VALUES, max_size=2)),
            call("clear"),
        )


class TestReplLockManagerConformance(ConsumerConformance):
    """The replicated lock table behind the manager (its keeper thread is
    stopped when each replica is closed). Lock ids are what a client can
    send: the manager keeps them in a dict, so they are hashable."""

    max_examples = 25

    def make_consumers(self, tmp_path: Path) -> list[Any]:
        return [ReplLockManager(autoUnlockTime=10.0, selfID="me")]

    def commands(self) -> st.SearchStrategy[Any]:
        locks = st.sampled_from(["l1", "l2", ("l", 3)])
        clients = st.sampled_from(["me", "you"])
        times = st.floats(0, 100, allow_nan=False) | st.integers(0, 100)
        ttls = st.sampled_from([0.5, 10.0, 30.0])
        ids = st.lists(locks, max_size=2)
        return st.one_of(
            call("acquire", locks, clients, times, ttls),
            call("refresh", clients, times, ids, ids),
            call("release", locks, clients),
        )


class TestReplPriorityQueueConformance(ConsumerConformance):
    max_examples = 30
    max_commands = 16
    # The finding below must show on every run: the same examples each time.
    hypothesis_settings: ClassVar[dict[str, Any]] = {"derandomize": True, "database": None}

    def make_consumers(self, tmp_path: Path) -> list[Any]:
        return [ReplPriorityQueue(maxsize=6)]

    def commands(self) -> st.SearchStrategy[Any]:
        # Items of mixed kinds: a put whose item cannot be compared with the
        # queue's is refused with TypeError.
        # Few priorities, so ties (which compare the second items) are common.
        items = st.tuples(st.integers(0, 1), st.sampled_from(["a", "b"]) | st.none()) | st.integers(0, 1)
        return st.one_of(
            call("put", items),
            call("put_nowait", items),
            call("put", items),
            call("get", st.none() | st.integers(0, 1)),
            call("get_nowait"),
        )

    # Found by this suite: a refused put used to reorder the heap (fixed: _push
    # now makes heappush's comparisons before it changes anything). Still open:
    @pytest.mark.xfail(
        strict=True,
        reason="finding: a put compares only along the heap path, so items that cannot be compared with "
        "each other (e.g. (1, None) and (1, 'a')) can both be queued; a later get raises TypeError after "
        "heappop has already moved items, so the failed call changes the state (alike on every replica)",
    )
    def test_failed_command_leaves_state_unchanged(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        super().test_failed_command_leaves_state_unchanged(tmp_path_factory)


class TestLmdbDictConformance(ConsumerConformance):
    max_examples = 20

    def make_consumers(self, tmp_path: Path) -> list[Any]:
        return [LmdbDict(tmp_path / "lmdb", durability="no-sync", map_size=1 << 20)]

    def state_of(self, sm: StateMachine) -> Any:
        # Not the snapshot: the LMDB stream in it also carries the applied
        # index and the environment's size (bookkeeping, not the dict). The
        # decoded items: see test_lmdb_dict_stores_the_same_bytes_everywhere.
        (consumer,) = sm._owner._rk_consumers  # type: ignore[attr-defined]
        return list(consumer.items())

    def commands(self) -> st.SearchStrategy[Any]:
        keys = KEYS | BAD_KEYS
        return st.one_of(
            call("set", keys, VALUES),
            call("pop", keys, VALUES),
            call("update", st.dictionaries(KEYS, VALUES, max_size=3)),
            call("clear"),
        )


class LmdbDictStoredBytes(TestLmdbDictConformance):
    """The stored bytes as the state, with set values (not collected: only
    its cross-process check runs, below)."""

    max_examples = 10
    hypothesis_settings: ClassVar[dict[str, Any]] = {
        "derandomize": True,
        "database": None,
        "phases": [Phase.generate],  # a known failure: no need to shrink it
    }

    def state_of(self, sm: StateMachine) -> Any:
        (consumer,) = sm._owner._rk_consumers  # type: ignore[attr-defined]
        return list(consumer.state_machine.raw_items())

    def commands(self) -> st.SearchStrategy[Any]:
        sets = st.frozensets(st.sampled_from(["u", "v", "w", "x", "y", "z"]), min_size=4)
        return call("set", st.sampled_from(["a", "b"]), sets)


@pytest.mark.xfail(
    strict=True,
    reason="finding: LmdbDict.set, a replicated method, encodes its value on each replica as it applies "
    "the call, and msgpack writes a set in iteration order, which follows the hash seed: replicas store "
    "different bytes for an equal set (reads decode them equal). LmdbDictStateMachine used directly "
    "does not have it: the proposer encodes the value once",
)
def test_lmdb_dict_stores_the_same_bytes_everywhere(tmp_path_factory: pytest.TempPathFactory) -> None:
    LmdbDictStoredBytes().test_deterministic_across_processes(tmp_path_factory)
