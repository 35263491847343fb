"""The Raft paper's rules, one test each, asserted on what the core emits.

References: "In Search of an Understandable Consensus Algorithm" (Ongaro and
Ousterhout), Figure 2 and sections 5.x; Ongaro's dissertation for pre-vote
(§9.6), check-quorum / leader lease (§6.2, §9.6), leadership transfer
(§3.10), ReadIndex (§6.4) and joint consensus (§4.3). Where the paper leaves
a choice open the tests follow etcd-io/raft, which raftkit's core mirrors.

Every test drives RawNodes by hand through the ``Net`` harness in
``conftest.py``: inputs go in with ``tick`` / ``step`` / ``propose``, each
``Ready`` is persisted to the node's MemoryLogStore before ``advance``, and
messages move only when the test delivers them.
"""

from __future__ import annotations

import pytest

from raftkit.core.membership import encode_conf
from raftkit.core.progress import ProgressState
from raftkit.core.raft import TRANSFER_CONTEXT
from raftkit.core.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    ReadState,
    Role,
    SnapshotMeta,
)
from raftkit.errors import NotLeaderError, ProposalDroppedError

MT = MessageType
E = EntryKind


def entry(index: int, term: int) -> Entry:
    """The entry the harness's ``store_with`` would hold at ``index`` (same data)."""
    return Entry(index, term, E.NORMAL, f"e{index}".encode())


def append(src: str, dst: str, term: int, prev: tuple[int, int], entries=(), commit: int = 0) -> Message:
    return Message(
        type=MT.APPEND,
        src=src,
        dst=dst,
        term=term,
        index=prev[0],
        log_term=prev[1],
        entries=tuple(entries),
        commit=commit,
    )


def vote(src: str, dst: str, term: int, last: tuple[int, int], *, pre: bool = False, context=b"") -> Message:
    return Message(
        type=MT.PRE_VOTE if pre else MT.VOTE,
        src=src,
        dst=dst,
        term=term,
        index=last[0],
        log_term=last[1],
        context=context,
    )


def settle(net, leader: str) -> None:
    """Let a freshly elected leader heartbeat once, so its no-op is
    replicated and every follower has learned the commit index."""
    net.tick(leader)
    net.stabilize()


def ticks_until_campaign(make_net, node_id: str = "a", limit: int = 100, **cfg) -> int:
    """How many ticks a fresh node of a default Net takes to start an election."""
    twin = make_net(**cfg)
    for n in range(1, limit + 1):
        twin.tick(node_id)
        if twin.role(node_id) is not Role.FOLLOWER:
            return n
    raise AssertionError("never campaigned")


# ---------------------------------------------------------------------------
# Figure 2, Rules for Servers: all servers
# ---------------------------------------------------------------------------


def test_fig2_all_servers_apply_committed_entries_in_log_order_exactly_once(make_net):
    """Figure 2, All Servers rule 1: if commitIndex > lastApplied, apply
    log[lastApplied+1] — committed entries reach the state machine in index
    order, each exactly once, and never before they are committed."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    for cmd in (b"x", b"y", b"z"):
        net["a"].propose(cmd)
    rd = net.ready("a")
    assert [e.data for e in rd.entries] == [b"x", b"y", b"z"]
    assert rd.committed_entries == []  # not yet on a majority
    net.stabilize()
    net.tick("a")  # followers learn the final commit index from the heartbeat
    net.stabilize()
    for node_id in "abc":
        applied = net.applied[node_id]
        assert [e.index for e in applied] == [1, 2, 3, 4]
        assert [e.kind for e in applied] == [E.NOOP, E.NORMAL, E.NORMAL, E.NORMAL]
        assert [e.data for e in applied[1:]] == [b"x", b"y", b"z"]
    assert not net["a"].has_ready()


@pytest.mark.parametrize("role", [Role.LEADER, Role.CANDIDATE])
def test_fig2_all_servers_higher_term_in_any_rpc_converts_to_follower(make_net, role):
    """Figure 2, All Servers rule 2: if an RPC request or response contains
    term T > currentTerm, set currentTerm = T and convert to follower."""
    net = make_net(pre_vote=False)
    if role is Role.LEADER:
        net.elect("a")
        settle(net, "a")
    else:
        net["a"].campaign()
        net.ready("a")
        net.pending.clear()
    assert net.role("a") is role
    commit = net.commit("a")
    net.step(Message(type=MT.HEARTBEAT_RESP, src="b", dst="a", term=7))
    rd = net.ready("a")
    assert rd.hard_state == HardState(term=7, vote=None, commit=commit)
    assert rd.soft_state is not None and rd.soft_state.role is Role.FOLLOWER
    assert rd.soft_state.leader is None


# ---------------------------------------------------------------------------
# Figure 2, Rules for Servers: followers
# ---------------------------------------------------------------------------


def test_fig2_followers_election_timeout_converts_to_candidate(make_net):
    """Figure 2, Followers rule 2: if the election timeout (randomized in
    [election_tick, 2*election_tick), §5.2) elapses without hearing from a
    leader or granting a vote, convert to candidate and request votes."""
    net = make_net(pre_vote=False)
    timeout = ticks_until_campaign(make_net, pre_vote=False)
    assert 10 <= timeout < 20
    net.tick("a", timeout - 1)
    assert net.role("a") is Role.FOLLOWER
    assert not net.ready("a").messages
    net.tick("a")
    rd = net.ready("a")
    assert rd.soft_state is not None and rd.soft_state.role is Role.CANDIDATE
    assert rd.hard_state == HardState(term=1, vote="a", commit=0)
    assert sorted((m.type, m.dst, m.term) for m in rd.messages) == [(MT.VOTE, "b", 1), (MT.VOTE, "c", 1)]


def test_fig2_followers_append_from_leader_resets_election_timer(make_net):
    """Figure 2, Followers rule 2: only an election timeout *without*
    AppendEntries from the current leader starts an election; each append
    (here a heartbeat) restarts the timer."""
    timeout = ticks_until_campaign(make_net, pre_vote=False)
    net = make_net(pre_vote=False, stores={"a": make_net.store_with(term=1)})
    net.tick("a", timeout - 1)
    net.step(Message(type=MT.HEARTBEAT, src="b", dst="a", term=1))
    net.ready("a")
    net.tick("a", 9)  # less than any election timeout
    assert net.role("a") is Role.FOLLOWER
    assert not of_type(net.ready("a").messages, MT.VOTE)
    assert net["a"].soft_state.leader == "b"


def test_fig2_followers_granting_a_vote_resets_election_timer(make_net):
    """Figure 2, Followers rule 2: granting a vote to a candidate also
    restarts the election timer (the voter does not then start a rival
    election in the same breath)."""
    timeout = ticks_until_campaign(make_net, pre_vote=False)
    # a is already in term 2 with no vote, so the grant below changes no term.
    net = make_net(pre_vote=False, stores={"a": make_net.store_with(term=2)})
    net.tick("a", timeout - 1)
    net.step(vote("c", "a", 2, (0, 0)))
    rd = net.ready("a")
    assert rd.hard_state is not None and rd.hard_state.vote == "c"
    assert of_type(rd.messages, MT.VOTE_RESP)[0].reject is False
    net.tick("a", 9)
    assert net.role("a") is Role.FOLLOWER
    assert not of_type(net.ready("a").messages, MT.VOTE)


# ---------------------------------------------------------------------------
# Figure 2, Rules for Servers: candidates
# ---------------------------------------------------------------------------


def test_fig2_candidates_on_conversion_increment_term_vote_for_self_request_votes(make_net):
    """Figure 2, Candidates rule 1: on conversion to candidate, increment
    currentTerm, vote for self, and send RequestVote (carrying the last log
    index and term) to all other servers."""
    store = make_net.store_with([1, 1, 3], term=4)
    net = make_net(pre_vote=False, stores={"a": store})
    net["a"].campaign()
    rd = net.ready("a")
    assert rd.hard_state == HardState(term=5, vote="a", commit=0)
    assert rd.soft_state is not None and rd.soft_state.role is Role.CANDIDATE
    assert sorted((m.type, m.dst, m.term, m.index, m.log_term) for m in rd.messages) == [
        (MT.VOTE, "b", 5, 3, 3),
        (MT.VOTE, "c", 5, 3, 3),
    ]


def test_fig2_candidates_votes_from_majority_make_leader(make_net):
    """Figure 2, Candidates rule 2 (§5.2): a candidate becomes leader when
    it has votes from a majority of the servers (itself included) — and not
    one vote earlier."""
    net = make_net(list("abcde"), pre_vote=False)
    net["a"].campaign()
    net.ready("a")
    net.step(Message(type=MT.VOTE_RESP, src="b", dst="a", term=1))
    net.step(Message(type=MT.VOTE_RESP, src="b", dst="a", term=1))  # a duplicate counts once
    assert net.role("a") is Role.CANDIDATE
    net.step(Message(type=MT.VOTE_RESP, src="c", dst="a", term=1, reject=True))
    assert net.role("a") is Role.CANDIDATE
    net.step(Message(type=MT.VOTE_RESP, src="d", dst="a", term=1))
    rd = net.ready("a")
    assert rd.soft_state is not None and (rd.soft_state.role, rd.soft_state.leader) == (Role.LEADER, "a")


def test_fig2_candidates_append_from_new_leader_converts_to_follower(make_net):
    """Figure 2, Candidates rule 3 (§5.2): if AppendEntries is received from
    a leader of the candidate's term, it recognises that leader, becomes a
    follower and handles the append."""
    net = make_net(pre_vote=False)
    net["a"].campaign()
    net.ready("a")
    net.step(append("b", "a", 1, (0, 0), [entry(1, 1)]))
    rd = net.ready("a")
    assert rd.soft_state is not None and (rd.soft_state.role, rd.soft_state.leader) == (Role.FOLLOWER, "b")
    assert rd.entries == [entry(1, 1)]
    [resp] = rd.messages
    assert (resp.type, resp.dst, resp.term, resp.index, resp.reject) == (MT.APPEND_RESP, "b", 1, 1, False)


def test_fig2_candidates_election_timeout_starts_new_election(make_net):
    """Figure 2, Candidates rule 4 (§5.2): if the election timeout elapses
    without a winner (a split vote), start a new election in a new term."""
    net = make_net(pre_vote=False)
    net["a"].campaign()
    net.ready("a")
    net.pending.clear()  # nobody answers
    ticks = 0
    while net.term("a") == 1 and ticks < 20:
        net.tick("a")
        ticks += 1
    assert 10 <= ticks < 20  # within one randomized election timeout
    rd = net.ready("a")
    assert net.role("a") is Role.CANDIDATE
    assert rd.hard_state == HardState(term=2, vote="a", commit=0)
    assert {(m.type, m.term) for m in rd.messages} == {(MT.VOTE, 2)}


# ---------------------------------------------------------------------------
# Figure 2, Rules for Servers: leaders
# ---------------------------------------------------------------------------


def test_fig2_leaders_upon_election_send_initial_append_to_each_server(make_net):
    """Figure 2, Leaders rule 1: upon election, send initial AppendEntries
    RPCs to each server (here carrying the no-op) without waiting for a
    tick, so every follower learns of the new leader at once."""
    net = make_net()
    net["a"].campaign()
    net.stabilize()
    assert net.role("a") is Role.LEADER
    heard = {m.dst for m in net.delivered if m.src == "a" and m.type in (MT.APPEND, MT.HEARTBEAT)}
    assert heard == {"b", "c"}
    assert net["b"].soft_state.leader == "a"


def test_fig2_leaders_heartbeat_every_heartbeat_tick_when_idle(make_net):
    """Figure 2, Leaders rule 1: repeat empty AppendEntries (heartbeats)
    during idle periods to prevent election timeouts (§5.2): one to each
    follower every heartbeat_tick ticks."""
    net = make_net(heartbeat_tick=3)
    net.elect("a")
    for n in range(1, 10):
        net.tick("a")
        rd = net.ready("a")
        beats = sorted(m.dst for m in of_type(rd.messages, MT.HEARTBEAT))
        assert beats == (["b", "c"] if n % 3 == 0 else []), f"tick {n}"
        assert all(m.term == net.term("a") for m in rd.messages)


def test_fig2_leaders_client_command_appended_to_leader_log(make_net):
    """Figure 2, Leaders rule 2: a command from a client is appended to the
    leader's log in its current term, then replicated; the index returned is
    where it will be applied."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    index = net["a"].propose(b"cmd")
    rd = net.ready("a")
    assert index == 2
    assert rd.entries == [Entry(2, 1, E.NORMAL, b"cmd")]
    for dst in "bc":
        [m] = of_type(rd.messages, MT.APPEND, dst=dst)
        assert m.entries == (Entry(2, 1, E.NORMAL, b"cmd"),)
    with pytest.raises(NotLeaderError) as err:
        net["b"].propose(b"elsewhere")
    assert err.value.leader == "a"


def test_fig2_leaders_send_entries_from_next_index_and_update_match_on_success(make_net):
    """Figure 2, Leaders rule 3: if last log index >= nextIndex for a
    follower, send AppendEntries with entries starting at nextIndex; on
    success update the follower's nextIndex and matchIndex."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    assert (net.peer("a", "b").match, net.peer("a", "b").next) == (1, 2)
    net["a"].propose(b"x")
    net["a"].propose(b"y")
    rd = net.ready("a")
    [append] = of_type(rd.messages, MT.APPEND, dst="b")  # both proposals of the Ready in one append
    assert (append.index, append.log_term, [e.index for e in append.entries]) == (1, 1, [2, 3])
    net.stabilize()
    assert (net.peer("a", "b").match, net.peer("a", "b").next) == (3, 4)


def test_fig2_leaders_inconsistent_append_decrements_next_index_and_retries(make_net):
    """Figure 2, Leaders rule 3: if AppendEntries fails because of log
    inconsistency, decrement nextIndex and retry until the logs match."""
    stores = {
        "a": make_net.store_with([1, 1, 1]),
        "b": make_net.store_with([1]),
        "c": make_net.store_with([1, 1, 1]),
    }
    net = make_net(stores=stores)
    net.elect("a")
    settle(net, "a")
    to_b = [m for m in net.delivered if m.type is MT.APPEND and m.dst == "b"]
    from_b = [m for m in net.delivered if m.type is MT.APPEND_RESP and m.src == "b"]
    assert to_b[0].index == 3 and from_b[0].reject  # a's first guess: b's log is as long as its own
    assert to_b[1].index < to_b[0].index  # the retry starts earlier ...
    assert [e.index for e in to_b[1].entries] == [2, 3, 4]  # ... and carries what b lacks
    assert not from_b[1].reject
    assert net.log_terms("b") == net.log_terms("a") == [1, 1, 1, 2]


def test_fig2_leaders_commit_index_is_highest_index_on_a_majority(make_net):
    """Figure 2, Leaders rule 4: set commitIndex = N for the largest N with
    a majority of matchIndex[i] >= N and log[N].term == currentTerm."""
    net = make_net(list("abcde"))
    net.grant_election("a", {"b", "c"})
    net["a"].propose(b"x")
    net.ready("a")
    net.step(Message(type=MT.APPEND_RESP, src="b", dst="a", term=1, index=2))
    rd = net.ready("a")
    assert net.commit("a") == 0 and rd.committed_entries == []  # 2 of 5
    net.step(Message(type=MT.APPEND_RESP, src="c", dst="a", term=1, index=1))
    rd = net.ready("a")
    assert rd.hard_state is not None and rd.hard_state.commit == 1  # 3 of 5 hold index 1
    assert [e.index for e in rd.committed_entries] == [1]
    net.step(Message(type=MT.APPEND_RESP, src="d", dst="a", term=1, index=2))
    rd = net.ready("a")
    assert rd.hard_state is not None and rd.hard_state.commit == 2
    assert [e.data for e in rd.committed_entries] == [b"x"]


# ---------------------------------------------------------------------------
# Figure 2, RequestVote RPC: receiver implementation
# ---------------------------------------------------------------------------


def test_requestvote_receiver_rule1_reject_request_from_older_term(make_net):
    """Figure 2, RequestVote receiver rule 1: reply false if term <
    currentTerm (a stale pre-vote gets an explicit rejection carrying our
    term; a stale vote is never granted and changes nothing)."""
    net = make_net(stores={"a": make_net.store_with(term=3)})
    net.step(vote("c", "a", 2, (5, 2)))
    net.step(vote("b", "a", 2, (5, 2), pre=True))
    rd = net.ready("a")
    assert rd.hard_state is None
    assert not [m for m in rd.messages if m.type in (MT.VOTE_RESP, MT.PRE_VOTE_RESP) and not m.reject]
    [pre] = of_type(rd.messages, MT.PRE_VOTE_RESP)
    assert (pre.dst, pre.term, pre.reject) == ("b", 3, True)
    assert net["a"].hard_state == HardState(term=3, vote=None, commit=0)


def test_requestvote_receiver_rule2_at_most_one_vote_per_term(make_net):
    """Figure 2, RequestVote receiver rule 2 (§5.2): grant only if votedFor
    is null or candidateId — one vote per term, first come first served (a
    retransmitted request from the same candidate is granted again)."""
    net = make_net()
    net.step(vote("b", "a", 1, (0, 0)))
    rd = net.ready("a")
    assert rd.hard_state == HardState(term=1, vote="b", commit=0)
    assert [(m.dst, m.reject) for m in rd.messages] == [("b", False)]
    net.step(vote("c", "a", 1, (0, 0)))
    net.step(vote("b", "a", 1, (0, 0)))
    rd = net.ready("a")
    assert [(m.type, m.dst, m.reject) for m in rd.messages] == [
        (MT.VOTE_RESP, "c", True),
        (MT.VOTE_RESP, "b", False),
    ]
    assert net["a"].hard_state.vote == "b"


@pytest.mark.parametrize(
    ("last_index", "last_term", "granted"),
    [
        (3, 2, True),  # identical last entry
        (5, 2, True),  # same last term, longer log
        (2, 2, False),  # same last term, shorter log
        (9, 1, False),  # longer log but older last term
        (1, 3, True),  # shorter log but newer last term
    ],
)
def test_requestvote_receiver_rule2_candidate_log_at_least_as_up_to_date(
    make_net, last_index, last_term, granted
):
    """Figure 2, RequestVote receiver rule 2 and §5.4.1: grant only if the
    candidate's log is at least as up-to-date as the receiver's (compare
    last terms, then lengths)."""
    net = make_net(stores={"a": make_net.store_with([1, 1, 2], term=2)})
    net.step(vote("c", "a", 3, (last_index, last_term)))
    rd = net.ready("a")
    [resp] = rd.messages
    assert resp.type is MT.VOTE_RESP and resp.reject is (not granted)
    assert net["a"].hard_state.vote == ("c" if granted else None)
    assert net.term("a") == 3  # the higher term is adopted either way


def test_requestvote_receiver_persists_vote_before_replying(make_net):
    """Figure 2, "Persistent state on all servers ... updated on stable
    storage before responding to RPCs": the Ready that carries a granted vote
    also carries the hard state recording it, so a driver persisting before
    sending can never vote twice in a term across a crash."""
    net = make_net()
    net.step(vote("b", "a", 4, (0, 0)))
    rd = net["a"].ready()
    assert rd.must_sync
    assert rd.hard_state == HardState(term=4, vote="b", commit=0)
    assert [(m.type, m.reject) for m in rd.messages] == [(MT.VOTE_RESP, False)]


# ---------------------------------------------------------------------------
# Figure 2, AppendEntries RPC: receiver implementation
# ---------------------------------------------------------------------------


def test_appendentries_receiver_rule1_reject_append_from_older_term(make_net):
    """Figure 2, AppendEntries receiver rule 1: reply false if term <
    currentTerm — the entries are not appended and the reply carries the
    newer term so the stale leader steps down."""
    net = make_net(stores={"a": make_net.store_with([1], term=3)})
    net.step(append("b", "a", 2, (1, 1), [entry(2, 2)], commit=2))
    rd = net.ready("a")
    assert rd.entries == [] and rd.hard_state is None
    [resp] = rd.messages
    assert (resp.type, resp.dst, resp.term) == (MT.APPEND_RESP, "b", 3)
    assert net["a"].soft_state.leader is None
    assert net.log_terms("a") == [1]


def test_appendentries_receiver_rule2_reject_if_no_entry_matches_prev(make_net):
    """Figure 2, AppendEntries receiver rule 2 (§5.3 consistency check):
    reply false if the log has no entry at prevLogIndex whose term matches
    prevLogTerm."""
    net = make_net(stores={"a": make_net.store_with([1, 1], term=2)})
    net.step(append("b", "a", 2, (2, 2), [entry(3, 2)]))  # term differs at 2
    net.step(append("b", "a", 2, (3, 2), [entry(4, 2)]))  # no entry at 3
    rd = net.ready("a")
    assert rd.entries == []
    assert [(m.type, m.index, m.reject) for m in rd.messages] == [
        (MT.APPEND_RESP, 2, True),
        (MT.APPEND_RESP, 3, True),
    ]
    net.step(append("b", "a", 2, (2, 1), [entry(3, 2)]))  # control: a matching prev is accepted
    rd = net.ready("a")
    assert rd.entries == [entry(3, 2)]
    assert [(m.index, m.reject) for m in rd.messages] == [(3, False)]


def test_appendentries_receiver_rule3_conflict_deletes_entry_and_all_that_follow(make_net):
    """Figure 2, AppendEntries receiver rule 3: if an existing entry conflicts
    with a new one (same index, different term), delete it and all that
    follow it."""
    net = make_net(stores={"a": make_net.store_with([1, 1, 2, 2], term=3)})
    net.step(append("b", "a", 3, (2, 1), [entry(3, 3)]))
    rd = net.ready("a")
    assert rd.entries == [entry(3, 3)]
    assert net.log_terms("a") == [1, 1, 3]  # entry 4 (term 2) is gone too
    assert [(m.index, m.reject) for m in rd.messages] == [(3, False)]


def test_appendentries_receiver_rule4_append_only_new_entries_never_truncate_matching(make_net):
    """Figure 2, AppendEntries receiver rule 4: append any new entries not
    already in the log. A delayed, shorter append that matches must not
    truncate entries that follow it."""
    net = make_net(stores={"a": make_net.store_with([1, 1, 1], term=1)})
    net.step(append("b", "a", 1, (1, 1), [entry(2, 1)]))
    rd = net.ready("a")
    assert rd.entries == []  # already held
    assert net.log_terms("a") == [1, 1, 1]
    assert [(m.index, m.reject) for m in rd.messages] == [(2, False)]
    net.step(append("b", "a", 1, (2, 1), [entry(3, 1), entry(4, 1), entry(5, 1)]))
    rd = net.ready("a")
    assert rd.entries == [entry(4, 1), entry(5, 1)]
    assert net.log_terms("a") == [1, 1, 1, 1, 1]


def test_appendentries_receiver_rule5_commit_is_min_of_leader_commit_and_last_new_entry(make_net):
    """Figure 2, AppendEntries receiver rule 5: if leaderCommit > commitIndex,
    set commitIndex = min(leaderCommit, index of last new entry) — entries
    beyond what this append verified are not committed."""
    net = make_net(stores={"a": make_net.store_with([1, 1, 1, 1, 1], term=1)})
    net.step(append("b", "a", 1, (1, 1), [entry(2, 1)], commit=5))
    rd = net.ready("a")
    assert rd.hard_state is not None and rd.hard_state.commit == 2
    assert [e.index for e in rd.committed_entries] == [1, 2]
    net.step(append("b", "a", 1, (4, 1), [entry(5, 1)], commit=3))
    rd = net.ready("a")
    assert rd.hard_state is not None and rd.hard_state.commit == 3
    assert [e.index for e in rd.committed_entries] == [3]
    net.step(append("b", "a", 1, (5, 1), [], commit=2))  # a commit index never goes back
    net.ready("a")
    assert net.commit("a") == 3


# ---------------------------------------------------------------------------
# §5.2 Leader election
# ---------------------------------------------------------------------------


def test_5_2_election_timeouts_are_randomized_within_one_to_two_election_ticks(make_net):
    """§5.2: election timeouts are chosen randomly from a fixed interval
    ([election_tick, 2*election_tick) here) so split votes are rare."""
    timeouts = []
    for seed in range(20):
        net = make_net(["a"], pre_vote=False)
        net.start("a", make_net.store_with(), seed=seed, pre_vote=False)
        net.tick("a", 9)
        assert net.role("a") is Role.FOLLOWER
        for n in range(10, 21):
            net.tick("a")
            if net.role("a") is not Role.FOLLOWER:
                timeouts.append(n)
                break
    assert len(timeouts) == 20 and all(10 <= t < 20 for t in timeouts)
    assert len(set(timeouts)) >= 5


def test_5_2_candidate_rejected_by_majority_returns_to_follower(make_net):
    """§5.2: a candidate that cannot win this term (a majority rejected it)
    stops campaigning and waits as a follower, keeping its own vote."""
    net = make_net(pre_vote=False)
    net["a"].campaign()
    net.ready("a")
    for src in "bc":
        net.step(Message(type=MT.VOTE_RESP, src=src, dst="a", term=1, reject=True))
    rd = net.ready("a")
    assert rd.soft_state is not None and rd.soft_state.role is Role.FOLLOWER
    assert net["a"].hard_state == HardState(term=1, vote="a", commit=0)


# ---------------------------------------------------------------------------
# §5.3 Log replication
# ---------------------------------------------------------------------------


def test_5_3_heartbeat_commit_never_exceeds_follower_match(make_net):
    """§5.3: a follower learns the commit index from the leader, but only up
    to the point its log is known to match the leader's (a heartbeat carries
    min(commit, matchIndex)), so it never commits an unverified entry."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    net.isolated = {"c"}
    net["a"].propose(b"x")
    net["a"].propose(b"y")
    net.stabilize()
    net.isolated = set()
    assert net.commit("a") == 3 and net.peer("a", "c").match == 1
    net.tick("a")
    rd = net.ready("a")
    commits = {m.dst: m.commit for m in of_type(rd.messages, MT.HEARTBEAT)}
    assert commits == {"b": 3, "c": 1}


# ---------------------------------------------------------------------------
# §5.4.1 Election restriction
# ---------------------------------------------------------------------------


def test_5_4_1_candidate_missing_a_committed_entry_cannot_be_elected(make_net):
    """§5.4.1: a candidate whose log lacks a committed entry cannot collect
    a majority, because every majority holds the entry and refuses it; a
    node that has the entry can still be elected."""
    net = make_net(pre_vote=False, check_quorum=False)
    net.elect("a")
    settle(net, "a")
    net.isolated = {"c"}
    net["a"].propose(b"committed")
    net.stabilize()
    assert net.commit("a") == 2
    net.isolated = {"a"}  # the leader crashes; c comes back
    net["c"].campaign()
    net.stabilize()
    assert net.role("c") is not Role.LEADER
    [resp] = [m for m in net.delivered if m.type is MT.VOTE_RESP and m.src == "b" and m.dst == "c"]
    assert resp.reject
    net["b"].campaign()
    net.stabilize()
    assert net.role("b") is Role.LEADER
    settle(net, "b")
    assert net.log_terms("c")[:2] == [1, 1]
    assert net.stores["c"].entries(2, 3)[0].data == b"committed"


# ---------------------------------------------------------------------------
# §5.4.2 Committing entries from previous terms (Figure 8)
# ---------------------------------------------------------------------------


def test_5_4_2_figure8_old_term_entry_on_majority_not_committed_until_current_term_entry_is(make_net):
    """§5.4.2 / Figure 8: a leader never commits an entry from a previous term
    by counting replicas — even once it is on a majority — but only
    indirectly, when an entry of its own term above it is on a majority."""
    stores = {
        "a": make_net.store_with([1, 2], term=3, commit=1),
        "b": make_net.store_with([1], term=3, commit=1),
        "c": make_net.store_with([1], term=3, commit=1),
    }
    net = make_net(stores=stores, max_entries_per_msg=1)
    net.isolated = {"c"}

    def hold_back_noop(m: Message) -> bool:  # once b has entry 2, keep entry 3 from it
        has_2 = net.stores["b"].last_index() >= 2
        return not (m.type is MT.APPEND and has_2 and any(e.index == 3 for e in m.entries))

    net["a"].campaign()  # wins term 4 with b's vote; its no-op goes at index 3
    net.stabilize(keep=hold_back_noop)
    assert (net.role("a"), net.term("a")) == (Role.LEADER, 4)
    assert net.log_terms("b") == [1, 2]  # entry 2 (term 2) now on a majority: a and b
    assert net.peer("a", "b").match == 2
    assert net.commit("a") == 1
    assert [e.index for e in net.applied["a"]] == [1]
    net.tick("a")
    net.stabilize()
    assert net.log_terms("b") == [1, 2, 4]
    assert net.commit("a") == 3
    assert [e.index for e in net.applied["a"]] == [1, 2, 3]


# ---------------------------------------------------------------------------
# No-op entry on election (§8 / dissertation §6.4)
# ---------------------------------------------------------------------------


def test_new_leader_appends_noop_entry_of_its_term(make_net):
    """§8: a new leader appends a blank no-op entry of its own term at the
    start of its term, which lets it commit (and learn the commit index of)
    everything before it."""
    stores = {n: make_net.store_with([1, 1], term=1) for n in "abc"}
    net = make_net(stores=stores)
    net.grant_election("a", {"b"})
    rd = net.ready("a")
    assert rd.soft_state is not None and rd.soft_state.role is Role.LEADER
    assert rd.entries == [Entry(3, 2, E.NOOP, b"")]
    assert net.term("a") == 2


# ---------------------------------------------------------------------------
# Pre-vote (dissertation §9.6)
# ---------------------------------------------------------------------------


def test_prevote_precandidate_does_not_bump_its_term(make_net):
    """Dissertation §9.6: a pre-candidate asks whether it could win the next
    term without incrementing its own term or casting a vote."""
    net = make_net(stores={"a": make_net.store_with([1, 1], term=3)})
    net["a"].campaign()
    rd = net.ready("a")
    assert rd.hard_state is None  # term 3, no vote: nothing to persist
    assert rd.soft_state is not None and rd.soft_state.role is Role.PRE_CANDIDATE
    assert sorted((m.type, m.dst, m.term, m.index, m.log_term) for m in rd.messages) == [
        (MT.PRE_VOTE, "b", 4, 2, 1),
        (MT.PRE_VOTE, "c", 4, 2, 1),
    ]
    assert net["a"].hard_state == HardState(term=3, vote=None, commit=0)


def test_prevote_receiver_grants_without_changing_its_term_or_vote(make_net):
    """Dissertation §9.6: a server answers a pre-vote as it would a vote
    (term and log up-to-dateness) but records nothing: its term and vote are
    unchanged."""
    net = make_net(stores={"b": make_net.store_with([1], term=1, vote="c")})
    net.step(vote("a", "b", 2, (1, 1), pre=True))
    rd = net.ready("b")
    assert rd.hard_state is None
    [resp] = rd.messages
    assert (resp.type, resp.term, resp.reject) == (MT.PRE_VOTE_RESP, 2, False)
    assert net["b"].hard_state == HardState(term=1, vote="c", commit=0)


def test_prevote_majority_of_prevotes_starts_real_election(make_net):
    """Dissertation §9.6: only after a majority says it would vote does the
    pre-candidate become a candidate, increment its term and send votes."""
    net = make_net()
    net["a"].campaign()
    net.ready("a")
    net.pending.clear()
    net.step(Message(type=MT.PRE_VOTE_RESP, src="b", dst="a", term=1))
    rd = net.ready("a")
    assert rd.hard_state == HardState(term=1, vote="a", commit=0)
    assert {(m.type, m.term) for m in rd.messages} == {(MT.VOTE, 1)}


@pytest.mark.parametrize("pre_vote", [True, False], ids=["pre-vote", "control-without-pre-vote"])
def test_prevote_partitioned_node_cannot_disrupt_leader_when_it_rejoins(make_net, pre_vote):
    """Dissertation §9.6: a node cut off from the cluster keeps timing out,
    but as a pre-candidate it never raises its term, so when it rejoins the
    leader stays leader in the same term and the node follows it. (The
    control run without pre-vote shows the disruption the rule prevents.)"""
    net = make_net(pre_vote=pre_vote)
    net.elect("a")
    settle(net, "a")
    net["a"].propose(b"x")
    net.stabilize()
    term = net.term("a")
    net.isolated = {"c"}
    for _ in range(60):
        for node_id in "abc":
            net.tick(node_id)
        net.stabilize()
    assert (net.role("a"), net.term("a")) == (Role.LEADER, term)
    if not pre_vote:
        assert net.term("c") > term
        net.isolated = set()
        for _ in range(30):
            for node_id in "abc":
                net.tick(node_id)
            net.stabilize()
        assert net.term("a") > term  # the rejoining node forced a new term on everyone
        return
    assert net.term("c") == term
    net.isolated = set()
    for _ in range(30):
        for node_id in "abc":
            net.tick(node_id)
        net.stabilize()
        assert (net.role("a"), net.term("a")) == (Role.LEADER, term)
    assert (net.role("c"), net["c"].soft_state.leader) == (Role.FOLLOWER, "a")
    assert net.log_terms("c") == net.log_terms("a")


# ---------------------------------------------------------------------------
# Check-quorum and the leader lease (dissertation §6.2, §9.6)
# ---------------------------------------------------------------------------


def test_checkquorum_leader_steps_down_after_election_tick_without_quorum(make_net):
    """Dissertation §6.2: a leader that has not heard from a quorum within
    an election timeout (election_tick ticks) steps down. Hearing from one
    follower of two is a quorum; hearing from none is not."""
    net = make_net()
    net.elect("a")
    for _ in range(10):  # window 1 (ticks 1-10): everyone answers
        net.tick("a")
        net.stabilize()
    net.isolated = {"c"}
    for _ in range(9):  # window 2 (ticks 11-20): only b answers, a majority with a
        net.tick("a")
        net.stabilize()
    net.isolated = {"b", "c"}
    for _ in range(10):  # the check at tick 20 passes on b's answers; then silence
        net.tick("a")
        net.stabilize()
        assert net.role("a") is Role.LEADER
    net.tick("a")  # tick 30 ends a window in which nobody answered
    rd = net.ready("a")
    assert rd.soft_state is not None and (rd.soft_state.role, rd.soft_state.leader) == (Role.FOLLOWER, None)
    assert net.term("a") == 1  # stepping down does not start a new term
    with pytest.raises(NotLeaderError):
        net["a"].propose(b"x")


def test_a_longer_fallback_window_keeps_the_leader_exactly_that_long(make_net):
    """quorum_check_tick (PySyncObj's leaderFallbackTimeout): checked at
    every tick, the leader steps down ``quorum_check_tick`` ticks after the
    tick that saw the majority's last answer (answers are counted at the
    next tick: here the replies to tick 5 count at tick 6), not sooner."""
    net = make_net(quorum_check_tick=25)
    net.elect("a")
    for _ in range(5):
        net.tick("a")
        net.stabilize()
    net.isolated = {"b", "c"}  # from here on nobody answers
    for _ in range(25):  # well past election_tick (10): still leader
        net.tick("a")
        net.stabilize()
        assert net.role("a") is Role.LEADER
    net.tick("a")
    rd = net.ready("a")
    assert rd.soft_state is not None and rd.soft_state.role is Role.FOLLOWER
    assert net.term("a") == 1


@pytest.mark.parametrize("pre", [False, True], ids=["vote", "pre-vote"])
def test_checkquorum_follower_ignores_vote_requests_within_leader_lease(make_net, pre):
    """Dissertation §4.2.3 / §9.6: a follower that heard from a leader within
    the minimum election timeout ignores (pre-)vote requests of a higher
    term — its term does not move — until that lease has run out."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    net.step(vote("c", "b", 2, (1, 1), pre=pre))
    rd = net.ready("b")
    assert rd.messages == [] and rd.hard_state is None
    assert net.term("b") == 1
    net.tick("b", 10)  # a full election_tick without hearing from a
    net.ready("b")
    net.pending.clear()
    net.step(vote("c", "b", 2, (1, 1), pre=pre))
    rd = net.ready("b")
    [resp] = [m for m in rd.messages if m.dst == "c"]
    assert resp.type is (MT.PRE_VOTE_RESP if pre else MT.VOTE_RESP) and not resp.reject


def test_checkquorum_lease_is_overridden_by_transfer_context(make_net):
    """Dissertation §3.10: votes forced by a leadership transfer (context
    set) are considered even within the leader lease."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    net.step(vote("c", "b", 2, (1, 1), context=TRANSFER_CONTEXT))
    rd = net.ready("b")
    assert rd.hard_state == HardState(term=2, vote="c", commit=1)
    [resp] = rd.messages
    assert (resp.type, resp.dst, resp.term, resp.reject) == (MT.VOTE_RESP, "c", 2, False)


# ---------------------------------------------------------------------------
# Leadership transfer (dissertation §3.10)
# ---------------------------------------------------------------------------


def test_transfer_to_caught_up_transferee_sends_timeout_now_at_once(make_net):
    """Dissertation §3.10: when the target's log already matches, the leader
    tells it to start an election immediately (TimeoutNow)."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    net["a"].transfer_leadership("b")
    rd = net.ready("a")
    assert [(m.type, m.dst, m.term) for m in rd.messages] == [(MT.TIMEOUT_NOW, "b", 1)]
    assert net["a"].status().lead_transferee == "b"


def test_transfer_lagging_transferee_is_caught_up_before_timeout_now(make_net):
    """Dissertation §3.10 step 1: the leader first brings the target's log up
    to date, and sends TimeoutNow only once it matches the leader's last
    index; the target then wins the next term."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    net.isolated = {"b"}
    net["a"].propose(b"x")
    net.stabilize()
    net.isolated = set()
    net["a"].transfer_leadership("b")
    rd = net.ready("a")
    assert of_type(rd.messages, MT.APPEND, dst="b") and not of_type(rd.messages, MT.TIMEOUT_NOW)
    delivered = net.stabilize()
    kinds = [(m.type, m.src, m.index) for m in delivered]
    caught_up = kinds.index((MT.APPEND_RESP, "b", 2))
    timeout_now = [i for i, m in enumerate(delivered) if m.type is MT.TIMEOUT_NOW]
    assert timeout_now and timeout_now[0] > caught_up
    assert (net.role("b"), net.term("b")) == (Role.LEADER, 2)


def test_transfer_proposals_are_refused_while_transferring(make_net):
    """Dissertation §3.10: during a transfer the leader stops accepting
    client requests (they would only delay the transfer)."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    net.isolated = {"b"}
    net["a"].transfer_leadership("b")
    with pytest.raises(ProposalDroppedError):
        net["a"].propose(b"x")
    with pytest.raises(ProposalDroppedError):
        net["a"].propose_batch([b"y", b"z"])
    net.ready("a")
    assert net.stores["a"].last_index() == 1


def test_transfer_aborted_after_an_election_timeout(make_net):
    """Dissertation §3.10: if the transfer does not complete within an
    election timeout, the leader aborts it and resumes accepting requests."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    net.isolated = {"b"}
    net["a"].transfer_leadership("b")
    for _ in range(9):
        net.tick("a")
        net.stabilize()
    with pytest.raises(ProposalDroppedError):
        net["a"].propose(b"too early")
    net.tick("a")
    net.stabilize()
    assert net.role("a") is Role.LEADER
    assert net["a"].status().lead_transferee is None
    assert net["a"].propose(b"x") == 2


def test_transfer_timeout_now_makes_transferee_campaign_at_once_past_the_lease(make_net):
    """Dissertation §3.10 step 2: on TimeoutNow the target starts an election
    at once — no pre-vote round, and with the transfer context so voters
    inside the old leader's lease still answer — and wins the next term."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    net["a"].transfer_leadership("b")
    delivered = net.stabilize()
    from_b = [m for m in delivered if m.src == "b" and m.type in (MT.PRE_VOTE, MT.VOTE)]
    assert {(m.type, m.term, m.context) for m in from_b} == {(MT.VOTE, 2, TRANSFER_CONTEXT)}
    assert (net.role("b"), net.term("b")) == (Role.LEADER, 2)
    assert net.role("a") is Role.FOLLOWER


# ---------------------------------------------------------------------------
# ReadIndex (dissertation §6.4)
# ---------------------------------------------------------------------------


def test_readindex_leader_confirms_with_one_heartbeat_round(make_net):
    """Dissertation §6.4: the leader records its commit index as the read
    index, confirms it is still leader by one round of heartbeats acked by a
    majority, then releases the read (ReadState index = commit at request,
    not the last index: an uncommitted entry need not be waited for)."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    net["a"].propose(b"uncommitted")
    net.ready("a")
    net.pending.clear()
    net["a"].read_index(b"r1")
    rd = net.ready("a")
    assert rd.read_states == []
    beats = of_type(rd.messages, MT.HEARTBEAT)
    assert sorted(m.dst for m in beats) == ["b", "c"] and {m.context for m in beats} == {b"r1"}
    net.pending.clear()
    net.step(Message(type=MT.HEARTBEAT_RESP, src="c", dst="a", term=1, context=b"r1"))
    rd = net.ready("a")
    assert rd.read_states == [ReadState(index=1, context=b"r1")]
    net.step(Message(type=MT.HEARTBEAT_RESP, src="b", dst="a", term=1, context=b"r1"))
    assert net.ready("a").read_states == []  # released once only


def test_readindex_new_leader_waits_until_its_noop_commits(make_net):
    """Dissertation §6.4 step 1: a new leader does not know the latest commit
    index until an entry of its own term commits, so a read waits for the
    no-op; its read index is then the no-op's index."""
    stores = {n: make_net.store_with([1, 1], term=1, commit=2) for n in "abc"}
    net = make_net(stores=stores)
    net.grant_election("a", {"b"})
    net["a"].read_index(b"r")
    rd = net.ready("a")
    assert rd.entries == [Entry(3, 2, E.NOOP, b"")]
    assert not [m for m in rd.messages if m.context == b"r"] and rd.read_states == []
    net.step(Message(type=MT.APPEND_RESP, src="b", dst="a", term=2, index=3))
    rd = net.ready("a")
    assert rd.hard_state is not None and rd.hard_state.commit == 3
    assert sorted(m.dst for m in rd.messages if m.type is MT.HEARTBEAT and m.context == b"r") == ["b", "c"]
    net.step(Message(type=MT.HEARTBEAT_RESP, src="b", dst="a", term=2, context=b"r"))
    assert net.ready("a").read_states == [ReadState(index=3, context=b"r")]


def test_readindex_follower_forwards_request_and_gets_response(make_net):
    """Dissertation §6.4: a follower forwards the read to the leader
    (READ_INDEX), which confirms leadership and answers with the read index
    (READ_INDEX_RESP); the follower surfaces it as a ReadState."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    net.isolated = {"b"}
    net["a"].propose(b"x")  # committed by a and c: b's own commit index stays behind
    net.stabilize()
    net.isolated = set()
    assert (net.commit("a"), net.commit("b")) == (2, 1)
    net["b"].read_index(b"f")
    rd = net.ready("b")
    [fwd] = rd.messages
    assert (fwd.type, fwd.dst, fwd.context) == (MT.READ_INDEX, "a", b"f")
    delivered = net.stabilize(keep=lambda m: not (m.type is MT.APPEND and m.dst == "b"))
    [resp] = of_type(delivered, MT.READ_INDEX_RESP)
    assert (resp.src, resp.dst, resp.index, resp.context) == ("a", "b", 2, b"f")
    assert net.read_states["b"] == [ReadState(index=2, context=b"f")]  # the leader's index, not b's
    assert net.read_states["a"] == []


# ---------------------------------------------------------------------------
# Fast conflict backtracking (§5.3, "the protocol can be optimized")
# ---------------------------------------------------------------------------

FIG7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIG7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("case", sorted(FIG7_FOLLOWERS), ids=lambda c: f"figure7-{c}")
def test_fast_backtracking_skips_at_least_a_term_per_round_trip(make_net, case):
    """§5.3 optimization: a rejection carries a hint (the follower's last
    index with a term <= the probed term) so the leader skips a whole term
    of conflicting entries per round trip instead of one index. With the
    Figure 7 logs, the leader of term 8 needs at most one rejected probe per
    distinct conflicting term, and the logs end identical."""
    follower = FIG7_FOLLOWERS[case]
    stores = {
        "l": make_net.store_with(FIG7_LEADER, term=7),
        "f": make_net.store_with(follower, term=7),
        "x": make_net.store_with(FIG7_LEADER, term=7),
    }
    net = make_net(["l", "f", "x"], stores=stores)
    net.grant_election("l", {"x"})  # term 8
    assert net.term("l") == 8
    net.pending.clear()
    net.tick("l")
    delivered = net.stabilize()
    rejects = [m for m in delivered if m.type is MT.APPEND_RESP and m.src == "f" and m.reject]
    common = next((i for i, (p, q) in enumerate(zip(follower, FIG7_LEADER, strict=False)) if p != q), None)
    if common is None:
        common = min(len(follower), len(FIG7_LEADER))
    conflicting_terms = set(follower[common:])
    assert len(rejects) <= max(1, len(conflicting_terms))
    assert net.log_terms("f") == [*FIG7_LEADER, 8]


def test_fast_backtracking_reject_hint_names_follower_last_entry_at_or_below_probed_term(make_net):
    """§5.3 optimization, the exact exchange for Figure 7 (f): the leader
    probes at index 10 (term 6); the follower answers with hint (10, term 3);
    the leader jumps straight to index 3, the last entry of its own log with
    a term <= 3 — one rejection instead of seven."""
    stores = {
        "l": make_net.store_with(FIG7_LEADER, term=7),
        "f": make_net.store_with(FIG7_FOLLOWERS["f"], term=7),
        "x": make_net.store_with(FIG7_LEADER, term=7),
    }
    net = make_net(["l", "f", "x"], stores=stores)
    net.grant_election("l", {"x"})
    net.pending.clear()
    net.tick("l")
    delivered = net.stabilize()
    probes = [m for m in delivered if m.type is MT.APPEND and m.dst == "f"]
    [reject] = [m for m in delivered if m.type is MT.APPEND_RESP and m.src == "f" and m.reject]
    assert (reject.index, reject.reject_hint, reject.log_term) == (10, 10, 3)
    assert [(m.index, m.log_term) for m in probes[:2]] == [(10, 6), (3, 1)]
    assert [e.index for e in probes[1].entries] == list(range(4, 12))


# ---------------------------------------------------------------------------
# Flow control: probe / replicate states, in-flight window, message size
# ---------------------------------------------------------------------------


def test_probe_state_sends_one_append_at_a_time_then_batches_the_backlog(make_net):
    """Flow control (etcd's Progress PROBE state): while the leader does not
    know where a follower's log matches, it has at most one append
    outstanding; proposals made meanwhile go out together in the next one."""
    net = make_net()
    net["a"].campaign()
    net.stabilize(keep=lambda m: m.type is not MT.APPEND)  # the new leader's first probe is held back
    [probe] = of_type(net.dropped, MT.APPEND, dst="b")
    assert [e.index for e in probe.entries] == [1]
    assert net.peer("a", "b").state is ProgressState.PROBE
    for n in range(2, 7):
        net["a"].propose(f"p{n}".encode())
    rd = net.ready("a")
    assert not of_type(rd.messages, MT.APPEND, dst="b")  # one probe is already outstanding
    net.pending = [probe]
    net.deliver()  # b answers the probe
    net.deliver()  # a gets the answer
    rd = net.ready("a")
    [batch] = of_type(rd.messages, MT.APPEND, dst="b")
    assert [e.index for e in batch.entries] == [2, 3, 4, 5, 6]
    assert net.peer("a", "b").state is ProgressState.REPLICATE


@pytest.mark.parametrize(
    ("window", "first", "after_ack"),
    [
        ({"max_inflight_msgs": 2}, [[2], [3]], [4, 5, 6]),
        # 100-byte payloads cost 116 bytes: the third append takes the window to 348 >= 250.
        ({"max_inflight_bytes": 250}, [[2], [3], [4]], [5, 6]),
    ],
    ids=["by-count", "by-bytes"],
)
def test_inflight_window_bounds_unacked_appends_in_replicate_state(make_net, window, first, after_ack):
    """Flow control (etcd's Inflights): in REPLICATE state the leader streams
    appends without waiting for answers, but stops once max_inflight_msgs
    messages or max_inflight_bytes bytes are unacknowledged; an
    acknowledgement reopens the window."""
    net = make_net(**window)
    net.elect("a")
    settle(net, "a")
    assert net.peer("a", "b").state is ProgressState.REPLICATE
    to_b = []
    for n in range(5):  # one proposal per Ready (those of one Ready share an append)
        net["a"].propose(bytes([n]) * 100)
        to_b += of_type(net.ready("a").messages, MT.APPEND, dst="b")
    assert [[e.index for e in m.entries] for m in to_b] == first
    net.pending = [to_b[0]]
    net.deliver()
    net.deliver()  # b's ack of index 2 frees room in the window
    rd = net.ready("a")
    [more] = of_type(rd.messages, MT.APPEND, dst="b")
    assert [e.index for e in more.entries] == after_ack


def test_inflight_full_window_of_lost_appends_is_eventually_retried(make_net):
    """Flow control liveness: the core retries (the transport is fire and
    forget). If every append of a full window is lost, heartbeat responses
    must eventually let the leader send again so the follower catches up."""
    net = make_net(max_inflight_msgs=2)
    net.elect("a")
    settle(net, "a")
    net["a"].propose(b"x")
    net["a"].propose(b"y")
    net.stabilize(keep=lambda m: not (m.type is MT.APPEND and m.dst == "b"))
    for _ in range(30):
        for node_id in "abc":
            net.tick(node_id)
        net.stabilize()
    assert net.log_terms("b") == net.log_terms("a") == [1, 1, 1]


@pytest.mark.parametrize(
    ("max_entries", "max_bytes", "per_msg"),
    [(3, 1 << 20, 3), (512, 250, 2)],
    ids=["max-entries", "max-bytes"],
)
def test_appends_respect_max_entries_and_max_bytes_per_message(make_net, max_entries, max_bytes, per_msg):
    """Flow control: one append carries at most max_entries_per_msg entries
    and at most max_bytes_per_msg bytes of entries (100-byte payloads cost
    116 bytes each here); the rest follows in later appends."""
    net = make_net(max_entries_per_msg=max_entries, max_bytes_per_msg=max_bytes)
    net.elect("a")
    settle(net, "a")
    net["a"].propose_batch([bytes([n]) * 100 for n in range(7)])
    delivered = net.stabilize()
    sizes = [len(m.entries) for m in delivered if m.type is MT.APPEND and m.dst == "b" and m.entries]
    assert max(sizes) == per_msg and sum(sizes) == 7
    assert net.log_terms("b") == [1] * 8
    assert net.commit("a") == 8


def test_many_proposals_batched_into_one_ready_and_one_append_per_peer(make_net):
    """Batching: a batch of proposals becomes one Ready (one storage write)
    and one append message per follower."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    indexes = net["a"].propose_batch([f"c{n}".encode() for n in range(20)])
    assert indexes == list(range(2, 22))
    rd = net.ready("a")
    assert [e.index for e in rd.entries] == indexes
    for dst in "bc":
        [m] = of_type(rd.messages, MT.APPEND, dst=dst)
        assert [e.data for e in m.entries] == [f"c{n}".encode() for n in range(20)]
    assert not net["a"].has_ready()


# ---------------------------------------------------------------------------
# Snapshots (§7)
# ---------------------------------------------------------------------------


def compacted_cluster(make_net):
    """a has snapshotted entries 1..5 (term 1) and compacted them away; b
    holds the same entries; c's log is empty. a is elected (term 2, no-op at
    6); the SNAPSHOT it sends c is held back (it is in ``net.dropped``)."""
    leader_store = make_net.store_with([1] * 5, term=1, commit=5)
    leader_store.compact(5)
    stores = {
        "a": leader_store,
        "b": make_net.store_with([1] * 5, term=1, commit=5),
        "c": make_net.store_with(term=1),
    }
    net = make_net(stores=stores)
    meta = SnapshotMeta(index=5, term=1, conf=ConfState(voters=frozenset("abc")))
    net["a"].snapshot_created(meta)
    net["a"].campaign()
    net.stabilize(keep=lambda m: m.type is not MT.SNAPSHOT)
    assert net.role("a") is Role.LEADER
    [snap] = of_type(net.dropped, MT.SNAPSHOT)
    return net, meta, snap


def test_snapshot_sent_when_follower_next_index_is_compacted(make_net):
    """§7 InstallSnapshot: when the entries a follower needs were compacted
    away, the leader sends its latest snapshot (the metadata the driver
    reported with snapshot_created) and sends that follower no appends while
    the snapshot is in flight."""
    net, meta, snap = compacted_cluster(make_net)
    assert (snap.src, snap.dst, snap.term, snap.snapshot) == ("a", "c", 2, meta)
    [reject] = [m for m in net.delivered if m.type is MT.APPEND_RESP and m.src == "c"]
    assert reject.reject  # c could not take the append: it lacks entry 5
    assert net.peer("a", "c").state is ProgressState.SNAPSHOT
    assert net.commit("a") == 6  # a and b go on without c
    net["a"].propose(b"x")
    net.tick("a")
    delivered = net.stabilize(keep=lambda m: m.type is not MT.SNAPSHOT)
    assert of_type(delivered, MT.HEARTBEAT, dst="c")  # c is still heartbeated ...
    assert not of_type(delivered, MT.APPEND, dst="c")  # ... but gets no appends
    assert net.peer("a", "c").state is ProgressState.SNAPSHOT


def test_snapshot_follower_restore_produces_ready_snapshot(make_net):
    """§7 InstallSnapshot receiver: the follower discards its log, adopts the
    snapshot (Ready.snapshot, commit = snapshot index, membership from the
    snapshot), acknowledges it, and then receives the entries that follow."""
    net, meta, snap = compacted_cluster(make_net)
    net.step(snap)
    rd = net.ready("c")
    assert rd.snapshot == meta
    assert rd.hard_state == HardState(term=2, vote="a", commit=5)  # c voted for a in term 2
    assert rd.committed_entries == [] and rd.entries == []
    [ack] = rd.messages
    assert (ack.type, ack.dst, ack.index, ack.reject) == (MT.APPEND_RESP, "a", 5, False)
    assert net["c"].status().conf == meta.conf
    net.stabilize()
    assert net.peer("a", "c").state is ProgressState.REPLICATE
    assert net.stores["c"].first_index() == 6 and net.log_terms("c") == [2]
    net.tick("a")
    net.stabilize()
    assert net.commit("c") == 6
    assert [e.index for e in net.applied["c"]] == [6]


@pytest.mark.parametrize("ok", [True, False], ids=["ok", "failed"])
def test_snapshot_report_moves_progress_back_to_probe(make_net, ok):
    """§7 / etcd's report_snapshot: when the driver reports the snapshot
    transfer finished, the leader probes again — just past the snapshot if
    it succeeded, from the follower's last known match if it failed."""
    net, meta, _ = compacted_cluster(make_net)
    assert net.peer("a", "c").state is ProgressState.SNAPSHOT
    net["a"].report_snapshot("c", ok)
    peer = net.peer("a", "c")
    assert peer.state is ProgressState.PROBE
    assert peer.next == (meta.index + 1 if ok else peer.match + 1)


# ---------------------------------------------------------------------------
# Joint consensus (dissertation §4.3)
# ---------------------------------------------------------------------------

JOINT = ConfState(voters=frozenset("abc"), voters_outgoing=frozenset("ade"))


def test_joint_commit_requires_majority_of_both_configurations(make_net):
    """Dissertation §4.3: in C_old,new an entry commits only when stored on a
    majority of C_new *and* a majority of C_old."""
    net = make_net(list("abcde"), conf=JOINT)
    net.grant_election("a", {"b", "d"})
    net.ready("a")
    for src in "bc":  # all of the incoming half; only a in the outgoing one
        net.step(Message(type=MT.APPEND_RESP, src=src, dst="a", term=1, index=1))
    assert net.ready("a").committed_entries == [] and net.commit("a") == 0
    net.step(Message(type=MT.APPEND_RESP, src="e", dst="a", term=1, index=1))
    rd = net.ready("a")
    assert rd.hard_state is not None and rd.hard_state.commit == 1
    assert [e.kind for e in rd.committed_entries] == [E.NOOP]


def test_joint_election_requires_majority_of_both_configurations(make_net):
    """Dissertation §4.3: in C_old,new a candidate needs votes from a
    majority of each configuration; losing either one loses the election."""
    net = make_net(list("abcde"), conf=JOINT, pre_vote=False)
    net["a"].campaign()
    net.ready("a")
    for src in "bc":
        net.step(Message(type=MT.VOTE_RESP, src=src, dst="a", term=1))
    assert net.role("a") is Role.CANDIDATE  # incoming won, outgoing undecided
    net.step(Message(type=MT.VOTE_RESP, src="d", dst="a", term=1))
    assert net.role("a") is Role.LEADER

    loser = make_net(list("abcde"), conf=JOINT, pre_vote=False)
    loser["a"].campaign()
    loser.ready("a")
    for src in "bc":
        loser.step(Message(type=MT.VOTE_RESP, src=src, dst="a", term=1))
    for src in "de":
        loser.step(Message(type=MT.VOTE_RESP, src=src, dst="a", term=1, reject=True))
    assert loser.role("a") is Role.FOLLOWER


def test_joint_new_leader_leaves_joint_configuration(make_net):
    """Dissertation §4.3: once C_old,new is committed the cluster moves on to
    C_new. If the leader that proposed it is gone, the next leader must
    finish the change (etcd's auto-leave) instead of staying joint forever."""
    joint = ConfState(voters=frozenset("abc"), voters_outgoing=frozenset("abd"))
    stores = {}
    for node_id in "abcd":
        store = make_net.store_with(term=1)
        store.save(HardState(1, None, 1), [Entry(1, 1, E.CONFIG, encode_conf(joint))])
        stores[node_id] = store
    net = make_net(list("abcd"), stores=stores, applied=1)
    assert net["a"].status().conf == joint
    net.elect("a")
    for _ in range(3):
        net.tick("a")
        net.stabilize()
    assert net["a"].status().conf == ConfState(voters=frozenset("abc"))


def test_joint_config_applied_during_leadership_transfer_does_not_break_advance(make_net):
    """Dissertation §4.3 with §3.10: applying C_old,new while a leadership
    transfer is pending must not make RawNode.advance() raise; the node has
    to stay usable (and eventually leave the joint configuration)."""
    net = make_net()
    net.elect("a")
    settle(net, "a")
    net["a"].propose_conf_change(ConfState(voters=frozenset("abcd"), voters_outgoing=frozenset("abc")))
    net.ready("a")
    out, net.pending = net.pending, []
    for m in out:
        net.step(m)
    net.ready("b")
    net.ready("c")
    acks, net.pending = net.pending, []
    for m in acks:
        net.step(m)
    assert net.commit("a") == 2  # the joint entry is committed, not yet applied
    net["a"].transfer_leadership("b")
    net.ready("a")  # applies the joint entry
    net.stabilize()


def of_type(msgs, type, *, dst=None):
    return [m for m in msgs if m.type is type and (dst is None or m.dst == dst)]


def test_turning_the_fallback_window_off_live_does_not_depose_a_healthy_leader(make_net):
    """leaderFallbackTimeout can be unset on a running node (quorum_check_tick
    back to 0). The windowed check consumed ``recent_active`` at every tick,
    so the first once-per-election_tick round after the switch counted only
    the answers of the last tick: with heartbeats every 3 ticks, a leader in
    touch with everyone stepped down."""
    net = make_net(quorum_check_tick=25, heartbeat_tick=3)
    net.elect("a")
    for _ in range(40):
        net.tick("a")
        net.stabilize()
    raft = net.nodes["a"].raft
    assert raft.role is Role.LEADER
    while raft.election_elapsed != raft.cfg.election_tick - 1 or raft.heartbeat_elapsed != 1:
        net.tick("a")
        net.stabilize()
    raft.set_quorum_check_tick(0)
    for _ in range(3 * raft.cfg.election_tick):
        net.tick("a")
        net.stabilize()
        assert net.role("a") is Role.LEADER
