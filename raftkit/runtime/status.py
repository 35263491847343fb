"""Why a node has no leader: ``waiting_reason`` puts it in words for
``status()["waiting"]`` and the log, and ``LeaderlessWatch`` keeps how long
it has lasted, logging it at most every 10 s and a total wipe once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

from raftkit.core.rawnode import Status
from raftkit.core.types import NodeId
from raftkit.runtime.config import NodeConfig

__all__ = ["LeaderlessWatch", "waiting_reason"]

# The node's logger: these lines were always the node's, and operators filter on its name.
log = logging.getLogger("raftkit.runtime.node")


def waiting_reason(
    status: Status, contact: dict[NodeId, float | None], fresh: float, *, first_start: bool = False
) -> str | None:
    """Why a node has no leader, in words for status() and the log (None
    when it has one). ``contact``: seconds since each peer was last heard
    from; a peer heard within ``fresh`` seconds counts as reachable.
    ``first_start``: the node never held state (no restart marker)."""
    if status.leader is not None:
        return None
    if status.quorum_lost:
        return status.quorum_lost
    voters = sorted(status.conf.all_voters)
    if status.recovering and first_start and status.id in voters:
        heard = [v for v in voters if v == status.id or (contact.get(v) is not None and contact[v] <= fresh)]
        return (
            f"first start (no restart marker): waiting for a majority of the voters "
            f"({len(voters) // 2 + 1} of {len(voters)}) to start and answer; heard from {', '.join(heard)}"
        )
    if status.recovering:
        return "this node restarted without its state and waits for a leader to readmit it (it does not vote)"
    if status.id not in voters:
        cluster = ", ".join(voters) or "any cluster"
        return f"this node is not a voter of {cluster} and waits to hear from a leader"
    heard = [v for v in voters if v == status.id or (contact.get(v) is not None and contact[v] <= fresh)]
    need = len(voters) // 2 + 1
    if len(heard) < need:
        return (
            f"waiting for a majority: an election needs {need} of {len(voters)} voters and only "
            f"{', '.join(heard)} answered recently"
        )
    return f"electing a leader (term {status.term}; {len(heard)} of {len(voters)} voters reachable)"


class LeaderlessWatch:
    """How long the node has been without a leader, and the log lines that
    say so. Loop thread only (``Node._update_status`` runs there, and at
    construction and stop, when the loop runs nothing else of the node)."""

    def __init__(self, node_id: NodeId, config: NodeConfig) -> None:
        self._id = node_id
        self._config = config  # read on each call, as the node did
        self.since: float | None = None  # monotonic start of the leaderless spell
        self._next_log = 0.0
        self._total_wipe_logged = False

    def reason(
        self,
        s: Status,
        last_contact: Callable[[Iterable[NodeId]], dict[NodeId, float | None]],
        *,
        first_start: bool,
        total_wipe: bool,
        markers: Sequence[object],
    ) -> str | None:
        """Why there is no leader (None when there is one); logged while it
        lasts. ``last_contact``: ``NodeMetrics.last_contact``; ``markers``:
        the node's restart markers, named in the advice after a total wipe."""
        if s.leader is not None:  # the common case, on every Ready: nothing to work out
            self.since = None
            return None
        timeout = self._config.election_timeout_max
        others = [m for m in s.conf.members if m != self._id]
        reason = waiting_reason(s, last_contact(others), 2 * timeout, first_start=first_start)
        if reason is not None and total_wipe:
            named = ", ".join(map(str, markers))
            reason += (
                f". To start a new, empty cluster: stop every node, delete its restart markers "
                f"(this node's: {named}) and start them again, or start them with "
                "NodeConfig(initial_cluster_state='new') (docs/operations.md, 'Starting over')"
            )
        now = time.monotonic()
        if reason is None:
            self.since = None
            return None
        if self.since is None:
            self.since = now
        lasted = now - self.since
        halted = total_wipe and lasted > timeout
        if halted and not self._total_wipe_logged:
            self._total_wipe_logged = True  # once, after it lasted (a leader not heard of yet would end it)
            log.error("%s: halted: %s", self._id, reason)
        if lasted > 3 * timeout and now >= self._next_log:
            self._next_log = now + 10.0  # at most every 10 s
            log.warning("%s: no leader for %.0fs: %s", self._id, lasted, reason)
        return reason
