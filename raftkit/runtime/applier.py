"""Applier: the state machine's side of the Ready loop.

It applies committed entries in log order and keeps the applied position
(index, term and membership) that reads, snapshots and ``status()`` go by.
Entries wait, committed, in ``deferred`` while a snapshot capture fixes its
view of the state or while a durable state machine's storage fails (then a
retry is scheduled); the Raft log carries on meanwhile. Each applied entry
tells ``raftkit.runtime.pending`` what the log reveals about the commands
waiting on it.

Threads: every method runs on the node's loop thread. Client threads only
read ``applied``, ``applied_term`` and ``applied_conf`` (single attribute
reads, through ``Node.applied_conf`` and the snapshot pipeline).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from raftkit.core.membership import decode_conf
from raftkit.core.raft import HANDED_OVER
from raftkit.core.types import ConfState, Entry, EntryKind, NodeId, SnapshotMeta
from raftkit.errors import CodecError
from raftkit.runtime.commands import unwrap, unwrap_batch
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.metrics import NodeMetrics
from raftkit.runtime.pending import PendingCommands
from raftkit.runtime.snapshots import SnapshotPipeline
from raftkit.state_machines.base import StateMachine

__all__ = ["Applier"]

# The node's log lines stay under one logger, wherever the code that writes them lives.
log = logging.getLogger("raftkit.runtime.node")


class Applier:
    def __init__(
        self,
        node_id: NodeId,
        state_machine: StateMachine,
        config: NodeConfig,
        pending: PendingCommands,
        metrics: NodeMetrics,
        snapshots: SnapshotPipeline,
        *,
        origin: bytes,
        conf: ConfState,
        stopped: Callable[[], bool],
        learn_addresses: Callable[[ConfState], None],
        apply_later: Callable[[float], object],
    ) -> None:
        """``origin``: this process's nonce in the command envelope (an
        entry of ours resolves its command); ``conf``: the membership before
        anything is applied; ``learn_addresses``: told every membership
        applied (members added at runtime bring their addresses);
        ``apply_later(delay)``: schedules another ``apply`` of what waits (after
        the state machine's storage failed, or when the budget ran out)."""
        self._id = node_id
        self._state_machine = state_machine
        self._config = config
        self._pending = pending
        self._metrics = metrics
        self._snapshots = snapshots
        self._origin = origin
        self._stopped = stopped
        self._learn_addresses = learn_addresses
        self._apply_later = apply_later
        self._more_scheduled = False  # an apply for what the budget left is on its way
        self.applied = 0  # the state machine holds every entry up to here
        self.applied_term = 0  # term of the last entry applied (or of the installed snapshot)
        self.applied_conf = conf  # membership at ``applied``
        self.superseded_confs: frozenset[tuple[int, int]] = frozenset()  # Raft.superseded_confs
        self.deferred: deque[Entry] = deque()  # committed, held while a capture reads the state
        self.blocked: str | None = None  # a durable state machine's storage failed
        # A state machine that reports applied_index records it with each entry (LMDB):
        # if it raises without advancing it, the entry is not applied (disk trouble).
        self._tracks_applied = type(state_machine).applied_index is not StateMachine.applied_index
        self._batchable: bool | None = None  # takes_batches, asked once
        self.command_seconds = 0.0  # moving average of the time one command takes to apply

    def apply(self, entries: Iterable[Entry], *, resumed: bool = False) -> None:
        """Apply committed entries in order, unless a capture is fixing its
        view of the state or the state machine's storage failed: then they
        wait in ``deferred``. At most ``apply_budget`` seconds per loop turn:
        a big backlog is applied over several turns, so the loop keeps
        ticking (a leader's heartbeats) in between. ``resumed`` is the call
        that continues such a backlog."""
        self.deferred.extend(entries)
        if self._more_scheduled and not resumed:
            # This turn's slice is spent; the one scheduled for a later turn
            # applies these too (several callbacks in one turn, each with a
            # slice, would hold the loop for a multiple of the budget).
            return
        self._more_scheduled = False
        budget_end = time.perf_counter() + self._config.apply_budget
        while self.deferred and not (self._snapshots.holds_applies or self.blocked or self._stopped()):
            e = self.deferred.popleft()
            if not self._apply_entry(e):
                self.deferred.appendleft(e)
                self._apply_later(self._config.storage_retry_interval)
                break
            if self.deferred and time.perf_counter() > budget_end:
                if not self._more_scheduled:
                    self._more_scheduled = True
                    self._apply_later(0)
                break

    def installed(self, snap: SnapshotMeta) -> None:
        """The state machine now holds snapshot ``snap`` (from the leader):
        move the applied position to it and drop what it covers."""
        self.applied, self.applied_conf = snap.index, snap.conf
        self._learn_addresses(snap.conf)
        self.applied_term = max(self.applied_term, snap.term)
        self.deferred = deque(e for e in self.deferred if e.index > snap.index)

    def _apply_entry(self, e: Entry) -> bool:
        """Apply ``e``; False if the state machine's storage failed."""
        if e.index <= self.applied:
            return True  # a durable state machine already holds it (or a snapshot covered it)
        if e.term > self.applied_term:
            self.applied_term = e.term
            self._pending.term_over(e.term, handed_over=e.kind is EntryKind.NOOP and e.data == HANDED_OVER)
        if e.kind is EntryKind.NORMAL:
            if not self._apply_command(e):
                return False
        elif e.kind is EntryKind.BATCH:
            if not self._apply_batch(e):
                return False
        else:
            if e.kind is EntryKind.CONFIG and (e.index, e.term) not in self.superseded_confs:
                with contextlib.suppress(CodecError):
                    self.applied_conf = decode_conf(e.data)
                    self._learn_addresses(self.applied_conf)
            self._pending.entry_overwritten(e)
        self.applied = e.index
        self._snapshots.note_applied(e.size)
        self._metrics.entry_applied(e.size)
        return True

    def _apply_command(self, e: Entry) -> bool:
        try:
            origin, seq, command = unwrap(e.data)
        except CodecError as exc:
            log.error("%s: skipping undecodable entry %d: %s", self._id, e.index, exc)
            return True
        error: BaseException | None = None
        result: Any = None
        started = time.perf_counter()
        try:
            result = self._state_machine.apply_entry(e.index, command)
        except Exception as exc:  # part of the entry's deterministic outcome...
            if self._not_applied(e, exc):
                return False
            error = exc
        self._timed(time.perf_counter() - started, 1)
        if origin == self._origin:
            self._pending.resolve(seq, result, error)
        else:
            self._pending.entry_overwritten(e)
        return True

    def _apply_batch(self, e: Entry) -> bool:
        try:
            origin, seqs, commands = unwrap_batch(e.data)
        except CodecError as exc:
            log.error("%s: skipping undecodable entry %d: %s", self._id, e.index, exc)
            return True
        if self._tracks_applied and not self._atomic_batches:
            # It records one index per command: applying several under the
            # same index could skip all but the first after a restart.
            return not self._not_applied(e, TypeError(
                f"entry {e.index} carries {len(commands)} commands but {type(self._state_machine).__name__} "
                "reports applied_index without overriding apply_entries; implement it (one transaction per "
                "entry) or set commands_per_entry=1 on every node"))
        started = time.perf_counter()
        try:
            outcomes = self._state_machine.apply_entries(e.index, commands)
        except Exception as exc:
            if self._not_applied(e, exc):
                return False
            outcomes = [(None, exc)] * len(commands)
        self._timed(time.perf_counter() - started, len(commands))
        if len(outcomes) != len(commands):
            miscount = ValueError(
                f"apply_entries returned {len(outcomes)} outcomes for {len(commands)} commands")
            if self._not_applied(e, miscount):
                return False
            log.error("%s: entry %d: %s", self._id, e.index, miscount)
            outcomes = [(None, miscount)] * len(commands)  # each caller learns it now, not at its timeout
        if origin == self._origin:
            self._pending.resolve_entry(seqs, outcomes)
        else:
            self._pending.entry_overwritten(e)
        return True

    def _timed(self, seconds: float, commands: int) -> None:
        if commands:
            each, before = seconds / commands, self.command_seconds
            self.command_seconds = each if not before else before * 0.8 + each * 0.2

    def entry_limit(self) -> int:
        """How many commands one log entry may carry here: at most
        ``commands_per_entry``, and no more than this state machine applies
        within ``apply_budget`` (the budget is checked between entries, so
        slow commands get small entries); 1 if it cannot take packed entries."""
        if self._batchable is None:
            self._batchable = self.takes_batches
        if not self._batchable:
            return 1
        limit = self._config.commands_per_entry
        if self.command_seconds > 0:
            limit = min(limit, max(1, int(self._config.apply_budget / self.command_seconds)))
        return limit

    @property
    def takes_batches(self) -> bool:
        """Whether entries carrying several commands are safe to apply here:
        a state machine that keeps its own applied index must apply them
        in one transaction (``StateMachine.apply_entries``)."""
        if getattr(self._state_machine, "takes_batches", True) is False:
            return False  # it says so itself (a SyncObj with a durable consumer)
        return self._atomic_batches

    @property
    def _atomic_batches(self) -> bool:
        return not self._tracks_applied or (
            type(self._state_machine).apply_entries is not StateMachine.apply_entries)

    def _not_applied(self, e: Entry, exc: BaseException) -> bool:
        """Whether ``exc`` from applying ``e`` means it was not applied (a
        durable state machine's storage failed: the entry is retried, the
        node shows why) rather than being the entry's outcome."""
        if not (self._tracks_applied and self._state_machine.applied_index < e.index):
            return False
        blocked = f"{type(exc).__name__}: {exc}"
        if blocked != self.blocked:  # once per cause, not once per retry
            log.error("%s: cannot apply entry %d (%s); retrying every %.1fs", self._id, e.index,
                      blocked, self._config.storage_retry_interval)
        self.blocked = blocked
        return True
