"""LostState: the node's side of lost-state recovery (raftkit.core.recovery).

It owns the restart markers (raftkit.runtime.state_marker), the
``RECOVERING`` flag file of a node with a data directory, and the clock of
a node that started without its state until a leader readmits it. The core
decides; this keeps what must outlive the process and what ``status()``
reports about it.

Threads: ``start`` runs in ``Node.__init__`` (the constructing thread,
before the loop exists); everything else on the loop thread, inside the
Ready loop.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from raftkit.core.types import NodeId
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.state_marker import DATA_DIR_MARKER, marker_paths, prepare_marker_dir, write_marker

__all__ = ["LostState"]

# The node's log lines stay under one logger, wherever the code that writes them lives.
log = logging.getLogger("raftkit.runtime.node")


class LostState:
    def __init__(
        self, node_id: NodeId, config: NodeConfig, peers: Mapping[NodeId, str], marker_dir: str | None
    ) -> None:
        """``marker_dir``: the transport's own marker folder, if it has one."""
        self._id = node_id
        self._config = config
        self.markers = marker_paths(config, node_id, peers, marker_dir)
        self.marker = self.markers[0]  # the one status() shows
        for marker in self.markers:
            if marker.name != DATA_DIR_MARKER:
                prepare_marker_dir(marker)
        self.held_state = False  # a restart marker exists: this node held state once
        self.recovering_since: float | None = None  # monotonic start while not voting yet
        self.readmitted_after: float | None = None  # seconds from start to voting again
        # With a data directory the flag outlives a crash until the leader
        # readmits the node: entries received meanwhile do not bring back
        # the votes it forgot.
        self._recovering_marker = None if config.data_dir is None else Path(config.data_dir) / "RECOVERING"

    def start(self, empty: bool) -> tuple[bool, bool]:
        """At boot: ``(recovering, fresh)`` for the core's RaftConfig, given
        whether the node starts with nothing stored (``empty``). Started
        with nothing, this node may have held state (and cast votes) before,
        so it runs the recovery protocol."""
        marked = self._recovering_marker is not None and self._recovering_marker.exists()
        recovering = (empty or marked) and self._config.guard_lost_state
        if recovering and self._recovering_marker is not None and not marked:
            write_marker(self._recovering_marker)
        # (A RECOVERING mark alone does not make an empty node one that held
        # state: only the restart marker says that.)
        fresh = self._first_start(empty)
        if recovering:
            self.recovering_since = time.monotonic()
            log.info(
                "%s: started without state (%s); %s", self._id,
                "no restart marker: a first start" if fresh else f"restart marker {self.marker}",
                "bootstrapping once a majority of voters that never held state answers"
                if fresh else "waiting for a leader to readmit it",
            )
        return recovering, fresh

    def _first_start(self, empty: bool) -> bool:
        """Whether this empty node never held state, as its restart marker
        (raftkit.runtime.state_marker) and ``initial_cluster_state`` say."""
        state = self._config.initial_cluster_state
        if empty and (state == "new" or self._config.force_new_cluster):
            for marker in self.markers:
                with contextlib.suppress(FileNotFoundError):
                    marker.unlink()  # the operator starts over: a new history
            log.warning("%s: initial_cluster_state='new': starting empty whatever this node held", self._id)
        self.held_state = any(marker.exists() for marker in self.markers)
        return empty and state != "existing" and not self.held_state

    def mark_held_state(self, term: int, last_index: int, voters: int) -> None:
        """Write the restart marker before this node's first message that
        carries a term or an entry in a cluster of more than one voter (a
        lone voter restarting empty is a plain in-memory store)."""
        if (term > 0 or last_index > 0) and voters > 1:
            for marker in self.markers:
                write_marker(marker)
            self.held_state = True

    def advanced(self, recovering: bool) -> None:
        """After each Ready: once the core stops recovering, the node was
        readmitted (the flag file goes, the time it took is kept)."""
        if recovering:
            return
        if self._recovering_marker is not None:
            with contextlib.suppress(FileNotFoundError):
                self._recovering_marker.unlink()  # readmitted
            self._recovering_marker = None
        if self.recovering_since is not None:
            self.readmitted_after = time.monotonic() - self.recovering_since
            self.recovering_since = None
            log.info("%s: voting again %.3fs after it started without state", self._id, self.readmitted_after)

    def recovering_since_wall(self) -> float | None:
        """When the node started without state, on the wall clock (None once voting)."""
        if self.recovering_since is None:
            return None
        return time.time() - (time.monotonic() - self.recovering_since)
