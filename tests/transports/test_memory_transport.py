"""MemoryTransport: the conformance suite in each delivery mode, then every
fault the MemoryNetwork can inject."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import pytest

from raftkit.core.types import Message, MessageType
from raftkit.errors import TransportError
from raftkit.testing.conformance.transport import (
    Deliver,
    Recorder,
    TransportConformance,
    snapshot_message,
)
from raftkit.transports import Frame, MemoryNetwork, MemoryTransport, Transport

# -- the conformance suite, in each mode -----------------------------------------


class TestDeterministicMemoryTransport(TransportConformance):
    def make_pair(self) -> tuple[MemoryTransport, MemoryTransport, Deliver]:
        network = MemoryNetwork()

        def deliver(until: Callable[[], bool]) -> bool:
            while not until() and not network.idle:
                network.deliver()
            return until()

        return MemoryTransport(network), MemoryTransport(network), deliver

    def address_of(self, transport: Transport, node_id: str) -> str:
        return node_id


class TestImmediateAutoDeliverMemoryTransport(TransportConformance):
    def make_pair(self) -> tuple[MemoryTransport, MemoryTransport, Deliver]:
        network = MemoryNetwork(auto_deliver=True)
        return MemoryTransport(network), MemoryTransport(network), lambda until: until()

    def address_of(self, transport: Transport, node_id: str) -> str:
        return node_id


class TestDeferredAutoDeliverMemoryTransport(TransportConformance):
    """Auto-deliver through a dispatcher that defers, like an event loop."""

    def make_pair(self) -> tuple[MemoryTransport, MemoryTransport, Deliver]:
        network = MemoryNetwork(auto_deliver=True)
        loop: deque[Callable[[], object]] = deque()

        def deliver(until: Callable[[], bool]) -> bool:
            while not until() and loop:
                loop.popleft()()
            return until()

        return (
            MemoryTransport(network, dispatcher=loop.append),
            MemoryTransport(network, dispatcher=loop.append),
            deliver,
        )

    def address_of(self, transport: Transport, node_id: str) -> str:
        return node_id


# -- helpers -------------------------------------------------------------------------


def msg(src: str, dst: str, index: int = 0) -> Message:
    return Message(type=MessageType.APPEND, src=src, dst=dst, term=1, index=index)


def start(network: MemoryNetwork, *names: str) -> tuple[dict[str, MemoryTransport], dict[str, Recorder]]:
    """Start one transport per name, every one knowing every other."""
    transports = {name: MemoryTransport(network) for name in names}
    inboxes = {name: Recorder() for name in names}
    for name, transport in transports.items():
        transport.start(name, inboxes[name])
        transport.update_peers({peer: peer for peer in names})
    return transports, inboxes


def indexes(inbox: Recorder) -> list[int]:
    return [m.index for m in inbox.messages]


# -- deterministic delivery ---------------------------------------------------------


def test_send_makes_one_frame_per_destination() -> None:
    network = MemoryNetwork()
    t, _ = start(network, "a", "b", "c")
    m1, m2, m3 = msg("a", "b", 1), msg("a", "c", 2), msg("a", "b", 3)
    t["a"].send([m1, m2, m3])
    assert network.pending == (Frame("a", "b", (m1, m3)), Frame("a", "c", (m2,)))


def test_nothing_arrives_until_delivered() -> None:
    network = MemoryNetwork()
    t, inbox = start(network, "a", "b")
    t["a"].send([msg("a", "b", 1)])
    assert inbox["b"].messages == []
    assert network.deliver() == [Frame("a", "b", (msg("a", "b", 1),))]
    assert indexes(inbox["b"]) == [1]
    assert network.idle


class Echo(Recorder):
    """Answers every message at once, from inside the delivery."""

    def __init__(self, transport: MemoryTransport) -> None:
        super().__init__()
        self.transport = transport

    def on_message(self, message: Message) -> None:
        super().on_message(message)
        self.transport.send([msg(message.dst, message.src, message.index + 100)])


def test_replies_sent_during_a_round_wait_for_the_next_round() -> None:
    network = MemoryNetwork()
    t, inbox = start(network, "a")
    b = MemoryTransport(network)
    b.start("b", Echo(b))
    b.update_peers({"a": "a"})
    t["a"].update_peers({"b": "b"})
    t["a"].send([msg("a", "b", 1)])
    assert len(network.deliver()) == 1
    assert inbox["a"].messages == [] and len(network.pending) == 1
    network.deliver()
    assert indexes(inbox["a"]) == [101]


def test_deliver_max_count_takes_the_oldest_frames() -> None:
    network = MemoryNetwork()
    t, inbox = start(network, "a", "b")
    for i in range(5):
        t["a"].send([msg("a", "b", i)])
    assert len(network.deliver(max_count=2)) == 2
    assert indexes(inbox["b"]) == [0, 1]
    assert len(network.pending) == 3


def test_deliver_one_delivers_any_pending_frame_even_a_delayed_one() -> None:
    network = MemoryNetwork(delay=5)
    t, inbox = start(network, "a", "b")
    for i in range(3):
        t["a"].send([msg("a", "b", i)])
    assert network.deliver_one(2) == Frame("a", "b", (msg("a", "b", 2),))
    assert network.deliver_one(0) == Frame("a", "b", (msg("a", "b", 0),))
    assert indexes(inbox["b"]) == [2, 0]
    assert network.pending == (Frame("a", "b", (msg("a", "b", 1),)),)


def test_handler_exceptions_propagate_out_of_deliver() -> None:
    class Broken(Recorder):
        def on_message(self, message: Message) -> None:
            raise RuntimeError("handler bug")

    network = MemoryNetwork()
    a, b = MemoryTransport(network), MemoryTransport(network)
    a.start("a", Recorder())
    b.start("b", Broken())
    a.update_peers({"b": "b"})
    a.send([msg("a", "b")])
    with pytest.raises(RuntimeError, match="handler bug"):
        network.deliver()


def test_a_handler_that_closes_its_transport_hears_no_more_of_the_batch() -> None:
    class CloseOnFirst(Recorder):
        def __init__(self, transport: MemoryTransport) -> None:
            super().__init__()
            self.transport = transport

        def on_message(self, message: Message) -> None:
            super().on_message(message)
            self.transport.close()

    network = MemoryNetwork()
    t, _ = start(network, "a")
    b = MemoryTransport(network)
    handler = CloseOnFirst(b)
    b.start("b", handler)
    t["a"].update_peers({"b": "b"})
    t["a"].send([msg("a", "b", i) for i in range(3)])
    network.deliver()
    assert indexes(handler) == [0]


# -- snapshots ----------------------------------------------------------------------


def test_snapshot_travels_as_one_frame_with_its_chunk_boundaries() -> None:
    network = MemoryNetwork()
    t, inbox = start(network, "a", "b")
    chunks = [b"one", b"", b"three"]
    t["a"].send_snapshot(snapshot_message("a", "b"), iter(chunks))
    assert network.pending == (Frame("a", "b", (snapshot_message("a", "b"),), tuple(chunks)),)
    network.deliver()
    assert inbox["b"].snapshots == [(snapshot_message("a", "b"), tuple(chunks))]
    assert inbox["a"].statuses == [("b", True)]


def test_snapshot_outcome_is_never_reported_inside_send_snapshot() -> None:
    network = MemoryNetwork()
    t, inbox = start(network, "a")
    t["a"].send_snapshot(snapshot_message("a", "nobody"), [b"x"])
    assert inbox["a"].statuses == []
    assert not network.idle
    assert network.deliver() == []
    assert inbox["a"].statuses == [("nobody", False)]


def test_a_closed_sender_hears_no_snapshot_outcome() -> None:
    network = MemoryNetwork()
    t, inbox = start(network, "a", "b")
    t["a"].send_snapshot(snapshot_message("a", "b"), [b"x"])
    t["a"].close()
    network.deliver()
    assert len(inbox["b"].snapshots) == 1
    assert inbox["a"].statuses == []


# -- faults ----------------------------------------------------------------------------


def test_drop_all_loses_every_message_and_fails_snapshots() -> None:
    network = MemoryNetwork(drop_rate=1.0)
    t, inbox = start(network, "a", "b")
    t["a"].send([msg("a", "b", i) for i in range(3)])
    t["a"].send_snapshot(snapshot_message("a", "b"), [b"x"])
    assert network.pending == ()
    network.deliver()
    assert inbox["b"].messages == [] and inbox["b"].snapshots == []
    assert inbox["a"].statuses == [("b", False)]


def test_partial_drop_is_reproducible_with_a_seed() -> None:
    def survivors(seed: int) -> list[int]:
        network = MemoryNetwork(seed, drop_rate=0.5)
        t, inbox = start(network, "a", "b")
        for i in range(200):
            t["a"].send([msg("a", "b", i)])
        network.deliver()
        return indexes(inbox["b"])

    kept = survivors(3)
    assert kept == survivors(3)
    assert 50 < len(kept) < 150
    assert kept == sorted(kept)


def test_duplicate_all_delivers_each_frame_twice_but_each_snapshot_once() -> None:
    network = MemoryNetwork(duplicate_rate=1.0)
    t, inbox = start(network, "a", "b")
    t["a"].send([msg("a", "b", 1), msg("a", "b", 2)])
    t["a"].send_snapshot(snapshot_message("a", "b"), [b"x"])
    assert len(network.deliver()) == 3
    assert indexes(inbox["b"]) == [1, 2, 1, 2]
    assert len(inbox["b"].snapshots) == 1
    assert inbox["a"].statuses == [("b", True)]


def test_reorder_shuffles_each_round_reproducibly_with_a_seed() -> None:
    def arrival_order(seed: int) -> list[int]:
        network = MemoryNetwork(seed, reorder=True)
        t, inbox = start(network, "a", "b")
        for i in range(30):
            t["a"].send([msg("a", "b", i)])
        network.deliver()
        return indexes(inbox["b"])

    order = arrival_order(7)
    assert order == arrival_order(7)
    assert sorted(order) == list(range(30))
    assert order != list(range(30))
    assert arrival_order(8) != order


def test_delay_holds_frames_for_that_many_rounds() -> None:
    network = MemoryNetwork(delay=2)
    t, inbox = start(network, "a", "b")
    t["a"].send([msg("a", "b", 1)])
    assert network.deliver() == []
    assert network.deliver() == []
    assert len(network.deliver()) == 1
    assert indexes(inbox["b"]) == [1]


def test_partition_blocks_both_ways_until_healed() -> None:
    network = MemoryNetwork()
    t, inbox = start(network, "n1", "n2", "n3")

    def exchange() -> None:
        t["n1"].send([msg("n1", "n2", 1), msg("n1", "n3", 2)])
        t["n3"].send([msg("n3", "n1", 3)])
        network.deliver()

    network.partition(["n1", "n2"], "n3")
    exchange()
    assert indexes(inbox["n2"]) == [1]
    assert inbox["n3"].messages == [] and inbox["n1"].messages == []
    network.heal()
    exchange()
    assert indexes(inbox["n2"]) == [1, 1]
    assert indexes(inbox["n3"]) == [2]
    assert indexes(inbox["n1"]) == [3]


def test_partition_loses_frames_already_in_flight() -> None:
    network = MemoryNetwork()
    t, inbox = start(network, "a", "b")
    t["a"].send([msg("a", "b", 1)])
    t["a"].send_snapshot(snapshot_message("a", "b"), [b"x"])
    network.partition("a", "b")
    assert network.deliver() == []
    network.heal()
    network.deliver()
    assert inbox["b"].messages == [] and inbox["b"].snapshots == []
    assert inbox["a"].statuses == [("b", False)]


def test_cut_blocks_one_direction_only() -> None:
    network = MemoryNetwork()
    t, inbox = start(network, "a", "b")
    network.cut("a", "b")
    t["a"].send([msg("a", "b", 1)])
    t["b"].send([msg("b", "a", 2)])
    network.deliver()
    assert inbox["b"].messages == []
    assert indexes(inbox["a"]) == [2]


def test_isolate_cuts_a_node_off_from_everyone_including_later_nodes() -> None:
    network = MemoryNetwork()
    t, inbox = start(network, "a", "b", "c")
    network.isolate("c")
    late, late_inbox = start(network, "d")
    late["d"].update_peers({"c": "c"})
    t["a"].send([msg("a", "b", 1), msg("a", "c", 2)])
    t["c"].send([msg("c", "a", 3), msg("c", "d", 4)])
    late["d"].send([msg("d", "c", 5)])
    network.deliver()
    assert indexes(inbox["b"]) == [1]
    assert not inbox["c"].heard_anything and not inbox["a"].heard_anything
    assert not late_inbox["d"].heard_anything
    network.heal()
    t["a"].send([msg("a", "c", 6)])
    network.deliver()
    assert indexes(inbox["c"]) == [6]


def test_frames_to_unknown_or_closed_nodes_vanish() -> None:
    network = MemoryNetwork()
    t, inbox = start(network, "a", "b")
    t["a"].update_peers({"b": "b", "ghost": "ghost"})
    t["a"].send([msg("a", "ghost")])
    assert network.pending == ()
    t["a"].send([msg("a", "b", 1)])
    t["a"].send_snapshot(snapshot_message("a", "b"), [b"x"])
    t["b"].close()
    assert network.deliver() == []
    assert inbox["b"].messages == []
    assert inbox["a"].statuses == [("b", False)]


def test_a_node_restarted_under_its_name_receives_frames_in_flight() -> None:
    network = MemoryNetwork()
    t, _ = start(network, "a", "b")
    t["a"].send([msg("a", "b", 1)])
    t["b"].close()
    reborn, reborn_inbox = start(network, "b")
    network.deliver()
    assert indexes(reborn_inbox["b"]) == [1]


def test_start_under_a_taken_name_or_after_close_raises() -> None:
    network = MemoryNetwork()
    start(network, "a")
    with pytest.raises(TransportError, match="already started"):
        MemoryTransport(network).start("a", Recorder())
    closed = MemoryTransport(network)
    closed.close()
    with pytest.raises(TransportError, match="after close"):
        closed.start("z", Recorder())


def test_memory_links_count_as_authenticated() -> None:
    assert MemoryTransport(MemoryNetwork()).authenticated is True


# -- auto-deliver mode -------------------------------------------------------------------


def test_auto_deliver_goes_through_each_receivers_dispatcher() -> None:
    network = MemoryNetwork(auto_deliver=True)
    loop_a: list[Callable[[], object]] = []
    loop_b: list[Callable[[], object]] = []
    a, b = (
        MemoryTransport(network, dispatcher=loop_a.append),
        MemoryTransport(network, dispatcher=loop_b.append),
    )
    inbox_a, inbox_b = Recorder(), Recorder()
    a.start("a", inbox_a)
    b.start("b", inbox_b)
    a.update_peers({"b": "b"})
    a.send([msg("a", "b", 1)])
    a.send_snapshot(snapshot_message("a", "b"), [b"x"])
    assert network.pending == () and loop_a == [] and len(loop_b) == 2
    for delivery in loop_b:
        delivery()
    assert indexes(inbox_b) == [1] and len(inbox_b.snapshots) == 1
    assert inbox_a.statuses == [] and len(loop_a) == 1
    loop_a[0]()
    assert inbox_a.statuses == [("b", True)]


def test_auto_deliver_applies_drops_and_blocked_links() -> None:
    network = MemoryNetwork(auto_deliver=True, drop_rate=1.0)
    t, inbox = start(network, "a", "b")
    t["a"].send([msg("a", "b", 1)])
    network.drop_rate = 0.0
    network.cut("a", "b")
    t["a"].send([msg("a", "b", 2)])
    network.heal()
    t["a"].send([msg("a", "b", 3)])
    assert indexes(inbox["b"]) == [3]


def test_auto_deliver_checks_the_link_again_on_arrival() -> None:
    network = MemoryNetwork(auto_deliver=True)
    deferred: list[Callable[[], object]] = []
    a, b = MemoryTransport(network), MemoryTransport(network, dispatcher=deferred.append)
    inbox_b = Recorder()
    a.start("a", Recorder())
    b.start("b", inbox_b)
    a.update_peers({"b": "b"})
    a.send([msg("a", "b", 1)])
    network.isolate("b")
    deferred.pop()()
    assert inbox_b.messages == []
