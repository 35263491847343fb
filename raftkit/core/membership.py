"""Membership configurations as log payloads, and the progress tracker that
follows them. Config entries take effect when applied (as in etcd-raft), and
only one change may be in flight at a time."""

from __future__ import annotations

import json

from raftkit.core.quorum import VoteResult, committed_index, vote_result
from raftkit.core.types import ConfState, NodeId
from raftkit.errors import CodecError


def encode_conf(conf: ConfState) -> bytes:
    """Canonical bytes for a CONFIG entry (sorted, so equal configs encode equally)."""
    return json.dumps(
        {
            "voters": sorted(conf.voters),
            "learners": sorted(conf.learners),
            "outgoing": sorted(conf.voters_outgoing),
            "addresses": dict(conf.addresses),
        },
        separators=(",", ":"),
    ).encode()


def decode_conf(data: bytes) -> ConfState:
    try:
        raw = json.loads(data)
        return ConfState(
            voters=frozenset(str(v) for v in raw["voters"]),
            learners=frozenset(str(v) for v in raw["learners"]),
            voters_outgoing=frozenset(str(v) for v in raw["outgoing"]),
            addresses=tuple(sorted((str(k), str(v)) for k, v in raw.get("addresses", {}).items())),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CodecError(f"malformed configuration entry: {exc}") from exc


def validate_conf(conf: ConfState) -> None:
    """Reject configurations Raft cannot run with."""
    if not conf.voters:
        raise ValueError("a configuration needs at least one voter")
    both = conf.learners & conf.all_voters
    if both:
        raise ValueError(f"nodes cannot be voter and learner at once: {sorted(both)}")


def quorum_committed(conf: ConfState, match: dict[NodeId, int]) -> int:
    return committed_index(conf.voters, conf.voters_outgoing, match)


def quorum_vote(conf: ConfState, votes: dict[NodeId, bool]) -> VoteResult:
    return vote_result(conf.voters, conf.voters_outgoing, votes)


# -- single-server changes requested by operators or joining nodes -------------------------

CHANGE_OPS = ("add_learner", "add_voter", "promote", "demote", "remove")


def encode_change(op: str, node: NodeId, address: str | None = None) -> bytes:
    """A membership change request, as carried by a CONF_CHANGE message."""
    if op not in CHANGE_OPS:
        raise ValueError(f"unknown membership change {op!r}; expected one of {', '.join(CHANGE_OPS)}")
    return json.dumps({"op": op, "node": node, "address": address}, separators=(",", ":")).encode()


def decode_change(data: bytes) -> tuple[str, NodeId, str | None]:
    try:
        raw = json.loads(data)
        op, node, address = raw["op"], raw["node"], raw.get("address")
    except (ValueError, KeyError, TypeError) as exc:
        raise CodecError(f"malformed membership change: {exc}") from exc
    bad_address = address is not None and type(address) is not str
    if op not in CHANGE_OPS or type(node) is not str or not node or bad_address:
        raise CodecError(f"malformed membership change: {raw!r}")
    return op, node, address


def changed(conf: ConfState, op: str, node: NodeId, address: str | None = None) -> ConfState | None:
    """``conf`` after the single-server change ``op`` on ``node``, or None
    when it already holds (so a retried request is harmless). Raises
    ValueError for a change that makes no sense (promote a stranger ...)."""
    if conf.joint:
        raise ValueError("the cluster is leaving a joint configuration; retry shortly")
    voters, learners = set(conf.voters), set(conf.learners)
    book = dict(conf.addresses)
    if op in ("add_learner", "add_voter") and address and book.get(node) != address:
        book[node] = address
    elif op == "add_learner" and node in learners or op == "add_voter" and node in voters:
        return None
    if op == "add_learner":
        if node in voters:
            raise ValueError(f"{node} is already a voter (use demote to make it a learner)")
        learners.add(node)
    elif op == "add_voter":
        learners.discard(node)
        voters.add(node)
    elif op == "promote":
        if node in voters:
            return None
        if node not in learners:
            raise ValueError(f"{node} is not a learner of this cluster (add it first)")
        learners.discard(node)
        voters.add(node)
    elif op == "demote":
        if node in learners:
            return None
        if node not in voters:
            raise ValueError(f"{node} is not a voter of this cluster")
        voters.discard(node)
        learners.add(node)
    elif op == "remove":
        if node not in voters and node not in learners:
            return None
        voters.discard(node)
        learners.discard(node)
        book.pop(node, None)
    else:
        raise ValueError(f"unknown membership change {op!r}")
    if not voters:
        raise ValueError("refusing to remove the last voter")
    book = {n: a for n, a in book.items() if n in voters or n in learners}
    return ConfState(
        voters=frozenset(voters), learners=frozenset(learners), addresses=tuple(sorted(book.items()))
    )
