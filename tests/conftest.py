"""Suite-wide hooks."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Restart markers of nodes started outside a test's own marker folder (e.g. by
# module-scoped fixtures, which run before the per-test fixture below) go to a
# folder of this run, never to the user's real one (raftkit.runtime.state_marker).
os.environ.setdefault("RAFTKIT_STATE_MARKER_DIR", tempfile.mkdtemp(prefix="raftkit-test-markers-"))
# Nodes (and the node processes tests start) run on asyncio's loop, the one a
# user without the fast extra gets; the transport tests run on uvloop's too
# (tests/transports/conftest.py), and tests/runtime/test_event_loop.py a node.
os.environ.setdefault("RAFTKIT_EVENT_LOOP", "asyncio")
# Property tests judge outcomes, not speed: Hypothesis's default 200 ms
# deadline per example is a timed assertion, and failed a CI run on pickle
# garbage that is slow by nature (raftkit/testing/conformance/serializer.py).
settings.register_profile("raftkit", deadline=None)
settings.load_profile("raftkit")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how much the Raft stateful simulation covered in this run."""
    module = sys.modules.get("test_raft_stateful")
    stats = getattr(module, "STATS", None)
    if stats and stats["examples"]:
        terminalreporter.write_line(
            f"raft stateful simulation: {stats['examples']} examples completed, {stats['steps']} steps"
        )


@pytest.fixture(autouse=True)
def _private_restart_markers(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test keeps memory-mode restart markers (raftkit.runtime.state_marker) in
    a folder of its own, inherited by the processes it starts: tests never
    touch the user's real folder nor see another test's clusters."""
    folder = tmp_path_factory.mktemp("markers")
    monkeypatch.setenv("RAFTKIT_STATE_MARKER_DIR", str(folder))
    return folder
