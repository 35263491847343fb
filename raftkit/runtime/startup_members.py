"""The membership a node's core starts with, when the operator overrides
what its storage says.

Normally the core takes the membership from its snapshot and log. Two
settings replace it at start (``RawNode(force_conf=...)``: the first leader
writes it to the log, so it outlives the next restart):

* ``force_new_cluster`` (disaster recovery, docs/operations.md): this node
  alone, as the single voter of a new cluster.
* ``members_from_start`` (PySyncObj's static membership): if the stored
  membership does not name this node, the members it was started with. A
  PySyncObj cluster may be restarted on new addresses with its dump and
  journal files; each node's stored membership then lists the old ones, and
  without this none of them would be a member of its own cluster. A node
  its storage does name (the usual restart, or one added later) keeps the
  stored membership.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping

from raftkit.core.raft import RaftConfig
from raftkit.core.rawnode import RawNode
from raftkit.core.types import ConfState, NodeId, SnapshotMeta
from raftkit.runtime.config import NodeConfig
from raftkit.storage.log_store import LogStore

__all__ = ["open_core"]

log = logging.getLogger(__name__)


def open_core(
    config: RaftConfig,
    node_config: NodeConfig,
    store: LogStore,
    peers: Mapping[NodeId, str],
    conf: ConfState,
    snapshot: SnapshotMeta | None,
    rng: random.Random,
    *,
    stored: bool,
) -> RawNode:
    """The core over ``store``; ``stored``: the node started with state."""
    me = config.id
    if node_config.force_new_cluster:
        log.warning("%s: force_new_cluster: starting as the only voter of a new cluster", me)
        alone = ConfState(voters=frozenset({me}), addresses=((me, peers[me]),))
        return RawNode(config, store, conf=conf, snapshot=snapshot, rng=rng, force_conf=alone)
    raw = RawNode(config, store, conf=conf, snapshot=snapshot, rng=rng)
    if not (node_config.members_from_start and stored) or me in raw.raft.conf.members:
        return raw
    started = ConfState(voters=frozenset(peers), addresses=tuple(sorted(peers.items())))
    log.warning(
        "%s: its stored membership (%s) does not name it: taking the members it was started with (%s)",
        me,
        ", ".join(sorted(raw.raft.conf.members)),
        ", ".join(sorted(peers)),
    )
    return RawNode(config, store, conf=conf, snapshot=snapshot, rng=rng, force_conf=started)
