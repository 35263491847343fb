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

Leader traffic is judged on its own, whoever sends it:

* ``APPEND``, ``HEARTBEAT`` and ``SNAPSHOT`` are still taken from any
  sender. Taking them only from voters of a configuration this node knows
  (``known_voters``: the one in force, unapplied config entries in its log,
  its latest snapshot's, the one it was started with) was tried and backed
  out: a member lagging behind the configuration that made the current
  leader a voter refused that leader for good, and a cluster that needed
  that member never committed again (tests/property/test_soak_examples.py).
  So a non-member that holds credentials can still pose as a leader: an
  open hole, documented in docs/security.md.
* ``TIMEOUT_NOW`` is acted on only from this node's current leader in the
  current term: it skips pre-vote and the other nodes' leases.

The recovery protocol (``PROBE``, ``PROBE_RESP``, ``REJOIN``) is not judged
here (raftkit.core.recovery).
"""

from __future__ import annotations

from collections.abc import Iterable

from raftkit.core.membership import decode_change
from raftkit.core.types import ConfState, Message, MessageType, NodeId, SnapshotMeta
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

LEADER_TRAFFIC = frozenset({MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT})
"""Message types taken only from a voter of a configuration the node knows."""


def known_voters(
    conf: ConfState,
    startup: ConfState,
    snapshot: SnapshotMeta | None,
    unapplied: Iterable[ConfState],
) -> frozenset[NodeId]:
    """Every node that is a voter (or outgoing voter) in a configuration a
    node knows: ``conf`` in force, ``startup`` (what it was started with),
    its latest ``snapshot``'s, and the ``unapplied`` config entries of its log."""
    voters = set(conf.all_voters) | startup.all_voters
    if snapshot is not None:
        voters |= snapshot.conf.all_voters
    for c in unapplied:
        voters |= c.all_voters
    return frozenset(voters)


def refused_from_non_member(
    m: Message,
    conf: ConfState,
    *,
    accept_join_requests: bool,
    forced_vote: bool,
    lead: NodeId | None,
    term: int,
) -> bool:
    """True when ``m`` must be dropped because its sender may not send it:
    not a member of ``conf``, or (a ``TIMEOUT_NOW``) not the current leader
    ``lead`` of ``term``. ``forced_vote``: ``m`` is a vote forced by a
    leadership transfer."""
    if m.type is MT.TIMEOUT_NOW:
        return not (lead is not None and m.src == lead and m.term == term)
    if m.type in LEADER_TRAFFIC:
        # Not refused, even from a sender this node knows as no voter: a
        # member lagging behind the configuration that made the current
        # leader a voter would refuse it for good, and a cluster that needs
        # that member's acknowledgements would never commit again (found by
        # the stateful test). Refusing a non-member leader without that cost
        # is still open (docs/security.md); ``known_voters`` is what such a
        # rule would start from.
        return False
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
