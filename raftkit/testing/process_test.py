"""YOUR state machine on real node processes, under real faults.

``process_test(factory, commands, model=...)`` starts ``nodes`` raftkit
node processes on 127.0.0.1 (``raftkit.testing.machine_node``), each
running ``factory()`` with its log and snapshots on disk, then for
``seconds`` seconds:

* ``clients`` client threads send your commands (drawn from the Hypothesis
  strategy ``commands`` with ``seed``) to random live nodes, one at a time
  each, and record when each was sent and what came back (followers
  forward commands to the leader, as in production);
* a fault thread repeatedly breaks something for a moment and then heals
  it: ``"kill"`` (SIGKILL a node, then start it again from its disk),
  ``"pause"`` (SIGSTOP, then SIGCONT: a node frozen by a long GC or a
  stuck VM) and ``"partition"`` (through a TCP proxy between every pair of
  nodes, ``raftkit.testing.netproxy``: a node cut off both ways, a node
  that can hear but not speak, or a random split). Half of the time the
  target is the leader.

Then every fault is healed, the nodes catch up, and the run is judged from
what the test observed (``raftkit.testing.process_checks``): every node
applied the same commands in the same order, nothing acknowledged was
lost, nothing was applied twice, and with a ``model`` every acknowledged
outcome is the model's at its log position and the whole client history
is linearizable (a Wing–Gong–Lowe search, shrunk to a short
counterexample when it is not)::

    from raftkit.testing.process_test import process_test

    def test_bank_survives_real_faults(tmp_path):
        report = process_test(Bank, bank_commands(), model=BankModel(), seconds=5, data_dir=tmp_path)
        report.check()  # AssertionError with every problem and the counterexample

The factory must be importable by a child process: a module-level class
or function (the child imports it by module and qualified name, with the
parent's ``sys.path``). The state machine must keep its state in memory
(durable ones that keep their own applied index are refused). Commands and
snapshots go between the nodes' processes as in production; outcomes come
back to the test pickled, over the pipes of processes it started itself.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import os
import pickle
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from raftkit.testing.conformance.state_machine_child import suite_reference
from raftkit.testing.machine_node import TAG_BYTES
from raftkit.testing.process_checks import ClientOp, Findings, check_run
from raftkit.testing.process_cluster import free_ports

__all__ = ["FAULTS", "ProcessReport", "process_test"]

log = logging.getLogger(__name__)

FAULTS = ("kill", "pause", "partition")
"""Every kind of fault ``process_test`` can inject."""

_START_TIMEOUT = 60.0  # seconds a node process may take to import and start


class _Machine:
    """One node process and its pipes: many requests in flight, answers
    matched by id."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        with open(log_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "raftkit.testing.machine_node", *args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1, env=env,
            )
        self._lock = threading.Lock()
        self._waiters: dict[int, queue.SimpleQueue[dict[str, Any] | None]] = {}
        self._ids = itertools.count(1)
        self._started: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, name=f"raftkit-{name}-reader", daemon=True)
        self._reader.start()
        try:
            first = self._started.get(timeout=_START_TIMEOUT)
        except queue.Empty:
            first = None
        if not first or not first.get("ok"):
            self.kill()
            reason = "no answer" if first is None else first.get("error")
            raise RuntimeError(f"node {name} did not start: {reason} (its log: {log_path})")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "id" not in msg:
                self._started.put(msg)
                continue
            with self._lock:
                waiter = self._waiters.pop(msg["id"], None)
            if waiter is not None:  # else: an answer its request gave up on
                waiter.put(msg)
        self._started.put(None)
        with self._lock:
            waiters, self._waiters = list(self._waiters.values()), {}
        for waiter in waiters:
            waiter.put(None)

    def request(self, op: str, wait: float, **fields: Any) -> dict[str, Any] | None:
        """The answer, or None if none came within ``wait`` seconds (or the process died)."""
        waiter: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        with self._lock:
            if self.proc.poll() is not None or self.proc.stdin is None:
                return None
            rid = next(self._ids)
            self._waiters[rid] = waiter
            try:
                self.proc.stdin.write(json.dumps({"op": op, "id": rid, **fields}) + "\n")
                self.proc.stdin.flush()
            except (OSError, ValueError):  # a dead pipe, or stdin closed by kill() meanwhile
                self._waiters.pop(rid, None)
                return None
        try:
            return waiter.get(timeout=wait)
        except queue.Empty:
            with self._lock:
                self._waiters.pop(rid, None)
            return None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)  # our own child, by PID

    def kill(self) -> None:
        self.signal(signal.SIGCONT)  # a paused process must not linger after SIGKILL's reaping
        self.signal(signal.SIGKILL)
        self.proc.wait(10)
        if self.proc.stdin is not None:
            # not under a request's write; closing flushes what a write to the dying process left: EPIPE
            with self._lock, contextlib.suppress(OSError):
                self.proc.stdin.close()

    def stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


@dataclass
class ProcessReport:
    """What a run did and what the checks found. ``check()`` raises
    AssertionError with ``summary()`` when anything is wrong."""

    findings: Findings
    ops: list[ClientOp]
    events: list[str]
    seconds: float
    workdir: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.findings.ok

    @property
    def acknowledged(self) -> int:
        return sum(op.outcome is not None for op in self.ops)

    def summary(self) -> str:
        sent = sum(op.sent for op in self.ops)
        unknown = sum(op.sent and op.outcome is None for op in self.ops)
        lines = [
            f"{len(self.ops)} commands in {self.seconds:.1f} s: {self.acknowledged} acknowledged, "
            f"{unknown} without an outcome, {len(self.ops) - sent} refused at once; "
            f"{len(self.findings.order)} in the longest ledger",
            f"linearizable: {_verdict(self.findings.linearizable)}",
            f"faults: {', '.join(self.events) if self.events else 'none'}",
            *self.notes,
        ]
        if self.findings.problems:
            lines.append(f"{len(self.findings.problems)} problem(s):")
            lines += [f"- {p}" for p in self.findings.problems]
        if self.workdir is not None:
            lines.append(f"node data and logs: {self.workdir}")
        return "\n".join(lines)

    def check(self) -> None:
        if not self.ok:
            raise AssertionError(self.summary())


def _verdict(value: bool | None) -> str:
    return {True: "yes", False: "NO", None: "not checked (no model, or the search hit its limit)"}[value]


def draw_commands(
    commands: st.SearchStrategy[bytes], clients: int, per_client: int, seed: int
) -> list[list[bytes]]:
    """``clients`` lists of ``per_client`` commands, the same for the same
    seed: Hypothesis draws a pool of commands (a few small examples: its
    first ones are its simplest, and one big example overflows its
    buffer), then each client picks from the pool at random."""
    pool: dict[bytes, None] = {}

    @settings(max_examples=30, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @hypothesis_seed(seed)
    @given(st.lists(commands, min_size=1, max_size=20))
    def draw(drawn: list[bytes]) -> None:
        for command in drawn:
            if not isinstance(command, bytes):
                raise TypeError(f"commands must draw bytes, got {type(command).__name__}: {command!r}")
            pool[command] = None

    draw()
    choices = list(pool)
    return [random.Random(f"{seed}-commands-{c}").choices(choices, k=per_client) for c in range(clients)]


class _Run:
    def __init__(
        self, factory_ref: dict[str, Any], names: list[str], workdir: Path, faults: Sequence[str],
        seed: int, op_timeout: float, password: str | None,
    ) -> None:
        self.names = names
        self.seed = seed
        self.workdir = workdir
        self.faults = list(faults)
        self.rng = random.Random(seed)  # the fault thread's
        self.op_timeout = op_timeout
        self.events: list[str] = []
        self.failures: list[str] = []  # of the harness itself
        self._kinds: list[str] = []
        self.addresses = {n: f"127.0.0.1:{p}" for n, p in zip(names, free_ports(len(names)), strict=True)}
        self.proxy: Any = None
        if "partition" in self.faults:
            from raftkit.testing.netproxy import PartitionProxy

            self.proxy = PartitionProxy(self.addresses)
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if isinstance(p, str))}
        self.factory = json.dumps(factory_ref)
        # How many commands each node packs into one log entry, by seed: single
        # commands, cuts every few commands, the default, and nodes that disagree
        # (a leader re-cuts what others forward).
        packing = random.Random(f"{seed}-packing")
        self.per_entry = {n: packing.choice((1, 2, 3, 256)) for n in names}
        self.password = password
        self.machines: dict[str, _Machine] = {}
        self.paused: set[str] = set()
        self._t0 = time.monotonic()
        self._closing = False
        self._starting = threading.Lock()  # close() waits for a start under way, then none begins

    def start(self, name: str) -> None:
        peers = dict(self.addresses)
        if self.proxy is not None:
            peers.update(self.proxy.routes(name))
        args = ["--id", name, "--peers", json.dumps(peers), "--factory", self.factory,
                "--data-dir", str(self.workdir / name), "--log-file", str(self.workdir / f"{name}.log"),
                "--commands-per-entry", str(self.per_entry[name])]
        if self.password:
            args += ["--password", self.password]
        with self._starting:
            if self._closing:
                raise RuntimeError(f"node {name} not started: the run is over")
            self.machines[name] = _Machine(name, args, self.env, self.workdir / f"{name}.stderr")

    def event(self, what: str) -> None:
        self.events.append(f"{time.monotonic() - self._t0:.1f}s {what}")
        log.info("process_test: %s", what)

    def leader(self) -> str | None:
        for name in self.rng.sample(self.names, len(self.names)):
            m = self.machines[name]
            if m.alive and name not in self.paused:
                answer = m.request("leader", 1.0)
                if answer and answer.get("leader") in self.machines:
                    return str(answer["leader"])
        return None

    # -- faults --------------------------------------------------------------------------

    def break_something(self) -> None:
        if not self._kinds:  # every kind once per round, in a random order: short runs see them all
            self._kinds = self.rng.sample(self.faults, len(self.faults))
        kind = self._kinds.pop()
        leader = self.leader() if self.rng.random() < 0.5 else None
        target = leader or self.rng.choice(self.names)
        role = " (the leader)" if target == leader else ""
        if kind == "kill":
            self.machines[target].kill()
            self.event(f"kill {target}{role}")
        elif kind == "pause":
            self.machines[target].signal(signal.SIGSTOP)
            self.paused.add(target)
            self.event(f"pause {target}{role}")
        else:
            others = [n for n in self.names if n != target]
            shape = self.rng.choice(["isolate", "mute", "split"])
            if shape == "isolate":
                self.proxy.isolate(target)
                self.event(f"isolate {target}{role}")
            elif shape == "mute":  # it hears everyone, nobody hears it
                for other in others:
                    self.proxy.cut(target, other)
                self.event(f"mute {target}{role} (one way)")
            else:
                cut = self.rng.sample(self.names, self.rng.randint(1, len(self.names) // 2))
                self.proxy.partition(cut, [n for n in self.names if n not in cut])
                self.event(f"split {sorted(cut)} from the rest")

    def heal(self) -> None:
        for name in sorted(self.paused):
            self.machines[name].signal(signal.SIGCONT)
        self.paused.clear()
        if self.proxy is not None:
            self.proxy.heal()
        for name, m in list(self.machines.items()):
            if not m.alive:
                self.start(name)
                self.event(f"restart {name}")

    def nemesis(self, stop: threading.Event, every_kind_once: threading.Event) -> None:
        try:
            done = 0
            while not stop.wait(self.rng.uniform(0.2, 0.6)):
                self.break_something()
                stop.wait(self.rng.uniform(0.3, 1.0))
                self.heal()
                self.event("heal")
                done += 1
                if done == len(self.faults):
                    every_kind_once.set()
        except Exception as exc:  # a broken harness must fail the run
            self.failures.append(f"the fault thread stopped: {type(exc).__name__}: {exc}")
            log.exception("process_test: fault thread failed")

    # -- clients -------------------------------------------------------------------------

    def client(self, number: int, commands: list[bytes], tags: Callable[[], int], ops: list[ClientOp],
               stop: threading.Event) -> None:
        try:
            self._client(number, commands, tags, ops, stop)
        except Exception as exc:  # a broken harness must fail the run, not thin it out
            self.failures.append(f"client {number} stopped: {type(exc).__name__}: {exc}")
            log.exception("process_test: client %d failed", number)

    def _client(self, number: int, commands: list[bytes], tags: Callable[[], int], ops: list[ClientOp],
                stop: threading.Event) -> None:
        rng = random.Random(f"{self.seed}-{number}")
        for command in commands:
            if stop.is_set():
                return
            live = [n for n in self.names if self.machines[n].alive]
            node = rng.choice(live or self.names)
            tag = tags()
            op = ClientOp(number, tag, command, node, call=time.monotonic())
            answer = self.machines[node].request(
                "propose", self.op_timeout + 1.0,
                command=base64.b64encode(tag.to_bytes(TAG_BYTES, "big") + command).decode(),
                timeout=self.op_timeout,
            )
            now = time.monotonic()
            if answer is None:
                op.error = "no answer (the node was paused, killed or slow)"
            elif answer.get("ok") and "raised" in answer:
                op.ret, op.outcome = now, ("raised", answer["raised"])
            elif answer.get("ok") and "value" in answer:
                try:
                    value = _unpickle(answer["value"])
                except Exception as exc:  # e.g. an exception object whose __init__ takes other arguments
                    op.error = f"its result did not unpickle here: {type(exc).__name__}: {exc}"
                else:
                    op.ret, op.outcome = now, ("returned", value)
            else:
                op.error = str(answer.get("error") or answer.get("unpicklable"))
                op.sent = bool(answer.get("sent", True))
            ops.append(op)
            if answer is None or not answer.get("ok"):
                stop.wait(0.05)  # no busy loop against a node that refuses

    # -- the end -------------------------------------------------------------------------

    def ledgers(self) -> dict[str, dict[str, Any] | None]:
        out: dict[str, dict[str, Any] | None] = {}
        for name, m in self.machines.items():
            answer = m.request("ledger", 15.0)
            out[name] = answer if answer and answer.get("ok") else None
        return out

    def settle(self, timeout: float) -> dict[str, dict[str, Any] | None]:
        """Ledgers once every node answers with the same tags and a leader
        is known (or whatever they say when ``timeout`` runs out)."""
        deadline = time.monotonic() + timeout
        while True:
            read = self.ledgers()
            answers = [a for a in read.values() if a is not None]
            same = len(answers) == len(read) and len({tuple(a["tags"]) for a in answers}) == 1
            if same and any(a.get("leader") for a in answers):
                return read
            if time.monotonic() >= deadline:
                return read
            time.sleep(0.2)

    def close(self) -> None:
        with self._starting:
            self._closing = True
        interrupted: BaseException | None = None
        try:
            for m in list(self.machines.values()):
                try:
                    m.stop()
                except Exception:  # the others must still go
                    log.exception("process_test: stopping node %s failed", m.name)
                except BaseException as exc:  # Ctrl-C or a test timeout mid-close: stop the rest first
                    interrupted = interrupted or exc
                    with contextlib.suppress(Exception):
                        m.kill()
        finally:
            if self.proxy is not None:
                self.proxy.close()
        if interrupted is not None:
            raise interrupted


def _unpickle(value: str) -> Any:
    return pickle.loads(base64.b64decode(value))  # from a child process this test started


def process_test(
    state_machine: Callable[[], Any],
    commands: st.SearchStrategy[bytes],
    *,
    model: Any = None,
    nodes: int = 3,
    clients: int = 4,
    seconds: float = 5.0,
    faults: Sequence[str] = FAULTS,
    seed: int = 0,
    op_timeout: float = 1.0,
    commands_per_client: int = 400,
    data_dir: str | os.PathLike[str] | None = None,
    password: str | None = None,
    settle_timeout: float = 30.0,
    check_time_limit: float = 30.0,
) -> ProcessReport:
    """Run the cluster, the clients and the faults (see the module
    docstring) and judge the run. ``data_dir`` keeps the nodes' data and
    logs there (made if missing; it must not hold an earlier run's nodes;
    default: a temporary directory, removed afterwards).
    ``commands_per_client`` bounds each client's work; the run ends when
    ``seconds`` pass or every client is done, and not before each kind of
    fault was injected once (a short run may last a few seconds longer)."""
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; choose from {list(FAULTS)}")
    if nodes < 1 or clients < 1 or seconds <= 0:
        raise ValueError("nodes and clients must be at least 1 and seconds positive")
    ref = suite_reference(state_machine)  # fails now, with a clear message, if a child cannot import it
    plan = draw_commands(commands, clients, commands_per_client, seed)
    names = [f"n{i}" for i in range(1, nodes + 1)]
    if data_dir is not None:
        # A node would recover an earlier run's log, whose tags this run's clients reuse:
        # 'applied twice', 'a command no client sent'.
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        earlier = sorted(n for n in names if (Path(data_dir) / n).exists())
        if earlier:
            raise ValueError(f"data_dir {str(data_dir)!r} holds node data of an earlier run "
                             f"({', '.join(earlier)}); give each run an empty directory")
    temp = None if data_dir is not None else tempfile.TemporaryDirectory(prefix="raftkit-process-test-")
    workdir = Path(data_dir if data_dir is not None else temp.name)  # type: ignore[union-attr]
    run = _Run(ref, names, workdir, faults if nodes > 1 else (), seed,
               op_timeout, password)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        for name in run.names:
            run.start(name)
        run.settle(settle_timeout)  # a leader before the clients start
        ops: list[ClientOp] = []
        counter = itertools.count(1)
        lock = threading.Lock()

        def next_tag() -> int:
            with lock:
                return next(counter)

        started = time.monotonic()
        threads += [threading.Thread(target=run.client, args=(i, plan[i], next_tag, ops, stop), daemon=True,
                                     name=f"raftkit-process-test-client-{i}") for i in range(clients)]
        every_kind_once = threading.Event()
        if run.faults:
            threads.append(threading.Thread(target=run.nemesis, args=(stop, every_kind_once), daemon=True,
                                            name="raftkit-process-test-faults"))
        else:
            every_kind_once.set()
        for t in threads:
            t.start()
        deadline = started + seconds
        for t in threads[:clients]:
            t.join(max(0.0, deadline - time.monotonic()))
        # A short run still sees every kind of fault once (while the clients work),
        # unless the fault thread stopped (its failure is reported).
        give_up = time.monotonic() + _START_TIMEOUT
        while not every_kind_once.wait(0.1) and threads[-1].is_alive() and time.monotonic() < give_up:
            pass
        stop.set()
        for t in threads:
            t.join(op_timeout + _START_TIMEOUT)
        elapsed = time.monotonic() - started
        run.heal()
        read = run.settle(settle_timeout)
        ledgers = {n: None if a is None else list(a["tags"]) for n, a in read.items()}
        findings = check_run(ops, ledgers, model, time_limit=check_time_limit)
        findings.problems[:0] = run.failures
        digests = {a["digest"] for a in read.values() if a is not None}
        if len(digests) > 1 and len({tuple(t) for t in ledgers.values() if t is not None}) == 1:
            findings.problems.append(
                "the nodes applied the same commands but their state machines' snapshot() bytes differ "
                "(a diverged state, or a snapshot() whose encoding is not canonical, e.g. a pickled set of "
                "str: process_test compares the bytes)"
            )
        packing = ", ".join(f"{n} {k}" for n, k in run.per_entry.items())
        return ProcessReport(findings, sorted(ops, key=lambda o: o.call), run.events, elapsed,
                             None if temp is not None else workdir,
                             notes=[f"commands per log entry: {packing}"])
    finally:
        # Also when something above raised (a KeyboardInterrupt, a test's timeout): no client
        # or fault thread may go on sending commands, or killing and restarting nodes, after this.
        stop.set()
        for t in threads:
            t.join(op_timeout + _START_TIMEOUT)
        run.close()
        if temp is not None:
            temp.cleanup()
