"""An in-process network for tests and simulations: deterministic, seeded
fault injection by default, or immediate hand-over for a threaded runtime."""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from raftkit.core.types import Message, NodeId
from raftkit.errors import TransportError
from raftkit.transports.base import InboundHandler, Transport

log = logging.getLogger(__name__)

Dispatcher = Callable[[Callable[[], object]], object]
"""Runs a delivery in the receiving node's own context, for example an asyncio
loop's ``call_soon_threadsafe``."""


def call_now(delivery: Callable[[], object]) -> None:
    """The default dispatcher: run the delivery at once, inside ``send``."""
    delivery()


@dataclass(frozen=True, slots=True)
class Frame:
    """What the network carries in one piece: a batch of messages from one
    sender to one receiver, or one snapshot stream (``chunks`` is then set
    and ``messages`` holds its single SNAPSHOT message)."""

    src: NodeId
    dst: str  # the receiver's name on the network: the address in the sender's peer map
    messages: tuple[Message, ...]
    chunks: tuple[bytes, ...] | None = None


@dataclass(eq=False, slots=True)
class _InFlight:
    # eq=False: two copies of a duplicated frame are distinct queue items.
    frame: Frame
    sender: MemoryTransport
    ready_at: int  # the first delivery round in which it may arrive


def _names(group: NodeId | Iterable[NodeId]) -> set[NodeId]:
    # A bare name is one node, not the set of its characters.
    return {group} if isinstance(group, str) else set(group)


class MemoryNetwork:
    """The hub shared by the ``MemoryTransport`` of every simulated node.

    Deterministic mode (the default) lets a test or simulator decide what
    arrives when. ``send`` only queues frames (one per destination per call);
    nothing arrives until ``deliver()`` runs a *round* (the frames that were
    ready when it was called: replies sent by handlers wait for the next
    round) or ``deliver_one(i)`` delivers ``pending[i]`` at once. Snapshot
    outcomes are reported to senders at the end of those calls. Every random
    choice comes from ``random.Random(seed)``, so a seed replays a run
    exactly. Use it from one thread; handler exceptions propagate out of
    ``deliver`` so tests see them.

    Auto-deliver mode (``auto_deliver=True``) is for a threaded or asyncio
    runtime: ``send`` hands each frame straight to the receiving transport's
    dispatcher. ``delay`` and ``reorder`` do not apply there (the dispatchers
    decide timing); the other faults do. Shared state is only touched by
    single dict, set and RNG operations, so nodes may send from their own
    threads and faults may be changed from any thread.

    Faults (attributes and methods, changeable at any time):

    * ``drop_rate`` / ``duplicate_rate``: chance that a sent frame is lost /
      arrives twice. Snapshot streams are never duplicated, so each
      ``send_snapshot`` gets exactly one outcome.
    * ``reorder``: each round delivers its frames in a random order.
    * ``delay``: rounds a frame waits before it may arrive.
    * ``partition``, ``cut`` and ``isolate`` block links until ``heal()``. A
      frame crosses only if its link is open both when it is sent and when
      it arrives.

    Frames are routed by name when they arrive: frames to a name with no
    started transport vanish (a lost snapshot stream reports failure), and a
    node restarted under the same name receives what was in flight to its
    predecessor, as a real network may.
    """

    def __init__(
        self,
        seed: int | None = 0,
        *,
        auto_deliver: bool = False,
        drop_rate: float = 0.0,
        duplicate_rate: float = 0.0,
        reorder: bool = False,
        delay: int = 0,
    ) -> None:
        self.auto_deliver = auto_deliver
        self.drop_rate = drop_rate
        self.duplicate_rate = duplicate_rate
        self.reorder = reorder
        self.delay = delay
        self._rng = random.Random(seed)
        self._nodes: dict[str, MemoryTransport] = {}
        self._queue: list[_InFlight] = []
        self._notices: deque[Callable[[], None]] = deque()
        self._blocked: set[tuple[str, str]] = set()
        self._isolated: set[str] = set()
        self._round = 0
        self._marker_dir: str | None = None

    @property
    def marker_dir(self) -> str:
        """A private folder for the restart markers of this network's nodes,
        created on first use and removed with the network: restarting a node
        on this network keeps its marker, a new network starts afresh."""
        if self._marker_dir is None:
            self._marker_dir = tempfile.mkdtemp(prefix="raftkit-memnet-")
            weakref.finalize(self, shutil.rmtree, self._marker_dir, True)
        return self._marker_dir

    # -- faults ---------------------------------------------------------------

    def partition(self, group_a: NodeId | Iterable[NodeId], group_b: NodeId | Iterable[NodeId]) -> None:
        """Block every link between the two groups, both ways."""
        a, b = _names(group_a), _names(group_b)
        self._blocked |= {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}

    def cut(self, src: NodeId, dst: NodeId) -> None:
        """Block the link from ``src`` to ``dst`` only."""
        self._blocked.add((src, dst))

    def isolate(self, node: NodeId) -> None:
        """Block every link to and from ``node``, including to nodes started later."""
        self._isolated.add(node)

    def heal(self) -> None:
        """Reopen every link blocked by ``partition``, ``cut`` or ``isolate``."""
        self._blocked.clear()
        self._isolated.clear()

    def link_open(self, src: NodeId, dst: NodeId) -> bool:
        """Whether a frame from ``src`` to ``dst`` may cross right now."""
        return (src, dst) not in self._blocked and src not in self._isolated and dst not in self._isolated

    # -- deterministic delivery ----------------------------------------------

    @property
    def pending(self) -> tuple[Frame, ...]:
        """Frames in flight, oldest first (the indexes ``deliver_one`` takes)."""
        return tuple(item.frame for item in self._queue)

    @property
    def idle(self) -> bool:
        """True when nothing is in flight and no snapshot outcome awaits reporting."""
        return not self._queue and not self._notices

    def deliver(self, max_count: int | None = None) -> list[Frame]:
        """Run one round: take up to ``max_count`` ready frames (oldest first,
        or in random order with ``reorder``) and hand them to their receivers.
        Returns the frames that arrived; the others were lost on the way."""
        ready = [item for item in self._queue if item.ready_at <= self._round]
        if self.reorder:
            self._rng.shuffle(ready)
        if max_count is not None:
            ready = ready[:max_count]
        taken = set(ready)
        self._queue = [item for item in self._queue if item not in taken]
        self._round += 1
        arrived = [item.frame for item in ready if self._arrive(item)]
        self._flush_notices()
        return arrived

    def deliver_one(self, index: int) -> Frame | None:
        """Hand ``pending[index]`` to its receiver now, whatever its delay, so
        a simulator can choose any interleaving. Returns the frame, or None
        if it was lost on arrival. Does not start a new round."""
        item = self._queue.pop(index)
        arrived = self._arrive(item)
        self._flush_notices()
        return item.frame if arrived else None

    # -- used by MemoryTransport ----------------------------------------------

    def _register(self, name: NodeId, transport: MemoryTransport) -> None:
        if self._nodes.setdefault(name, transport) is not transport:
            raise TransportError(f"memory network: a transport named {name!r} is already started")

    def _unregister(self, name: NodeId, transport: MemoryTransport) -> None:
        if self._nodes.get(name) is transport:
            del self._nodes[name]

    def _submit(self, sender: MemoryTransport, frame: Frame) -> None:
        """Put a frame on the wire, applying send-time faults."""
        receiver = self._nodes.get(frame.dst)
        if (
            receiver is None
            or not self.link_open(frame.src, frame.dst)
            or (self.drop_rate > 0 and self._rng.random() < self.drop_rate)
        ):
            self._report_lost(sender, frame)
            return
        duplicate = (
            frame.chunks is None and self.duplicate_rate > 0 and self._rng.random() < self.duplicate_rate
        )
        for _ in range(2 if duplicate else 1):
            item = _InFlight(frame, sender, self._round + self.delay)
            if self.auto_deliver:
                receiver.dispatcher(partial(self._arrive, item))
            else:
                self._queue.append(item)

    def _arrive(self, item: _InFlight) -> bool:
        frame = item.frame
        receiver = self._nodes.get(frame.dst)
        if receiver is None or not self.link_open(frame.src, frame.dst):
            self._report_lost(item.sender, frame)
            return False
        receiver._receive(frame)
        if frame.chunks is not None:
            self._report(item.sender, frame.messages[0].dst, ok=True)
        return True

    def _report_lost(self, sender: MemoryTransport, frame: Frame) -> None:
        if frame.chunks is not None:
            self._report(sender, frame.messages[0].dst, ok=False)

    def _report(self, sender: MemoryTransport, peer: NodeId, *, ok: bool) -> None:
        """Tell ``sender`` how its snapshot stream to ``peer`` ended, never
        from inside its own ``send_snapshot`` call."""
        notice = partial(sender._snapshot_status, peer, ok)
        if self.auto_deliver:
            sender.dispatcher(notice)
        else:
            self._notices.append(notice)

    def _flush_notices(self) -> None:
        while self._notices:
            self._notices.popleft()()


class MemoryTransport(Transport):
    """One node's port on a ``MemoryNetwork``; it is reachable under its node
    id, so peer addresses are node ids.

    ``authenticated`` is True: frames are Python objects handed over inside
    this process, never bytes, so nothing outside the process can inject one
    and nothing is ever decoded. ``dispatcher`` is only used in auto-deliver
    mode: every handler call for this node goes through it. The default,
    ``call_now``, runs it at once: the receiver's handler inside the sender's
    ``send``, a snapshot outcome possibly inside ``send_snapshot``. That suits
    simple tests; a real runtime passes its loop's ``call_soon_threadsafe``.
    """

    authenticated = True

    @property
    def state_marker_dir(self) -> str:  # type: ignore[override]  # the network's, never set here
        return self.network.marker_dir

    def __init__(self, network: MemoryNetwork, *, dispatcher: Dispatcher = call_now) -> None:
        self.network = network
        self.dispatcher = dispatcher
        self.node_id: NodeId | None = None
        self._handler: InboundHandler | None = None  # None once closed
        self._peers: dict[NodeId, str] = {}
        self._closed = False

    def start(self, node_id: NodeId, handler: InboundHandler) -> None:
        if self._closed:
            raise TransportError("memory transport: cannot start after close()")
        if self.node_id is not None:
            raise TransportError(f"memory transport: already started as {self.node_id!r}")
        self.network._register(node_id, self)
        self.node_id, self._handler = node_id, handler

    def send(self, messages: Sequence[Message]) -> None:
        if self._closed:
            return
        src = self._require_started()
        batches: dict[NodeId, list[Message]] = {}
        for message in messages:
            if message.dst in self._peers:
                batches.setdefault(message.dst, []).append(message)
        for dst, batch in batches.items():
            self.network._submit(self, Frame(src, self._peers[dst], tuple(batch)))

    def send_snapshot(self, message: Message, chunks: Iterable[bytes]) -> None:
        if self._closed:
            return
        src = self._require_started()
        address = self._peers.get(message.dst)
        if address is None:
            self.network._report(self, message.dst, ok=False)
            return
        try:
            data = tuple(chunks)
        except Exception:
            log.warning("snapshot stream %s -> %s failed: its chunks raised", src, message.dst, exc_info=True)
            self.network._report(self, message.dst, ok=False)
            return
        self.network._submit(self, Frame(src, address, (message,), data))

    def update_peers(self, peers: Mapping[NodeId, str]) -> None:
        self._peers = dict(peers)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._handler = None
        if self.node_id is not None:
            self.network._unregister(self.node_id, self)

    def _require_started(self) -> NodeId:
        if self.node_id is None:
            raise TransportError("memory transport: call start() before sending")
        return self.node_id

    def _receive(self, frame: Frame) -> None:
        if frame.chunks is not None:
            if self._handler is not None:
                self._handler.on_snapshot(frame.messages[0], frame.chunks)
            return
        for message in frame.messages:
            if self._handler is None:  # the handler closed this transport mid-batch
                return
            self._handler.on_message(message)

    def _snapshot_status(self, peer: NodeId, ok: bool) -> None:
        if self._handler is not None:
            self._handler.on_snapshot_status(peer, ok)
