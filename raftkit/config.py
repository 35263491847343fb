"""NodeConfig: every knob of a node runtime, with documented defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class NodeConfig:
    """Runtime settings. Times are in seconds unless the name says ticks.

    The election timeout is random in ``[election_timeout_min,
    election_timeout_max)``; a tick is ``tick_interval`` long.
    """

    tick_interval: float = 0.05
    election_timeout_min: float = 0.4  # PySyncObj's raftMinTimeout
    election_timeout_max: float = 0.8  # should stay about 2x the minimum
    heartbeat_interval: float = 0.1
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_msg: int = 2048
    max_bytes_per_msg: int = 4 << 20
    max_inflight_msgs: int = 64  # per follower, in messages
    max_inflight_bytes: int = 32 << 20  # per follower, in bytes
    max_batch: int = 8192  # commands taken from the queue per loop iteration
    commands_queue_size: int = 100_000  # beyond this, calls fail at once (back-pressure)
    command_timeout: float = 30.0  # default per call when the caller gives none
    log_compaction_min_entries: int = 100_000  # snapshot once the log holds this many entries
    log_compaction_keep: int = 1_000  # trailing entries kept for slightly slow followers
    snapshot_chunk_size: int = 1 << 20
    on_ready: Callable[[], Any] | None = None  # called once, when this node first knows a leader
    on_state_changed: Callable[[str, str], Any] | None = None  # (old role, new role)

    def __post_init__(self) -> None:
        if self.tick_interval <= 0:
            raise ValueError("tick_interval must be positive")
        if not 0 < self.election_timeout_min < self.election_timeout_max:
            raise ValueError("need 0 < election_timeout_min < election_timeout_max")
        if self.heartbeat_interval >= self.election_timeout_min:
            raise ValueError("heartbeat_interval must be shorter than election_timeout_min")
        if self.commands_queue_size <= 0:
            raise ValueError("commands_queue_size must be positive")

    @property
    def election_tick(self) -> int:
        return max(2, round(self.election_timeout_min / self.tick_interval))

    @property
    def election_tick_max(self) -> int:
        return max(self.election_tick + 1, round(self.election_timeout_max / self.tick_interval))

    @property
    def heartbeat_tick(self) -> int:
        return max(1, min(self.election_tick - 1, round(self.heartbeat_interval / self.tick_interval)))
