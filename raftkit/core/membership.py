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
