"""NodeConfig: every knob of a node runtime, with documented defaults, and
``raft_config``, the core's settings derived from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raftkit.core.raft import RaftConfig
from raftkit.core.types import NodeId

SNAPSHOT_MODES = ("auto", "fork", "thread", "inline")
DEFAULT_LEASE_DRIFT = 0.1  # see NodeConfig.lease_drift and raftkit.runtime.lease
DURABILITY_MODES = ("sync", "no-sync")
INITIAL_CLUSTER_STATES = ("auto", "new", "existing")


@dataclass
class NodeConfig:
    """Runtime settings. Times are in seconds unless the name says ticks.

    The election timeout is random in ``[election_timeout_min,
    election_timeout_max)``; a tick is ``tick_interval`` long.

    **Memory or disk** is one setting, as in PySyncObj: ``data_dir=None``
    (the default) keeps the log and snapshots in memory; a directory makes
    the builder use an ``LmdbLogStore`` in ``<data_dir>/log`` and a
    ``FileSnapshotter`` in ``<data_dir>/snapshots``, and a restarted node
    resumes from them (see docs/storage.md, "Memory or disk").

    **Snapshots** are taken when the log holds ``log_compaction_min_entries``
    entries or ``log_compaction_min_bytes`` bytes not yet covered by a
    snapshot (and at least ``log_compaction_size_ratio`` times the size of
    the last snapshot this node took, so a large state is not snapshotted
    about as often as it is rewritten; each node stretches that byte
    threshold by a random factor in ``[1, 1 + log_compaction_spread)``, drawn
    anew after each snapshot, so a cluster does not snapshot everywhere at
    once), or when ``log_compaction_min_time`` seconds passed since the
    last one and at least ``log_compaction_min_time_entries`` entries are
    new; ``log_compaction_keep`` entries before the snapshot stay in the log
    for followers that are only slightly behind. ``snapshot_mode`` says how
    the state is captured without stalling the event loop: ``"fork"`` (a
    copy-on-write child serializes it), ``"thread"`` (a worker thread),
    ``"inline"`` (on the loop: tests and tiny states), or ``"auto"``: where
    the platform has fork and the state machine is ``fork_safe``, the first
    capture forks and each later one forks or uses a thread, whichever held
    the loop less when last measured (``raftkit.storage.auto_capture``);
    otherwise thread. A snapshot received from the leader may be at most
    ``max_snapshot_bytes`` (64 GiB by default) long.
    """

    tick_interval: float = 0.05
    election_timeout_min: float = 0.4  # PySyncObj's raftMinTimeout
    election_timeout_max: float = 0.8  # should stay about 2x the minimum
    heartbeat_interval: float = 0.1
    pre_vote: bool = True
    check_quorum: bool = True
    # How long a leader that hears from no majority stays leader (None: one
    # election timeout). Longer keeps it in office through a brief partition
    # (PySyncObj's leaderFallbackTimeout); lease reads do not depend on it.
    leader_fallback_timeout: float | None = None
    # Lease reads assume a follower's clock runs at most 1 / (1 - lease_drift)
    # times as fast as the leader's; the lease is shortened by this fraction
    # (raftkit.runtime.lease). Every node should use the same timing settings.
    lease_drift: float = DEFAULT_LEASE_DRIFT
    max_entries_per_msg: int = 2048
    max_bytes_per_msg: int = 4 << 20
    max_inflight_msgs: int = 64  # per follower, in messages
    # Per follower, in bytes. It bounds the data queued ahead of a heartbeat on
    # the link and what one Ready sends: at 32 MiB, 7 nodes sharing 2 cores
    # elected anew under load (docs/operations.md, "Under load").
    max_inflight_bytes: int = 8 << 20
    max_batch: int = 8192  # commands taken from the queue per loop iteration
    # Commands packed into one log entry when several wait at once (one
    # entry, message record and apply call for all of them). 1: one entry
    # per command, the only format raftkit 0.1 reads: set it on every node
    # while a cluster is upgraded from 0.1 (docs/operations.md).
    commands_per_entry: int = 256
    # Seconds of applying per loop iteration; the rest waits for the next one,
    # so ticks (heartbeats, elections) and messages keep flowing under load.
    apply_budget: float = 0.02
    # Overload: while more than 1,000 commands of this node are in flight
    # (runtime.commands.BACKLOG_MIN; 2 MiB of them if fewer: at least 64
    # big ones) and they get their outcome this many
    # seconds after submission, new ones are refused at once (QueueFullError)
    # instead of queueing for seconds. 0.05 rather than 0.1 (session 36) or
    # 0.2 (session 28): at twice capacity (1 KB) accepted calls waited half
    # as long (p50 110-182 ms against 240-363, p99 at most 0.8 s against up
    # to 1.1 s) and 2.6 % more committed; near capacity 1-3 % more calls are
    # refused (docs/benchmarks.md). None: only commands_queue_size bounds the queue.
    max_queue_delay: float | None = 0.05
    commands_queue_size: int = 100_000  # beyond this, calls fail at once (back-pressure)
    command_timeout: float = 30.0  # default per call when the caller gives none
    # While this node runs, the garbage collector's first threshold is at
    # least this (raftkit.runtime.gc_tuning: commands in flight then die
    # young instead of triggering full collections); restored when the last
    # node stops. None: leave the collector alone.
    gc_threshold: int | None = 50_000
    # -- storage -------------------------------------------------------------------------
    data_dir: str | None = None  # None: memory only; a directory: LMDB log + snapshot files
    # A node that starts with no state may have lost it (memory mode, a wiped
    # disk): it does not vote or count toward a quorum until a leader has
    # readmitted it. Turn off only to reproduce PySyncObj's behaviour.
    guard_lost_state: bool = True
    join: bool = False  # not in ``peers``' cluster yet: start as an outsider and call join_cluster()
    # Disaster recovery only (docs/operations.md): start as the single voter of
    # a new cluster with this node's data, whatever membership the log holds.
    force_new_cluster: bool = False
    # PySyncObj's static membership: a node whose stored membership does not
    # name it (the whole cluster restarted on new addresses with its data)
    # takes the members it was started with (raftkit.runtime.startup_members).
    members_from_start: bool = False
    # How a node that starts with no state tells a first start from a lost
    # state (raftkit.runtime.state_marker, docs/operations.md "Bootstrapping"):
    # "auto": its restart marker decides (absent: a first start, which
    #   bootstraps once a majority of voters that never held state answers;
    #   present: it lost its state and waits to be readmitted);
    # "new": start empty even if the marker says the cluster held data (the
    #   operator's step after a total wipe; ignored when the node holds data);
    # "existing": never bootstrap, always wait for a leader to readmit it.
    initial_cluster_state: str = "auto"
    state_marker_dir: str | None = None  # memory mode's marker folder (default: raftkit.runtime.state_marker)
    durability: str = "sync"  # of the LMDB log built from data_dir: "sync" or "no-sync" (unsafe)
    cluster_id: str | None = None  # stamped into snapshot files; another cluster's are refused
    storage_retry_interval: float = 1.0  # after a failed log write, retry this often
    # -- snapshots and log compaction ------------------------------------------------------
    log_compaction_min_entries: int = 100_000  # snapshot after this many entries since the last one
    log_compaction_min_bytes: int = 64 << 20  # ... or this many bytes of log since the last one,
    log_compaction_size_ratio: float = 4.0  # ... and at least this times the last snapshot's size
    # The byte threshold of each snapshot is stretched by a factor drawn in
    # [1, 1 + spread): nodes applying the same log then do not all snapshot
    # at once (0: the exact threshold on every node).
    log_compaction_spread: float = 0.5
    log_compaction_min_time: float | None = 300.0  # ... or this age (None: never by age) ...
    log_compaction_min_time_entries: int = 1  # ... if at least this many entries are new
    log_compaction_keep: int = 1_000  # trailing entries kept for slightly slow followers
    snapshot_mode: str = "auto"  # auto | fork | thread | inline
    snapshot_timeout: float = 600.0  # a capture running longer is abandoned (a fork child killed)
    snapshot_chunk_size: int = 1 << 20
    # A snapshot stream from the leader larger than this is cut and discarded
    # (a stream from anyone else is refused before its first byte). Set it
    # above the largest state this node's state machine may hold.
    max_snapshot_bytes: int = 64 << 30
    on_ready: Callable[[], Any] | None = None  # called once, when this node first knows a leader
    on_state_changed: Callable[[str, str], Any] | None = None  # (old role, new role)

    def __post_init__(self) -> None:
        if self.tick_interval <= 0:
            raise ValueError("tick_interval must be positive")
        if not 0 < self.election_timeout_min < self.election_timeout_max:
            raise ValueError("need 0 < election_timeout_min < election_timeout_max")
        if self.heartbeat_interval >= self.election_timeout_min:
            raise ValueError("heartbeat_interval must be shorter than election_timeout_min")
        fallback = self.leader_fallback_timeout
        if fallback is not None and not fallback > self.heartbeat_interval:
            raise ValueError(
                "leader_fallback_timeout must be longer than heartbeat_interval (or None: one election "
                f"timeout); got {self.leader_fallback_timeout!r}"
            )
        if not 0 <= self.lease_drift < 1:
            raise ValueError(
                "lease_drift must be a fraction in [0, 1), e.g. 0.1 for clocks within 10%; "
                f"got {self.lease_drift!r}"
            )
        if self.commands_queue_size <= 0:
            raise ValueError("commands_queue_size must be positive")
        if self.commands_per_entry < 1:
            raise ValueError(f"commands_per_entry must be at least 1 (1: one command per entry); "
                             f"got {self.commands_per_entry!r}")
        if self.snapshot_mode not in SNAPSHOT_MODES:
            modes = ", ".join(SNAPSHOT_MODES)
            raise ValueError(f"snapshot_mode must be one of {modes}; got {self.snapshot_mode!r}")
        if self.durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be 'sync' or 'no-sync'; got {self.durability!r}")
        if self.initial_cluster_state not in INITIAL_CLUSTER_STATES:
            raise ValueError(
                "initial_cluster_state must be 'auto', 'new' or 'existing'; "
                f"got {self.initial_cluster_state!r}"
            )
        if self.state_marker_dir is not None and not str(self.state_marker_dir):
            raise ValueError("state_marker_dir must be a directory path (or None for the default)")
        if self.data_dir is not None and not str(self.data_dir):
            raise ValueError("data_dir must be a directory path (or None for memory only)")
        if self.log_compaction_min_entries < 1 or self.log_compaction_min_bytes < 1:
            raise ValueError("log_compaction_min_entries and log_compaction_min_bytes must be >= 1")
        if self.log_compaction_min_time is not None and self.log_compaction_min_time <= 0:
            raise ValueError("log_compaction_min_time must be positive (or None to disable it)")
        if self.log_compaction_min_time_entries < 1:
            raise ValueError("log_compaction_min_time_entries must be >= 1")
        if not self.log_compaction_size_ratio >= 0:
            raise ValueError(
                "log_compaction_size_ratio must be >= 0 (0: min_bytes alone), "
                f"not {self.log_compaction_size_ratio!r}"
            )
        if not 0 <= self.log_compaction_spread <= 10:
            raise ValueError(
                "log_compaction_spread must be between 0 (the exact threshold) and 10, "
                f"not {self.log_compaction_spread!r}"
            )
        if self.log_compaction_keep < 0:
            raise ValueError("log_compaction_keep must be >= 0")
        if self.max_queue_delay is not None and not self.max_queue_delay > 0:
            raise ValueError(f"max_queue_delay must be seconds > 0 or None, not {self.max_queue_delay!r}")
        if self.gc_threshold is not None and (type(self.gc_threshold) is not int or self.gc_threshold < 1):
            raise ValueError(f"gc_threshold must be an int >= 1 or None, not {self.gc_threshold!r}")
        if not self.apply_budget > 0:
            raise ValueError(f"apply_budget must be a positive number of seconds, got {self.apply_budget!r}")
        if self.max_snapshot_bytes <= 0:
            raise ValueError(
                f"max_snapshot_bytes must be a positive number of bytes (default 64 GiB), "
                f"got {self.max_snapshot_bytes!r}"
            )
        if self.snapshot_timeout <= 0 or self.storage_retry_interval <= 0 or self.snapshot_chunk_size <= 0:
            raise ValueError(
                "snapshot_timeout, storage_retry_interval and snapshot_chunk_size must be positive"
            )

    @property
    def election_tick(self) -> int:
        return max(2, round(self.election_timeout_min / self.tick_interval))

    @property
    def election_tick_max(self) -> int:
        return max(self.election_tick + 1, round(self.election_timeout_max / self.tick_interval))

    @property
    def quorum_check_tick(self) -> int:
        """Ticks between a leader's check-quorum rounds (0: election_tick)."""
        if self.leader_fallback_timeout is None:
            return 0
        return max(1, round(self.leader_fallback_timeout / self.tick_interval))

    @property
    def heartbeat_tick(self) -> int:
        return max(1, min(self.election_tick - 1, round(self.heartbeat_interval / self.tick_interval)))


def raft_config(
    c: NodeConfig,
    node_id: NodeId,
    *,
    applied: int,
    recovering: bool = False,
    incarnation: bytes = b"",
    fresh: bool = False,
    authenticated: bool = True,
) -> RaftConfig:
    """The core's settings for a node configured by ``c`` whose state
    machine holds every entry up to ``applied`` (``recovering``,
    ``incarnation``: see RaftConfig and raftkit.core.recovery).
    ``authenticated``: whether the transport authenticates every peer; only
    then may a non-member ask to join (raftkit.core.admission)."""
    return RaftConfig(
        id=node_id,
        election_tick=c.election_tick,
        election_tick_max=c.election_tick_max,
        heartbeat_tick=c.heartbeat_tick,
        pre_vote=c.pre_vote,
        check_quorum=c.check_quorum,
        quorum_check_tick=c.quorum_check_tick,
        max_entries_per_msg=c.max_entries_per_msg,
        max_bytes_per_msg=c.max_bytes_per_msg,
        max_inflight_msgs=c.max_inflight_msgs,
        max_inflight_bytes=c.max_inflight_bytes,
        applied=applied,
        recovering=recovering,
        incarnation=incarnation,
        fresh=fresh,
        accept_join_requests=authenticated,
    )
