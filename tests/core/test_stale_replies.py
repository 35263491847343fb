"""Nothing a node said before it lost its state may change what a leader
believes after the wipe (issue 10, items 1 and 2).

The simulator schedules are the repro scripts of ``repro/core/a_*`` and
``b_*`` turned into fixed regression tests: messages are held back and
delivered late by hand, and the simulator checks election safety, leader
completeness and state machine safety after every step. The unit tests
below them drive one core message by message and judge by what it emits
(commit indexes, heartbeats, ``status()``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from raftkit.core.types import Message, MessageType, Role
from raftkit.testing.sim import Envelope, SimCluster

MT = MessageType
Pred = Callable[[Message], bool]


# -- driving the simulator message by message ---------------------------------------------


def deliver_where(c: SimCluster, pred: Pred, max_loops: int = 200) -> None:
    """Deliver matching messages (including ones they cause), bounded."""
    for _ in range(max_loops):
        idx = [i for i, env in enumerate(c.inflight) if pred(env.msg)]
        if not idx:
            return
        c.deliver(idx[0])
    raise AssertionError("messages kept coming")


def hold(c: SimCluster, pred: Pred) -> list[Envelope]:
    held = [env for env in c.inflight if pred(env.msg)]
    c.inflight = [env for env in c.inflight if not pred(env.msg)]
    return held


def drop_where(c: SimCluster, pred: Pred) -> None:
    c.inflight = [env for env in c.inflight if not pred(env.msg)]


def between(a: str, b: str) -> Pred:
    return lambda m: {m.src, m.dst} == {a, b}


def raft(c: SimCluster, node: str):  # noqa: ANN201 - RawNode Status: role, term, peers
    raw = c.nodes[node].raw
    assert raw is not None
    return raw.status()


def holds_rejoin_marker(c: SimCluster, node: str, of: str) -> bool:
    """``node``'s log holds a rejoin marker for ``of`` (raftkit.core.recovery)."""
    store = c.nodes[node].store
    entries = store.entries(store.first_index(), store.last_index() + 1)
    return any(e.data.startswith(b"rejoin\0") and e.data.endswith(b"\0" + of.encode()) for e in entries)


def lost_acked(c: SimCluster, node: str) -> list[bytes]:
    """Acknowledged proposals that ``node``'s durable log does not hold."""
    store = c.nodes[node].store
    lost = []
    for p in c.proposals.values():
        if not p.acked:
            continue
        held = None
        if store.first_index() <= p.index <= store.last_index():
            held = store.entries(p.index, p.index + 1)[0]
        if held is None or (held.term, held.data) != (p.term, p.data):
            lost.append(p.data)
    return sorted(lost)


def n1_leads_with_a_delayed_answer_from_n3() -> tuple[SimCluster, list[Envelope]]:
    """n1 leads term 1 with two writes everywhere; n3's answer to one of its
    heartbeats is held back (to be delivered after n3 loses its state)."""
    c = SimCluster(3, seed=3, election_tick=5)
    c.campaign("n1")
    c.deliver_all()
    assert c.leader() == "n1"
    for i in range(2):
        c.propose("n1", f"base{i}".encode())
    c.deliver_all()
    c.tick("n1")
    c.deliver_all()
    c.tick("n1")
    deliver_where(c, lambda m: m.src == "n1" and m.type is MT.HEARTBEAT)
    stale = hold(c, lambda m: m.src == "n3" and m.dst == "n1" and m.type is MT.HEARTBEAT_RESP)
    c.deliver_all()
    assert len(stale) == 1 and not stale[0].msg.recovering
    return c, stale


def test_a_late_reply_from_before_a_wipe_does_not_make_the_leader_count_the_node() -> None:
    """repro core/b: n3 votes for n2 (the grant is delayed), loses its state;
    n1 learns that, then n3's pre-wipe answer arrives. n1 must still not
    count n3, or it acknowledges writes held by n1 and the empty n3 only,
    which n2, elected with n3's forgotten vote, lacks."""
    c, stale = n1_leads_with_a_delayed_answer_from_n3()
    # n2 and n3 stop hearing n1; n2 campaigns, n3 grants (the grant is held).
    for _ in range(10):
        c.tick("n3")
        c.tick("n2")
        drop_where(c, lambda m: m.type in (MT.PRE_VOTE, MT.VOTE) and m.src == "n3")
        drop_where(c, lambda m: "n1" in (m.src, m.dst))
        if raft(c, "n2").role is not Role.FOLLOWER:
            break
        drop_where(c, lambda m: m.src == "n2")
    if raft(c, "n2").role is Role.FOLLOWER:
        c.campaign("n2")
    drop_where(c, lambda m: "n1" in (m.src, m.dst))
    deliver_where(
        c, lambda m: m.type in (MT.PRE_VOTE, MT.PRE_VOTE_RESP, MT.VOTE) and {m.src, m.dst} == {"n2", "n3"}
    )
    vote = hold(c, lambda m: m.type is MT.VOTE_RESP and m.src == "n3" and m.dst == "n2" and not m.reject)
    assert vote, "n3 did not grant n2's vote: the schedule no longer applies"
    drop_where(c, lambda m: "n1" in (m.src, m.dst))
    c.cut("n2", "n1")
    c.cut("n1", "n2")
    # n3 loses its state; n1, still leader, hears from it (recovering).
    c.wipe("n3")
    c.restart("n3")
    c.inflight.clear()
    for _ in range(6):
        c.tick("n1")
        c.tick("n3")
        deliver_where(c, between("n1", "n3"))
    assert raft(c, "n1").role is Role.LEADER
    # The pre-wipe answer arrives; then writes that reach only n3.
    c.inflight.extend(stale)
    deliver_where(c, lambda m: m.src == "n3" and m.dst == "n1")
    for data in (b"AFTER-WIPE", b"AFTER-WIPE-2"):
        c.propose("n1", data)
        deliver_where(c, between("n1", "n3"))
        c.tick("n1")
        deliver_where(c, between("n1", "n3"))
    assert not any(p.acked for p in c.proposals.values() if p.data.startswith(b"AFTER-WIPE"))
    # n3's forgotten vote now elects n2: it must lack nothing acknowledged.
    c.inflight.extend(vote)
    deliver_where(c, lambda m: m.dst == "n2" and m.type is MT.VOTE_RESP)
    if raft(c, "n2").role is Role.LEADER:
        assert lost_acked(c, "n2") == []
    c.check_invariants()
    c.heal()
    c.run_until(c.converged, 300)
    c.check_converged_and_durable()


def test_a_late_reply_from_before_a_wipe_is_ignored_after_a_leadership_transfer() -> None:
    """repro core/b2: the same loss through a transfer, every node ticking."""
    c, stale = n1_leads_with_a_delayed_answer_from_n3()
    c.transfer_leadership("n1", "n2")
    deliver_where(c, lambda m: m.type is MT.TIMEOUT_NOW)
    deliver_where(c, lambda m: m.type is MT.VOTE and m.dst == "n3")
    vote = hold(c, lambda m: m.type is MT.VOTE_RESP and m.src == "n3" and not m.reject)
    hold(c, lambda m: "n2" in (m.src, m.dst))
    assert vote, "n3 did not grant n2's forced vote: the schedule no longer applies"
    c.wipe("n3")
    c.restart("n3")
    c.cut("n1", "n2")
    c.cut("n2", "n1")
    for _ in range(40):
        c.tick()
        drop_where(c, lambda m: "n2" in (m.src, m.dst))
        c.deliver_all()
        if raft(c, "n1").role is not Role.LEADER or holds_rejoin_marker(c, "n1", "n3"):
            break
    c.inflight.extend(stale)
    deliver_where(c, lambda m: m.src == "n3" and m.dst == "n1")
    for i in range(2):
        c.propose("n1", f"AFTER-WIPE{i}".encode())
        c.tick()
        c.deliver_all()
    c.inflight.extend(vote)
    deliver_where(c, lambda m: m.dst == "n2" and m.type is MT.VOTE_RESP)
    if raft(c, "n2").role is Role.LEADER:
        assert lost_acked(c, "n2") == []
    c.check_invariants()
    c.heal()
    c.run_until(c.converged, 300)
    c.check_converged_and_durable()


def n3_wiped_holding_a_deposed_leaders_append() -> tuple[SimCluster, str]:
    """repro core/a up to the moment the wiped n3 took n1's late append
    [1/1 no-op, 1/2 command] (never committed); n2 leads term 2 and had
    n3's pre-wipe acknowledgements of four entries of its own."""
    c = SimCluster(3, seed=1, election_tick=5)
    c.campaign("n1")
    votes = (MT.PRE_VOTE, MT.PRE_VOTE_RESP, MT.VOTE, MT.VOTE_RESP)
    deliver_where(c, lambda m: m.type in votes and "n3" not in (m.src, m.dst))
    drop_where(c, lambda m: "n3" in (m.src, m.dst) and m.type in (MT.PRE_VOTE, MT.VOTE))
    assert raft(c, "n1").role is Role.LEADER
    drop_where(c, lambda m: m.src == "n1")
    c.propose("n1", b"OLD-LEADER-CMD")
    drop_where(c, lambda m: m.src == "n1")
    c.tick("n1")
    deliver_where(c, lambda m: m.src == "n1" and m.dst == "n3" and m.type is MT.HEARTBEAT)
    drop_where(c, lambda m: m.src == "n1" and m.dst == "n2")
    deliver_where(c, lambda m: m.src == "n3" and m.dst == "n1")
    late = hold(c, lambda m: m.src == "n1" and m.dst == "n3" and m.type is MT.APPEND)
    assert len(late) == 1 and late[0].msg.index == 0 and len(late[0].msg.entries) == 2
    c.isolate("n1")
    c.inflight.clear()
    for _ in range(12):
        c.tick("n3")
        c.tick("n2")
        drop_where(c, lambda m: "n1" in (m.src, m.dst))
        deliver_where(c, lambda m: "n1" not in (m.src, m.dst))
        if c.leader() in ("n2", "n3") and raft(c, c.leader()).term > 1:
            break
    lead = c.leader()
    assert lead == "n2"
    for i in range(3):
        c.propose(lead, f"NEW{i}".encode())
    deliver_where(c, lambda m: "n1" not in (m.src, m.dst))
    c.tick(lead)
    deliver_where(c, lambda m: "n1" not in (m.src, m.dst))
    assert raft(c, lead).peers["n3"].match >= 4  # the schedule needs a high pre-wipe match
    c.wipe("n3")
    c.restart("n3")
    c.inflight = [e for e in c.inflight if e.msg.dst != "n3"]
    c.heal()
    c.inflight.extend(late)
    deliver_where(c, lambda m: m.src == "n1" and m.dst == "n3")
    drop_where(c, lambda m: m.dst == "n1")
    return c, lead


def test_a_wiped_node_never_applies_entries_the_cluster_did_not_commit() -> None:
    """repro core/a: the real leader's heartbeat carried min(pre-wipe match,
    commit) and made n3 apply n1's never-committed entries."""
    c, lead = n3_wiped_holding_a_deposed_leaders_append()
    c.tick(lead)
    deliver_where(c, between(lead, "n3"))  # invariants checked at every step
    for index, e in c.nodes["n3"].applied.items():
        mine = c.nodes[lead].store.entries(index, index + 1)[0]
        assert (mine.term, mine.data) == (e.term, e.data)
    c.run(20)
    c.check_invariants()


def test_after_a_deposed_leaders_append_the_wiped_node_converges() -> None:
    """repro core/a2: the leader and n3 used to exchange the same appends forever."""
    c, lead = n3_wiped_holding_a_deposed_leaders_append()
    c.tick(lead)
    deliver_where(c, between(lead, "n3"))
    c.heal()
    c.propose(lead, b"NEXT")
    c.run_until(c.converged, 150)
    c.check_converged_and_durable()
    assert b"OLD-LEADER-CMD" not in [e.data for e in c.nodes["n3"].applied.values()]


# -- one core, message by message ---------------------------------------------------------


def wiped(net, node: str, incarnation: bytes = b"new"):  # noqa: ANN001, ANN201 - Net from conftest
    """Restart ``node`` of ``net`` empty and recovering."""
    return net.start(node, net.store_with(), recovering=True, incarnation=incarnation)


def leader_a_with_writes(net) -> None:  # noqa: ANN001
    net.elect("a")
    for i in range(3):
        net["a"].propose(f"w{i}".encode())
    net.stabilize()
    assert net.commit("a") == 4


def test_a_pre_wipe_reply_delivered_late_does_not_let_the_leader_count_the_node(net) -> None:  # noqa: ANN001
    leader_a_with_writes(net)
    net.tick("a")  # heartbeats
    net.flush()
    net.deliver(lambda m: m.type is MT.HEARTBEAT)
    net.flush()
    pre_wipe = [m for m in net.pending if m.src == "c" and m.type is MT.HEARTBEAT_RESP]
    assert len(pre_wipe) == 1 and not pre_wipe[0].recovering
    net.pending.clear()
    net.isolated.add("b")  # commits now need c
    wiped(net, "c")
    for _ in range(3):  # c answers as recovering and catches up; its rejoin marker cannot commit without b
        net.tick("a")
        net.tick("c")
        net.stabilize()
    assert net.commit("a") == 4 and net["c"].status().last_index == 5
    net.step(pre_wipe[0])  # the late answer from before the wipe
    net["a"].propose(b"after")
    net.stabilize()
    net.tick("a")
    net.stabilize()
    assert net.commit("a") == 4, "a counted the wiped c on the strength of a reply from before the wipe"


def test_a_reply_to_a_request_sent_after_the_leader_knew_counts_again(net) -> None:  # noqa: ANN001
    """Readmission still works: once the new incarnation applied its rejoin
    marker, its plain replies count toward commits again."""
    leader_a_with_writes(net)
    wiped(net, "c")
    for _ in range(5):
        net.tick("a")
        net.tick("c")
        net.stabilize()
    assert not net["c"].status().recovering
    net.isolated.add("b")
    net["a"].propose(b"after")
    net.stabilize()
    assert net.commit("a") == net["a"].status().last_index


def test_a_leader_forgets_the_match_of_a_node_that_lost_its_state(net) -> None:  # noqa: ANN001
    leader_a_with_writes(net)
    assert net.peer("a", "c").match == 4
    net.isolated.add("b")
    wiped(net, "c")
    net.tick("a")
    net.flush()
    net.deliver(lambda m: m.type is MT.HEARTBEAT)  # c learns of a, answers recovering
    net.deliver(lambda m: m.type is MT.HEARTBEAT_RESP)
    assert net.peer("a", "c").match == 0
    net.pending.clear()
    net.tick("a")
    net.flush()
    [hb] = [m for m in net.pending if m.type is MT.HEARTBEAT and m.dst == "c"]
    assert hb.commit == 0  # not min(its pre-wipe match 4, commit 4)


def test_a_recovering_follower_takes_no_commit_index_from_a_heartbeat(make_net) -> None:  # noqa: ANN001
    net = make_net()
    c = wiped(net, "c")
    # A deposed leader's late append fills c's empty log; nothing of it is committed.
    entries = tuple(net.log_entries([1, 1]))
    c.step(Message(MT.APPEND, "a", "c", term=1, index=0, log_term=0, entries=entries, commit=0))
    net.ready("c")
    c.step(Message(MT.HEARTBEAT, "b", "c", term=2, commit=2))
    net.ready("c")
    assert net.commit("c") == 0 and net.applied["c"] == []


def test_a_recovering_follower_still_learns_the_commit_from_an_append_it_matched(make_net) -> None:  # noqa: ANN001
    net = make_net()
    c = wiped(net, "c")
    entries = tuple(net.log_entries([2, 2]))
    c.step(Message(MT.APPEND, "b", "c", term=2, index=0, log_term=0, entries=entries, commit=2))
    net.ready("c")
    assert net.commit("c") == 2


# -- acknowledgements beyond the leader's log (issue 10, item 12) ----------------------------


def test_an_ack_beyond_the_leaders_last_index_is_refused(net) -> None:  # noqa: ANN001
    leader_a_with_writes(net)
    net.isolated.update({"b", "c"})
    net["a"].propose(b"only-on-a")
    net.stabilize()
    assert net["a"].status().last_index == 5
    net.step(Message(MT.APPEND_RESP, "b", "a", term=net.term("a"), index=2**40))
    net.flush()
    assert net.peer("a", "b").match == 4
    assert net.commit("a") == 4


# -- liveness after a restart without state (issue 10, item 6) ---------------------------------


def test_check_quorum_does_not_count_a_node_waiting_to_be_readmitted(net) -> None:  # noqa: ANN001
    """b is gone and c answers only as recovering: the leader cannot commit,
    so it must step down instead of leading (and timing out calls) forever."""
    leader_a_with_writes(net)
    net.isolated.add("b")
    wiped(net, "c")
    for _ in range(3 * 10):
        net.tick("a")
        net.stabilize()
        if net.role("a") is not Role.LEADER:
            break
    assert net.role("a") is not Role.LEADER


def test_a_recovering_follower_forgets_a_leader_it_no_longer_hears_from(net) -> None:  # noqa: ANN001
    leader_a_with_writes(net)
    wiped(net, "c")
    net.tick("a")
    net.stabilize()
    assert net["c"].status().leader == "a"
    net.isolated.add("a")
    for _ in range(10):
        net.tick("c")
        net.stabilize()
    assert net["c"].status().leader is None


def test_a_late_reply_from_a_readmitted_incarnation_does_not_readmit_the_next_one(net) -> None:  # noqa: ANN001
    """c is wiped, readmitted, and wiped again before the leader saw any of
    its plain replies; a plain reply of the readmitted incarnation, delivered
    after the second wipe, must not make the leader count the empty c."""
    leader_a_with_writes(net)
    wiped(net, "c", b"first")
    for _ in range(10):
        net.tick("a")
        net.tick("c")
        net.stabilize()
        if not net["c"].status().recovering:
            break
    assert not net["c"].status().recovering  # readmitted (with b's help)
    net.tick("a")
    net.flush()
    net.deliver(lambda m: m.type is MT.HEARTBEAT)
    net.flush()
    [late] = [m for m in net.pending if m.src == "c" and m.type is MT.HEARTBEAT_RESP]
    assert not late.recovering
    net.pending.clear()
    wiped(net, "c", b"second")
    net.isolated.add("b")  # commits now need c
    for _ in range(3):
        net.tick("a")
        net.tick("c")
        net.stabilize()
    before = net.commit("a")
    assert net["a"].status().last_index > before  # c's second rejoin marker waits for b
    net.step(late)
    net["a"].propose(b"after")
    net.stabilize()
    net.tick("a")
    net.stabilize()
    assert net.commit("a") == before, "a counted the empty c because of its former incarnation's reply"


def test_a_late_recovering_reply_of_a_readmitted_incarnation_changes_nothing(net) -> None:  # noqa: ANN001
    """It is merely late: the leader keeps the node's match (no resend of the
    whole log) and keeps counting it."""
    leader_a_with_writes(net)
    wiped(net, "c", b"first")
    net.tick("a")
    net.flush()
    net.deliver(lambda m: m.type is MT.HEARTBEAT)
    net.flush()
    [late] = [m for m in net.pending if m.src == "c" and m.type is MT.HEARTBEAT_RESP]
    assert late.recovering
    for _ in range(10):
        net.tick("a")
        net.tick("c")
        net.stabilize()
    assert not net["c"].status().recovering
    last = net["a"].status().last_index
    assert net.peer("a", "c").match == last
    net.step(late)
    net.flush()
    assert net.peer("a", "c").match == last
    net.isolated.add("b")
    net["a"].propose(b"after")
    net.stabilize()
    assert net.commit("a") == last + 1


def test_a_recovering_node_without_an_incarnation_still_catches_up(net) -> None:  # noqa: ANN001
    """Each of its replies must not count as news of another wipe (which
    would drop every reply in flight and stall the catch-up)."""
    leader_a_with_writes(net)
    net.start("c", net.store_with(), recovering=True)  # incarnation b""
    net.tick("a")
    net.stabilize()
    assert net["c"].status().last_index == net["a"].status().last_index
    net["a"].propose(b"more")
    for _ in range(3):
        net.flush()
        net.deliver()
    # Pipelined: c got and acknowledged the new entry within one round trip.
    assert net.peer("a", "c").match == net["a"].status().last_index


def test_replies_without_request_numbers_still_count(net) -> None:  # noqa: ANN001
    """Peers of earlier releases echo no request number (nor an
    incarnation): as long as the leader knows of no wipe, their
    acknowledgements count as before."""
    net.elect("a")
    net["a"].propose(b"x")
    for _ in range(10):
        net.flush()
        old = [dataclasses.replace(m, commit=0) if m.type is MT.APPEND_RESP else m for m in net.pending]
        net.pending = old
        net.deliver()
    assert net.commit("a") == 2
