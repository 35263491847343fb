"""Client commands on their way into the log: ``CommandQueue`` carries them
from client threads to the loop and proposes them in batches, ``wrap`` and
``unwrap`` are their log entry envelope (who proposed it and the command)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import msgpack

from raftkit.core.rawnode import RawNode
from raftkit.core.types import Role
from raftkit.errors import (
    CodecError,
    CommandTimeoutError,
    NoLeaderError,
    ProposalDroppedError,
    QueueFullError,
)
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.pending import PendingCommands

__all__ = ["BACKLOG_MIN", "CommandQueue", "unwrap", "wrap"]

BACKLOG_MIN = 1000
"""Commands in flight below which ``max_queue_delay`` never refuses: a
slow command (a big one, or one waiting out an election) is not overload."""


def wrap(origin: bytes, seq: int, command: bytes) -> bytes:
    """A log entry's payload: who proposed it (a per-process nonce, so a
    restarted node never mistakes an old entry for its own) and the command."""
    return msgpack.packb((origin, seq, command), use_bin_type=True)


def unwrap(data: bytes) -> tuple[bytes, int, bytes]:
    try:
        origin, seq, command = msgpack.unpackb(data, use_list=False)
    except (ValueError, TypeError, msgpack.ExtraData) as exc:
        raise CodecError(f"malformed command entry: {exc}") from exc
    return origin, seq, command


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
        wake_soon: Callable[[], None],
    ) -> None:
        """``origin``: this process's nonce, put in every envelope;
        ``wake_soon``: (loop thread) schedules the node's next drain, for
        what did not fit in one batch."""
        self._raw = raw
        self._config = config
        self._pending = pending
        self._origin = origin
        self._wake_soon = wake_soon
        self._inbox: deque[tuple[int, bytes]] = deque()
        self._queue: deque[tuple[int, bytes]] = deque()
        self._wakeup_scheduled = False

    def __len__(self) -> int:
        """Commands submitted but not yet proposed (any thread; approximate)."""
        return len(self._inbox) + len(self._queue)

    def check_room(self) -> None:
        """Any thread: QueueFullError when ``commands_queue_size`` commands
        wait to be proposed, or when this node's commands are backlogged:
        more than ``BACKLOG_MIN`` in flight, the oldest of them waiting for
        over ``max_queue_delay``, and the latest outcome as late (both: one
        lost command waiting out its timeout is no backlog, nor is an old
        slow outcome before a fresh burst). Refusing at once holds the delay
        of accepted commands near that bound at any offered load (instead of
        growing until they time out), and goodput near capacity."""
        queued = len(self)
        if queued >= self._config.commands_queue_size:
            raise QueueFullError(
                f"{queued} commands are waiting (commands_queue_size="
                f"{self._config.commands_queue_size}); retry later"
            )
        limit = self._config.max_queue_delay
        delay = self._pending.metrics.last_latency
        if (limit is not None and delay > limit and len(self._pending) > BACKLOG_MIN
                and self._pending.oldest_wait() > limit):
            raise QueueFullError(
                f"overloaded: {len(self._pending)} commands in flight, the latest took {delay:.2f}s "
                f"(max_queue_delay={limit:g}s); retry later"
            )

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
        inbox, queue = self._inbox, self._queue
        for _ in range(len(inbox)):
            queue.append(inbox.popleft())

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
        batch: list[tuple[int, bytes]] = []
        for _ in range(min(len(self._queue), self._config.max_batch)):
            seq, cmd = self._queue.popleft()
            # A command already failed (timeout, no leader) is never proposed:
            # its caller was promised it would not be applied.
            if seq in self._pending:
                batch.append((seq, cmd))
        if self._queue:  # more than one batch: come back after this Ready
            self._wakeup_scheduled = True
            self._wake_soon()
        if not batch:
            return
        payloads = [wrap(self._origin, seq, cmd) for seq, cmd in batch]
        try:
            if raft.role is Role.LEADER:
                indexes = self._raw.propose_batch(payloads)
                term = raft.term
                for (seq, _), index in zip(batch, indexes, strict=True):
                    self._pending.mark_proposed(seq, index, term)
            else:
                for seq, _ in batch:
                    self._pending.mark_forwarded(seq, raft.term)
                step = self._config.max_entries_per_msg
                for i in range(0, len(payloads), step):
                    self._raw.forward(payloads[i : i + step])
        except ProposalDroppedError as exc:
            for seq, _ in batch:
                self._pending.fail(seq, exc)

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
