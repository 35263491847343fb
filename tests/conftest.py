"""Suite-wide hooks."""

from __future__ import annotations

import sys
from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how much the Raft stateful simulation covered in this run."""
    module = sys.modules.get("test_raft_stateful")
    stats = getattr(module, "STATS", None)
    if stats and stats["examples"]:
        terminalreporter.write_line(
            f"raft stateful simulation: {stats['examples']} examples completed, {stats['steps']} steps"
        )
