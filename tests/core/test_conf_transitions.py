"""``propose_conf_change`` takes only transitions whose quorums overlap: one
voter more or less, or a joint configuration leaving the current voters
(issue 10, item 7). Anything else is refused with a MembershipError saying
what to do, and nothing reaches the log."""

from __future__ import annotations

import pytest

from raftkit.core.types import ConfState
from raftkit.errors import MembershipError


def leader(net):  # noqa: ANN001, ANN201 - Net from conftest
    net.elect("a")
    net.stabilize()
    return net["a"]


@pytest.mark.parametrize(
    "conf, reason",
    [
        (ConfState(voters=frozenset({"a", "x", "y"})), "more than one voter at once"),
        (ConfState(voters=frozenset({"a"})), "more than one voter at once"),
        (ConfState(voters=frozenset({"a", "b", "c", "d", "e"})), "more than one voter at once"),
        (
            ConfState(voters=frozenset({"a", "b", "c"}), voters_outgoing=frozenset({"a", "q"})),
            "must leave the current voters",
        ),
        (
            ConfState(voters=frozenset({"a", "x", "y"}), voters_outgoing=frozenset({"a", "b"})),
            "must leave the current voters",
        ),
    ],
)
def test_unsafe_transitions_are_refused(net, conf: ConfState, reason: str) -> None:  # noqa: ANN001
    a = leader(net)
    before = a.status().last_index
    with pytest.raises(MembershipError, match=reason):
        a.propose_conf_change(conf)
    assert a.status().last_index == before
    # The refusal leaves no change pending: a legal one goes through.
    a.propose_conf_change(ConfState(voters=frozenset({"a", "b", "c"}), learners=frozenset({"d"})))


@pytest.mark.parametrize(
    "conf",
    [
        ConfState(voters=frozenset({"a", "b", "c", "d"})),  # one voter more
        ConfState(voters=frozenset({"a", "b"})),  # one voter less
        ConfState(voters=frozenset({"a", "b", "c"}), learners=frozenset({"x", "y"})),  # learners only
        ConfState(voters=frozenset({"a", "x", "y"}), voters_outgoing=frozenset({"a", "b", "c"})),  # joint
    ],
)
def test_safe_transitions_are_accepted(net, conf: ConfState) -> None:  # noqa: ANN001
    a = leader(net)
    index = a.propose_conf_change(conf)
    assert index == a.status().last_index


def test_membership_error_is_still_importable_from_membership_ops() -> None:
    from raftkit.runtime import membership_ops

    assert membership_ops.MembershipError is MembershipError
    assert issubclass(MembershipError, ValueError)
