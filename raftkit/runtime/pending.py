"""PendingCommands: the node's promise that every submitted command gets
exactly one outcome.

A command is registered (from any thread) when submitted and leaves the
table exactly once: resolved with its result or exception when this node
applies its entry, or failed with the reason it never will be (timeout, no
leader, leadership lost, node stopped, outcome unknowable after a snapshot).
The loop thread does everything but ``register``; one lock makes
registration and shutdown mutually exclusive, so no command slips in after
``close`` and waits forever.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import threading
from collections import deque
from typing import Any

from raftkit.core.types import Entry, SnapshotMeta
from raftkit.errors import CommandTimeoutError, LeadershipLostError, NodeStoppedError
from raftkit.runtime.metrics import NodeMetrics

Outcome = concurrent.futures.Future


class Pending:
    """One command awaiting its outcome. A plain class with its own
    ``__init__``: a dataclass's seven-argument one took 0.44 µs, twice
    this, on every call's path (``register``)."""

    __slots__ = ("future", "deadline", "index", "term", "last_term", "uncertain", "started")

    def __init__(self, future: Outcome[Any], deadline: float, started: float) -> None:
        self.future = future  # or a raftkit.runtime.futures.CallbackOutcome
        self.deadline = deadline
        self.index = 0  # set once this node, as leader, appended it
        self.term = 0  # the first term in which it can be appended (set when proposed or forwarded)
        self.last_term = 0  # ... and the last: a forwarded command may be passed on to the next leader
        self.uncertain = False  # a snapshot of its term was installed: it may be inside it
        self.started = started  # when it was submitted (the metrics' clock), for its latency


class PendingCommands:
    """Commands of this node awaiting their outcome, by sequence number."""

    def __init__(self, metrics: NodeMetrics | None = None) -> None:
        """``metrics`` counts submissions, outcomes and latencies."""
        self.metrics = metrics if metrics is not None else NodeMetrics()
        self._lock = threading.Lock()
        self._seq = 0
        self._items: dict[int, Pending] = {}
        # Per-command work must not scan every pending command: under
        # overload there are tens of thousands, and scanning them per entry
        # or per tick is what turns a backlog into a collapse.
        # Deadlines: commands whose deadline is no earlier than every one in
        # ``_timeline`` join its end (the default timeout keeps them in
        # order: an append, not a heap push); the others go to the heap.
        # Finished commands linger in both until they reach the front.
        self._timeline: deque[int] = deque()  # seqs, their deadlines in order
        self._timeline_last = float("-inf")  # the deadline of its newest seq
        self._deadlines: list[tuple[float, int]] = []  # heap of (deadline, seq)
        # Submission order (seqs), for oldest_wait: finished ones are dropped
        # from the front lazily (the first key of a dict emptied from the front
        # is found by skipping every removed slot, which made that check O(n) per call).
        self._order: deque[int] = deque()
        self._by_index: dict[int, list[int]] = {}  # log index -> seqs, for commands this node appended
        self._closed: str | None = None  # why, once closed

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, seq: int) -> bool:
        return seq in self._items

    def register(self, deadline: float, outcome: Any = None) -> tuple[int, Any]:
        """A new command (any thread); NodeStoppedError once closed. Its
        outcome goes to a new Future, or to ``outcome`` (a
        ``CallbackOutcome``: anything with ``done``, ``set_result`` and
        ``set_exception``)."""
        future = concurrent.futures.Future() if outcome is None else outcome
        # ``with``, not acquire() then try (0.06 us against 0.14, measured):
        # a signal handler raising as acquire() returns (Ctrl-C) would leave
        # the lock held there, and the node frozen (session 37's review).
        with self._lock:
            if self._closed is not None:
                raise NodeStoppedError(self._closed)
            # Read under the lock: start times then grow with seqs, which
            # CommandQueue's overload check relies on (a thread stalled
            # between a clock read and the lock registered a command started
            # 0.26-0.46 s before one registered ahead of it).
            started = self.metrics.clock()
            seq = self._seq = self._seq + 1
            items = self._items
            items[seq] = Pending(future, deadline, started)
            if deadline >= self._timeline_last:
                self._timeline.append(seq)
                self._timeline_last = deadline
            else:
                heapq.heappush(self._deadlines, (deadline, seq))
            order = self._order
            order.append(seq)
            if order[0] not in items:
                self._drop_finished()
            self.metrics.proposals_total += 1
        return seq, future

    def oldest_wait(self) -> float:
        """Seconds the oldest command still in flight has waited (any thread;
        0 when none)."""
        with self._lock:
            order, items = self._order, self._items
            while order:
                p = items.get(order[0])  # the loop thread may finish it meanwhile
                if p is not None:
                    started = p.started
                    break
                order.popleft()
            else:
                return 0.0
        return self.metrics.clock() - started

    def _drop_finished(self) -> None:
        """(Under the lock.) Forget finished commands at the front of ``_order``:
        amortized O(1), each is dropped once."""
        order, items = self._order, self._items
        while order and order[0] not in items:
            order.popleft()

    def get(self, seq: int) -> Pending | None:
        return self._items.get(seq)

    def expired(self, now: float) -> list[int]:
        """Pending commands whose deadline has passed, each reported once, in
        deadline order (loop thread)."""
        out: list[tuple[float, int]] = []
        with self._lock:
            timeline, items = self._timeline, self._items
            while timeline:
                p = items.get(timeline[0])
                if p is not None:
                    if p.deadline > now:
                        break  # every later one in the timeline is due no earlier
                    out.append((p.deadline, timeline[0]))
                timeline.popleft()
            else:
                self._timeline_last = float("-inf")  # empty: any deadline may start it again
            heap = self._deadlines
            if heap and heap[0][0] <= now:
                while heap and heap[0][0] <= now:
                    deadline, seq = heapq.heappop(heap)
                    if seq in items:
                        out.append((deadline, seq))
                out.sort()
        return [seq for _, seq in out]

    def items(self) -> list[tuple[int, Pending]]:
        """A copy, safe to iterate while other threads register."""
        with self._lock:
            return list(self._items.items())

    # -- outcomes -------------------------------------------------------------------

    def resolve(self, seq: int, result: Any = None, error: BaseException | None = None) -> None:
        """This node applied the command: its result, or what it raised."""
        p = self._items.pop(seq, None)
        if p is None:
            return
        if p.index:
            self._forget_index(p, seq)
        if p.future.done():
            return
        self.metrics.proposal_applied(p.started)
        if error is not None:
            p.future.set_exception(error)
        else:
            p.future.set_result(result)

    def resolve_entry(self, seqs: list[int], outcomes: list[tuple[Any, BaseException | None]]) -> None:
        """``resolve`` for the commands of one applied entry, in order: one
        clock read and one index cleanup per entry instead of per command
        (at 100,000 commands a second this was a tenth of the loop's time)."""
        items = self._items
        indexes: set[int] = set()
        done: list[float] = []  # the start times of the commands that got their outcome here
        for seq, (result, error) in zip(seqs, outcomes, strict=True):
            p = items.pop(seq, None)
            if p is None:
                continue
            if p.index:
                indexes.add(p.index)
            future = p.future
            if future.done():
                continue
            done.append(p.started)
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        for index in indexes:
            left = [s for s in self._by_index.get(index, ()) if s in items]
            if left:
                self._by_index[index] = left
            else:
                self._by_index.pop(index, None)
        if done:
            self.metrics.proposals_applied_at(done)

    def _forget_index(self, p: Pending, seq: int) -> None:
        seqs = self._by_index.get(p.index) if p.index else None
        if seqs is not None and seq in seqs:
            seqs.remove(seq)  # short: the commands of one entry
            if not seqs:
                del self._by_index[p.index]

    def fail(self, seq: int, exc: BaseException) -> None:
        p = self._items.pop(seq, None)
        if p is not None:
            self._forget_index(p, seq)
        if p is not None and not p.future.done():
            with self._lock:  # rarely off the loop thread (a submit racing a closed loop)
                self.metrics.proposals_failed += 1
            p.future.set_exception(exc)

    def close(self, exc: BaseException) -> None:
        """Fail everything with ``exc`` and refuse new commands."""
        with self._lock:
            self._closed = str(exc)
            pending, self._items = self._items, {}
            self._order.clear()
            self._by_index.clear()
            self._timeline.clear()
            self._deadlines.clear()
            self.metrics.proposals_failed += sum(not p.future.done() for p in pending.values())
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(exc)

    # -- what the log tells us ---------------------------------------------------------

    def still_pending(self, batch: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """The ``(seq, command)`` pairs of ``batch`` whose command has no
        outcome yet (loop thread), in order: one call per batch."""
        items = self._items
        return [item for item in batch if item[0] in items]

    def mark_proposed(self, seqs: list[int], index: int, term: int) -> None:
        """This node, as leader, appended ``seqs``' commands at ``index`` in ``term``
        (one entry: one call for all of its commands)."""
        items = self._items
        appended = [seq for seq in seqs if seq in items]
        for seq in appended:
            p = items[seq]
            p.index, p.term, p.last_term = index, term, term
        if appended:
            self._by_index.setdefault(index, []).extend(appended)

    def mark_forwarded(self, seqs: list[int], term: int) -> None:
        """Sent to the leader in ``term``: a PROPOSE is appended by a leader of
        the term it carries (stale-term messages are dropped) or, if that
        leader was handing over, passed on to its successor in ``term + 1``
        (raftkit.core.transfer, held_proposals)."""
        items = self._items
        last = term + 1
        for seq in seqs:
            p = items.get(seq)
            if p is not None:
                p.term, p.last_term = term, last

    def entry_overwritten(self, e: Entry) -> None:
        """``e`` was applied: an entry we appended as leader at its index,
        in another term, lost its slot."""
        for seq in list(self._by_index.get(e.index, ())):
            p = self._items.get(seq)
            if p is not None and p.index == e.index and p.term != e.term:
                self.fail(seq, LeadershipLostError(f"entry {e.index} was replaced after a leader change"))

    def term_over(self, term: int, handed_over: bool = False) -> None:
        """An entry of ``term`` is being applied, so every entry of an older
        term that will ever commit has been applied already (terms never go
        down along the log): commands proposed or forwarded in an older term
        and still pending were lost with that term's leader."""
        if not self._items:
            return
        for seq, p in self.items():
            # Forwarded in the previous term: its leader passed it on only if
            # it handed leadership over (the new term's no-op says so).
            passed_on = handed_over and p.last_term == term
            if 0 < p.term < term and not passed_on:
                if p.uncertain:
                    reason: BaseException = CommandTimeoutError(
                        "outcome unknown: this node caught up from a snapshot that may include the command"
                    )
                else:
                    reason = LeadershipLostError(
                        f"the leader of term {p.term} lost its leadership before the command "
                        f"committed (the log moved on to term {term})"
                    )
                self.fail(seq, reason)

    def snapshot_installed(self, snap: SnapshotMeta) -> None:
        """Commands the snapshot may cover are never applied here one by
        one, so their outcome (result or exception) cannot be known."""
        for seq, p in self.items():
            if 0 < p.last_term < snap.term:
                self.fail(
                    seq,
                    CommandTimeoutError(
                        f"outcome unknown: this node installed snapshot {snap.index} from the leader, "
                        "which may include the command"
                    ),
                )
            elif 0 < p.term <= snap.term:
                p.uncertain = True
