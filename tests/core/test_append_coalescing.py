"""A leader sends what was proposed since its last Ready together
(``Raft.send_due_appends``, issue 13): one append per follower for all the
proposals of a Ready, more only where the per-message limits need them,
instead of one append (and one reply) per proposal. Judged by the messages
the core emits; the driver is ``tests/core/conftest.py``."""

from __future__ import annotations

from raftkit.core.types import Entry, EntryKind, Message, MessageType

MT = MessageType


def appends_to(msgs: list[Message], dst: str) -> list[Message]:
    return [m for m in msgs if m.type is MT.APPEND and m.dst == dst]


def forwarded(src: str, term: int, *commands: bytes) -> Message:
    entries = tuple(Entry(0, 0, EntryKind.NORMAL, c) for c in commands)
    return Message(MT.PROPOSE, src, "a", term=term, entries=entries)


def test_the_proposals_of_one_ready_reach_each_follower_in_one_append(net):
    net.elect("a")
    net.stabilize()
    term, last = net.term("a"), net.stores["a"].last_index()
    net.step(forwarded("b", term, b"from-b"))  # as a read of forwarded proposals arrives
    net.step(forwarded("c", term, b"from-c-1", b"from-c-2"))
    net["a"].propose(b"local")
    rd = net.ready("a")
    for follower in "bc":
        [append] = appends_to(rd.messages, follower)
        assert append.index == last
        assert [e.index for e in append.entries] == list(range(last + 1, last + 5))
        assert [e.data for e in append.entries] == [b"from-b", b"from-c-1", b"from-c-2", b"local"]
    replies = [m for m in net.stabilize() if m.type is MT.APPEND_RESP and m.index == last + 4]
    assert sorted(m.src for m in replies) == ["b", "c"]  # one answer each for all four
    assert net.commit("b") == net.commit("c") == last + 4


def test_more_than_one_message_holds_still_goes_out_in_one_ready(make_net):
    """Past max_bytes_per_msg the leader sends several appends at once (up to
    its window), not one per round trip."""
    net = make_net(max_bytes_per_msg=250)
    net.elect("a")
    net.stabilize()
    last = net.stores["a"].last_index()
    for n in range(6):
        net["a"].propose(bytes([n]) * 100)
    rd = net.ready("a")
    to_b = appends_to(rd.messages, "b")
    assert len(to_b) >= 3 and all(sum(len(e.data) for e in m.entries) <= 250 for m in to_b)
    assert [e.index for m in to_b for e in m.entries] == list(range(last + 1, last + 7))
    net.stabilize()
    net.tick("a")  # b proposed nothing: it learns the commit index at the leader's tick
    net.stabilize()
    assert net.commit("b") == last + 6


def test_a_leader_deposed_before_its_ready_sends_nothing_it_had_proposed(net):
    net.elect("a")
    net.stabilize()
    term = net.term("a")
    net["a"].propose(b"x")
    net.step(Message(MT.APPEND, "b", "a", term=term + 1, index=0, log_term=0))  # a newer leader
    rd = net.ready("a")
    assert [m for m in rd.messages if m.type is MT.APPEND] == []
