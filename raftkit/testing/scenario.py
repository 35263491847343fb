"""Scenario transcripts: readable, exact records of a simulated Raft run.

A transcript is a text file of blocks. Each block is one command line, a
``----`` separator, the output the command produced, and a blank line::

    # Lines starting with '#' are comments; they are kept on rewrite.
    cluster n=3 seed=1
    ----
    ok

    campaign n1
    ----
    n1 is pre-candidate in term 0

The runner replays the commands against a fresh ``SimCluster`` and compares
what it prints with what the file says. ``RAFTKIT_REWRITE=1`` writes the
actual output back into the file instead, for review in a diff. A command
written without ``----`` (a new block being drafted) always needs a rewrite.
The command reference lives in ``docs/testing.md`` and in ``COMMANDS`` below.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from raftkit.core.membership import decode_conf
from raftkit.core.types import ConfState, EntryKind, MessageType, NodeId, Role
from raftkit.testing.sim import Envelope, InvariantViolation, SimCluster, describe

SEPARATOR = "----"
REWRITE_ENV = "RAFTKIT_REWRITE"
MAX_DELIVERIES = 10_000  # a bound on `deliver all`, so a livelock fails instead of hanging
_TIME_PREFIX = re.compile(r"^t=\d+\s+")
VIOLATION = "INVARIANT VIOLATION"  # an output line starting so fails the test, even when expected


class ScenarioError(Exception):
    """The transcript itself is wrong (unknown command, bad argument...);
    the message starts with ``file:line``."""


# -- the file format ---------------------------------------------------------------


@dataclass
class Block:
    """One command with the lines that precede it and its expected output."""

    command: str
    line: int  # 1-based line number of the command
    prelude: list[str] = field(default_factory=list)  # comments / blank lines before it
    expected: list[str] | None = None  # None: no ``----`` yet


def parse(text: str) -> tuple[list[Block], list[str]]:
    """Split a transcript into blocks, plus the comment lines after the last one."""
    lines = text.splitlines()
    blocks: list[Block] = []
    prelude: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            prelude.append(line)
            i += 1
            continue
        block = Block(command=line.strip(), line=i + 1, prelude=prelude)
        prelude = []
        i += 1
        if i < len(lines) and lines[i].strip() == SEPARATOR:
            i += 1
            block.expected = []
            while i < len(lines) and lines[i].strip():
                block.expected.append(lines[i].rstrip())
                i += 1
        if i < len(lines) and not lines[i].strip():
            i += 1  # the blank line that ends the block
        blocks.append(block)
    while prelude and not prelude[-1].strip():
        prelude.pop()
    return blocks, prelude


def render(blocks: list[Block], outputs: list[list[str]], trailer: list[str]) -> str:
    """The transcript text for ``blocks`` with ``outputs`` as their results."""
    out: list[str] = []
    for n, (block, lines) in enumerate(zip(blocks, outputs, strict=True)):
        if n:
            out.append("")
        out.extend(block.prelude)
        out.append(block.command)
        out.append(SEPARATOR)
        out.extend(lines)
    if trailer:
        out.append("")
        out.extend(trailer)
    return "\n".join(out) + "\n"


# -- command arguments --------------------------------------------------------------


class Args:
    """The words of one command: positional words and ``key=value`` options.
    Every option must be consumed, so a typo is an error, not a silent no-op."""

    def __init__(self, words: list[str], where: str) -> None:
        self.where = where
        self.positional: list[str] = []
        self.options: dict[str, str] = {}
        for word in words:
            key, eq, value = word.partition("=")
            if eq:
                if not key or not value:
                    self.fail(f"malformed option {word!r} (expected key=value)")
                self.options[key] = value
            else:
                self.positional.append(word)
        self._used: set[str] = set()

    def fail(self, message: str) -> NoReturn:
        raise ScenarioError(f"{self.where}: {message}")

    def text(self, key: str, default: str | None = None) -> str | None:
        self._used.add(key)
        return self.options.get(key, default)

    def integer(self, key: str, default: int) -> int:
        raw = self.text(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.fail(f"{key}={raw!r} is not an integer")
        if value < 0:
            self.fail(f"{key}={raw!r} must not be negative")
        return value

    def flag(self, key: str, default: bool) -> bool:
        raw = self.text(key)
        if raw is None:
            return default
        if raw.lower() in ("true", "on", "yes", "1"):
            return True
        if raw.lower() in ("false", "off", "no", "0"):
            return False
        self.fail(f"{key}={raw!r} is not a boolean (use true or false)")

    def take(self, count: int, what: str, *, optional: int = 0) -> list[str]:
        """Exactly ``count`` positional words (plus up to ``optional`` more)."""
        if not count <= len(self.positional) <= count + optional:
            self.fail(f"expected {what}, got {' '.join(self.positional) or 'nothing'}")
        taken, self.positional = self.positional, []
        return taken

    def done(self) -> None:
        unknown = sorted(set(self.options) - self._used)
        if unknown:
            self.fail(f"unknown option(s): {', '.join(unknown)}")
        if self.positional:
            self.fail(f"unexpected argument(s): {' '.join(self.positional)}")


# -- the runner --------------------------------------------------------------------------


Handler = Callable[["ScenarioRunner", Args], None]
COMMANDS: dict[str, tuple[str, Handler]] = {}


def command(usage: str) -> Callable[[Handler], Handler]:
    """Register a ``_cmd_<name>`` method as the transcript command ``name``."""

    def register(fn: Handler) -> Handler:
        COMMANDS[usage.split()[0]] = (usage, fn)
        return fn

    return register


@dataclass(frozen=True)
class MessageFilter:
    """Selects in-flight messages by sender, receiver and type (None: any)."""

    src: NodeId | None = None
    dst: NodeId | None = None
    type: MessageType | None = None

    def __call__(self, env: Envelope) -> bool:
        m = env.msg
        return (
            (self.src is None or m.src == self.src)
            and (self.dst is None or m.dst == self.dst)
            and (self.type is None or m.type is self.type)
        )


class ScenarioRunner:
    """Executes transcript commands against one ``SimCluster`` and collects
    what each prints: the cluster's trace lines (without the ``t=`` time
    prefix) followed by the command's own lines."""

    def __init__(self, path: str = "<scenario>") -> None:
        self.path = path
        self._sim: SimCluster | None = None
        self._out: list[str] = []
        self._where = path

    @property
    def sim(self) -> SimCluster:
        if self._sim is None:
            raise ScenarioError(f"{self._where}: the first command must be `cluster`")
        return self._sim

    def execute(self, line: str, lineno: int = 0) -> list[str]:
        """Run one command line; returns its output lines."""
        self._where = f"{self.path}:{lineno}"
        words = line.split()
        entry = COMMANDS.get(words[0])
        if entry is None:
            known = ", ".join(sorted(COMMANDS))
            raise ScenarioError(f"{self._where}: unknown command {words[0]!r} (known: {known})")
        _, handler = entry
        args = Args(words[1:], self._where)
        self._out = []
        try:
            handler(self, args)
        except InvariantViolation as exc:
            self._out.append(f"{VIOLATION}: {exc}")
        return self._out or ["ok"]

    # -- helpers ----------------------------------------------------------------------

    def _emit(self, line: str) -> None:
        self._out.append(line)

    def _on_trace(self, line: str) -> None:
        self._out.append(_TIME_PREFIX.sub("", line))

    def _node(self, args: Args, name: str) -> NodeId:
        if name not in self.sim.nodes:
            args.fail(f"unknown node {name!r} (nodes: {', '.join(self.sim.ids)})")
        return name

    def _nodes(self, args: Args, words: list[str]) -> list[NodeId]:
        return [self._node(args, w) for w in words]

    def _node_list(self, args: Args, csv: str) -> list[NodeId]:
        return self._nodes(args, [w for w in csv.split(",") if w])

    def _filter(self, args: Args) -> MessageFilter:
        src, dst, kind = args.text("from"), args.text("to"), args.text("type")
        mtype = None
        if kind is not None:
            try:
                mtype = MessageType[kind.upper()]
            except KeyError:
                args.fail(f"unknown message type {kind!r} (one of {', '.join(t.name for t in MessageType)})")
        return MessageFilter(
            self._node(args, src) if src else None, self._node(args, dst) if dst else None, mtype
        )

    def _lost_reason(self, env: Envelope) -> str | None:
        m = env.msg
        dst = self.sim.nodes.get(m.dst)
        if dst is None or not dst.alive:
            return f"{m.dst} is down"
        if (m.src, m.dst) in self.sim.blocked:
            return "link cut"
        return None

    def _deliver(self, env: Envelope) -> None:
        sim = self.sim
        reason = self._lost_reason(env)
        if reason is not None:
            sim.log(f"lost {describe(env.msg)} ({reason})")
        sim.deliver(next(i for i, e in enumerate(sim.inflight) if e is env))

    def _with_messages(self, args: Args) -> bool:
        return args.flag("msgs", True)

    # -- commands: setup and inputs -----------------------------------------------------

    @command("cluster n=3 seed=0 [election=10] [heartbeat=1] [prevote=true] [checkquorum=true] [batch=64]")
    def _cmd_cluster(self, args: Args) -> None:
        if self._sim is not None:
            args.fail("`cluster` may only be used once, as the first command")
        n = args.integer("n", 3)
        if n < 1:
            args.fail("n must be at least 1")
        sim = SimCluster(
            n,
            args.integer("seed", 0),
            election_tick=args.integer("election", 10),
            heartbeat_tick=args.integer("heartbeat", 1),
            pre_vote=args.flag("prevote", True),
            check_quorum=args.flag("checkquorum", True),
            max_entries_per_msg=args.integer("batch", 64),
        )
        args.done()
        sim.trace_messages = True
        sim.listeners.append(self._on_trace)
        self._sim = sim

    @command("campaign n1")
    def _cmd_campaign(self, args: Args) -> None:
        (node,) = self._nodes(args, args.take(1, "a node"))
        args.done()
        self.sim.campaign(node)

    @command("tick [n1] [count=1]")
    def _cmd_tick(self, args: Args) -> None:
        words = args.take(0, "at most one node", optional=1)
        node = self._node(args, words[0]) if words else None
        count = args.integer("count", 1)
        args.done()
        for _ in range(count):
            self.sim.tick(node)

    @command("propose n1 data")
    def _cmd_propose(self, args: Args) -> None:
        node, data = args.take(2, "a node and the data")
        self._node(args, node)
        args.done()
        if data.encode() in self.sim.proposals:
            args.fail(f"proposal data must be unique: {data!r} was proposed before")
        if self.sim.propose(node, data.encode()) is None:
            self._emit(f"{node} refused proposal {data}")

    @command("read n1 ctx")
    def _cmd_read(self, args: Args) -> None:
        node, ctx = args.take(2, "a node and a read context")
        self._node(args, node)
        args.done()
        if ctx.encode() in self.sim.reads:
            args.fail(f"read contexts must be unique: {ctx!r} was used before")
        if not self.sim.read(node, ctx.encode()):
            self._emit(f"{node} refused read {ctx}")

    @command("transfer n1 n3")
    def _cmd_transfer(self, args: Args) -> None:
        node, to = self._nodes(args, args.take(2, "the leader and the target"))
        args.done()
        self.sim.transfer_leadership(node, to)
        raw = self.sim.nodes[node].raw
        if raw is not None and raw.raft.lead_transferee == to:
            self._emit(f"{node} is transferring leadership to {to}")

    @command("compact n1 [keep=0]")
    def _cmd_compact(self, args: Args) -> None:
        (node,) = self._nodes(args, args.take(1, "a node"))
        keep = args.integer("keep", 0)
        args.done()
        if self.sim.compact(node, keep) is None:
            self._emit(f"{node} has nothing to compact")

    @command("crash n1")
    def _cmd_crash(self, args: Args) -> None:
        (node,) = self._nodes(args, args.take(1, "a node"))
        args.done()
        self.sim.crash(node)

    @command("restart n1")
    def _cmd_restart(self, args: Args) -> None:
        (node,) = self._nodes(args, args.take(1, "a node"))
        args.done()
        self.sim.restart(node)

    @command("add n4")
    def _cmd_add(self, args: Args) -> None:
        (node,) = args.take(1, "a new node id")
        args.done()
        if node in self.sim.nodes:
            args.fail(f"node {node!r} already exists")
        self.sim.add_node(node)

    @command("confchange n1 voters=n1,n2,n3 [learners=n4]")
    def _cmd_confchange(self, args: Args) -> None:
        (node,) = self._nodes(args, args.take(1, "the leader"))
        voters = args.text("voters")
        if voters is None:
            args.fail("voters=... is required")
        learners = args.text("learners", "")
        args.done()
        conf = ConfState(
            voters=frozenset(self._node_list(args, voters or "")),
            learners=frozenset(self._node_list(args, learners or "")),
        )
        try:
            index = self.sim.propose_conf_change(node, conf)
        except ValueError as exc:
            args.fail(str(exc))
        if index is None:
            self._emit(f"{node} refused conf change {_conf(conf)}")

    # -- commands: the network ----------------------------------------------------------

    @command("deliver [all] [count=N] [from=n1] [to=n2] [type=APPEND] [msgs=true]")
    def _cmd_deliver(self, args: Args) -> None:
        words = args.take(0, "nothing or the word 'all'", optional=1)
        if words and words != ["all"]:
            args.fail(f"expected nothing or the word 'all', got {words[0]!r}")
        until_quiet = bool(words)
        match = self._filter(args)
        limit = args.integer("count", MAX_DELIVERIES)
        show = self._with_messages(args)
        args.done()
        sim = self.sim
        sim.trace_messages = show
        delivered = 0
        try:
            if until_quiet:
                while delivered < limit:
                    env = next((e for e in sim.inflight if match(e)), None)
                    if env is None:
                        break
                    self._deliver(env)
                    delivered += 1
            else:
                for env in [e for e in sim.inflight if match(e)][:limit]:
                    self._deliver(env)
                    delivered += 1
        finally:
            sim.trace_messages = True
        if not delivered:
            self._emit("no messages")
        elif not show:
            self._emit(f"delivered {delivered} messages")
        if until_quiet and delivered >= MAX_DELIVERIES:
            self._emit(f"stopped after {MAX_DELIVERIES} messages: still not quiet")

    @command("drop [from=n1] [to=n2] [type=APPEND]")
    def _cmd_drop(self, args: Args) -> None:
        match = self._filter(args)
        args.done()
        sim = self.sim
        doomed = [e for e in sim.inflight if match(e)]
        for env in doomed:
            self._emit(f"dropped {describe(env.msg)}")
            sim.drop(next(i for i, e in enumerate(sim.inflight) if e is env))
        if not doomed:
            self._emit("no messages")

    @command("inflight [from=n1] [to=n2] [type=APPEND]")
    def _cmd_inflight(self, args: Args) -> None:
        match = self._filter(args)
        args.done()
        shown = [describe(e.msg) for e in self.sim.inflight if match(e)]
        for line in shown:
            self._emit(line)
        if not shown:
            self._emit("no messages")

    @command("partition n1,n2 n3,n4,n5")
    def _cmd_partition(self, args: Args) -> None:
        groups = [self._node_list(args, g) for g in args.take(1, "node groups like n1,n2 n3", optional=8)]
        args.done()
        self.sim.partition(*groups)

    @command("cut n1 n2 | cut n1->n2")
    def _cmd_cut(self, args: Args) -> None:
        words = args.take(1, "two nodes (both directions) or src->dst (one direction)", optional=1)
        args.done()
        if len(words) == 1:
            src, arrow, dst = words[0].partition("->")
            if not arrow:
                args.fail("expected two nodes (both directions) or src->dst (one direction)")
            self.sim.cut(self._node(args, src), self._node(args, dst))
        else:
            a, b = self._nodes(args, words)
            self.sim.cut(a, b)
            self.sim.cut(b, a)

    @command("heal")
    def _cmd_heal(self, args: Args) -> None:
        args.done()
        self.sim.heal()

    @command("run rounds=N [msgs=true]")
    def _cmd_run(self, args: Args) -> None:
        rounds = args.integer("rounds", 1)
        show = self._with_messages(args)
        args.done()
        self.sim.trace_messages = show
        try:
            self.sim.run(rounds)
        finally:
            self.sim.trace_messages = True

    @command("stabilize [rounds=2000] [msgs=true]")
    def _cmd_stabilize(self, args: Args) -> None:
        rounds = args.integer("rounds", 2000)
        show = self._with_messages(args)
        args.done()
        self.sim.trace_messages = show
        try:
            self.sim.stabilize(rounds)
        except TimeoutError:
            self._emit(f"not converged after {rounds} rounds")
        finally:
            self.sim.trace_messages = True

    # -- commands: observation ---------------------------------------------------------

    @command("status [n1 ...]")
    def _cmd_status(self, args: Args) -> None:
        words = args.take(0, "node names", optional=len(self.sim.ids))
        args.done()
        for node in self._nodes(args, words) or self.sim.ids:
            self._status(node, progress=bool(words))

    def _status(self, node: NodeId, *, progress: bool) -> None:
        sn = self.sim.nodes[node]
        store = sn.store
        first = store.first_index()
        compacted = f" first={first}" if first > 1 else ""
        if sn.raw is None:
            hs = store.hard_state()
            self._emit(f"{node} down term={hs.term} commit={hs.commit} last={store.last_index()}{compacted}")
            return
        st = sn.raw.status()
        self._emit(
            f"{node} {st.role.value} term={st.term} lead={st.leader or '-'} commit={st.commit} "
            f"applied={sn.applied_index} last={st.last_index}{compacted}"
        )
        if not progress:
            return
        self._emit(f"  conf {_conf(st.conf)}")
        if st.role is Role.LEADER:
            for peer, pr in st.peers.items():
                if peer == node:
                    continue
                extra = " learner" if pr.learner else ""
                self._emit(f"  {peer} match={pr.match} next={pr.next} {pr.state.value}{extra}")

    @command("log n1")
    def _cmd_log(self, args: Args) -> None:
        (node,) = self._nodes(args, args.take(1, "a node"))
        args.done()
        sn = self.sim.nodes[node]
        store = sn.store
        hs = store.hard_state()
        self._emit(f"hardstate term={hs.term} vote={hs.vote or '-'} commit={hs.commit}")
        snap = sn.snapshots.latest()
        if snap is not None:
            self._emit(f"snapshot {snap.term}/{snap.index} {_conf(snap.conf)}")
        entries = store.entries(store.first_index(), store.last_index() + 1)
        for e in entries:
            if e.kind is EntryKind.NOOP:
                body = "noop"
            elif e.kind is EntryKind.CONFIG:
                body = "conf " + _conf(decode_conf(e.data))
            else:
                body = e.data.decode(errors="replace")
            self._emit(f"{e.term}/{e.index} {body}")
        if not entries:
            self._emit("(no entries)")

    @command("check")
    def _cmd_check(self, args: Args) -> None:
        args.done()
        self.sim.check_invariants()
        self.sim.check_converged_and_durable()


def _conf(conf: ConfState) -> str:
    text = "voters=" + ",".join(sorted(conf.voters))
    if conf.learners:
        text += " learners=" + ",".join(sorted(conf.learners))
    if conf.voters_outgoing:
        text += " outgoing=" + ",".join(sorted(conf.voters_outgoing))
    return text


# -- files -----------------------------------------------------------------------------


def run_scenario(path: str | Path) -> tuple[str, str]:
    """Replay a transcript; returns (the file's text, the text it should have)."""
    path = Path(path)
    text = path.read_text()
    blocks, trailer = parse(text)
    runner = ScenarioRunner(str(path))
    outputs = [runner.execute(b.command, b.line) for b in blocks]
    return text, render(blocks, outputs, trailer)


def check_scenario(path: str | Path, *, rewrite: bool | None = None) -> None:
    """Replay a transcript and fail with a unified diff if the output
    differs; with ``rewrite`` (default: ``$RAFTKIT_REWRITE`` is set and not
    ``0``) write the actual output back to the file instead. A safety
    violation in the output always fails, so a rewrite cannot bless one."""
    if rewrite is None:
        rewrite = os.environ.get(REWRITE_ENV, "0") not in ("", "0")
    expected, actual = run_scenario(path)
    if rewrite and expected != actual:
        Path(path).write_text(actual)
        expected = actual
    violations = [line for line in actual.splitlines() if line.startswith(VIOLATION)]
    if expected == actual:
        if violations:
            raise AssertionError(f"{path}: the run broke a Raft invariant:\n" + "\n".join(violations))
        return
    diff = difflib.unified_diff(
        expected.splitlines(), actual.splitlines(), f"{path} (expected)", f"{path} (actual)", lineterm=""
    )
    raise AssertionError(
        f"scenario output differs (rerun with {REWRITE_ENV}=1 to accept it):\n" + "\n".join(diff)
    )
