"""One simulated node of ``SimCluster`` (raftkit.testing.sim): what survives a
crash (its "disk": a versioned log store and a snapshotter) and what does
not (the core and the state machine).

Kept apart from the cluster so the invariant checks and the clock model can
name a node's parts without reaching into the scheduler.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from raftkit.core.rawnode import RawNode
from raftkit.core.types import Entry, HardState, NodeId
from raftkit.storage.memory import MemoryLogStore
from raftkit.storage.memory_snapshotter import MemorySnapshotter

__all__ = ["SimLogStore", "SimNode"]

# One counter for every store of the process: a wiped node gets a new store,
# and its version must still differ from anything the checker saw before.
_store_versions = itertools.count(1)


class SimLogStore(MemoryLogStore):
    """A MemoryLogStore that stamps every change with a version unique across
    all stores, so ``check_invariants`` re-checks only what changed."""

    def __init__(self) -> None:
        super().__init__()
        self.version = next(_store_versions)

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        super().save(hard_state, entries)
        if hard_state is not None or entries:
            self.version = next(_store_versions)

    def compact(self, index: int) -> None:
        super().compact(index)
        self.version = next(_store_versions)

    def reset(self, index: int, term: int) -> None:
        super().reset(index, term)
        self.version = next(_store_versions)

    def truncate_suffix(self, index: int) -> None:
        super().truncate_suffix(index)
        self.version = next(_store_versions)


@dataclass
class SimNode:
    id: NodeId
    store: SimLogStore = field(default_factory=SimLogStore)  # survives crashes
    snapshots: MemorySnapshotter = field(default_factory=MemorySnapshotter)  # survives crashes
    raw: RawNode | None = None  # None while crashed
    applied: dict[int, Entry] = field(default_factory=dict)  # the state machine
    applied_index: int = 0
    received_snapshots: dict[int, bytes] = field(default_factory=dict)
    incarnation: int = 0
    lost_state: bool = False  # wiped and not readmitted yet: a boot runs the recovery protocol
    # The runtime's restart marker (it survives a wipe): set once the node
    # left term 0 or held an entry; a node without it may bootstrap fresh.
    had_state: bool = False
    # Ground truth for the invariants (never the core's flags): how often the
    # test wiped this node, and whether it has been seen voting since.
    wipes: int = 0
    amnesiac: bool = False
    crash_at_write: bool = False  # SimCluster.crash_while_writing: armed for the next write

    @property
    def alive(self) -> bool:
        return self.raw is not None
