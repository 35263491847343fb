"""The restart marker: a small file that outlives the node's process and says
"this node held state once" (it left term 0 or held an entry, in a cluster
of more than one voter).

A node that starts empty without the marker may be a first start; with it,
it certainly lost its state and must be readmitted by a leader. That is how
a brand-new cluster starts with a majority while a cluster that lost its
state everywhere (every in-memory node killed in turn) halts instead of
starting empty (raftkit.core.recovery, docs/operations.md "Starting over").

Where: ``<data_dir>/HELD_STATE`` with a data directory (and a second copy
in the marker folder, which outlives a replaced disk); in memory mode, in
``NodeConfig.state_marker_dir``, else the transport's own folder (the
in-process ``MemoryNetwork`` keeps one per network), else
``$RAFTKIT_STATE_MARKER_DIR``, else
``<tempdir>/raftkit-<uid>/`` (created 0700), named by a hash of the node's id,
its own address and the cluster id (not the member list, which changes as
the cluster grows). Two clusters that reuse a node's id and address on one
machine share its marker: set a cluster id, or start the second one with
``initial_cluster_state='new'``.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from raftkit.runtime.config import NodeConfig

MARKER_DIR_ENV = "RAFTKIT_STATE_MARKER_DIR"
DATA_DIR_MARKER = "HELD_STATE"


def default_marker_dir() -> Path:
    env = os.environ.get(MARKER_DIR_ENV)
    if env:
        return Path(env)
    uid = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    return Path(tempfile.gettempdir()) / f"raftkit-{uid}"


def marker_path(
    config: NodeConfig, node_id: str, peers: Mapping[str, str], transport_dir: str | None = None
) -> Path:
    """The marker ``status()`` shows: in the data directory when there is one,
    else in the marker folder (see the module docstring); ``transport_dir`` is
    the transport's ``state_marker_dir``."""
    if config.data_dir is not None:
        return Path(config.data_dir) / DATA_DIR_MARKER
    return folder_marker_path(config, node_id, peers, transport_dir)


def marker_paths(
    config: NodeConfig, node_id: str, peers: Mapping[str, str], transport_dir: str | None = None
) -> list[Path]:
    """Every marker this node keeps, the one ``marker_path`` names first. A
    node with a data directory also keeps one in the marker folder: a
    replaced disk loses the data directory's marker with the data, and a
    majority of replaced disks would otherwise pass for a first start."""
    paths = [marker_path(config, node_id, peers, transport_dir)]
    if config.data_dir is not None:
        paths.append(folder_marker_path(config, node_id, peers, transport_dir))
    return paths


def folder_marker_path(
    config: NodeConfig, node_id: str, peers: Mapping[str, str], transport_dir: str | None = None
) -> Path:
    """The marker in the marker folder, named by the node's id, its own
    address and the cluster id. Never by the member list: restarting with an
    updated list (after growing the cluster) must still find the marker, or
    a wiped majority of the old members would pass for a first start."""
    chosen = config.state_marker_dir or transport_dir
    folder = Path(chosen) if chosen else default_marker_dir()
    key = json.dumps([node_id, peers.get(node_id), config.cluster_id])
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    return folder / f"{name}.held-state"


def prepare_marker_dir(path: Path) -> None:
    """Create the marker's folder private to this user, and refuse one that
    others could write (they could plant or delete markers)."""
    folder = path.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.stat()
    except OSError as exc:
        raise ValueError(
            f"cannot create the restart-marker folder {folder} ({exc}); set NodeConfig.state_marker_dir "
            f"or ${MARKER_DIR_ENV} to a writable private folder"
        ) from exc
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise ValueError(
            f"the restart-marker folder {folder} belongs to another user; set NodeConfig.state_marker_dir "
            f"or ${MARKER_DIR_ENV} to a folder of your own"
        )
    if stat.S_IMODE(st.st_mode) & 0o022:
        raise ValueError(
            f"the restart-marker folder {folder} is writable by others; make it private (chmod 700) or set "
            f"NodeConfig.state_marker_dir / ${MARKER_DIR_ENV} to a private folder"
        )


def write_marker(path: Path) -> None:
    """Create an empty file durably (the file and its directory entry)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        os.fsync(f.fileno())
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
