"""Commit notices (``COMMIT_NOTICE``, issue 13): when the commit index moves,
the leader tells followers in steady replication with an empty APPEND they
need not answer, since their answers to the appends already sent say what
an answer would. Judged by the messages each core emits and by what the
leader learns (``status()``) and commits; the driver is ``tests/core/conftest.py``."""

from __future__ import annotations

from raftkit.core.types import COMMIT_NOTICE, Message, MessageType

MT = MessageType


def notices(msgs: list[Message]) -> list[Message]:
    return [m for m in msgs if m.type is MT.APPEND and m.context == COMMIT_NOTICE]


def settled(net) -> None:  # noqa: ANN001 - the conftest Net
    net.elect("a")
    net.stabilize()


def test_a_commit_goes_out_as_notices_that_followers_do_not_answer(net):
    settled(net)
    index = net["a"].propose(b"x")
    net.deliver()  # the entry to b and c
    net.deliver()  # their answers: a commits and tells them
    sent = net.deliver()  # the notices reach b and c
    assert sorted(m.dst for m in notices(sent)) == ["b", "c"]
    assert all(not m.entries and m.commit == index for m in notices(sent))
    net.flush()
    assert [m for m in net.pending if m.type is MT.APPEND_RESP] == []  # nobody answers them
    assert net.commit("b") == net.commit("c") == index
    assert [e.data for e in net.applied["b"]][-1:] == [b"x"]
    assert net.stabilize() == []  # and nothing else was owed


def test_a_notice_a_follower_cannot_match_is_rejected_and_repaired(net):
    settled(net)
    index = net["a"].propose(b"x")
    net.deliver(keep=lambda m: m.dst != "c")  # c never gets the entry
    net.deliver()  # b's answer commits; c still gets a notice ...
    net.flush()
    assert [m.dst for m in notices(net.pending)] == ["b", "c"]
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
    index = net["a"].propose(b"x")
    net.deliver()  # the entry reaches b and c
    net.deliver(keep=lambda m: m.src != "c")  # c's answer is lost; b's commits
    net.stabilize()  # the notices: c matches silently
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
    index = net["a"].propose(b"x")
    net.deliver()
    net.deliver()
    net.flush()
    [notice] = notices([m for m in net.pending if m.dst == "b"])
    answer = Message(MT.APPEND_RESP, "b", "a", term=notice.term, index=notice.index,
                     commit=notice.reject_hint)  # echoes the request number
    net.step(answer)
    assert not net["a"].has_ready() or net.ready("a").messages == []
    assert net.commit("a") == index and net.peer("a", "b").match == index


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
