"""What ``Node.status()`` reports: ``status_fields`` builds the dict from the
core's ``Status`` and the node's own state; ``waiting_reason`` says in words
why there is no leader (``status()["waiting"]`` and the log), and
``LeaderlessWatch`` keeps how long that has lasted, logging it at most every
10 s and a total wipe once; ``StatusCache`` holds the finished dict and
rebuilds it only when someone reads it (or at a tick), not at every Ready.

Threads: all of it runs where ``StatusCache.refresh`` does, on the loop
thread (or in ``Node.__init__`` and at stop, when the loop runs nothing else
of the node); client threads read only the finished dict."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from raftkit.core.rawnode import RawNode, Status
from raftkit.core.types import ConfState, NodeId, Role
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.futures import settle

__all__ = ["LeaderlessWatch", "MembershipFields", "StatusCache", "status_fields", "waiting_reason"]

# The node's log lines stay under one logger, wherever the code that writes them lives.
log = logging.getLogger("raftkit.runtime.node")


class StatusCache:
    """``status()``'s dict, rebuilt (by ``build``, on the loop thread) when it
    is read after a Ready changed the node, not after every Ready: at a few
    hundred Readys a second the rebuild was a tenth of a node's CPU, for a
    dict hardly anyone read. The loop marks it ``changed`` after a Ready and
    ``refresh``es it at once where a reader must not wait (a new role or
    leader: ``is_leader``) and at every tick; ``current`` (any thread) asks
    the loop for a rebuild and waits for it up to ``WAIT`` seconds, else (a
    loop busy that long, or stopped) returns the last one built. (A
    caller on another node's loop thread waits too: at most ``WAIT``.)"""

    WAIT = 0.25

    def __init__(self, build: Callable[[], dict[str, Any]],
                 loop: Callable[[], asyncio.AbstractEventLoop | None]) -> None:
        self._build = build
        self._loop = loop
        # Replaced whole by a rebuild; readers copy it (Node._install sets one key in place).
        self.fields: dict[str, Any] = {}
        self.stale = True

    def refresh(self) -> None:
        """Loop thread: rebuild now."""
        self.fields = self._build()
        self.stale = False

    def changed(self) -> None:
        """Loop thread: what the dict shows may have changed."""
        self.stale = True

    def refresh_if_stale(self) -> None:
        if self.stale:
            self.refresh()

    def current(self) -> dict[str, Any]:
        """Any thread: the dict as of now (see the class)."""
        loop = self._loop()
        if not self.stale or loop is None or not loop.is_running():
            return self.fields
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self.refresh()
            return self.fields
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            loop.call_soon_threadsafe(settle, done, self.refresh_if_stale)
        except RuntimeError:  # closed meanwhile
            return self.fields
        with contextlib.suppress(concurrent.futures.TimeoutError):
            done.result(self.WAIT)  # a build that fails raises here, to the reader
        return self.fields


class MembershipFields:
    """status()'s fields that follow from the membership and the address
    book: sorted lists and a dict that cost more on every Ready than the rest
    of the status together, so they are made again only when the membership
    (an immutable ``ConfState``, replaced on change) or the address book
    (the node's ``peers``, which grows in place as members join) changes."""

    def __init__(self) -> None:
        self._conf: ConfState | None = None
        self._peers: dict[NodeId, str] = {}
        self._fields: dict[str, Any] = {}

    def get(self, conf: ConfState, peers: Mapping[NodeId, str]) -> dict[str, Any]:
        """``members``, ``learners``, ``voters`` and ``addresses`` (copied by the caller:
        the same lists serve until the membership or the address book changes)."""
        if conf is not self._conf or peers != self._peers:
            self._conf, self._peers = conf, dict(peers)
            self._fields = {
                "members": sorted(conf.voters),
                "learners": sorted(conf.learners),
                "voters": sorted(conf.voters),
                "addresses": {n: peers.get(n, n) for n in sorted(conf.members)},
            }
        return self._fields


def status_fields(
    raw: RawNode,
    *,
    membership: Mapping[str, Any],
    held_error: str | None,
    apply_blocked: str | None,
    fatal: BaseException | None,
    waiting: Callable[[], str | None],
    applied_index: int,
    snapshot_index: int,
    pending_commands: int,
    queued_commands: int,
    running: bool,
    snapshot: dict[str, Any],
    installing_snapshot: int | None,
    recovery: dict[str, Any],
    recovering_since: float | None,
    readmitted_after_s: float | None,
    state_marker: str,
) -> dict[str, Any]:
    """``status()``'s dict, in its documented order (docs/metrics.md), read
    from the core's state as it is now (``raw``; not through
    ``RawNode.status()``, whose objects cost more than this whole dict on
    every Ready). ``membership``: ``MembershipFields.get``; ``held_error``:
    why the log store fails (the node is frozen: it reports no role but
    follower and no leader); ``apply_blocked``: why the state machine's
    storage fails; ``waiting``: why there is no leader, asked only while the
    node is not frozen (it logs); the rest are the node's own fields, as
    they appear in the dict."""
    r = raw.raft
    frozen = held_error is not None
    storage_error = None if held_error is None else f"cannot persist to the log store: {held_error}"
    if apply_blocked and not storage_error:
        storage_error = f"cannot apply to the state machine: {apply_blocked}"
    first, last = r.log.first_index(), r.log.last_index()
    peers = {}
    if r.role is Role.LEADER:
        me = r.id
        peers = {
            p: {"match": pr.match, "next": pr.next, "state": pr.state.value, "active": pr.recent_active}
            for p, pr in sorted(r.progress.items())
            if p != me
        }
    return {
        "id": r.id,
        "role": Role.FOLLOWER.value if frozen else r.role.value,  # a frozen leader stepped down
        "term": r.term,
        "leader": None if frozen else r.lead,
        "commit_index": r.log.committed,
        "applied_index": applied_index,
        "log_first_index": first,
        "log_last_index": last,
        "log_entries": last - first + 1,
        "snapshot_index": snapshot_index,
        "members": list(membership["members"]),  # copies: a reader may change its dict's lists
        "learners": list(membership["learners"]),
        "peers": peers,
        "pending_commands": pending_commands,
        "queued_commands": queued_commands,
        "running": running,
        "error": repr(fatal) if fatal else storage_error,
        "storage_error": storage_error,
        "snapshot": snapshot,
        "installing_snapshot": installing_snapshot,
        "snapshot_progress": None,  # live: Node.status() fills it in (raftkit.runtime.transfer_progress)
        "recovery": recovery,
        "recovering": r.recovering,
        "quorum_lost": r.quorum_lost,
        "recovering_since": recovering_since,  # wall clock; None once voting
        "readmitted_after_s": readmitted_after_s,
        "state_marker": state_marker,
        "waiting": storage_error if frozen else waiting(),
        "voters": list(membership["voters"]),
        "addresses": dict(membership["addresses"]),
    }


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
        heard = [v for v in voters if v == status.id or ((c := contact.get(v)) is not None and c <= fresh)]
        return (
            f"first start (no restart marker): waiting for a majority of the voters "
            f"({len(voters) // 2 + 1} of {len(voters)}) to start and answer; heard from {', '.join(heard)}"
        )
    if status.recovering:
        return "this node restarted without its state and waits for a leader to readmit it (it does not vote)"
    if status.id not in voters:
        cluster = ", ".join(voters) or "any cluster"
        return f"this node is not a voter of {cluster} and waits to hear from a leader"
    heard = [v for v in voters if v == status.id or ((c := contact.get(v)) is not None and c <= fresh)]
    need = len(voters) // 2 + 1
    if len(heard) < need:
        return (
            f"waiting for a majority: an election needs {need} of {len(voters)} voters and only "
            f"{', '.join(heard)} answered recently"
        )
    return f"electing a leader (term {status.term}; {len(heard)} of {len(voters)} voters reachable)"


class LeaderlessWatch:
    """How long the node has been without a leader, and the log lines that
    say so. Loop thread only (``StatusCache.refresh`` runs there, and at
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
