"""Which messages a node takes from a sender outside its membership.

A peer's claimed id is only as good as the transport's authentication, but
even an honest id that is not a member (a removed node, a stranger on a
plain TCP port, a monitoring certificate) must not change a node's state.
A sender outside ``conf.members`` is refused for:

* replies (``*_RESP``): a node asks only members, so a reply from anyone
  else is forged or from a removed node;
* votes forced by a leadership transfer: they skip the leader lease, so a
  non-member could depose a working leader with one. Ordinary votes from
  non-members are still answered (dissertation §4.1: a voter that has not
  yet applied the entry adding a candidate must not stall the election;
  refusing them made the simulator's membership changes lose liveness),
  and the leader lease and pre-vote keep them from disrupting a leader;
* requests only members may make: ``PROPOSE``, ``READ_INDEX``,
  ``TRANSFER_LEADER``, and ``CONF_CHANGE`` except a joining node's request
  to add *itself* as a learner, taken only when the driver says its links
  are authenticated (``RaftConfig.accept_join_requests``): on plain TCP
  anyone could ask, so members are added there by an operator (the admin
  endpoint or ``add_member`` on a member).

Leader traffic (``APPEND``, ``HEARTBEAT``, ``SNAPSHOT``, ``TIMEOUT_NOW``)
and the recovery protocol are not judged here: a lagging member must follow
a leader added after its last applied configuration (§4.1).
"""

from __future__ import annotations

from raftkit.core.membership import decode_change
from raftkit.core.types import ConfState, Message, MessageType
from raftkit.errors import CodecError

MT = MessageType

MEMBERS_ONLY = frozenset(
    {
        MT.APPEND_RESP,
        MT.HEARTBEAT_RESP,
        MT.VOTE_RESP,
        MT.PRE_VOTE_RESP,
        MT.READ_INDEX_RESP,
        MT.PROPOSE,
        MT.READ_INDEX,
        MT.TRANSFER_LEADER,
    }
)
"""Message types taken from members only."""


def refused_from_non_member(
    m: Message, conf: ConfState, *, accept_join_requests: bool, forced_vote: bool
) -> bool:
    """True when ``m`` must be dropped because its sender is not a member of
    ``conf``; ``forced_vote``: ``m`` is a vote forced by a leadership transfer."""
    if m.src in conf.members:
        return False
    if m.type in MEMBERS_ONLY:
        return True
    if m.type in (MT.VOTE, MT.PRE_VOTE):
        return forced_vote
    if m.type is MT.CONF_CHANGE:
        return not (accept_join_requests and _asks_to_join(m))
    return False


def _asks_to_join(m: Message) -> bool:
    """``m`` asks to add its own sender as a learner (how a new node joins)."""
    try:
        op, node, _ = decode_change(m.context)
    except CodecError:
        return False
    return op == "add_learner" and node == m.src
