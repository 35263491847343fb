"""Messages a hostile or broken peer may send, fed straight into the core:
terms and indexes beyond the bounds are refused explicitly (and change
nothing), and messages from non-members never change state
(raftkit.core.bounds, raftkit.core.admission)."""

from __future__ import annotations

import dataclasses

import pytest

from raftkit.core.bounds import CEILING, MAX_INDEX, MAX_TERM, OutOfBoundsError
from raftkit.core.membership import encode_change
from raftkit.core.raft import TRANSFER_CONTEXT
from raftkit.core.types import ConfState, Entry, HardState, Message, MessageType, Role, SnapshotMeta
from raftkit.errors import CodecError
from raftkit.serializers import wire
from raftkit.storage.memory import MemoryLogStore

MT = MessageType


def elected(make_net):
    """a leads a, b, c; its no-op is committed everywhere."""
    net = make_net()
    net.elect("a")
    net.tick("a")
    net.stabilize()
    return net


def snapshot_of(net, node_id):
    """What a peer could observe of ``node_id``: hard state, role, leader, log."""
    node = net[node_id]
    store = net.stores[node_id]
    return (node.hard_state, node.soft_state, store.last_index(), net.log_terms(node_id))


# -- bounds ------------------------------------------------------------------------------

BEYOND = [
    ("term", lambda m: dataclasses.replace(m, term=CEILING + 1)),
    ("term", lambda m: dataclasses.replace(m, term=2**64 - 1)),
    ("log_term", lambda m: dataclasses.replace(m, log_term=CEILING + 1)),
    ("index", lambda m: dataclasses.replace(m, index=MAX_INDEX + 1)),
    ("commit", lambda m: dataclasses.replace(m, commit=CEILING + 1)),
    ("reject_hint", lambda m: dataclasses.replace(m, reject_hint=MAX_INDEX + 1)),
    ("entry", lambda m: dataclasses.replace(m, entries=(Entry(MAX_INDEX + 1, 1),))),
    ("entry", lambda m: dataclasses.replace(m, entries=(Entry(3, CEILING + 1),))),
    ("snapshot", lambda m: dataclasses.replace(m, snapshot=SnapshotMeta(MAX_INDEX + 1, 1, ConfState({"a"})))),
    ("snapshot", lambda m: dataclasses.replace(m, snapshot=SnapshotMeta(5, CEILING + 1, ConfState({"a"})))),
]


@pytest.mark.parametrize(("field", "forge"), BEYOND, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BEYOND)])
@pytest.mark.parametrize("mtype", [MT.APPEND, MT.HEARTBEAT, MT.APPEND_RESP, MT.VOTE])
def test_a_field_beyond_the_bounds_is_refused_and_changes_nothing(make_net, field, forge, mtype) -> None:
    net = elected(make_net)
    base = Message(mtype, "a" if mtype in (MT.APPEND, MT.HEARTBEAT) else "c", "b", term=net.term("b") + 1)
    before = snapshot_of(net, "b")
    with pytest.raises(OutOfBoundsError, match=field):
        net["b"].step(forge(base))
    assert snapshot_of(net, "b") == before
    assert not net["b"].has_ready()


def test_one_frame_with_a_huge_term_no_longer_stops_the_cluster(make_net) -> None:
    """The original attack: an APPEND_RESP with term 2**64 - 1 to the
    leader. Refused; the cluster keeps committing."""
    net = elected(make_net)
    with pytest.raises(OutOfBoundsError):
        net["a"].step(Message(MT.APPEND_RESP, "b", "a", term=2**64 - 1))
    index = net["a"].propose(b"x")
    net.stabilize()
    assert net.commit("a") >= index and net.role("a") is Role.LEADER


def test_terms_beyond_max_term_are_taken_only_one_step_at_a_time(make_net) -> None:
    stores = {i: MemoryLogStore() for i in "abc"}
    for store in stores.values():
        store.save(HardState(term=MAX_TERM), [])
    net = make_net(stores=stores)
    with pytest.raises(OutOfBoundsError, match="more than one above"):
        net["b"].step(Message(MT.HEARTBEAT, "stranger", "b", term=MAX_TERM + 2))
    assert net.term("b") == MAX_TERM
    # From a member, the message is dropped but the term rises by one only
    net["b"].step(Message(MT.HEARTBEAT, "a", "b", term=MAX_TERM + 50))
    assert net.term("b") == MAX_TERM + 1 and net["b"].raft.lead is None
    net.elect("c")  # elections go on above MAX_TERM (each adds one term)
    assert MAX_TERM < net.term("c") <= MAX_TERM + 2
    index = net["c"].propose(b"x")
    net.stabilize()
    net.tick("c")  # followers that proposed nothing learn the commit index at the leader's tick
    net.stabilize()
    assert all(net.commit(i) >= index for i in "abc")


def test_a_node_at_the_ceiling_refuses_to_campaign_instead_of_wrapping(make_net) -> None:
    store = MemoryLogStore()
    store.save(HardState(term=CEILING), [])
    net = make_net(stores={"a": store})
    with pytest.raises(ValueError, match="cannot campaign"):
        net["a"].campaign()
    net.tick("a", 100)  # its election timer fires many times
    assert net.term("a") == CEILING and net.role("a") is not Role.CANDIDATE
    assert not net.of(net.pending, MT.VOTE) and not net.of(net.pending, MT.PRE_VOTE)


@pytest.mark.parametrize(
    "field", ["term", "log_term", "index", "commit", "reject_hint"]
)
def test_the_wire_decoder_refuses_counters_beyond_the_ceiling(field) -> None:
    message = dataclasses.replace(Message(MT.APPEND, "a", "b"), **{field: 2**64 - 1})
    with pytest.raises(CodecError, match=field):
        wire.decode_message(wire.encode_message(message))
    fine = dataclasses.replace(Message(MT.APPEND, "a", "b"), **{field: CEILING})
    assert wire.decode_message(wire.encode_message(fine)) == fine


def test_the_wire_decoder_refuses_entries_and_snapshots_beyond_the_ceiling() -> None:
    for message in (
        Message(MT.APPEND, "a", "b", entries=(Entry(2**64 - 1, 1),)),
        Message(MT.APPEND, "a", "b", entries=(Entry(1, CEILING + 1),)),
        Message(MT.SNAPSHOT, "a", "b", snapshot=SnapshotMeta(2**64 - 1, 1, ConfState({"a"}))),
    ):
        with pytest.raises(CodecError, match="exceeds|index|term"):
            wire.decode_message(wire.encode_message(message))
    with pytest.raises(CodecError, match="term"):
        wire.decode_hard_state(wire.encode_hard_state(HardState(term=2**64 - 1)))


# -- non-members -----------------------------------------------------------------------------


def test_a_proposal_from_a_non_member_is_not_appended(make_net) -> None:
    net = elected(make_net)
    last = net.stores["a"].last_index()
    net["a"].step(Message(MT.PROPOSE, "evil", "a", term=net.term("a"), entries=(Entry(0, 0, data=b"pwn"),)))
    net.stabilize()
    assert net.stores["a"].last_index() == last
    # ... nor forwarded by a follower (which would launder its origin)
    net["b"].step(Message(MT.PROPOSE, "evil", "b", term=net.term("b"), entries=(Entry(0, 0, data=b"pwn"),)))
    net.flush()
    assert not net.of(net.pending, MT.PROPOSE)
    # a member's proposal still goes through
    net["b"].step(Message(MT.PROPOSE, "c", "b", term=net.term("b"), entries=(Entry(0, 0, data=b"ok"),)))
    net.stabilize()
    assert net.stores["a"].last_index() == last + 1


@pytest.mark.parametrize("at", ["a", "b"])  # the leader, or a follower that would forward it
def test_a_membership_change_from_a_non_member_is_refused(make_net, at) -> None:
    net = elected(make_net)
    last = net.stores["a"].last_index()
    for request in (encode_change("remove", "c"), encode_change("add_voter", "evil", "1.2.3.4:5")):
        net[at].step(Message(MT.CONF_CHANGE, "evil", at, term=net.term(at), context=request))
        net.stabilize()
    assert net.stores["a"].last_index() == last
    assert net["a"].raft.conf.voters == frozenset("abc")


@pytest.mark.parametrize("authenticated", [True, False])
def test_a_joining_node_may_ask_to_add_itself_only_over_authenticated_links(make_net, authenticated) -> None:
    net = make_net(accept_join_requests=authenticated)
    net.elect("a")
    net.tick("a")
    net.stabilize()
    request = encode_change("add_learner", "d", "10.0.0.4:1")
    net["b"].step(Message(MT.CONF_CHANGE, "d", "b", term=0, context=request))  # via a follower
    net.stabilize()
    assert ("d" in net["a"].raft.conf.learners) is authenticated
    # Never anything else, authenticated or not.
    net["a"].step(Message(MT.CONF_CHANGE, "e", "a", term=0, context=encode_change("add_learner", "f", "x:1")))
    net.stabilize()
    assert "f" not in net["a"].raft.conf.members


def test_reads_and_transfers_from_a_non_member_are_ignored(make_net) -> None:
    net = elected(make_net)
    term = net.term("a")
    net["a"].step(Message(MT.READ_INDEX, "evil", "a", term=term, context=b"r1"))
    net["a"].step(Message(MT.TRANSFER_LEADER, "evil", "a", term=term, context=b"b"))
    out = net.stabilize()
    assert not net.of(out, MT.READ_INDEX_RESP) and not net.of(out, MT.TIMEOUT_NOW)
    assert net.role("a") is Role.LEADER and net["a"].raft.lead_transferee is None


@pytest.mark.parametrize(
    "mtype", [MT.APPEND_RESP, MT.HEARTBEAT_RESP, MT.VOTE_RESP, MT.PRE_VOTE_RESP, MT.READ_INDEX_RESP]
)
def test_a_reply_from_a_non_member_changes_nothing(make_net, mtype) -> None:
    net = elected(make_net)
    for node_id in "ab":  # the leader and a follower
        before = snapshot_of(net, node_id)
        term = net.term(node_id) + 7
        net[node_id].step(Message(mtype, "evil", node_id, term=term, index=10**6, reject=True))
        assert snapshot_of(net, node_id) == before
        assert not net[node_id].has_ready()


def test_a_forced_vote_from_a_non_member_cannot_depose_the_leader(make_net) -> None:
    net = elected(make_net)
    term, forced = net.term("a"), TRANSFER_CONTEXT
    for node_id in "abc":
        last = net.stores[node_id].last_index()
        net[node_id].step(
            Message(MT.VOTE, "evil", node_id, term=term + 1, index=last + 5, log_term=term, context=forced)
        )
        assert net.term(node_id) == term
    assert net.role("a") is Role.LEADER
    net["a"].propose(b"still leading")
    net.stabilize()
    assert net.role("a") is Role.LEADER and net.term("a") == term
