"""The restart marker's location and the options around it (raftkit.runtime.state_marker)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raftkit.runtime.config import NodeConfig
from raftkit.runtime.state_marker import (
    DATA_DIR_MARKER,
    MARKER_DIR_ENV,
    marker_path,
    marker_paths,
    prepare_marker_dir,
)

PEERS = {"a": "127.0.0.1:1", "b": "127.0.0.1:2", "c": "127.0.0.1:3"}


def test_memory_mode_markers_are_per_node_and_per_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MARKER_DIR_ENV, str(tmp_path))
    cfg = NodeConfig()
    a = marker_path(cfg, "a", PEERS)
    assert a.parent == tmp_path
    assert a == marker_path(cfg, "a", dict(reversed(PEERS.items())))  # the order of peers does not matter
    assert a != marker_path(cfg, "b", PEERS)
    # The member list is not part of the name: restarting with an updated
    # list (after growing the cluster) must find the marker again.
    assert a == marker_path(cfg, "a", {**PEERS, "d": "127.0.0.1:4"})
    assert a != marker_path(NodeConfig(cluster_id="other"), "a", PEERS)
    assert marker_path(NodeConfig(state_marker_dir=str(tmp_path / "x")), "a", PEERS).parent == tmp_path / "x"


def test_with_a_data_directory_the_marker_lives_there(tmp_path: Path) -> None:
    assert marker_path(NodeConfig(data_dir=str(tmp_path)), "a", PEERS) == tmp_path / DATA_DIR_MARKER


def test_a_node_with_a_data_directory_also_keeps_a_marker_outside_it(tmp_path: Path) -> None:
    """A replaced disk loses the data directory's marker with the data."""
    cfg = NodeConfig(data_dir=str(tmp_path / "data"), state_marker_dir=str(tmp_path / "markers"))
    paths = marker_paths(cfg, "a", PEERS)
    assert paths[0] == tmp_path / "data" / DATA_DIR_MARKER
    assert paths[1].parent == tmp_path / "markers"


def test_the_marker_folder_is_created_private(tmp_path: Path) -> None:
    marker = tmp_path / "markers" / "m.held-state"
    prepare_marker_dir(marker)
    assert (marker.parent.stat().st_mode & 0o077) == 0


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_marker_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(ValueError, match="writable by others.*chmod 700"):
        prepare_marker_dir(folder / "m.held-state")


def test_initial_cluster_state_is_checked() -> None:
    with pytest.raises(ValueError, match="'auto', 'new' or 'existing'"):
        NodeConfig(initial_cluster_state="fresh")
    with pytest.raises(ValueError, match="state_marker_dir"):
        NodeConfig(state_marker_dir="")


def test_raftkit_node_takes_initial_cluster_state() -> None:
    from raftkit.cli import build_parser

    base = ["node", "--id", "a", "--address", "127.0.0.1:1", "--admin", "127.0.0.1:2"]
    assert build_parser().parse_args(base).initial_cluster_state == "auto"
    assert build_parser().parse_args([*base, "--initial-cluster-state", "new"]).initial_cluster_state == "new"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--initial-cluster-state", "fresh"])


def test_a_marker_folder_that_cannot_be_created_is_refused_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot create the restart-marker folder.*state_marker_dir"):
        prepare_marker_dir(blocker / "sub" / "m.held-state")
