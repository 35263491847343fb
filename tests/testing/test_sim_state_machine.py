"""SimCluster running a user's state machine (raftkit.testing.sim_state).

A correct bank survives a randomized run with partitions, crashes,
restarts, wiped disks, compactions and snapshot installs, its replicas
agreeing at every step and with a sequential replay of the committed log;
and the agreement check is shown to fail, with a message naming nodes,
index and what differs, on planted bugs: an apply using ``random``, a
snapshot that forgets a field, an apply that raises half-way on some nodes
only, and a result depending on a set's iteration order.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from raftkit.core.types import EntryKind
from raftkit.state_machines import StateMachine
from raftkit.testing.sim import InvariantViolation, SimCluster

NAMES = ["ann", "bob", "cy", "dee", "eve"]


class InsufficientFunds(Exception):
    pass


class UnknownAccount(Exception):
    pass


class Bank(StateMachine):
    """Accounts with ids and balances. Commands are ``b"<request> <op> <args>"``
    (the request number makes every proposal unique, as SimCluster needs)."""

    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, int]] = {}  # name -> {"id", "balance"}
        self.next_id = 1

    def apply(self, command: bytes) -> object:
        _request, op, *args = command.decode().split()
        return getattr(self, "_" + op)(*args)

    def _account(self, name: str) -> dict[str, int]:
        if name not in self.accounts:
            raise UnknownAccount(name)
        return self.accounts[name]

    def _open(self, name: str) -> int:
        if name not in self.accounts:
            self.accounts[name] = {"id": self.next_id, "balance": 0}
            self.next_id += 1
        return self.accounts[name]["id"]

    def _deposit(self, name: str, amount: str) -> int:
        account = self._account(name)
        account["balance"] += int(amount)
        return account["balance"]

    def _withdraw(self, name: str, amount: str) -> int:
        account = self._account(name)
        if account["balance"] < int(amount):
            raise InsufficientFunds(f"{name} has {account['balance']}, not {amount}")
        account["balance"] -= int(amount)
        return account["balance"]

    def _transfer(self, src: str, dst: str, amount: str) -> list[int]:
        a, b = self._account(src), self._account(dst)
        if a["balance"] < int(amount):
            raise InsufficientFunds(f"{src} has {a['balance']}, not {amount}")
        a["balance"] -= int(amount)
        b["balance"] += int(amount)
        return [a["balance"], b["balance"]]

    def snapshot(self) -> bytes:
        return json.dumps({"accounts": self.accounts, "next_id": self.next_id}, sort_keys=True).encode()

    def restore(self, data: bytes) -> None:
        state = json.loads(data)
        self.accounts = state["accounts"]
        self.next_id = state.get("next_id", 1)


# -- planted bugs ---------------------------------------------------------------------------


class RandomInterest(Bank):
    """(a) apply uses ``random``: each replica pays its own interest."""

    def _deposit(self, name: str, amount: str) -> int:
        return super()._deposit(name, str(int(amount) + random.randint(0, 10**6)))


class ForgetfulSnapshot(Bank):
    """(b) snapshot() forgets ``next_id``: a restored replica hands out used ids."""

    def snapshot(self) -> bytes:
        return json.dumps({"accounts": self.accounts}, sort_keys=True).encode()


_disk_seeds = itertools.count(1)


class HalfApplied(Bank):
    """(d) transfer raises after debiting, on the replicas whose (node-local)
    disk hiccups: their money vanishes, the others' arrives."""

    def __init__(self) -> None:
        super().__init__()
        self._disk = random.Random(next(_disk_seeds))

    def _transfer(self, src: str, dst: str, amount: str) -> list[int]:
        a, b = self._account(src), self._account(dst)
        if a["balance"] < int(amount):
            raise InsufficientFunds(f"{src} has {a['balance']}, not {amount}")
        a["balance"] -= int(amount)
        if self._disk.random() < 0.5:
            raise OSError("disk hiccup")
        b["balance"] += int(amount)
        return [a["balance"], b["balance"]]


class SilentlyHalfApplied(HalfApplied):
    """(d) again, with the exception swallowed: every outcome is None."""

    def apply(self, command: bytes) -> object:
        with contextlib.suppress(OSError):
            super().apply(command)
        return None


class FirstVip(Bank):
    """(c) the result depends on a set's iteration order: a set of account ids
    that grew and shrank keeps its large table, while the one a restored
    replica rebuilds is small, so the same members come out in another order."""

    def __init__(self) -> None:
        super().__init__()
        self.vips: set[int] = set()

    def _vip(self, op: str, number: str) -> int | None:
        if op == "add":
            self.vips.add(int(number))
        elif op == "remove":
            self.vips.discard(int(number))
        return next(iter(self.vips), None)  # "the first VIP": whichever the set yields first

    def snapshot(self) -> bytes:
        state = {"accounts": self.accounts, "next_id": self.next_id, "vips": sorted(self.vips)}
        return json.dumps(state, sort_keys=True).encode()

    def restore(self, data: bytes) -> None:
        super().restore(data)
        self.vips = set(json.loads(data)["vips"])


# -- driving a run ---------------------------------------------------------------------------


@dataclass
class Workload:
    c: SimCluster
    rng: random.Random
    requests: Iterator[int]

    def command(self) -> bytes:
        r = self.rng
        op = r.choice(["open", "deposit", "deposit", "withdraw", "transfer", "transfer"])
        if op == "open":
            args = [r.choice(NAMES)]
        elif op == "transfer":
            args = [*r.sample(NAMES, 2), str(r.randint(1, 60))]
        else:
            args = [r.choice(NAMES), str(r.randint(1, 60))]
        return " ".join([str(next(self.requests)), op, *args]).encode()

    def propose(self, command: bytes | None = None) -> int | None:
        """Propose ``command`` on the leader, or a random one (on a random
        node, at times: it may refuse)."""
        lead = self.c.leader()
        if command is not None:
            return self.c.propose(lead, command) if lead is not None else None
        node = lead if lead is not None and self.rng.random() < 0.8 else self.rng.choice(self.c.ids)
        return self.c.propose(node, self.command())


def new_workload(c: SimCluster, seed: int) -> Workload:
    w = Workload(c, random.Random(seed), itertools.count(1))
    c.stabilize()
    for name in NAMES:
        w.propose(f"{next(w.requests)} open {name}".encode())
    c.run(3)
    return w


def lost(c: SimCluster) -> int:
    return sum(sn.lost_state or sn.amnesiac for sn in c.nodes.values())


def chaos(w: Workload, steps: int) -> None:
    """Random faults between proposals; never more than a minority down or
    without its disk, so the cluster keeps making progress."""
    c, r = w.c, w.rng
    minority = (len(c.ids) - 1) // 2
    for _ in range(steps):
        x = r.random()
        live = [i for i in c.ids if c.nodes[i].alive]
        down = [i for i in c.ids if not c.nodes[i].alive]
        if x < 0.40:
            for _ in range(r.randint(1, 3)):
                w.propose()
        elif x < 0.47:
            c.partition(r.sample(c.ids, r.randint(1, minority)))
        elif x < 0.55:
            c.heal()
        elif x < 0.62 and len(down) < minority:
            c.crash(r.choice(live))
        elif x < 0.72 and down:
            c.restart(r.choice(down))
        elif x < 0.76 and lost(c) == 0 and not down:
            node = r.choice(c.ids)
            c.wipe(node)
            c.restart(node)
        elif x < 0.90:
            c.compact(r.choice(live), keep=r.randint(0, 2))
        else:
            lag_behind_a_snapshot(w)
        c.run(r.randint(1, 4), drop_rate=0.05)


def lag_behind_a_snapshot(w: Workload) -> None:
    """A follower misses entries that its leader then compacts away: it
    catches up by installing the leader's snapshot."""
    c = w.c
    lead = c.leader()
    if lead is None:
        return
    lag = w.rng.choice([i for i in c.ids if i != lead])
    c.isolate(lag)
    for _ in range(3):
        w.propose()
    c.run(3)
    c.compact(lead)
    c.heal()


def replay(c: SimCluster, factory: Callable[[], StateMachine]) -> StateMachine:
    """The committed log applied sequentially to one fresh instance."""
    sm = factory()
    for index in sorted(c.committed):
        e = c.committed[index]
        if e.kind is EntryKind.NORMAL:
            with contextlib.suppress(Exception):  # a deterministic failure leaves the state alone
                sm.apply(e.data)
    return sm


def events(c: SimCluster, word: str) -> int:
    return sum(word in line for line in c.trace)


# -- a correct state machine ----------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_a_correct_bank_agrees_everywhere_through_a_randomized_run(seed: int) -> None:
    c = SimCluster(5, seed=seed, state_machine=Bank)
    w = new_workload(c, seed)
    chaos(w, 150)
    c.stabilize()
    c.check_converged_and_durable()
    c.check_invariants()

    # The run did what it was meant to: faults of every kind, snapshots installed.
    assert events(c, "crashed") > 0 and events(c, "lost its disk") > 0
    assert events(c, "log compacted") > 0 and events(c, "installed snapshot") > 0
    # Every replica holds what the committed log, replayed on its own, gives.
    expected = replay(c, Bank).snapshot()
    for node in c.ids:
        sm = c.state_machine(node)
        assert sm is not None and sm.snapshot() == expected, node
    # The check compared something, states and outcomes alike (not vacuous).
    agreement = c.agreement
    assert agreement is not None
    commands = sum(e.kind is EntryKind.NORMAL for e in c.committed.values())
    print(
        f"seed {seed}: {commands} commands, {agreement.outcome_comparisons} outcome and"
        f" {agreement.state_comparisons} state comparisons, {events(c, 'installed snapshot')} installs,"
        f" {events(c, 'crashed')} crashes, {events(c, 'lost its disk')} wipes"
    )
    assert commands > 50
    assert agreement.outcome_comparisons > 2 * commands and agreement.state_comparisons > 2 * commands
    # Outcomes: values and deterministic exceptions, the same on every node.
    outcomes = [c.result_at(i) for i in c.results]
    assert any(o is not None and not o.raised for o in outcomes)
    assert any(o is not None and isinstance(o.error, InsufficientFunds) for o in outcomes)


def test_only_user_commands_reach_the_state_machine() -> None:
    seen: list[bytes] = []

    class Recording(Bank):
        def apply(self, command: bytes) -> object:
            seen.append(command)
            return super().apply(command)

    c = SimCluster(3, seed=4, state_machine=Recording)
    w = new_workload(c, 4)
    c.add_learner("n4")  # a CONFIG entry, and NOOPs from every election
    c.transfer_leadership(c.leader() or "n1", "n2")
    for _ in range(5):
        w.propose()
        c.run(2)
    c.stabilize()
    kinds = {e.kind for e in c.committed.values()}
    assert {EntryKind.NOOP, EntryKind.CONFIG} <= kinds
    assert seen and set(seen) <= set(c.proposals)
    normal = {i for i, e in c.committed.items() if e.kind is EntryKind.NORMAL}
    assert set(c.results) == normal
    assert c.result_at(min(normal)) is not None and c.result_at(min(normal)).unwrap() == 1  # ann's id
    learner = c.state_machine("n4")
    assert learner is not None and learner.snapshot() == replay(c, Bank).snapshot()


def test_restart_restores_from_the_latest_snapshot_and_reapplies_the_rest() -> None:
    class Recording(Bank):
        def __init__(self) -> None:
            super().__init__()
            self.restored = False
            self.log: list[bytes] = []  # commands this instance applied

        def apply(self, command: bytes) -> object:
            self.log.append(command)
            return super().apply(command)

        def restore(self, data: bytes) -> None:
            super().restore(data)
            self.restored = True

    c = SimCluster(3, seed=5, state_machine=Recording)
    w = new_workload(c, 5)
    node = next(i for i in c.ids if i != c.leader())
    before = c.state_machine(node)
    meta = c.compact(node)
    assert meta is not None
    for _ in range(4):
        w.propose()
    c.run(3)
    c.crash(node)
    assert c.state_machine(node) is None
    c.restart(node)
    c.stabilize()
    after = c.state_machine(node)
    assert isinstance(after, Recording) and after is not before and after.restored  # a fresh instance
    assert after.snapshot() == replay(c, Bank).snapshot()
    # It re-applied exactly the commands committed after its snapshot, in log order.
    later = [c.committed[i] for i in sorted(c.committed) if i > meta.index]
    assert after.log == [e.data for e in later if e.kind is EntryKind.NORMAL] != []
    assert any(f"{node} restarted" in line and f"applied {meta.index}" in line for line in c.trace)

    # A wiped node starts from nothing and gets everything again (by snapshot or log).
    c.wipe(node)
    c.restart(node)
    c.stabilize()
    wiped = c.state_machine(node)
    assert isinstance(wiped, Recording) and wiped is not after
    assert wiped.snapshot() == replay(c, Bank).snapshot()


def test_state_equal_compares_live_replicas() -> None:
    calls = 0

    def same_accounts(a: Bank, b: Bank) -> bool:
        nonlocal calls
        calls += 1
        return a.accounts == b.accounts and a.next_id == b.next_id

    c = SimCluster(3, seed=6, state_machine=Bank, state_equal=same_accounts)
    w = new_workload(c, 6)
    chaos(w, 40)
    c.stabilize()
    assert calls > 0 and c.agreement is not None and c.agreement.state_comparisons == calls


def test_without_a_state_machine_nothing_changes() -> None:
    def story(**kw: object) -> list[str]:
        c = SimCluster(3, seed=8, **kw)  # type: ignore[arg-type]
        w = new_workload(c, 8)
        chaos(w, 30)
        return c.trace

    plain = SimCluster(3)
    assert plain.agreement is None and plain.results == {} and plain.result_at(1) is None
    with pytest.raises(ValueError, match="no state machine"):
        plain.state_machine("n1")
    # The state machine draws nothing from the simulator's RNG: the same run.
    assert story() == story(state_machine=Bank)


# -- planted bugs are caught -----------------------------------------------------------------


@pytest.fixture
def seeded_random() -> Iterator[None]:
    state = random.getstate()
    random.seed(1234)
    yield
    random.setstate(state)


def test_apply_using_random_is_caught(seeded_random: None) -> None:
    c = SimCluster(3, seed=1, state_machine=RandomInterest)
    w = new_workload(c, 1)
    with pytest.raises(InvariantViolation) as caught:
        w.propose(b"100 deposit ann 10")
        c.run(5)
    message = str(caught.value)
    print(message)
    assert "state machine outcomes differ at index" in message
    assert "(command b'100 deposit ann 10')" in message
    assert message.count("returned") == 2


def test_apply_using_random_is_caught_by_a_randomized_run(seeded_random: None) -> None:
    c = SimCluster(5, seed=2, state_machine=RandomInterest)
    with pytest.raises(InvariantViolation, match="state machine outcomes differ"):
        chaos(new_workload(c, 2), 150)


def forgetful_run(**kw: object) -> tuple[SimCluster, str]:
    """n3 misses entries the leader compacts away, installs its snapshot,
    then applies one more account opening."""
    c = SimCluster(3, seed=3, state_machine=ForgetfulSnapshot, **kw)  # type: ignore[arg-type]
    w = new_workload(c, 3)
    lead = c.leader()
    lag = next(i for i in c.ids if i != lead)
    c.isolate(lag)
    for name in ["fay", "gus"]:
        w.propose(f"{next(w.requests)} open {name}".encode())
    c.run(3)
    assert c.compact(lead or "n1") is not None
    c.heal()
    c.run_until(lambda: events(c, f"{lag} installed snapshot") > 0, 100)
    w.propose(f"{next(w.requests)} open hal".encode())
    c.run(10)
    return c, lag


def test_snapshot_forgetting_a_field_is_caught_when_the_restored_replica_diverges() -> None:
    with pytest.raises(InvariantViolation) as caught:
        forgetful_run()
    message = str(caught.value)
    print(message)
    # The restored replica gives hal an id already in use, and holds another state.
    assert "state machine outcomes differ at index" in message and "open hal" in message
    assert "(restored a snapshot at" in message and "returned 8" in message and "returned 1" in message


def test_snapshot_forgetting_a_field_is_caught_at_once_by_a_digest_that_sees_it() -> None:
    def digest(sm: Bank) -> str:
        return json.dumps([sm.accounts, sm.next_id], sort_keys=True)

    with pytest.raises(InvariantViolation) as caught:
        forgetful_run(digest=digest)
    message = str(caught.value)
    print(message)
    assert "state machines differ at applied index" in message
    assert "(restored a snapshot at" in message and ", 8]'" in message and ", 1]'" in message


def test_apply_raising_half_way_on_some_nodes_is_caught() -> None:
    message = transfers_on(SimCluster(3, seed=4, state_machine=HalfApplied))
    assert "state machine outcomes differ at index" in message and "transfer ann bob 1" in message
    assert "raised OSError('disk hiccup')" in message and "returned [" in message


def transfers_on(c: SimCluster) -> str:
    """Transfers from ann to bob until the check fails; its message."""
    w = new_workload(c, 4)
    w.propose(b"100 deposit ann 50")
    c.run(5)
    with pytest.raises(InvariantViolation) as caught:
        for i in range(10):
            w.propose(f"{101 + i} transfer ann bob 1".encode())
            c.run(5)
    print(caught.value)
    return str(caught.value)


def test_apply_raising_half_way_is_caught_by_its_state_alone() -> None:
    """With the outcomes all alike, the vanished money shows in the state."""
    message = transfers_on(SimCluster(3, seed=4, state_machine=SilentlyHalfApplied))
    assert "state machines differ at applied index" in message and '"bob": {"balance": 0' in message


def test_apply_raising_half_way_is_caught_by_state_equal_on_live_replicas() -> None:
    def same_accounts(a: Bank, b: Bank) -> bool:
        return a.accounts == b.accounts

    c = SimCluster(3, seed=4, state_machine=SilentlyHalfApplied, state_equal=same_accounts)
    message = transfers_on(c)
    assert c.agreement is not None and c.agreement.state_comparisons > 0
    assert "state machines differ at applied index" in message and "(state_equal)" in message
    assert '"bob": {"balance": 0' in message and '"bob": {"balance": 1' in message


def test_result_depending_on_set_order_is_caught_after_a_snapshot_install() -> None:
    c = SimCluster(3, seed=5, state_machine=FirstVip)
    w = new_workload(c, 5)
    lead = c.leader()
    lag = next(i for i in c.ids if i != lead)
    for n in range(20):  # the leader's set grows to a large table
        w.propose(f"{next(w.requests)} vip add {n}".encode())
    for n in range(20):
        if n not in (3, 40):
            w.propose(f"{next(w.requests)} vip remove {n}".encode())
    w.propose(f"{next(w.requests)} vip add 40".encode())  # {3, 40}: 3 comes first in a big table
    c.run(5)
    c.isolate(lag)
    w.propose(f"{next(w.requests)} deposit ann 1".encode())
    c.run(3)
    c.compact(lead or "n1")
    c.heal()
    c.run_until(lambda: events(c, f"{lag} installed snapshot") > 0, 100)
    with pytest.raises(InvariantViolation) as caught:
        w.propose(f"{next(w.requests)} vip add 7".encode())  # a rebuilt {3, 40} yields 40 first
        c.run(10)
    message = str(caught.value)
    print(message)
    assert "state machine outcomes differ at index" in message and "vip add 7" in message
    assert "returned 3" in message and "returned 40" in message
