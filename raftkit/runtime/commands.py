"""Client commands on their way into the log: ``CommandQueue`` carries them
from client threads to the loop and proposes them in batches; ``wrap`` and
``unwrap`` are a command entry's envelope (who proposed it and the command),
``wrap_batch`` and ``unwrap_batch`` the envelope of an entry that carries
several commands of one proposer (``EntryKind.BATCH``)."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from itertools import accumulate

import msgpack

from raftkit.core.rawnode import RawNode
from raftkit.core.types import Entry, EntryKind, Message, Role
from raftkit.errors import (
    CodecError,
    CommandTimeoutError,
    NoLeaderError,
    ProposalDroppedError,
    QueueFullError,
)
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.pending import PendingCommands

__all__ = [
    "BACKLOG_MIN",
    "BACKLOG_MIN_BYTES",
    "BATCH_ENTRY_BYTES",
    "OVERLOAD_HOLD",
    "CommandQueue",
    "unwrap",
    "unwrap_batch",
    "wrap",
    "wrap_batch",
]

BACKLOG_MIN = 1000
"""Commands in flight below which ``max_queue_delay`` never refuses: a
slow command (a big one, or one waiting out an election) is not overload."""

BACKLOG_MIN_BYTES = 2 << 20
"""... unless they are big: the floor is then this many bytes of commands
(at the recent mean size), and at least ``BACKLOG_MIN_LARGE`` of them.
1,000 commands of 20 KB were seconds of work on 7 nodes: accepted calls
waited 3-5 s before any was refused (docs/benchmarks.md)."""

BACKLOG_MIN_LARGE = 64
"""The floor for big commands never goes below this many: one slow big command is not overload either."""

OVERLOAD_HOLD = 0.002
"""Seconds an overload verdict of ``max_queue_delay`` stands before it is
checked again (while the latest outcome stays late: an outcome in time
again admits calls at once): under overload most calls are refused, and checking each
(the backlog, the oldest command's wait, the message) was 7 % of the three
nodes' samples at twice capacity (1 KB values; docs/benchmarks.md, session
34). The verdict turns on waits of ``max_queue_delay`` (0.05 s by default),
25 times longer."""


log = logging.getLogger("raftkit.runtime.node")

# Releases the GIL and lets a runnable thread run (about 1 us here; sleep(0) took 56 us of wall time).
_yield_cpu: Callable[[], None] = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))

BATCH_ENTRY_BYTES = 64 << 10
"""Command bytes past which a batch entry takes no more commands (one big
command still makes one entry)."""


def wrap(origin: bytes, seq: int, command: bytes) -> bytes:
    """A log entry's payload: who proposed it (a per-process nonce, so a
    restarted node never mistakes an old entry for its own) and the command."""
    payload: bytes = msgpack.packb((origin, seq, command), use_bin_type=True)
    return payload


def unwrap(data: bytes) -> tuple[bytes, int, bytes]:
    try:
        origin, seq, command = msgpack.unpackb(data, use_list=False)
    except (ValueError, TypeError, msgpack.ExtraData) as exc:
        raise CodecError(f"malformed command entry: {exc}") from exc
    return origin, seq, command


def wrap_batch(origin: bytes, seqs: list[int], commands: list[bytes]) -> bytes:
    """A BATCH entry's payload: several commands of one proposer, applied in order."""
    payload: bytes = msgpack.packb((origin, seqs, commands), use_bin_type=True)
    return payload


def unwrap_batch(data: bytes) -> tuple[bytes, list[int], list[bytes]]:
    """``wrap_batch``'s fields, checked: the log may hold anything a leader
    appended, and a malformed entry must be skipped the same way everywhere."""
    try:
        origin, seqs, commands = msgpack.unpackb(data)
    except (ValueError, TypeError, msgpack.ExtraData) as exc:
        raise CodecError(f"malformed batch entry: {exc}") from exc
    if (
        type(origin) is not bytes
        or type(seqs) is not list
        or type(commands) is not list
        or len(seqs) != len(commands)
        or not set(map(type, seqs)) <= {int}  # exact types, checked in C: it runs per entry on every node
        or not set(map(type, commands)) <= {bytes}
    ):
        raise CodecError("malformed batch entry: expected (origin bytes, [seq int...], [command bytes...])")
    return origin, seqs, commands


def batch_entries(batch: list[tuple[int, bytes]], per_entry: int) -> list[tuple[list[int], list[bytes]]]:
    """``batch`` cut into entries of at most ``per_entry`` commands and about
    ``BATCH_ENTRY_BYTES`` of command bytes each, in order."""
    # Per entry in Python, per command in C (a loop per command was a tenth
    # of proposing): each entry ends where its bytes would pass
    # BATCH_ENTRY_BYTES (found by bisection in the running total) or at
    # per_entry commands, and takes at least one command.
    seqs = [seq for seq, _ in batch]
    commands = [command for _, command in batch]
    ends = list(accumulate(map(len, commands)))  # bytes of commands[:i + 1]
    groups: list[tuple[list[int], list[bytes]]] = []
    start, n = 0, len(commands)
    while start < n:
        fits = (ends[start - 1] if start else 0) + BATCH_ENTRY_BYTES
        stop = max(start + 1, bisect_right(ends, fits, start, min(n, start + per_entry)))
        groups.append((seqs[start:stop], commands[start:stop]))
        start = stop
    return groups


class CommandQueue:
    """Commands submitted but not yet proposed.

    They travel from client threads to the loop through ``_inbox`` (appends
    and pops of a deque are thread-safe); ``_queue`` belongs to the loop
    thread alone, so it can be scanned and rebuilt safely. ``put`` and
    ``len()`` are for any thread, everything else for the loop thread.
    """

    def __init__(
        self,
        raw: RawNode,
        config: NodeConfig,
        pending: PendingCommands,
        origin: bytes,
        *,
        wake_soon: Callable[[], object],
        per_entry: Callable[[], int],
    ) -> None:
        """``origin``: this process's nonce, put in every envelope;
        ``wake_soon``: (loop thread) schedules the node's next drain, for
        what did not fit in one batch; ``per_entry()``: how many commands one
        log entry may carry now (``Applier.entry_limit``; 1: one entry per
        command, the format raftkit 0.1 reads)."""
        self._entry_limit = per_entry
        self._raw = raw
        self._config = config
        self._pending = pending
        self._origin = origin
        self._wake_soon = wake_soon
        self._inbox: deque[tuple[int, bytes]] = deque()
        self._queue: deque[tuple[int, bytes]] = deque()
        self._wakeup_scheduled = False
        self._mean_bytes = 0.0  # moving mean of a proposed command's size (loop thread)
        self.backlog_min = BACKLOG_MIN  # room_error's floor: BACKLOG_MIN, lower for big commands
        # An overload verdict holds for OVERLOAD_HOLD (any thread writes both; a stale pair is harmless).
        self._overloaded_until = float("-inf")
        self._overload_text = ""
        self._oldest_started = float("-inf")  # a start of the oldest command in flight, as last seen

    def __len__(self) -> int:
        """Commands submitted but not yet proposed (any thread; approximate)."""
        return len(self._inbox) + len(self._queue)

    def room_error(self) -> QueueFullError | None:
        """Any thread: what ``_room_error`` finds. A refusal first gives the
        CPU and the GIL to a thread waiting for them (``os.sched_yield``):
        a caller refused for overload that calls again at once otherwise keeps
        the GIL from the loop thread that must drain the queue, and the node
        stays overloaded (at twice capacity the nodes committed 11-33 % less
        without it; just past capacity it can cost a little: docs/benchmarks.md,
        session 28)."""
        # The common case first, without a clock read or another call: room
        # in the queue and the latest outcome in time (or no rule) is what
        # _room_error's rule admits, held verdict or not. Every accepted call
        # asks this (docs/benchmarks.md, session 37).
        config = self._config
        limit = config.max_queue_delay
        if len(self._inbox) + len(self._queue) < config.commands_queue_size and (
            limit is None or self._pending.metrics.last_latency <= limit
        ):
            return None
        if self._pending.metrics.clock() < self._overloaded_until:
            refused: QueueFullError | None = QueueFullError(self._overload_text)
        else:
            refused = self._room_error()
        if refused is not None:
            _yield_cpu()
        return refused

    def _room_error(self) -> QueueFullError | None:
        """A QueueFullError when ``commands_queue_size`` commands
        wait to be proposed, or when this node's commands are backlogged:
        more than ``backlog_min`` in flight (``BACKLOG_MIN``, or
        ``BACKLOG_MIN_BYTES`` of big commands), the oldest of them waiting for
        over ``max_queue_delay``, and the latest outcome as late (both: one
        lost command waiting out its timeout is no backlog, nor is an old
        slow outcome before a fresh burst). Refusing at once holds the delay
        of accepted commands near that bound at any offered load (instead of
        growing until they time out), and goodput near capacity."""
        config = self._config
        queued = len(self._inbox) + len(self._queue)  # len(self), without a call per command
        if queued >= config.commands_queue_size:
            return QueueFullError(
                f"{queued} commands are waiting (commands_queue_size="
                f"{config.commands_queue_size}); retry later"
            )
        limit = config.max_queue_delay
        if limit is None:
            return None
        pending = self._pending
        delay = pending.metrics.last_latency
        if delay <= limit or len(pending) <= self.backlog_min:
            return None
        now = pending.metrics.clock()
        if 0.0 <= now - self._oldest_started <= limit:
            return None
        wait = pending.oldest_wait()
        if wait <= limit:
            # The oldest command in flight later is this one or one submitted
            # after it, so started no earlier (PendingCommands.register reads
            # the clock under its lock): until this one reaches the limit the
            # lock need not be taken again (under overload every accepted call
            # asked). Any thread: a stale value written late is an older
            # command's start, so it only makes the next call ask sooner.
            self._oldest_started = now - wait
            return None
        text = (
            f"overloaded: {len(pending)} commands in flight, the latest took {delay:.2f}s "
            f"(max_queue_delay={limit:g}s); retry later"
        )
        self._overload_text = text
        self._overloaded_until = now + OVERLOAD_HOLD
        return QueueFullError(text)

    def put(self, seq: int, command: bytes) -> bool:
        """Client thread: hand a command to the loop. True when the caller
        must wake the loop (no wake-up is on its way yet)."""
        self._inbox.append((seq, command))  # the loop moves it to _queue (take)
        if self._wakeup_scheduled:
            return False
        self._wakeup_scheduled = True
        return True

    # -- loop thread ---------------------------------------------------------------------

    @property
    def waiting(self) -> bool:
        """Whether commands wait in the loop's own queue (call ``take`` first)."""
        return bool(self._queue)

    def woken(self) -> None:
        """The wake-up ``put`` asked for runs: a later ``put`` must ask again."""
        self._wakeup_scheduled = False
        self.take()

    def take(self) -> None:
        """Move the commands client threads handed over into the loop's own
        queue (bounded: what arrives meanwhile waits for the next call)."""
        popleft = self._inbox.popleft
        self._queue.extend([popleft() for _ in range(len(self._inbox))])

    def clear(self) -> None:
        self._inbox.clear()
        self._queue.clear()

    def propose(self) -> None:
        """Propose (leader) or forward (follower) up to ``max_batch`` queued
        commands as one batch; they wait while no leader is known."""
        raft = self._raw.raft
        if raft.role is not Role.LEADER and raft.lead is None:
            return  # hold them until a leader is known (or their deadline passes)
        if raft.lead_transferee is not None:
            return  # hold them until the transfer ends: then we propose or forward them
        popleft = self._queue.popleft
        # A command already failed (timeout, no leader) is never proposed:
        # its caller was promised it would not be applied.
        batch = self._pending.still_pending(
            [popleft() for _ in range(min(len(self._queue), self._config.max_batch))]
        )
        if self._queue:  # more than one batch: come back after this Ready
            self._wakeup_scheduled = True
            self._wake_soon()
        if not batch:
            return
        origin = self._origin
        per_entry = self._entry_limit()
        if len(batch) == 1 or per_entry == 1:
            kind, groups = EntryKind.NORMAL, [([seq], [cmd]) for seq, cmd in batch]
            payloads = [wrap(origin, seq, cmd) for seq, cmd in batch]
        else:
            kind, groups = EntryKind.BATCH, batch_entries(batch, per_entry)
            payloads = [wrap_batch(origin, seqs, cmds) for seqs, cmds in groups]
        self._note_sizes(sum(map(len, payloads)) / len(batch))  # per entry, not per command
        try:
            if raft.role is Role.LEADER:
                indexes = self._raw.propose_batch(payloads, kind)
                term = raft.term
                for (seqs, _), index in zip(groups, indexes, strict=True):
                    self._pending.mark_proposed(seqs, index, term)
            else:
                self._pending.mark_forwarded([seq for seq, _ in batch], raft.term)
                # By count and by bytes (``max_bytes_per_msg``, at least one
                # entry): a packed entry carries up to commands_per_entry
                # commands, and a message past the transport's frame is dropped whole.
                step, limit = self._config.max_entries_per_msg, self._config.max_bytes_per_msg
                chunk: list[bytes] = []
                size = 0
                for payload in payloads:
                    if chunk and (len(chunk) >= step or size + len(payload) > limit):
                        self._raw.forward(chunk, kind)
                        chunk, size = [], 0
                    chunk.append(payload)
                    size += len(payload)
                if chunk:
                    self._raw.forward(chunk, kind)
        except ProposalDroppedError as exc:
            for seq, _ in batch:
                self._pending.fail(seq, exc)

    def _note_sizes(self, mean: float) -> None:
        """A batch's mean command size (its envelope included) moves
        ``backlog_min``: a floor of ``BACKLOG_MIN_BYTES`` when that is fewer
        commands than ``BACKLOG_MIN``. Read by ``room_error`` on any thread."""
        before = self._mean_bytes
        self._mean_bytes = mean if not before else before * 0.8 + mean * 0.2
        by_bytes = int(BACKLOG_MIN_BYTES / self._mean_bytes)
        self.backlog_min = min(BACKLOG_MIN, max(BACKLOG_MIN_LARGE, by_bytes))

    def repack(self, message: Message) -> Message:
        """A PROPOSE from another node, with its packed entries cut to this
        node's ``commands_per_entry`` (1: one NORMAL entry per command, the
        format raftkit 0.1 reads, whatever the sender packs); an empty or
        undecodable packed entry is dropped. So a leader bounds what one
        entry makes every node apply, and its setting holds cluster-wide."""
        entries: list[Entry] = []
        changed = False
        per_entry = self._entry_limit()
        for e in message.entries:
            if e.kind is not EntryKind.BATCH:
                entries.append(e)
                continue
            try:
                origin, seqs, commands = unwrap_batch(e.data)
            except CodecError as exc:
                log.warning("dropped a packed command entry from %s: %s", message.src, exc)
                changed = True
                continue
            if 0 < len(commands) <= per_entry:
                entries.append(e)
                continue
            changed = True
            pairs = list(zip(seqs, commands, strict=True))
            if per_entry == 1:
                entries += [Entry(0, 0, EntryKind.NORMAL, wrap(origin, s, c)) for s, c in pairs]
            else:
                groups = batch_entries(pairs, per_entry)
                entries += [Entry(0, 0, EntryKind.BATCH, wrap_batch(origin, s, c)) for s, c in groups]
        return dataclasses.replace(message, entries=tuple(entries)) if changed else message

    def expire(self) -> None:
        """Fail every command past its deadline, saying whether it was
        proposed and, if not, whether a leader was known."""
        expired = self._pending.expired(time.monotonic())
        if not expired:
            return
        self.take()  # a command still in the inbox has not been proposed either
        queued = {seq for seq, _ in self._queue}
        no_leader = self._raw.raft.lead is None
        for seq in expired:
            if seq in queued:
                reason: BaseException = (
                    NoLeaderError("no leader was elected before the command's timeout")
                    if no_leader
                    else CommandTimeoutError("the command timed out before it could be proposed")
                )
            else:
                reason = CommandTimeoutError("the command was proposed but got no outcome in time")
            self._pending.fail(seq, reason)
        if queued & set(expired):
            self._queue = deque(item for item in self._queue if item[0] in self._pending)

    def fail_all(self, exc: BaseException) -> None:
        """Fail every command in the loop's queue with ``exc`` (call ``take`` first)."""
        for seq, _ in self._queue:
            self._pending.fail(seq, exc)
        self._queue.clear()
