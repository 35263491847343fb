"""Membership changes asked without blocking, carried out on the node's ticks.

PySyncObj's ``addNodeToCluster`` / ``removeNodeFromCluster`` return at once
(the outcome goes to a callback) and work in manual mode (``doTick``), where
no thread may block waiting for the cluster. Its read-only nodes
(``SyncObj(None, partners)``) join and leave the same way. Each such change
is a ``ChangeRequest``: on every tick of the node's loop it checks the
membership this node has applied, and asks again (propose on a leader,
forward elsewhere) every ``election_timeout_min`` until the change shows,
or the deadline passes.

Read-only nodes are raftkit learners whose id is ``readonly@<address>``
(``READONLY_PREFIX``): the members tell them apart from a learner that is
being added as a voter. Joining is a membership request from a node that is
not a member yet, which members take only over an authenticated transport
(a password or TLS): over plain TCP anyone reaching the port could make
itself a reader of all the data, so ``SyncObj`` refuses a read-only node
without one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raftkit.core.membership import changed
from raftkit.core.types import ConfState
from raftkit.errors import CommandTimeoutError, MembershipError, RaftkitError
from raftkit.runtime.membership_ops import MembershipOps
from raftkit.runtime.node import Node

__all__ = ["READONLY_PREFIX", "ChangeRequest", "Step", "add_voter", "join_readonly", "leave", "remove"]

log = logging.getLogger(__name__)

READONLY_PREFIX = "readonly@"

Done = Callable[[RaftkitError | None], None]


@dataclass(frozen=True)
class Step:
    op: str  # membership.encode_change's: add_learner, promote, remove
    node_id: str
    address: str | None
    holds: Callable[[dict[str, Any]], bool]  # on node.status(): the change shows


def add_voter(node_id: str, address: str) -> list[Step]:
    """A learner first, a voter once it has caught up (raftkit's safe add)."""
    return [
        Step("add_learner", node_id, address, lambda s: node_id in s["members"] or node_id in s["learners"]),
        Step("promote", node_id, None, lambda s: node_id in s["members"]),
    ]


def remove(node_id: str) -> list[Step]:
    gone = lambda s: node_id not in s["members"] and node_id not in s["learners"]  # noqa: E731
    return [Step("remove", node_id, None, gone)]


def join_readonly(node_id: str, address: str) -> list[Step]:
    return [Step("add_learner", node_id, address, lambda s: node_id in s["learners"])]


class ChangeRequest:
    """Carry ``steps`` out in order on ``node``'s ticks; then ``done(None)``,
    or ``done(error)`` at ``deadline`` (None: keep asking) or when the
    change makes no sense. ``contacts``: whom to ask in turn (None: the
    leader this node knows)."""

    def __init__(
        self,
        node: Node,
        steps: list[Step],
        *,
        deadline: float | None,
        done: Done | None = None,
        contacts: list[str] | None = None,
    ) -> None:
        self.node = node
        self.steps = list(steps)
        self.deadline = deadline
        self.done = done
        self.contacts = contacts
        self._next_ask = 0.0
        self._asked = 0
        self._last_reason = "no leader answered"

    def tick(self) -> bool:
        """(Loop thread, every tick.) False once finished, either way."""
        status = self.node.status()
        while self.steps and self.steps[0].holds(status):
            self.steps.pop(0)
            self._next_ask = 0.0
        if not self.steps:
            return self._finish(None)
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            step = self.steps[0]
            return self._finish(
                CommandTimeoutError(
                    f"membership change {step.op} {step.node_id} not done in time: {self._last_reason}"
                )
            )
        if now < self._next_ask:
            return True
        self._next_ask = now + self.node.config.election_timeout_min
        step = self.steps[0]
        try:  # refuse nonsense (removing the last voter...) at once rather than time out
            changed(_conf(status), step.op, step.node_id, step.address)
        except ValueError as exc:
            return self._finish(MembershipError(str(exc)))
        via = self.contacts[self._asked % len(self.contacts)] if self.contacts else None
        self._asked += 1
        reason = MembershipOps(self.node).ask(step.op, step.node_id, step.address, via=via)
        if reason:
            self._last_reason = reason
        return True

    def _finish(self, error: RaftkitError | None) -> bool:
        if error is not None:
            log.warning("%s: %s", self.node.id, error)
        if self.done is not None:
            try:
                self.done(error)
            except Exception:
                log.exception("membership change callback %r raised", self.done)
        return False


def _conf(status: dict[str, Any]) -> ConfState:
    return ConfState(voters=frozenset(status["members"]), learners=frozenset(status["learners"]))


def leave(node: Node, *, manual: bool) -> None:
    """A read-only node asks the leader to remove it, just before it stops
    (best effort: the members then stop sending it the log and no longer
    count it among their read-only nodes)."""
    if not node.started or node.id not in node.status()["learners"]:
        return

    def ask() -> str | None:
        return MembershipOps(node).ask("remove", node.id, via=node.leader)

    try:
        if node._in_loop():  # destroy() from a callback on the node's thread: waiting would block it
            ask()
        elif manual:
            node.dispatch(ask)
            node.on_tick(0.05)  # run the loop once more: the request goes out
        else:
            node.call_in_loop(ask, timeout=2.0)
    except Exception as exc:  # stopping anyway; the members list it until removed
        log.warning("%s: could not ask to be removed: %r", node.id, exc)
