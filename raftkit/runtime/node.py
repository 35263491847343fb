"""Node: the runtime that drives a Raft core with real plug-ins.

One asyncio event loop per node. For every ``Ready`` the node persists
(log store), then sends (transport), then applies (state machine), then
calls ``advance()`` (see docs/architecture.md). Commands submitted from any
thread land in a bounded queue and are drained once per loop iteration, so
an idle node proposes a command at once and a busy node batches many into
one ``Ready``: one log write, one frame per peer.

Three ways to run it:

* ``node.start()``: the node runs its own loop in a daemon thread (default);
  blocking code anywhere calls ``node.submit(cmd).result()``.
* ``await node.astart()``: the node runs inside the caller's asyncio loop;
  use ``await node.apropose(cmd)``.
* ``node.on_tick(timeout)``: the caller steps the node by hand, like
  PySyncObj's ``doTick``; the node's private loop only runs inside that call.

Every submitted command gets exactly one outcome: its result, the exception
its application raised, or an error saying why it failed (no leader, queue
full, timeout, leadership lost, node stopped). ``raftkit.runtime.pending`` keeps that
promise; the node tells it what the log reveals (an entry of a newer term is
applied, another entry took our slot, a snapshot was installed).

Snapshots (recovery at start, capture off the loop, log compaction,
installing the leader's) live in ``raftkit.runtime.snapshots``, their streams
to and from peers in ``raftkit.runtime.snapshot_transfer``. When the log store
cannot persist a ``Ready`` (disk full, I/O error), the node holds that
``Ready`` back, sends none of its messages (a leader's appends left as it wrote),
takes no commands and stops acting on the network (a leader thereby steps down:
its followers elect another), says why in ``status()["error"]``, and retries the
write every ``storage_retry_interval`` until it succeeds (``runtime.storage_retry``).

Here: the public API, the lifecycle and the Ready loop. The parts it drives
(``commands``, ``applier``, ``reads``, ``status``, ``lost_state``...) get
arguments and callables, never the node.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from raftkit.core.bounds import OutOfBoundsError
from raftkit.core.rawnode import RawNode
from raftkit.core.types import ConfState, Message, MessageType, NodeId, Ready, Role, SnapshotMeta
from raftkit.errors import CommandTimeoutError, NodeStoppedError, RaftkitError
from raftkit.runtime.applier import Applier
from raftkit.runtime.commands import CommandQueue
from raftkit.runtime.config import NodeConfig, raft_config
from raftkit.runtime.futures import CallbackOutcome, OutcomeSink, chain, in_turn, settle, wait_outcome
from raftkit.runtime.gc_tuning import CollectorHold
from raftkit.runtime.inbound import Inbound
from raftkit.runtime.log_writes import LogWrites, commit_applied
from raftkit.runtime.loop import close_loop, new_event_loop
from raftkit.runtime.lost_state import LostState
from raftkit.runtime.membership_ops import AsyncMembership, Members, MembershipError, MembershipOps
from raftkit.runtime.metrics import NodeMetrics
from raftkit.runtime.pending import Outcome, PendingCommands
from raftkit.runtime.pickle_rule import check_pickle_rule
from raftkit.runtime.reads import ReadBarriers
from raftkit.runtime.snapshot_admission import RefusalLog
from raftkit.runtime.snapshot_transfer import SnapshotTransfer
from raftkit.runtime.snapshots import Recovery, SnapshotPipeline, StorageUnavailableError, choose_capture
from raftkit.runtime.startup_members import open_core
from raftkit.runtime.status import LeaderlessWatch, MembershipFields, StatusCache, status_fields
from raftkit.runtime.storage_retry import StorageRetry
from raftkit.state_machines.base import StateMachine
from raftkit.storage.capture import SnapshotCapture
from raftkit.storage.log_store import LogStore
from raftkit.storage.snapshotter import Snapshotter
from raftkit.transports.base import Transport

log = logging.getLogger(__name__)
T = TypeVar("T")


class Node(AsyncMembership):
    """A Raft participant with a state machine, storage and a transport."""

    def __init__(
        self,
        node_id: NodeId,
        peers: Mapping[NodeId, str],
        state_machine: StateMachine,
        *,
        log_store: LogStore,
        snapshotter: Snapshotter,
        transport: Transport,
        config: NodeConfig | None = None,
        rng: random.Random | None = None,
        snapshot_capture: SnapshotCapture | None = None,
    ) -> None:
        """``peers`` maps every voter (this node included) to its address.
        ``snapshot_capture`` defaults to what ``config.snapshot_mode`` picks
        for this state machine (``raftkit.runtime.snapshots.choose_capture``).
        Raises ``RecoveryError`` when the stored state cannot be used, and
        ``ValueError`` when the state machine declares an unsafe serializer
        (pickle) and the transport is not authenticated."""
        if node_id not in peers:
            raise ValueError(f"peers must include this node ({node_id!r}); got {sorted(peers)}")
        # Here, not only in the builder: a node built by hand must not skip it.
        check_pickle_rule(transport, state_machine)
        self.id = node_id
        self.peers = dict(peers)
        self.state_machine = state_machine
        self.log_store = log_store
        self.snapshotter = snapshotter
        self.transport = transport
        self.config = config or NodeConfig()
        self._rng = rng or random.Random()
        self._origin = os.urandom(8)
        self.metrics = NodeMetrics()  # counters and latencies (raftkit.runtime.metrics, docs/metrics.md)
        self._pending = PendingCommands(self.metrics)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._stopped = False
        self._fatal: BaseException | None = None
        self._gc = CollectorHold(self.config.gc_threshold)  # raised while the node runs
        self._status = StatusCache(self._status_fields, lambda: self._loop)  # status()'s dict
        # A Ready the log store failed to persist, retried; the node is frozen meanwhile.
        self._storage = StorageRetry(
            node_id, self.config,
            persist=self._persist,
            frozen=lambda: in_turn(self._fail_queued, self._status.refresh),
            changed=self._status.refresh,
            resumed=lambda rd: in_turn(lambda: self._complete(rd), self._process_ready),
            stopped=lambda: self._stopped,
            call_later=lambda delay, fn: self._require_loop().call_later(delay, fn),
        )
        self._installing: int | None = None
        self._ready_event = threading.Event()
        self._started_manual = False
        self._role = Role.FOLLOWER
        self._ready_soon = False  # a Ready for the messages stepped this loop turn is on its way
        self._leaderless = LeaderlessWatch(node_id, self.config)  # why no leader (status "waiting")
        self._membership = MembershipFields()  # status()'s membership fields, made when it changes
        self._refusals = RefusalLog(node_id)  # peer input refused (logged once in a while)
        capture = snapshot_capture or choose_capture(
            self.config.snapshot_mode, state_machine, snapshotter, f"raftkit-snapshot-{node_id}"
        )
        self.snapshots = SnapshotPipeline(
            node_id, state_machine, snapshotter, log_store, self.config, capture, rng=self._rng,
            position=lambda: (self._applier.applied, self._applier.applied_term, self._applier.applied_conf),
            post=lambda fn: self.dispatch(lambda: in_turn(fn, self._status.refresh)),
            call_later=lambda delay, fn: self._require_loop().call_later(delay, fn),
            created=lambda meta: in_turn(lambda: self.raw.snapshot_created(meta), self._status.refresh),
            resumed=self._apply_deferred, install_pending=lambda: bool(self.raw.raft.log.pending_snapshot),
        )
        # Applies committed entries and keeps the applied position (raftkit.runtime.applier).
        self._applier = Applier(
            node_id, state_machine, self.config, self._pending, self.metrics, self.snapshots,
            origin=self._origin, conf=ConfState(voters=frozenset(self.peers)),
            stopped=lambda: self._stopped, learn_addresses=self._learn_addresses,
            apply_later=lambda delay: self._require_loop().call_later(delay, self._apply_deferred),
        )
        # Restart markers and readmission after a lost state (raftkit.runtime.lost_state).
        self._lost = LostState(node_id, self.config, self.peers, getattr(transport, "state_marker_dir", None))
        self.raw = self._boot()
        # Commands from client threads to the loop, proposed in batches (raftkit.runtime.commands).
        self._commands = CommandQueue(
            self.raw, self.config, self._pending, self._origin,
            wake_soon=lambda: self._require_loop().call_soon(self._drain),
            per_entry=self._applier.entry_limit,
        )
        # Consistent reads (raftkit.runtime.reads); ``loop`` is read from client threads.
        self._reads = ReadBarriers(
            self.raw, self.config, self._origin,
            loop=lambda: self._loop, stopped_reason=lambda: self._stopped_reason() if self._stopped else None,
            frozen=lambda: self._storage.held is not None, applied=lambda: self._applier.applied,
            process_ready=self._process_ready,
        )
        # Snapshots to and from peers, on the loop thread (raftkit.runtime.snapshot_transfer).
        self._transfer = SnapshotTransfer(
            node_id, self.raw, self.config, lambda: self.snapshotter, lambda: self.transport, self._refusals,
            stopped=lambda: self._stopped, busy=self._snapshot_busy, step=self._step,
            process_ready=self._process_ready,
        )
        self._status.refresh()

    # -- start-up -----------------------------------------------------------------

    def _boot(self) -> RawNode:
        """Rebuild the state machine from storage and open the core."""
        rec: Recovery = self.snapshots.recover()
        self.recovery = rec
        self._applier.applied, self._applier.applied_term = rec.applied, rec.applied_term
        voters = set(self.peers) - ({self.id} if self.config.join else set())
        conf = ConfState(voters=frozenset(voters))
        # Started with nothing: this node may have held state (and cast votes)
        # before, so it runs the recovery protocol (raftkit.core.recovery).
        store = self.log_store
        commit_applied(store, rec.applied)  # the stored commit may lag a durable state machine
        empty = rec.snapshot is None and store.last_index() == 0 and store.hard_state().term == 0
        recovering, fresh = self._lost.start(empty)
        config = raft_config(
            self.config, self.id, applied=rec.applied, recovering=recovering, incarnation=self._origin,
            fresh=fresh, authenticated=bool(getattr(self.transport, "authenticated", False)),
        )
        raw = open_core(
            config, self.config, self.log_store, self.peers, conf, rec.snapshot, self._rng, stored=not empty
        )
        self._applier.applied_conf = raw.raft.conf
        self._applier.superseded_confs = raw.raft.superseded_confs
        self._learn_addresses(raw.raft.conf)
        self._log_writes = LogWrites(self.log_store)  # a lone commit index waits (runtime.log_writes)
        return raw

    def start(self) -> Node:
        """Run the node in its own thread; returns once it is listening."""
        if self._loop is not None:
            raise RuntimeError("node already started")
        loop = new_event_loop()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._open(loop))
            except BaseException as exc:
                started.set_exception(exc)
                loop.close()
                return
            started.set_result(None)
            try:
                loop.run_forever()
            except BaseException as exc:  # the loop itself died: fail loudly, everywhere
                self._die(exc)
            finally:
                close_loop(loop)

        self._thread = threading.Thread(target=run, name=f"raftkit-{self.id}", daemon=True)
        self._thread.start()
        started.result()
        return self

    async def astart(self) -> Node:
        """Run the node inside the caller's running asyncio loop."""
        if self._loop is not None:
            raise RuntimeError("node already started")
        await self._open(asyncio.get_running_loop())
        return self

    def start_manual(self) -> Node:
        """Prepare the node to be stepped by ``on_tick`` (no thread)."""
        if self._loop is not None:
            raise RuntimeError("node already started")
        loop = new_event_loop()
        loop.run_until_complete(self._open(loop))
        self._started_manual = True
        return self

    def on_tick(self, timeout: float = 0.0) -> None:
        """Manual mode: run the node's loop for ``timeout`` seconds (at least
        one pass), handling network traffic, timers and queued commands."""
        loop = self._require_loop()
        if self._stopped or loop.is_closed():
            if not loop.is_closed() and not loop.is_running():
                close_loop(loop)  # stopped from inside an earlier on_tick
            raise NodeStoppedError(self._stopped_reason())
        if loop.is_running():
            raise RuntimeError("on_tick is only for nodes started with start_manual()")
        loop.run_until_complete(asyncio.sleep(max(0.0, timeout)))

    async def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport.update_peers(self.peers)
        inbound = Inbound(
            peers=self.peers, contact=self.metrics.contact, on_message=self._on_message,
            admit_snapshot=self._transfer.admit, on_snapshot=self._transfer.receive,
            on_snapshot_status=self._transfer.sent, snapshot_progress=self._transfer.progress.update,
        )
        await self.transport.astart(self.id, inbound)
        self._schedule_tick()
        log.info("%s: started with peers %s", self.id, ", ".join(sorted(self.peers)))
        # Replay the committed log tail now, so a restarted node's state is
        # whole by the time start() returns (nothing is sent: no timer fired).
        self._process_ready()
        self._gc.acquire()  # last: a failed start holds nothing; a stop during it released already

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("node not started: call start(), astart() or start_manual() first")
        return self._loop

    def _in_loop(self) -> bool:
        """True when called from inside this node's loop (a callback, a
        coroutine in astart mode, or on_tick): blocking there would deadlock."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    @property
    def started(self) -> bool:
        return self._loop is not None

    def dispatch(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the node's loop, from any thread; dropped once the
        node is stopped. Transports that deliver from other threads (the
        memory transport's dispatcher) hand their deliveries in through it."""
        loop = self._loop
        if loop is None or self._stopped:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us: the node is stopping
            loop.call_soon_threadsafe(fn)

    # -- shutdown -----------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the node: close the transport and stores, fail every pending
        command with NodeStoppedError, and join the thread. Idempotent, and
        callable from any thread, including the node's own loop (a callback):
        the thread then ends as soon as that callback returns."""
        loop, thread = self._loop, self._thread
        if loop is None or loop.is_closed():
            self._close(NodeStoppedError("the node was stopped"))
            return
        if self._in_loop():
            self._close(NodeStoppedError("the node was stopped"))
            if thread is not None:
                loop.stop()  # run() then closes the loop; we cannot join our own thread
            return
        if loop.is_running():
            # Its own thread, or a foreign thread while the caller's loop runs it.
            if not self._stopped:
                fut = asyncio.run_coroutine_threadsafe(self._aclose(), loop)
                try:
                    fut.result(timeout)
                except (concurrent.futures.TimeoutError, RuntimeError):
                    log.warning("%s: the loop did not run the shutdown within %.1fs", self.id, timeout)
            if thread is not None:
                with contextlib.suppress(RuntimeError):  # closed meanwhile
                    loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            if thread is not threading.current_thread():
                thread.join(timeout)
            return
        if not loop.is_running():
            # Manual mode (or an astart loop that is no longer running).
            if not self._stopped:
                loop.run_until_complete(self._aclose())
            if self._started_manual:
                close_loop(loop)

    async def astop(self) -> None:
        await self._aclose()

    async def _aclose(self) -> None:
        self._close(NodeStoppedError("the node was stopped"))
        # Wait for sockets and dial tasks to finish: none may be pending when the loop closes.
        await self.transport.aclose()

    def _close(self, reason: RaftkitError) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._gc.release()  # first: whatever below fails
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._storage.cancel()
        self.transport.close()
        self.snapshots.close(reason)  # kills a fork child, joins its thread
        self._pending.close(reason)
        self._reads.close(reason)
        self._commands.clear()
        self._status.refresh()  # the last look at the stores before they close
        with contextlib.suppress(Exception):  # a failing store keeps its older commit index
            self._log_writes.flush()
        self.log_store.close()
        self.snapshotter.close()
        log.info("%s: stopped", self.id)

    def _die(self, exc: BaseException) -> None:
        log.critical("%s: event loop died: %r", self.id, exc)
        self._fatal = exc
        self._close(NodeStoppedError(f"the node's event loop died: {exc!r}"))

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    destroy = stop  # PySyncObj's name

    # -- commands -----------------------------------------------------------------

    @overload
    def submit(
        self, command: bytes, timeout: float | None = None, *, callback: None = None
    ) -> Outcome[Any]: ...
    @overload
    def submit(self, command: bytes, timeout: float | None = None, *, callback: OutcomeSink) -> None: ...
    def submit(
        self, command: bytes, timeout: float | None = None, *, callback: OutcomeSink | None = None
    ) -> Outcome[Any] | None:
        """Queue a command from any thread; the returned future gets its
        outcome, or with ``callback`` no future is made and ``callback(result,
        exception)`` gets it on the node's loop thread (keep it short); a
        ``CallbackOutcome`` is used as is. QueueFullError / NodeStoppedError at once."""
        if (refused := self.refusal()) is not None:  # NodeStoppedError, QueueFullError
            raise refused
        return self.enqueue(command, timeout, CallbackOutcome.of(callback))

    def enqueue(
        self, command: bytes, timeout: float | None, outcome: CallbackOutcome | None
    ) -> Outcome[Any] | None:
        """``submit`` for a caller that has just asked ``refusal()`` (a SyncObj call,
        before encoding): not paid twice. Any thread; the Future, or None if ``outcome``."""
        loop = self._loop or self._require_loop()  # (which raises, saying how to start the node)
        deadline = time.monotonic() + (self.config.command_timeout if timeout is None else timeout)
        seq, future = self._pending.register(deadline, outcome)  # NodeStoppedError if closed meanwhile
        if self._commands.put(seq, command):  # the loop proposes it in _drain
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop closed under us
                self._pending.fail(seq, NodeStoppedError(self._stopped_reason()))
        return future if outcome is None else None

    def refusal(self) -> RaftkitError | None:
        """Any thread: what ``submit`` would raise at once now (stopped, queue full), or None."""
        return NodeStoppedError(self._stopped_reason()) if self._stopped else self._commands.room_error()

    async def apropose(self, command: bytes, timeout: float | None = None) -> Any:
        """``submit`` for asyncio callers: awaits the outcome without blocking."""
        return await asyncio.wrap_future(self.submit(command, timeout))

    def propose(self, command: bytes, timeout: float | None = None) -> Any:
        """Blocking submit: waits for the outcome (never from the node's own loop: a deadlock)."""
        if self._in_loop():
            raise RuntimeError(
                "a blocking call from inside the node's own event loop would deadlock; "
                "use submit() or await apropose()"
            )
        future = self.submit(command, timeout)
        limit = self.config.command_timeout if timeout is None else timeout
        late = lambda: CommandTimeoutError(f"no outcome within {limit:.1f}s")  # noqa: E731
        return wait_outcome(future, limit + 1.0, late)

    def read_barrier(self, timeout: float | None = None, *, lease: bool = False) -> Outcome[int]:
        """Any thread: a batched ReadIndex, resolved once applied here (raftkit.runtime.reads)."""
        return self._reads.register(self.config.command_timeout if timeout is None else timeout, lease)

    async def aread_barrier(self, timeout: float | None = None, *, lease: bool = False) -> int:
        """``read_barrier`` for asyncio callers."""
        return await asyncio.wrap_future(self.read_barrier(timeout, lease=lease))

    def _stopped_reason(self) -> str:
        fatal = self._fatal
        return "the node is stopped" if fatal is None else f"the node's event loop died: {fatal!r}"

    def _drain(self) -> None:
        """Loop thread: take every queued command and propose them together."""
        self._commands.woken()
        if self._stopped or not self._commands.waiting:
            return
        self._propose_queued()
        self._process_ready()

    def _propose_queued(self) -> None:
        self._fail_queued() if self._storage.held is not None else self._commands.propose()

    # -- the tick and the Ready loop (loop thread) ------------------------------------

    def _schedule_tick(self) -> None:
        if not self._stopped:
            self._tick_handle = self._require_loop().call_later(self.config.tick_interval, self._on_tick)

    def _on_tick(self) -> None:
        try:
            self._commands.expire()
            self._reads.expire()
            if self._storage.held is not None:
                self._fail_queued()
                return  # frozen: no elections, no heartbeats until the write succeeds
            self.raw.tick()
            self._commands.take()
            if self._commands.waiting:
                self._propose_queued()
            self._process_ready()
            if self._status.stale or self._leaderless.since is not None:  # leaderless: keep "waiting" current
                self._status.refresh()
            self.snapshots.maybe_take()  # the age trigger needs no Ready
        finally:
            self._schedule_tick()

    def _step(self, message: Message) -> None:
        if self._stopped or self._storage.held is not None:
            return  # a frozen node acts as if the message was lost
        if message.dst != self.id:
            log.warning("%s: dropped a message addressed to %s", self.id, message.dst)
            return
        try:
            self.raw.step(message)
        except OutOfBoundsError as exc:
            self._refusals.refuse(message.src, f"a {message.type.name} message", str(exc))
        if not self._ready_soon:
            # Messages that arrived together (one read from a socket, or from
            # several peers in one loop turn) are all stepped before the Ready:
            # one persist (one fsync with a durable log), one send and one
            # apply for all of them. Its messages leave a loop turn later.
            self._ready_soon = True
            self._require_loop().call_soon(self._ready_after_messages)

    def _ready_after_messages(self) -> None:
        self._ready_soon = False
        if self._stopped or self._storage.held is not None:
            return
        self._commands.take()
        if self._commands.waiting and (self.raw.raft.lead is not None):
            self._propose_queued()
        self._process_ready()

    def _process_ready(self) -> None:
        raw = self.raw
        for _ in range(10_000):  # bounded: each Ready drains the core's outputs
            if self._stopped or self._storage.held is not None or not raw.has_ready():
                return
            rd = raw.ready()
            self._send(self._log_writes.send_ahead(rd, raw.raft))  # a leader's appends (runtime.log_writes)
            if first := self._log_writes.apply_first(rd):  # committed, stored: applied before a slow write
                self._applier.apply(first)
            try:
                self._persist(rd)
            except Exception as exc:  # nothing of this Ready may leave the node
                self._storage.hold(rd, exc, self._role)
                return
            self._complete(rd, len(first))
        log.error("%s: the core kept producing Ready values; yielding", self.id)

    def _complete(self, rd: Ready, applied_first: int = 0) -> None:
        """After a successful persist: send, apply (past ``applied_first``), advance."""
        self._send(rd.messages)
        self._apply(rd, applied_first)
        self.raw.advance(rd)
        self._lost.advanced(self.raw.raft.recovering)
        if rd.soft_state is not None:
            self._on_soft_state(rd)
        self.snapshots.maybe_take()
        self._status.refresh() if rd.soft_state is not None else self._status.changed()

    def _persist(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self._install(rd.snapshot)
        self._log_writes.save(rd.hard_state, rd.entries)
        if not self._lost.held_state:
            r = self.raw.raft
            self._lost.mark_held_state(r.term, r.log.last_index(), len(r.conf.all_voters))

    def _install(self, snap: SnapshotMeta) -> None:
        """Replace the state with a snapshot received from the leader (stored
        by ``SnapshotTransfer.receive``), then restart the log after it.
        Idempotent, so a held Ready can be retried after a failed save."""
        if self._applier.applied == snap.index and self.log_store.first_index() - 1 == snap.index:
            return  # done on an earlier attempt
        self._installing = snap.index
        self._status.fields["installing_snapshot"] = snap.index
        try:
            self.snapshots.restore(snap)
        finally:
            self._installing = None
        self._applier.installed(snap)
        self.log_store.reset(snap.index, snap.term)
        self._pending.snapshot_installed(snap)
        log.info("%s: installed snapshot %d/%d from the leader", self.id, snap.term, snap.index)

    # -- after a persist: send, apply, report (loop thread) -----------------------------

    def _fail_queued(self) -> None:
        self._commands.take()
        held = self._storage.held
        if not self._commands.waiting or held is None:
            return
        exc = StorageUnavailableError(
            f"node {self.id} cannot write its log ({held.error}); it takes no commands until the "
            "write succeeds: retry on another node"
        )
        self._commands.fail_all(exc)

    def _send(self, messages: list[Message]) -> None:
        plain = []
        for m in messages:
            if m.type is MessageType.SNAPSHOT and m.snapshot is not None:
                self._transfer.send(m)
            else:
                plain.append(m)
        if plain:
            self.transport.send(plain)

    def _apply(self, rd: Ready, skip: int = 0, *, resumed: bool = False) -> None:
        """Apply the committed entries but the first ``skip`` (raftkit.runtime.applier);
        confirmed reads wait in ``raftkit.runtime.reads`` until applied catches up."""
        self._applier.apply(rd.committed_entries[skip:] if skip else rd.committed_entries, resumed=resumed)
        self._reads.after_apply(rd.read_states, self._applier.applied)

    def _apply_deferred(self) -> None:
        self._applier.blocked = None
        self._apply(Ready(), resumed=True)
        self._status.refresh()

    def _on_soft_state(self, rd: Ready) -> None:
        assert rd.soft_state is not None
        old, new = self._role, rd.soft_state.role
        self._role = new
        if rd.soft_state.leader is not None and not self._ready_event.is_set():
            self._ready_event.set()
            if self.config.on_ready is not None:
                self._callback(self.config.on_ready)
        if old is not new:
            log.info("%s: %s -> %s (term %d)", self.id, old.value, new.value, self.raw.raft.term)
            if self.config.on_state_changed is not None:
                self._callback(self.config.on_state_changed, old.value, new.value)

    def _callback(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s: user callback %r raised", self.id, fn)

    def request_log_compaction(self) -> concurrent.futures.Future[SnapshotMeta | None]:
        """Snapshot and compact the log now, from any thread (PySyncObj's
        ``forceLogCompaction``); the future gets the snapshot's metadata once
        it is durable and the log is compacted (the capture itself runs off
        the loop, see ``NodeConfig.snapshot_mode``)."""
        done: concurrent.futures.Future[SnapshotMeta | None] = concurrent.futures.Future()
        if self._stopped:
            done.set_exception(NodeStoppedError(self._stopped_reason()))
            return done

        def go() -> None:
            inner = self.snapshots.request()
            self._status.refresh()
            inner.add_done_callback(lambda f: chain(f, done))

        loop = self._require_loop()
        try:
            loop.call_soon_threadsafe(go)
        except RuntimeError:
            done.set_exception(NodeStoppedError(self._stopped_reason()))
        return done

    force_log_compaction = request_log_compaction

    # -- inbound (called by the transport on the loop thread) ------------------------

    def _snapshot_busy(self) -> str | None:
        """Why a snapshot from the leader cannot be taken now (None: it can)."""
        if self._storage.held is not None:
            return "its log store fails"
        return "a snapshot capture reads the state" if self.snapshots.reads_live_state else None

    def _on_message(self, message: Message) -> None:
        if message.type is MessageType.SNAPSHOT:
            # A snapshot's metadata without its stream: nothing was stored
            # for it, so installing it could only fail (and freeze the node).
            self._refusals.refuse(message.src, "a SNAPSHOT message", "it came without its snapshot stream")
            return
        if message.type is MessageType.PROPOSE and message.src in self.raw.raft.conf.members:
            message = self._commands.repack(message)  # (a non-member's is dropped unread by the core)
        self._step(message)

    # -- status ---------------------------------------------------------------------

    def _status_fields(self) -> dict[str, Any]:
        """The dict status() copies (raftkit.runtime.status; StatusCache builds it on the loop thread)."""
        return self._transfer.catch_up.observe(status_fields(
            self.raw, membership=self._membership.get(self.raw.raft.conf, self.peers),
            held_error=None if (held := self._storage.held) is None else held.error,
            apply_blocked=self._applier.blocked, fatal=self._fatal, waiting=self._waiting,
            applied_index=self._applier.applied, snapshot_index=self.snapshots.policy.last_index,
            pending_commands=len(self._pending), queued_commands=len(self._commands),
            running=not self._stopped, snapshot=self.snapshots.status(), installing_snapshot=self._installing,
            recovery=self.recovery.describe(), recovering_since=self._lost.recovering_since_wall(),
            readmitted_after_s=self._lost.readmitted_after, state_marker=str(self._lost.marker),
        ))

    def _waiting(self) -> str | None:
        """Why there is no leader (None when there is one; raftkit.runtime.status)."""
        r, lost = self.raw.raft, self._lost
        if r.lead is not None:  # the common case, on every Ready: no Status to build
            self._leaderless.since = None
            return None
        return self._leaderless.reason(
            self.raw.status(), self.metrics.last_contact, markers=lost.markers,
            first_start=r.cfg.fresh and not lost.held_state, total_wipe=r.total_wipe)

    def status(self) -> dict[str, Any]:
        """A consistent copy of the node's state (safe from any thread); the
        command counts, ``last_contact`` and ``metrics`` are live (docs/metrics.md)."""
        status = dict(self._status.current())
        status["pending_commands"] = len(self._pending)
        status["queued_commands"] = len(self._commands)
        self._transfer.add_to_status(status)  # snapshots received and sent, log catch-ups: live
        self.metrics.add_to_status(status)  # per-peer last_contact, status["metrics"]
        return status

    @property
    def is_leader(self) -> bool:
        return self._status.fields.get("role") == Role.LEADER.value

    @property
    def leader(self) -> NodeId | None:
        return self._status.fields.get("leader")

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until this node knows a leader; False on timeout."""
        return self._ready_event.wait(timeout)

    # -- cluster operations (raftkit.runtime.membership_ops) -----------------------------------------

    def transfer_leadership(self, to: NodeId | None = None, *, timeout: float = 10.0) -> NodeId:
        """Hand leadership to ``to`` (None: the most up-to-date voter) and
        wait until this node sees the new leader; returns its id. Raises
        TransferError or CommandTimeoutError."""
        return self._ops().transfer(to, timeout=timeout)

    def add_member(
        self, node_id: NodeId, address: str | None = None, *, learner: bool = False, timeout: float = 30.0
    ) -> None:
        """Add a node (from any member): first as a learner, then, unless
        ``learner``, as a voter once it has caught up. ``address`` defaults
        to the id (ids are addresses unless told otherwise)."""
        self._ops().add(node_id, address, learner=learner, timeout=timeout)

    def remove_member(self, node_id: NodeId, *, timeout: float = 30.0) -> None:
        """Remove a voter or learner (ask another member to remove this one); a
        non-member is refused with MembershipError."""
        self._ops().remove(node_id, timeout=timeout)

    def promote_member(self, node_id: NodeId, *, timeout: float = 60.0) -> None:
        """Make a learner a voter once it has caught up with the leader."""
        self._ops().promote(node_id, timeout=timeout)

    def join_cluster(self, contacts: list[NodeId] | None = None, *, timeout: float = 120.0) -> None:
        """This new node asks the cluster to add it (learner, then voter).
        Only over an authenticated transport (password or TLS): on plain TCP
        members refuse a stranger's request, so add the node from a member
        instead (``add_member``, or the admin endpoint)."""
        if not getattr(self.transport, "authenticated", False):
            raise MembershipError(
                f"join_cluster() needs an authenticated transport (password or TLS); "
                f"{type(self.transport).__name__} is not, and members refuse membership requests from "
                "non-members over it. Add this node from a member instead: node.add_member(...) there, "
                "or `raftkit admin ... add` against a member's admin endpoint"
            )
        contacts = contacts or sorted(set(self.peers) - {self.id})
        self._ops().join(contacts, self.peers[self.id], timeout=timeout)

    def members(self) -> Members:
        """``{"voters": [...], "learners": [...], "addresses": {id: address}}`` as applied here."""
        return self._ops().members()

    def _ops(self) -> MembershipOps:
        if self._started_manual or self._in_loop():
            raise RuntimeError(
                "membership calls block until the cluster acts: call them from another thread than the "
                "node's loop, or await their async forms (aadd_member, atransfer_leadership ...); a node "
                "stepped by hand (start_manual) cannot serve them"
            )
        self._require_loop()
        return MembershipOps(self)

    @property
    def applied_conf(self) -> ConfState:
        return self._applier.applied_conf

    @property
    def stopped(self) -> bool:
        return self._stopped

    def process_ready(self) -> None:
        self._process_ready()

    def call_in_loop(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the node's loop and return its result (from another thread)."""
        loop = self._require_loop()
        if self._stopped:
            raise NodeStoppedError(self._stopped_reason())
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        loop.call_soon_threadsafe(settle, done, fn)
        return done.result(timeout)

    def _learn_addresses(self, conf: ConfState) -> None:
        """Members added at runtime bring their addresses in the config entry."""
        book = {n: a for n, a in conf.addresses if self.peers.get(n) != a}
        if not book:
            return
        self.peers.update(book)
        if self._loop is not None:
            self.transport.update_peers(self.peers)
