"""Membership changes and leadership transfer as blocking calls that work on
any member (``Node.add_member``, ``remove_member``, ``promote_member``,
``transfer_leadership``).

Each call states the membership it wants, asks the leader for the one
single-server step that gets closer (``RawNode.request_conf_change``, which
forwards to the leader), and waits until *this* node has applied a
membership in which the wish holds. Asking again is harmless (a change that
already holds is a no-op), so a request lost with a leader, dropped while
another change is in flight, or refused because a learner has not caught up
yet is simply retried until the deadline. Only the call an operator makes
checks first what it is asked: ``remove`` of a node that is not a member
(after this node has caught up with the leader) is refused with
``MembershipError`` instead of reported done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypedDict, TypeVar

from raftkit.core.membership import changed, encode_change
from raftkit.core.rawnode import RawNode
from raftkit.core.types import ConfState, NodeId, Role
from raftkit.errors import (
    CommandTimeoutError,
    MembershipError,  # defined with the other errors; imported from here by older code
    NodeStoppedError,
    ProposalDroppedError,
    RaftkitError,
)
from raftkit.runtime.config import NodeConfig

__all__ = [
    "AsyncMembership", "Members", "MembershipError", "MembershipMember", "MembershipOps", "TransferError"
]

log = logging.getLogger(__name__)

T = TypeVar("T")
POLL = 0.02  # seconds between looks at the applied membership


class TransferError(RaftkitError):
    """Leadership could not be handed over (the message says why)."""


class Members(TypedDict):
    """``Node.members()``: the membership this node has applied."""

    voters: list[NodeId]
    learners: list[NodeId]
    addresses: dict[NodeId, str]


class MembershipMember(Protocol):
    """What the operations need of a node (``Node`` is one). They run on a
    client thread: ``raw`` and ``process_ready`` only inside ``call_in_loop``,
    the rest are safe from any thread."""

    # Read-only here: the operations never rebind them (a plain attribute satisfies these).
    @property
    def id(self) -> NodeId: ...

    @property
    def peers(self) -> Mapping[NodeId, str]: ...

    @property
    def config(self) -> NodeConfig: ...

    @property
    def raw(self) -> RawNode: ...

    @property
    def applied_conf(self) -> ConfState: ...

    @property
    def stopped(self) -> bool: ...

    def status(self) -> dict[str, Any]: ...

    def call_in_loop(self, fn: Callable[[], T], timeout: float = 10.0) -> T: ...

    def process_ready(self) -> None: ...

    def read_barrier(self, timeout: float | None = None) -> concurrent.futures.Future[Any]: ...


class AsyncMembership:
    """The membership calls for asyncio code (a node started with
    ``astart()`` included): the blocking call runs in a worker thread while
    the loop keeps serving. Mixed into ``Node``."""

    add_member: Callable[..., None]
    remove_member: Callable[..., None]
    promote_member: Callable[..., None]
    transfer_leadership: Callable[..., NodeId]

    async def aadd_member(
        self, node_id: NodeId, address: str | None = None, *, learner: bool = False, timeout: float = 30.0
    ) -> None:
        await asyncio.to_thread(self.add_member, node_id, address, learner=learner, timeout=timeout)

    async def aremove_member(self, node_id: NodeId, *, timeout: float = 30.0) -> None:
        await asyncio.to_thread(self.remove_member, node_id, timeout=timeout)

    async def apromote_member(self, node_id: NodeId, *, timeout: float = 60.0) -> None:
        await asyncio.to_thread(self.promote_member, node_id, timeout=timeout)

    async def atransfer_leadership(self, to: NodeId | None = None, *, timeout: float = 10.0) -> NodeId:
        return await asyncio.to_thread(self.transfer_leadership, to, timeout=timeout)


class MembershipOps:
    def __init__(self, node: MembershipMember) -> None:
        self.node = node

    # -- membership ---------------------------------------------------------------------

    def members(self) -> Members:
        conf = self.node.applied_conf
        return {
            "voters": sorted(conf.voters),
            "learners": sorted(conf.learners),
            "addresses": {n: self.node.peers.get(n, n) for n in sorted(conf.members)},
        }

    def add(self, node_id: NodeId, address: str | None, *, learner: bool, timeout: float) -> None:
        """Add ``node_id`` as a learner; unless ``learner``, promote it once it
        has caught up (the dissertation's catch-up before voting, §4.2.1)."""
        address = address or self.node.peers.get(node_id) or node_id
        deadline = time.monotonic() + timeout
        self._change(
            "add_learner",
            node_id,
            address,
            lambda c: node_id in c.members and dict(c.addresses).get(node_id, address) == address,
            deadline,
        )
        if not learner:
            self._change("promote", node_id, None, lambda c: node_id in c.voters, deadline)

    def remove(self, node_id: NodeId, *, timeout: float) -> None:
        """Remove ``node_id``; refused (``MembershipError``, nothing changes)
        when it is not a member as the cluster stands when asked. A retried
        request inside the core stays a no-op: only this operator call checks."""
        deadline = time.monotonic() + timeout
        conf = self._caught_up_conf(node_id, deadline)
        if node_id not in conf.members:
            members = ", ".join(sorted(conf.members)) or "none"
            raise MembershipError(
                f"{node_id} is not a member of this cluster (members: {members}); nothing changed"
            )
        self._change("remove", node_id, None, lambda c: node_id not in c.members, deadline)

    def promote(self, node_id: NodeId, *, timeout: float) -> None:
        self._change("promote", node_id, None, lambda c: node_id in c.voters, time.monotonic() + timeout)

    def _caught_up_conf(self, node_id: NodeId, deadline: float) -> ConfState:
        """The applied membership, brought up to date with the leader (a
        ReadIndex round) before it is trusted to say ``node_id`` is absent:
        this node may not have applied yet a change made through another
        member. Without a leader, this node's own view."""
        conf = self.node.applied_conf
        if node_id in conf.members:
            return conf
        wait = max(0.0, min(deadline - time.monotonic(), 2 * self.node.config.election_timeout_max))
        if wait > 0:
            with contextlib.suppress(RaftkitError, TimeoutError, concurrent.futures.TimeoutError):
                self.node.read_barrier(wait).result(wait + 1.0)
        return self.node.applied_conf

    def _change(
        self,
        op: str,
        node_id: NodeId,
        address: str | None,
        holds: Callable[[ConfState], bool],
        deadline: float,
        contacts: list[NodeId] | None = None,
    ) -> None:
        if holds(self.node.applied_conf):
            return
        try:  # refuse nonsense here, with a clear message, rather than time out
            changed(self.node.applied_conf, op, node_id, address)
        except ValueError as exc:
            raise MembershipError(str(exc)) from exc
        request = encode_change(op, node_id, address)
        retry = self.node.config.election_timeout_min
        next_ask = 0.0
        last_reason = "no leader answered"
        for attempt in range(10**9):  # bounded by the deadline
            now = time.monotonic()
            if holds(self.node.applied_conf):
                log.info("%s: membership change done: %s %s", self.node.id, op, node_id)
                return
            if now >= deadline:
                raise CommandTimeoutError(f"membership change {op} {node_id} not done in time: {last_reason}")
            if now >= next_ask:
                next_ask = now + retry
                via = contacts[attempt % len(contacts)] if contacts else None
                reason = self.node.call_in_loop(functools.partial(self._ask, request, via))
                if reason:
                    last_reason = reason
            time.sleep(POLL)

    def ask(
        self, op: str, node_id: NodeId, address: str | None = None, via: NodeId | None = None
    ) -> str | None:
        """On the loop, without waiting: propose the change (leader) or send
        it to ``via`` / the leader. Returns why nothing happened, if known;
        the caller watches the applied membership and asks again."""
        return self._ask(encode_change(op, node_id, address), via)

    def _ask(self, request: bytes, via: NodeId | None) -> str | None:
        """On the loop: propose (leader) or forward (anyone else). Returns
        why nothing happened, if it is worth telling the caller."""
        try:
            self.node.raw.request_conf_change(request, via=via)
        except ProposalDroppedError as exc:
            return str(exc)
        except ValueError as exc:
            return str(exc)
        finally:
            self.node.process_ready()
        return None

    def join(self, contacts: list[NodeId], address: str, *, timeout: float) -> None:
        """A new node asks the cluster (through ``contacts``) to add it as a
        learner, then to promote it once it has caught up."""
        me = self.node.id
        deadline = time.monotonic() + timeout
        self._change("add_learner", me, address, lambda c: me in c.members, deadline, contacts)
        self._change("promote", me, None, lambda c: me in c.voters, deadline, contacts)

    # -- leadership ----------------------------------------------------------------------

    def transfer(self, to: NodeId | None, *, timeout: float) -> NodeId:
        """Hand leadership to ``to`` (or the most up-to-date voter) and wait
        until this node sees the new leader."""
        # The core's own view, read on the loop: status() is the copy the loop
        # refreshes after a Ready, and a node that just won an election may
        # not show itself as leader there yet (seen: a transfer straight back
        # to the old leader failed with "no leader is known").
        old = self.node.call_in_loop(lambda: self.node.raw.raft.lead, timeout)
        if old is None:
            raise TransferError("no leader is known; there is no leadership to transfer")
        conf = self.node.applied_conf
        if to is not None and to not in conf.voters:
            voters = ", ".join(sorted(conf.voters))
            raise TransferError(f"{to} is not a voter of this cluster (voters: {voters})")
        if to == old:
            return old
        if to is None and len(conf.voters) < 2:
            raise TransferError("this cluster has a single voter; there is nobody to hand leadership to")
        deadline = time.monotonic() + timeout
        self.node.call_in_loop(lambda: self.start_transfer(to or ""))
        while time.monotonic() < deadline:
            if self.node.stopped:
                raise NodeStoppedError("node stopped during the transfer")
            leader: NodeId | None = self.node.status().get("leader")
            if leader is not None and leader != old and (to is None or leader == to):
                log.info("%s: leadership moved from %s to %s", self.node.id, old, leader)
                return leader
            time.sleep(POLL)
        raise CommandTimeoutError(
            f"leadership did not move from {old} to {to or 'another voter'} within {timeout:.1f}s "
            "(the target may be lagging or unreachable; the old leader resumes after one election timeout)"
        )

    def start_transfer(self, to: NodeId) -> None:
        """On the loop, without waiting: start handing leadership to ``to``
        ("": the most up-to-date voter); ``raw.raft.lead_transferee`` shows
        whether the core took it."""
        raw = self.node.raw
        try:
            raw.transfer_leadership(to)
        except ProposalDroppedError as exc:
            log.warning("%s: transfer not started: %s", self.node.id, exc)
        if raw.raft.role is Role.LEADER and raw.raft.lead_transferee is None:
            log.warning("%s: transfer to %s refused by the core", self.node.id, to or "the best voter")
        self.node.process_ready()
