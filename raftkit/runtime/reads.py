"""ReadBarriers: the node's consistent reads (ReadIndex and leader leases).

``Node.read_barrier()`` registers a request here from any thread. Once per
loop iteration the node issues every new request together as one ReadIndex
(one context, one heartbeat round): the leader confirms it is still leader
with a quorum, answers with its commit index, and the request resolves with
that index as soon as this node's state machine has applied it. Reading
local state after that is linearizable.

A lease read (``lease=True``) skips the round when this node is the leader,
check-quorum is on, and a ReadIndex round it *sent* less than
``raftkit.runtime.lease.config_lease(config)`` seconds ago, i.e.
``(election_tick - 1) * tick_interval * (1 - lease_drift)``, was confirmed
by a quorum in the current term: the followers that answered refuse to
vote for anyone else for longer than that (raftkit.runtime.lease derives the
formula from the ticks they count). Otherwise a lease read falls back to a
full ReadIndex (which renews the lease).

A leader that sent a TIMEOUT_NOW (leadership transfer) serves no lease
reads for the rest of that term. TIMEOUT_NOW forces votes past the
followers' refusal, and the message can arrive arbitrarily late, long
after the transfer gave up. Why stopping then is enough: any leader
elected in a later term while the lease runs needs the vote of a follower
that confirmed the lease (quorums intersect), which it can only get by a
forced vote, so its candidate acted on a TIMEOUT_NOW of some term T. For
the first such leader, T is not later than our term (no leader of a later
term exists yet); T earlier than our term makes it campaign in a term no
later than ours, which the confirming followers (at our term, following
us) refuse. So T is our term, and the only leader of our term is this
node: once it has sent a TIMEOUT_NOW it stops trusting leases in the term,
and lease reads served before it sent one precede any election it triggers.

Every request gets exactly one outcome: its read index, NoLeaderError,
CommandTimeoutError or NodeStoppedError. Everything but ``register`` runs on
the loop thread; one lock keeps registration and ``close`` apart.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from raftkit.core.rawnode import RawNode
from raftkit.core.types import ReadState, Role
from raftkit.errors import CommandTimeoutError, NodeStoppedError, NoLeaderError, NotLeaderError
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.lease import DEFAULT_LEASE_DRIFT, config_lease

__all__ = ["CLOCK_DRIFT_BOUND", "ReadBarriers"]

CLOCK_DRIFT_BOUND = DEFAULT_LEASE_DRIFT  # the default of NodeConfig.lease_drift (kept for old imports)


@dataclass
class _Req:
    future: concurrent.futures.Future[int]
    deadline: float
    lease: bool


@dataclass
class _Round:
    reqs: list[_Req]
    started: float  # monotonic time when the round was issued, before its heartbeats left
    term: int


@dataclass(order=True)
class _Waiting:
    index: int
    seq: int
    req: _Req = field(compare=False)


class ReadBarriers:
    def __init__(
        self,
        raw: RawNode,
        config: NodeConfig,
        origin: bytes,
        *,
        loop: Callable[[], asyncio.AbstractEventLoop | None],
        stopped_reason: Callable[[], str | None],
        frozen: Callable[[], bool],
        applied: Callable[[], int],
        process_ready: Callable[[], None],
    ) -> None:
        """What the reads need of a node: its core (``raw``: its Raft state
        and ``read_index``), its ``config`` and ``origin`` nonce (which makes
        read contexts unique in the cluster), and five callables: ``loop``
        (the node's loop, None before it starts; read from any thread),
        ``stopped_reason`` (why the node is stopped, None while it runs),
        ``frozen`` (its log store fails: no lease), ``applied`` (the index
        its state machine holds) and ``process_ready`` (run the Ready loop
        after a ReadIndex was issued); all but ``loop`` on the loop thread."""
        self._raw = raw
        self._config = config
        self._origin = origin
        self._loop = loop
        self._stopped_reason = stopped_reason
        self._frozen = frozen
        self._applied = applied
        self._process_ready = process_ready
        self._lock = threading.Lock()
        self._closed: BaseException | None = None
        self._new: list[_Req] = []
        self._scheduled = False
        self._rounds: dict[bytes, _Round] = {}
        self._waiting: list[_Waiting] = []  # heap by read index
        self._ctx = itertools.count(1)
        self._seq = itertools.count()
        self._lease_started = float("-inf")
        self._lease_term = -1

    def __len__(self) -> int:
        return len(self._new) + sum(len(r.reqs) for r in self._rounds.values()) + len(self._waiting)

    # -- any thread ---------------------------------------------------------------------

    def register(self, timeout: float, lease: bool) -> concurrent.futures.Future[int]:
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        with self._lock:
            if self._closed is not None:
                future.set_exception(self._closed)
                return future
            self._new.append(_Req(future, time.monotonic() + timeout, lease))
            schedule, self._scheduled = not self._scheduled, True
        if schedule:
            loop = self._loop()
            try:
                if loop is None:
                    raise RuntimeError("node not started")
                loop.call_soon_threadsafe(self.issue)
            except RuntimeError:
                self.close(NodeStoppedError("the node is stopped"))
        return future

    def close(self, exc: BaseException) -> None:
        with self._lock:
            if self._closed is None:
                self._closed = exc
            new, self._new = self._new, []
        reqs = new + [r for rnd in self._rounds.values() for r in rnd.reqs] + [w.req for w in self._waiting]
        self._rounds.clear()
        self._waiting.clear()
        for r in reqs:
            _fail(r, exc)

    # -- loop thread --------------------------------------------------------------------

    def lease_valid(self) -> bool:
        raft = self._raw.raft
        if not self._config.check_quorum or raft.role is not Role.LEADER or self._frozen():
            return False
        if raft.term != self._lease_term or raft.lead_transferee is not None:
            return False
        if raft.timeout_now_term == raft.term:
            return False  # a TIMEOUT_NOW of ours may still force an election (module docstring)
        if raft.log.term_or_zero(raft.log.committed) != raft.term:
            return False  # our no-op has not committed: the commit index is not known yet
        return time.monotonic() < self._lease_started + config_lease(self._config)

    def issue(self) -> None:
        """Issue every request registered since the last call as one round."""
        with self._lock:
            new, self._new = self._new, []
            self._scheduled = False
        if not new:
            return
        stopped = self._stopped_reason()
        if stopped is not None:
            self.close(NodeStoppedError(stopped))
            return
        if any(r.lease for r in new) and self.lease_valid():
            index = self._raw.raft.log.committed
            for r in (r for r in new if r.lease):
                self._wait_applied(index, r)
            new = [r for r in new if not r.lease]
            if not new:
                return
        raft = self._raw.raft
        # Unique across the cluster: the leader keys pending reads by context.
        ctx = self._origin + b"%d" % next(self._ctx)
        try:
            self._raw.read_index(ctx)
        except NotLeaderError:
            for r in new:
                _fail(r, NoLeaderError("no leader is known to confirm the read"))
            return
        self._rounds[ctx] = _Round(new, time.monotonic(), raft.term)
        self._process_ready()

    def after_apply(self, read_states: list[ReadState], applied: int) -> None:
        for rs in read_states:
            self.confirmed(rs.index, rs.context)
        self.applied(applied)

    def confirmed(self, index: int, ctx: bytes) -> None:
        """A ReadState arrived: the round ``ctx`` may read at ``index``."""
        rnd = self._rounds.pop(ctx, None)
        if rnd is None:
            return
        raft = self._raw.raft
        if raft.role is Role.LEADER and raft.term == rnd.term and rnd.started > self._lease_started:
            self._lease_started, self._lease_term = rnd.started, rnd.term
        for r in rnd.reqs:
            self._wait_applied(index, r)

    def _wait_applied(self, index: int, r: _Req) -> None:
        if self._applied() >= index:
            _resolve(r, index)
        else:
            heapq.heappush(self._waiting, _Waiting(index, next(self._seq), r))

    def applied(self, applied: int) -> None:
        while self._waiting and self._waiting[0].index <= applied:
            w = heapq.heappop(self._waiting)
            _resolve(w.req, w.index)

    def expire(self) -> None:
        if not self._rounds and not self._waiting:
            return
        now = time.monotonic()
        no_leader = self._raw.raft.lead is None
        for ctx, rnd in list(self._rounds.items()):
            late = [r for r in rnd.reqs if r.deadline <= now]
            if not late:
                continue
            reason: BaseException = (
                NoLeaderError("no leader confirmed the read before its timeout")
                if no_leader
                else CommandTimeoutError("the leader did not confirm the read in time")
            )
            for r in late:
                _fail(r, reason)
            rnd.reqs = [r for r in rnd.reqs if r.deadline > now]
            if not rnd.reqs:
                del self._rounds[ctx]
        if any(w.req.deadline <= now for w in self._waiting):
            keep = []
            for w in self._waiting:
                if w.req.deadline <= now:
                    _fail(w.req, CommandTimeoutError(f"read index {w.index} not applied here in time"))
                else:
                    keep.append(w)
            heapq.heapify(keep)
            self._waiting = keep


def _resolve(r: _Req, index: int) -> None:
    if not r.future.done():
        r.future.set_result(index)


def _fail(r: _Req, exc: BaseException) -> None:
    if not r.future.done():
        r.future.set_exception(exc)
