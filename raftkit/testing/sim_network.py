"""The message network of ``SimCluster`` (raftkit.testing.sim), as a mixin:
envelopes in flight, the links a test blocks, and the fault rules that
deliver, drop, duplicate, delay, reorder, park or replay messages.

The network is a plain list (``inflight``): a test chooses which message
arrives next, or lets ``SimCluster.run`` draw the faults from the seeded RNG
(``_deliver_due``). Late messages come from three bounded pools: what a node
sent before it crashed or was wiped (``ghosts``), the last TIMEOUT_NOWs
(``timeout_nows``), and messages a test took out of the network (``parked``).
Also here: ``describe``, the one-line rendering of a message used in traces
and scenarios.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raftkit.core.raft import TRANSFER_CONTEXT
from raftkit.core.types import COMMIT_NOTICE, Message, MessageType, NodeId, Role
from raftkit.testing.invariants import InvariantViolation

if TYPE_CHECKING:
    import random

    from raftkit.testing.sim_node import SimNode

__all__ = ["GHOSTS_PER_NODE", "LATE_TIMEOUT_NOWS", "MAX_GHOSTS", "Envelope", "SimNetwork", "describe"]

# Messages kept for the "late message" fault rules (bounded, so memory stays flat).
GHOSTS_PER_NODE = 6  # the last messages a node sent, kept when it crashes or is wiped
MAX_GHOSTS = 24  # messages from earlier incarnations, across all nodes
LATE_TIMEOUT_NOWS = 4  # TIMEOUT_NOW messages kept to be delivered again, late


@dataclass
class Envelope:
    """A message in the network; a snapshot travels with its data, read from
    the sender's snapshotter when it was sent (the sender may compact later)."""

    seq: int
    msg: Message
    snapshot_data: bytes | None = None
    not_before: int = 0  # logical time before which ``run`` does not deliver it (delay)


def describe(m: Message) -> str:
    """One readable line for a message, as used in traces and scenarios."""
    t = m.type
    head = f"{m.src}->{m.dst} {t.name} t{m.term}"
    if t is MessageType.APPEND:
        ents = ",".join(f"{e.term}/{e.index}" for e in m.entries)
        notice = " notice" if m.context == COMMIT_NOTICE else ""  # the follower will not reply
        return f"{head} prev={m.log_term}/{m.index} commit={m.commit} entries=[{ents}]{notice}"
    if t is MessageType.APPEND_RESP:
        if m.reject:
            return f"{head} reject index={m.index} hint={m.log_term}/{m.reject_hint}"
        return f"{head} index={m.index}"
    if t in (MessageType.VOTE, MessageType.PRE_VOTE):
        extra = " transfer" if m.context else ""
        return f"{head} last={m.log_term}/{m.index}{extra}"
    if t in (MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP):
        return f"{head} {'reject' if m.reject else 'grant'}"
    if t in (MessageType.HEARTBEAT, MessageType.HEARTBEAT_RESP):
        ctx = f" ctx={m.context.decode(errors='replace')}" if m.context else ""
        return f"{head} commit={m.commit}{ctx}" if t is MessageType.HEARTBEAT else f"{head}{ctx}"
    if t is MessageType.SNAPSHOT and m.snapshot is not None:
        return f"{head} snapshot={m.snapshot.term}/{m.snapshot.index}"
    if t in (MessageType.READ_INDEX, MessageType.READ_INDEX_RESP):
        return f"{head} index={m.index} ctx={m.context.decode(errors='replace')}"
    return head


class SimNetwork:
    """The network half of ``SimCluster`` (state set up in ``_init_network``).
    It calls back into the cluster for what a node does with a message
    (``_process``), for the ground truth (``_record_vote``) and for ``log``."""

    # The cluster's, declared for type checkers (a mixin's self is not a SimCluster to mypy).
    ids: list[NodeId]
    nodes: dict[NodeId, SimNode]
    rng: random.Random
    time: int
    trace_messages: bool
    _config: dict[str, Any]

    if TYPE_CHECKING:  # only there: at runtime these would hide the real ones (MRO)
        def _process(self, sn: SimNode) -> None: ...
        def _record_vote(self, voter: SimNode, term: int, candidate: NodeId) -> None: ...
        def log(self, event: str) -> None: ...

    def _init_network(self) -> None:
        self._seq = 0  # Envelope.seq: a unique, increasing number per message sent or copied
        self.inflight: list[Envelope] = []
        self.blocked: set[tuple[NodeId, NodeId]] = set()
        # Late-message fault rules: what nodes sent in their current
        # incarnation, messages from earlier ones, TIMEOUT_NOWs sent, and
        # messages taken out of the network to be delivered later.
        self._recent: dict[NodeId, deque[Envelope]] = {}
        self.ghosts: list[Envelope] = []
        self.timeout_nows: deque[Envelope] = deque(maxlen=LATE_TIMEOUT_NOWS)
        self.parked: list[Envelope] = []

    def _deliver_due(
        self,
        *,
        drop_rate: float,
        duplicate_rate: float,
        delay_rate: float,
        max_delay: int,
        reorder: bool,
    ) -> None:
        """One round of ``run``: deliver the messages due by now, each one
        subject to the faults drawn from the seeded RNG. A delayed message
        keeps its envelope (and its ``seq``); a duplicate gets a new one."""
        due = [env for env in self.inflight if env.not_before <= self.time]
        self.inflight = [env for env in self.inflight if env.not_before > self.time]
        if reorder:
            self.rng.shuffle(due)
        for env in due:
            if delay_rate and self.rng.random() < delay_rate:
                env.not_before = self.time + self.rng.randint(1, max_delay)
                self.inflight.append(env)
            elif drop_rate and self.rng.random() < drop_rate:
                self._lost(env)
            else:
                if duplicate_rate and self.rng.random() < duplicate_rate:
                    self._seq += 1
                    self.inflight.append(Envelope(self._seq, env.msg, env.snapshot_data, self.time))
                self._arrive(env)

    # -- links -----------------------------------------------------------------------

    def partition(self, *groups: Iterable[NodeId]) -> None:
        """Split the cluster: nodes in different groups cannot talk. Nodes
        not named in any group form one more group."""
        sets = [set(g) for g in groups]
        rest = set(self.ids) - set().union(*sets)
        if rest:
            sets.append(rest)
        for a in sets:
            for b in sets:
                if a is not b:
                    self.blocked.update((x, y) for x in a for y in b)
        self.log("partition " + " | ".join(",".join(sorted(s)) for s in sets))

    def cut(self, src: NodeId, dst: NodeId) -> None:
        """Block one direction only: ``src`` can no longer reach ``dst``."""
        self.blocked.add((src, dst))
        self.log(f"cut {src}->{dst}")

    def isolate(self, node_id: NodeId) -> None:
        self.partition([node_id])

    def heal(self) -> None:
        self.blocked.clear()
        self.log("network healed")

    # -- what happens to the messages in flight -------------------------------------------

    def deliver(self, position: int = 0) -> Envelope | None:
        """Deliver the in-flight message at ``position`` (any order is legal)."""
        if not self.inflight:
            return None
        env = self.inflight.pop(position % len(self.inflight))
        self._arrive(env)
        return env

    def drop(self, position: int = 0) -> Envelope | None:
        if not self.inflight:
            return None
        env = self.inflight.pop(position % len(self.inflight))
        self._lost(env)
        return env

    def duplicate(self, position: int = 0) -> None:
        if self.inflight:
            env = self.inflight[position % len(self.inflight)]
            self._seq += 1
            self.inflight.append(Envelope(self._seq, env.msg, env.snapshot_data, env.not_before))

    # -- late messages ---------------------------------------------------------------------

    def replay_ghost(self, position: int = 0, deliver: bool = True) -> Envelope | None:
        """Send again a message a node sent before it last crashed or was
        wiped (``ghosts``): a late, duplicated message from an earlier
        incarnation, as any network may deliver. It stays in ``ghosts`` (it
        may come back again). Delivered at once unless ``deliver`` is False."""
        if not self.ghosts:
            return None
        return self._resend(self.ghosts[position % len(self.ghosts)], deliver, "old incarnation")

    def replay_timeout_now(self, position: int = 0, deliver: bool = True) -> Envelope | None:
        """Deliver again one of the last TIMEOUT_NOW messages sent, late (after
        the transfer that sent it may have expired)."""
        if not self.timeout_nows:
            return None
        return self._resend(self.timeout_nows[position % len(self.timeout_nows)], deliver, "late")

    def _resend(self, env: Envelope, deliver: bool, why: str) -> Envelope:
        self._seq += 1
        copy = Envelope(self._seq, env.msg, env.snapshot_data, self.time)
        self.log(f"{why}: {describe(env.msg)}")
        if deliver:
            self._arrive(copy)
        else:
            self.inflight.append(copy)
        return copy

    def park(self, position: int = 0) -> Envelope | None:
        """Take an in-flight message out of the network (``run`` will not
        deliver it) until ``unpark``: a message held back arbitrarily long."""
        if not self.inflight:
            return None
        env = self.inflight.pop(position % len(self.inflight))
        self.parked.append(env)
        return env

    def unpark(self, position: int = 0, deliver: bool = True) -> Envelope | None:
        """Put a parked message back in flight, or deliver it at once."""
        if not self.parked:
            return None
        env = self.parked.pop(position % len(self.parked))
        if deliver:
            self._arrive(env)
        else:
            self.inflight.append(env)
        return env

    def deliver_all(self, max_messages: int = 100_000) -> int:
        """Deliver in FIFO order until nothing is in flight (new messages
        included), up to ``max_messages``; returns how many arrived."""
        count = 0
        while self.inflight and count < max_messages:
            self.deliver(0)
            count += 1
        return count

    # -- arrival and sending -----------------------------------------------------------------

    def _arrive(self, env: Envelope) -> None:
        m = env.msg
        dst = self.nodes.get(m.dst)
        if dst is None or dst.raw is None or (m.src, m.dst) in self.blocked:
            self._lost(env)
            return
        if self.trace_messages:
            self.log("deliver " + describe(m))
        if m.type is MessageType.SNAPSHOT and m.snapshot is not None and env.snapshot_data is not None:
            dst.received_snapshots[m.snapshot.index] = env.snapshot_data
        lead_term = self._leader_term_if_outsider_campaigns(dst, m)
        dst.raw.step(m)
        if lead_term is not None and (dst.raw.raft.role is not Role.LEADER or dst.raw.raft.term != lead_term):
            raise InvariantViolation(
                f"disruption: {m.src}, outside leader {m.dst}'s configuration, deposed it"
                f" (term {lead_term}) with {describe(m)}"
            )
        self._process(dst)
        if m.type is MessageType.SNAPSHOT:
            self._report_snapshot(m.src, m.dst, True)

    def _leader_term_if_outsider_campaigns(self, dst: SimNode, m: Message) -> int | None:
        """The term of leader ``dst`` when ``m`` is a (pre-)vote request from a
        node outside its configuration: with check-quorum on, such a node
        (removed, or never added) must not be able to depose it. Votes forced
        by a leadership transfer are exempt (they bypass leases by design)."""
        raft = dst.raw.raft if dst.raw is not None else None
        if (
            raft is None
            or not self._config["check_quorum"]
            or raft.role is not Role.LEADER
            or m.type not in (MessageType.VOTE, MessageType.PRE_VOTE)
            or m.context == TRANSFER_CONTEXT
            or m.src in raft.conf.members
        ):
            return None
        return raft.term

    def _lost(self, env: Envelope) -> None:
        # A lost snapshot is reported to its sender, as the runtime's transport
        # does when a stream fails: the leader then retries instead of waiting.
        if env.msg.type is MessageType.SNAPSHOT:
            self._report_snapshot(env.msg.src, env.msg.dst, False)

    def _report_snapshot(self, src: NodeId, dst: NodeId, ok: bool) -> None:
        sender = self.nodes[src]
        if sender.raw is not None:
            sender.raw.report_snapshot(dst, ok)
            self._process(sender)

    def _send(self, sn: SimNode, m: Message) -> None:
        """Put a message of ``sn``'s Ready in flight, after the checks that
        can only be made as it leaves (who campaigns, who grants a vote)."""
        if m.type in (MessageType.VOTE, MessageType.PRE_VOTE) and sn.raw is not None:
            conf = sn.raw.raft.conf
            if m.src not in conf.voters and m.src not in conf.voters_outgoing:
                raise InvariantViolation(f"membership: {m.src} campaigns but is not a voter: {describe(m)}")
        if m.type is MessageType.VOTE_RESP and not m.reject:
            self._record_vote(sn, m.term, m.dst)
        data = None
        if m.type is MessageType.SNAPSHOT and m.snapshot is not None:
            with sn.snapshots.open(m.snapshot.index) as src:
                data = src.read()
        self._seq += 1
        env = Envelope(self._seq, m, data, self.time)
        self.inflight.append(env)
        if m.type is not MessageType.SNAPSHOT:  # a snapshot's sender must hear how its stream ended
            recent = self._recent.get(sn.id)
            if recent is None:
                recent = self._recent[sn.id] = deque(maxlen=GHOSTS_PER_NODE)
            recent.append(env)
        if m.type is MessageType.TIMEOUT_NOW:
            self.timeout_nows.append(env)
