"""Commit notices (``COMMIT_NOTICE``, issue 13): when the commit index moves,
the leader tells at once, with an empty APPEND they need not answer, the
followers in steady replication whose own forwarded commands it covers
(their callers wait for them to apply there); the others learn it with
their next append or at the leader's next tick. Their answers to the
appends already sent say what an answer would. Judged by the messages each
core emits and by what the leader learns (``status()``) and commits; the
driver is ``tests/core/conftest.py``."""

from __future__ import annotations

from raftkit.core.types import COMMIT_NOTICE, Message, MessageType

MT = MessageType


def notices(msgs: list[Message]) -> list[Message]:
    return [m for m in msgs if m.type is MT.APPEND and m.context == COMMIT_NOTICE]


def settled(net) -> None:  # noqa: ANN001 - the conftest Net
    net.elect("a")
    net.stabilize()


def forwarded_by(net, node: str, data: bytes) -> int:  # noqa: ANN001
    """``node`` forwards a command; the leader ``a`` appends it: its index."""
    net[node].forward([data])
    net.deliver()  # the proposal reaches a
    net.flush()
    return net.stores["a"].last_index()


def test_a_commit_is_told_at_once_to_the_follower_whose_command_it_holds(net):
    settled(net)
    index = forwarded_by(net, "b", b"from-b")
    net.deliver()  # the entry to b and c
    net.deliver()  # their answers: a commits and tells b, whose caller waits
    sent = net.deliver()
    assert [m.dst for m in notices(sent)] == ["b"]
    assert all(not m.entries and m.commit == index for m in notices(sent))
    net.flush()
    assert [m for m in net.pending if m.type is MT.APPEND_RESP] == []  # b does not answer it
    assert net.commit("b") == index and [e.data for e in net.applied["b"]][-1:] == [b"from-b"]
    assert net.commit("c") < index  # c proposed nothing: it is not woken for this commit
    assert net.stabilize() == []


def test_a_follower_not_told_at_once_learns_the_commit_at_the_next_tick(make_net):
    net = make_net(heartbeat_tick=3)
    settled(net)
    index = net["a"].propose(b"x")  # the leader's own command: no follower waits for it
    net.stabilize()
    assert net.commit("a") == index
    assert net.commit("b") < index and net.commit("c") < index
    net.tick("a")  # no heartbeat due at this tick: the commit index goes out as notices
    out = net.stabilize()
    assert not [m for m in out if m.type is MT.HEARTBEAT]
    assert sorted(m.dst for m in notices(out)) == ["b", "c"]
    assert net.commit("b") == net.commit("c") == index
    assert not [m for m in out if m.type is MT.APPEND_RESP and m.index == index]  # notices go unanswered
    net.tick("a")
    assert net.stabilize() == []  # told once


def test_a_heartbeat_that_carries_the_commit_index_needs_no_notice_beside_it(net):
    settled(net)
    index = net["a"].propose(b"x")
    net.stabilize()
    net.tick("a")  # heartbeat_tick=1: the heartbeats carry the commit index
    out = net.stabilize()
    assert sorted(m.dst for m in out if m.type is MT.HEARTBEAT) == ["b", "c"]
    assert notices(out) == []
    assert net.commit("b") == net.commit("c") == index


def test_a_notice_a_follower_cannot_match_is_rejected_and_repaired(net):
    settled(net)
    index = forwarded_by(net, "c", b"from-c")
    net.deliver(keep=lambda m: m.dst != "c")  # c never gets the entry
    net.deliver()  # b's answer commits; c, whose command it is, gets a notice ...
    net.flush()
    assert [m.dst for m in notices(net.pending)] == ["c"]
    out = net.stabilize()
    rejects = [m for m in out if m.type is MT.APPEND_RESP and m.src == "c" and m.reject]
    assert rejects  # ... which it cannot match: it says so
    assert net.log_terms("c") == net.log_terms("a")
    assert net.commit("c") == index


def test_a_lost_answer_is_learned_from_a_heartbeat_round_not_a_notice(net):
    """c holds the entry but its answer is lost, and its notice is silent:
    the leader learns c's match from the append a heartbeat's reply prompts,
    which asks for an answer (without one, c would look behind for good)."""
    settled(net)
    index = forwarded_by(net, "c", b"from-c")
    net.deliver()  # the entry reaches b and c
    net.deliver(keep=lambda m: m.src != "c")  # c's answer is lost; b's commits
    net.stabilize()  # c's notice: c matches silently
    assert net.commit("c") == index
    assert net.peer("a", "c").match < index  # the leader does not know yet
    net.tick("a")  # heartbeat_tick=1
    out = net.stabilize()
    assert not notices([m for m in out if m.dst == "c"])  # the repair asks for an answer
    assert net.peer("a", "c").match == index


def test_an_answer_to_a_notice_from_an_earlier_release_changes_nothing(net):
    """Earlier releases ignore the marker and answer: the leader takes the
    answer as the duplicate it is."""
    settled(net)
    index = forwarded_by(net, "b", b"from-b")
    net.deliver()
    net.deliver()
    net.flush()
    [notice] = notices([m for m in net.pending if m.dst == "b"])
    answer = Message(MT.APPEND_RESP, "b", "a", term=notice.term, index=notice.index,
                     commit=notice.reject_hint)  # echoes the request number
    net.step(answer)
    assert not net["a"].has_ready() or net.ready("a").messages == []
    assert net.commit("a") == index and net.peer("a", "b").match == index


def test_a_follower_asking_for_a_read_index_is_told_the_commit_first(net):
    """A follower's linearizable read waits to apply up to the read's index:
    the leader tells it the commit index with the answer, even when the
    heartbeat round that confirmed the read did not reach it."""
    settled(net)
    index = net["a"].propose(b"x")  # nobody is told at once
    net.stabilize()
    assert net.commit("b") < index
    net["b"].read_index(b"read-1")
    out = net.stabilize(keep=lambda m: not (m.type is MT.HEARTBEAT and m.dst == "b"))
    to_b = [m for m in out if m.dst == "b" and m.type in (MT.APPEND, MT.READ_INDEX_RESP)]
    assert [m.type for m in to_b] == [MT.APPEND, MT.READ_INDEX_RESP] and to_b[0].context == COMMIT_NOTICE
    assert [(r.index, r.context) for r in net.read_states["b"]] == [(index, b"read-1")]
    assert net.commit("b") >= index


def test_a_recovering_follower_answers_even_a_notice_it_matches(net):
    """A node waiting to be readmitted must keep telling the leader so (its
    answers carry ``recovering``), even to an append it need not answer."""
    settled(net)
    index = net["a"].propose(b"x")
    net.stabilize()
    net.start("c", net.stores["c"], seed=2, recovering=True)  # restarted, told it lost its state
    net.step(
        Message(MT.APPEND, "a", "c", term=net.term("a"), index=index, log_term=net.term("a"),
                commit=index, context=COMMIT_NOTICE, reject_hint=99)
    )
    rd = net.ready("c")
    [answer] = [m for m in rd.messages if m.type is MT.APPEND_RESP]
    assert answer.recovering and not answer.reject and answer.index == index
