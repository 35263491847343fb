"""The documentation site builds with ``mkdocs build --strict`` (what
``make docs`` runs): a broken link, a page missing from the navigation or
a docstring mkdocstrings cannot read fails here, and so in ``make test``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
# No importorskip: the test extra installs mkdocs, and a missing one must
# fail here rather than skip the strict build unnoticed.


def test_site_builds_strict_with_the_api_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner, not a build warning
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "WARNING" not in result.stderr, result.stderr[-4000:]
    builder = (site / "reference" / "builder" / "index.html").read_text()
    assert 'id="raftkit.builder.NodeBuilder"' in builder
    assert 'id="raftkit.builder.NodeBuilder.partners"' in builder
    syncobj = (site / "reference" / "syncobj" / "index.html").read_text()
    assert "replicated" in syncobj and 'id="raftkit.syncobj.SyncObj"' in syncobj
    storage = (site / "reference" / "storage" / "index.html").read_text()
    for name in ("LmdbLogStore", "FileSnapshotter", "ForkSnapshotter", "MemorySnapshotter"):
        assert f'id="raftkit.storage.{name}"' in storage, name
    # every page under docs/ is in the site (and in the navigation: strict
    # mode does not fail on an orphan page, so check it here)
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in sorted((ROOT / "docs").rglob("*.md")):
        rel = page.relative_to(ROOT / "docs").as_posix()
        assert rel in nav, f"{rel} is not in mkdocs.yml's nav"
        stem = rel.removesuffix(".md")
        out = site / (stem.removesuffix("index") if stem.endswith("index") else stem + "/") / "index.html"
        assert out.exists(), out
