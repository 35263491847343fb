"""What a library people depend on carries: its version at run time and on
the command line, a clean import under -W error, a NullHandler on its
logger, the PEP 561 marker, and its licence."""

from __future__ import annotations

import importlib.metadata
import logging
import subprocess
import sys
from pathlib import Path

import raftkit

ROOT = Path(__file__).resolve().parent.parent


def test_the_version_is_the_distributions() -> None:
    assert raftkit.__version__ == importlib.metadata.version("pyraftkit")
    out = subprocess.run(
        [sys.executable, "-m", "raftkit.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == f"raftkit {raftkit.__version__}"


def test_importing_raftkit_warns_about_nothing() -> None:
    subprocess.run(
        [sys.executable, "-W", "error", "-c", "import raftkit, raftkit.batteries, raftkit.syncobj"],
        timeout=60,
        check=True,
    )


def test_the_library_logger_has_a_null_handler() -> None:
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("raftkit").handlers)


def test_the_package_is_marked_typed_and_licensed() -> None:
    assert (Path(raftkit.__file__).parent / "py.typed").exists()
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert "[Unreleased]" in (ROOT / "CHANGELOG.md").read_text()
