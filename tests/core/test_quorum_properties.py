"""Property tests of raftkit/core/quorum.py against brute-force references.

The references restate the definitions as plainly as possible:

* committed index: the largest index ``i`` such that, in every non-empty
  half of the configuration, more than half of the voters have
  ``match >= i`` (a missing voter has match 0) — found by trying every
  candidate index;
* vote result: enumerate every way the outstanding voters could still
  answer; WON if every completion wins, LOST if none does, else PENDING.

Voter sets are duplicate-free sets of 1..9 ids drawn from a small universe
(so the two halves of a joint configuration overlap often), the outgoing
half may be empty, and ``match`` / ``votes`` may omit voters or mention
non-voters.
"""

from __future__ import annotations

import itertools

from hypothesis import example, given, settings
from hypothesis import strategies as st

from raftkit.core.membership import quorum_committed, quorum_vote
from raftkit.core.quorum import (
    VoteResult,
    committed_index,
    majority_committed_index,
    majority_vote_result,
    vote_result,
)
from raftkit.core.types import ConfState

UNIVERSE = [f"n{i}" for i in range(9)]
OUTSIDERS = ["x", "y"]  # never voters: learners, removed nodes, strangers

voter_sets = st.frozensets(st.sampled_from(UNIVERSE), min_size=1, max_size=9)
maybe_empty_voter_sets = st.frozensets(st.sampled_from(UNIVERSE), min_size=0, max_size=9)
match_maps = st.dictionaries(st.sampled_from(UNIVERSE + OUTSIDERS), st.integers(0, 12))
vote_maps = st.dictionaries(st.sampled_from(UNIVERSE + OUTSIDERS), st.booleans())

# Enough to hit every size and overlap pattern many times, while the whole
# module stays within a few seconds.
FAST = settings(max_examples=100, deadline=None)


# -- references -----------------------------------------------------------------


def has_majority(voters, pred) -> bool:
    return 2 * sum(1 for v in voters if pred(v)) > len(voters)


def ref_committed(halves, match) -> int:
    """Largest index held by a majority of every non-empty half (0 if none)."""
    halves = [h for h in halves if h]
    if not halves:
        return 0
    top = max([0, *match.values()])
    for i in range(top, 0, -1):
        if all(has_majority(h, lambda v, i=i: match.get(v, 0) >= i) for h in halves):
            return i
    return 0


def ref_vote(halves, votes) -> VoteResult:
    """Try every way the voters that have not answered could still answer."""
    halves = [h for h in halves if h]
    voters = sorted(set().union(*halves)) if halves else []
    missing = [v for v in voters if v not in votes]
    outcomes = set()
    for answers in itertools.product([True, False], repeat=len(missing)):
        full = {**votes, **dict(zip(missing, answers, strict=True))}
        outcomes.add(all(has_majority(h, lambda v, full=full: full[v] is True) for h in halves))
    if outcomes == {True}:
        return VoteResult.WON
    if outcomes == {False}:
        return VoteResult.LOST
    return VoteResult.PENDING


# -- committed index -------------------------------------------------------------------


@FAST
@given(voters=voter_sets, match=match_maps)
@example(voters=frozenset({"n0"}), match={})
@example(voters=frozenset({"n0", "n1"}), match={"n0": 5})
@example(voters=frozenset({"n0", "n1", "n2", "n3"}), match={"n0": 4, "n1": 4, "n2": 1, "n3": 9})
def test_majority_committed_index_matches_brute_force(voters, match):
    """The majority committed index is the largest index a strict majority
    of the voters has acknowledged (absent voters count as 0; non-voters are
    ignored)."""
    assert majority_committed_index(voters, match) == ref_committed([voters], match)


@FAST
@given(match=match_maps)
def test_majority_committed_index_of_empty_config_places_no_constraint(match):
    """An empty majority config is no constraint: its index is above any
    real index, so it never lowers the other half of a joint config."""
    assert majority_committed_index(frozenset(), match) > max([0, *match.values()])


@FAST
@given(incoming=voter_sets, outgoing=maybe_empty_voter_sets, match=match_maps)
@example(incoming=frozenset({"n0", "n1", "n2"}), outgoing=frozenset(), match={"n0": 3, "n1": 3})
@example(
    incoming=frozenset({"n0", "n1", "n2"}),
    outgoing=frozenset({"n0", "n3", "n4"}),
    match={"n0": 7, "n1": 7, "n2": 7, "n3": 2},
)
def test_joint_committed_index_matches_brute_force(incoming, outgoing, match):
    """Joint consensus (dissertation §4.3): an index is committed only when a
    majority of *each* half holds it; an empty outgoing half means a plain
    majority configuration."""
    expected = ref_committed([incoming, outgoing], match)
    assert committed_index(incoming, outgoing, match) == expected
    assert committed_index(outgoing, incoming, match) == expected  # the halves play equal roles


@FAST
@given(
    incoming=voter_sets,
    outgoing=maybe_empty_voter_sets,
    match=match_maps,
    who=st.sampled_from(UNIVERSE),
    bump=st.integers(1, 5),
)
def test_committed_index_is_monotonic_in_acknowledgements(incoming, outgoing, match, who, bump):
    """More acknowledgements never un-commit anything: raising one node's
    match never lowers the committed index."""
    before = committed_index(incoming, outgoing, match)
    raised = {**match, who: match.get(who, 0) + bump}
    assert committed_index(incoming, outgoing, raised) >= before


@FAST
@given(voters=voter_sets, match=match_maps, order=st.randoms(use_true_random=False))
def test_committed_index_ignores_voter_order_and_container(voters, match, order):
    """The functions take any collection: a shuffled list or tuple of the
    same voters gives the same answer as the set."""
    as_list = sorted(voters)
    order.shuffle(as_list)
    expected = committed_index(voters, frozenset(), match)
    assert committed_index(as_list, [], match) == expected
    assert committed_index(tuple(as_list), (), match) == expected


def test_committed_index_of_entirely_empty_config_is_zero():
    """Nothing is committed in a configuration without voters."""
    assert committed_index(frozenset(), frozenset(), {"n0": 5}) == 0


# -- vote result ----------------------------------------------------------------------


@FAST
@given(voters=voter_sets, votes=vote_maps)
@example(voters=frozenset({"n0", "n1"}), votes={"n0": True})
@example(voters=frozenset({"n0", "n1", "n2", "n3"}), votes={"n0": True, "n1": True, "n2": False})
def test_majority_vote_result_matches_brute_force(voters, votes):
    """An election is WON once a strict majority granted, LOST once a
    majority can no longer be reached, PENDING otherwise."""
    assert majority_vote_result(voters, votes) is ref_vote([voters], votes)


@FAST
@given(incoming=voter_sets, outgoing=maybe_empty_voter_sets, votes=vote_maps)
@example(
    incoming=frozenset({"n0", "n1", "n2"}),
    outgoing=frozenset({"n0", "n3", "n4"}),
    votes={"n0": True, "n1": True, "n2": True},
)
@example(
    incoming=frozenset({"n0", "n1", "n2"}),
    outgoing=frozenset({"n0", "n3", "n4"}),
    votes={"n0": True, "n1": True, "n3": False, "n4": False},
)
def test_joint_vote_result_matches_brute_force(incoming, outgoing, votes):
    """Joint consensus: won only if both halves are won, lost if either half
    is lost, pending otherwise (an empty outgoing half is a plain majority)."""
    expected = ref_vote([incoming, outgoing], votes)
    assert vote_result(incoming, outgoing, votes) is expected
    assert vote_result(outgoing, incoming, votes) is expected


@FAST
@given(incoming=voter_sets, outgoing=maybe_empty_voter_sets, votes=vote_maps, who=st.sampled_from(UNIVERSE))
def test_vote_result_more_grants_never_hurt(incoming, outgoing, votes, who):
    """Turning one answer (or a missing one) into a grant never makes the
    outcome worse: WON stays WON, PENDING never becomes LOST."""
    rank = {VoteResult.LOST: 0, VoteResult.PENDING: 1, VoteResult.WON: 2}
    before = vote_result(incoming, outgoing, votes)
    after = vote_result(incoming, outgoing, {**votes, who: True})
    assert rank[after] >= rank[before]


def test_vote_result_of_empty_config_is_won():
    """With no voters to ask there is nothing left to win (used for the
    empty outgoing half of a non-joint configuration)."""
    assert majority_vote_result(frozenset(), {}) is VoteResult.WON
    assert vote_result(frozenset(), frozenset(), {"n0": False}) is VoteResult.WON


# -- the ConfState wrappers used by the core ----------------------------------------------


@FAST
@given(
    incoming=voter_sets,
    outgoing=maybe_empty_voter_sets,
    learners=st.frozensets(st.sampled_from(OUTSIDERS)),
    match=match_maps,
    votes=vote_maps,
)
def test_membership_quorum_helpers_ignore_learners(incoming, outgoing, learners, match, votes):
    """Learners receive the log but never count towards a quorum: the core's
    quorum_committed / quorum_vote agree with the voter-only references
    whatever the learners acknowledged or answered."""
    conf = ConfState(voters=incoming, learners=learners, voters_outgoing=outgoing)
    assert quorum_committed(conf, dict(match)) == ref_committed([incoming, outgoing], match)
    assert quorum_vote(conf, dict(votes)) is ref_vote([incoming, outgoing], votes)
