"""The leader lease: for how long a leader may serve reads without a round.

The lease rests on the followers' refusal to vote (raftkit.core.raft and
raftkit.core.election, with check-quorum): a follower that knows a leader
ignores vote and pre-vote requests while its ``election_elapsed`` is below
``election_tick``. A
message from the leader sets that count to 0 and every tick adds one, so
the follower grants a vote at its ``election_tick``-th tick at the
earliest. The first of those ticks can fire any moment after the message
(a tick right after a heartbeat counts whole), so the refusal lasts more
than ``(election_tick - 1)`` tick intervals, and possibly hardly more. A
follower's own campaign starts no earlier (its randomized timeout is at
least ``election_tick``), and a follower that restarts with its state keeps
refusing for ``election_tick`` ticks after it starts (``Raft.restart_guard``),
as if it had just heard from the leader.

So when a ReadIndex round that the leader *sent* at time ``s`` (by its own
clock) is confirmed by a quorum, every confirming follower heard the leader
at or after ``s`` and refuses votes for ``(election_tick - 1) * tick_interval``
of its own clock after that; any new leader needs one of their votes (the
quorums intersect). The leader may serve lease reads until

    s + (election_tick - 1) * tick_interval * (1 - drift)

by its clock, where ``drift`` bounds how much faster a follower's clock may
run than the leader's (while the leader's clock measures ``d``, a
follower's measures at most ``d / (1 - drift)``). ``election_tick`` is the
value ``NodeConfig.election_tick`` derives (``election_timeout_min /
tick_interval``, rounded, at least 2), the very number the followers'
cores count to, so every node must run the same timing settings.

The formula is ``lease_duration``; ``config_lease`` applies it to a
NodeConfig. A transfer's TIMEOUT_NOW forces a vote past this refusal: see
``raftkit.runtime.reads`` for why a leader that sent one serves no more lease reads
in that term.
"""

from __future__ import annotations

from raftkit.runtime.config import DEFAULT_LEASE_DRIFT, NodeConfig

__all__ = ["DEFAULT_LEASE_DRIFT", "config_lease", "lease_duration"]


def lease_duration(election_tick: int, tick_interval: float, drift: float = DEFAULT_LEASE_DRIFT) -> float:
    """Seconds (of the leader's clock) a lease lasts after the leader sent the
    round that confirmed it; see the module docstring for the derivation."""
    if isinstance(election_tick, bool) or not isinstance(election_tick, int) or election_tick < 2:
        raise ValueError(f"election_tick must be an integer >= 2 (see NodeConfig); got {election_tick!r}")
    if not tick_interval > 0:
        raise ValueError(f"tick_interval must be a positive number of seconds; got {tick_interval!r}")
    if not 0 <= drift < 1:
        raise ValueError(f"drift must be a fraction in [0, 1) (e.g. 0.1 for 10%); got {drift!r}")
    return (election_tick - 1) * tick_interval * (1 - drift)


def config_lease(config: NodeConfig) -> float:
    """``lease_duration`` for a node configured by ``config``."""
    return lease_duration(config.election_tick, config.tick_interval, config.lease_drift)
