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
  its storage does name (the usual restart, or one added later), in the
  membership applied or in a config entry of its log still to apply, keeps
  the stored membership; so does a node that joins (``NodeConfig.join``: a
  read-only node, never a voter of what it was started with). The config
  entries of the log that the forced membership replaces are then skipped
  when they are applied (``Raft.superseded_confs``), or the first of them
  would bring the old membership back.

  It forces only when the data was written under another id: each node
  records its id in ``<data_dir>/node-id``. A voter that was removed and
  is restarted with its old command line keeps its id, so it does not
  force the old membership back (a majority of removed voters could
  otherwise elect a leader of their own). Without a ``data_dir``, or with
  data from before the record existed, it never forces.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path

from raftkit.core.membership import decode_conf
from raftkit.core.raft import RaftConfig
from raftkit.core.rawnode import RawNode
from raftkit.core.types import ConfState, EntryKind, NodeId, SnapshotMeta
from raftkit.errors import CodecError, LogCompactedError, LogUnavailableError
from raftkit.runtime.config import NodeConfig
from raftkit.storage.log_store import LogStore

__all__ = ["open_core"]

log = logging.getLogger(__name__)


def _stored_confs(raw: RawNode, snapshot: SnapshotMeta | None) -> list[ConfState]:
    """Every membership the node's storage holds: its snapshot's and its log's config entries."""
    confs = [] if snapshot is None else [snapshot.conf]
    log_ = raw.raft.log
    try:
        entries = log_.entries(log_.first_index(), log_.last_index() + 1)
    except (LogCompactedError, LogUnavailableError):
        return confs
    for e in entries:
        if e.kind is EntryKind.CONFIG:
            with contextlib.suppress(CodecError):
                confs.append(decode_conf(e.data))
    return confs


def _record_owner(node_config: NodeConfig, me: NodeId) -> NodeId | None:
    """The id the data in ``data_dir`` was written under (None: unknown),
    and from now on this node's."""
    if node_config.data_dir is None:
        return None
    path = Path(node_config.data_dir) / "node-id"
    try:
        before: NodeId | None = path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        before = None
    if before != me:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(me + "\n", encoding="utf-8")
        os.replace(temporary, path)
    return before


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
    written_by = _record_owner(node_config, me)
    if not (node_config.members_from_start and stored) or node_config.join:
        return raw  # a joining node (a read-only one) is no member of what it was started with
    if written_by is None or written_by == me:
        return raw  # its own data (or no record of whose): the membership it stored stands
    held = _stored_confs(raw, snapshot)
    if not held or any(me in c.members for c in held):
        return raw  # its storage names it (applied, or in a config entry still to apply), or no one
    started = ConfState(voters=frozenset(peers), addresses=tuple(sorted(peers.items())))
    log.warning(
        "%s: its stored membership (%s) does not name it: taking the members it was started with (%s)",
        me,
        ", ".join(sorted(held[-1].members)),
        ", ".join(sorted(peers)),
    )
    return RawNode(config, store, conf=conf, snapshot=snapshot, rng=rng, force_conf=started)
