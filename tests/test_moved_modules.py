"""Old module paths (raftkit.MOVED_MODULES) behave as they did before the 0.2
layout: each keeps the names its ``__all__`` listed, importing one does not
change what ``raftkit``'s own names are, and ``python -m`` on an old path
says where the module went instead of a traceback.

The old paths are only ever imported in a fresh interpreter here (and as
strings), so the library-wide check that nothing uses an old path still holds.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

# __all__ of each flat module at 16b410d (the last commit of the old layout)
# that listed one: every name stays importable from the old path.
OLD_ALL = {
    "raftkit.kvnode": ["KvNodeOptions", "KvStateMachine", "kv_handlers", "run_node"],
    "raftkit.lease": ["DEFAULT_LEASE_DRIFT", "config_lease", "lease_duration"],
    "raftkit.lmdb_snapshot_stream": ["MAX_KEY", "STREAM_VERSION", "StreamReader", "StreamWriter"],
    "raftkit.lmdb_state_machine": ["FORMAT_VERSION", "LmdbStateMachine", "SnapshotView", "StateStorageError"],
    "raftkit.metrics": ["LATENCY_BUCKETS", "NodeMetrics"],
    "raftkit.outcomes": [
        "CallError",
        "FAIL_REASON",
        "FailReason",
        "SyncObjException",
        "compat_error",
        "fail_reason",
        "wait_outcome",
    ],
    "raftkit.pickle_rule": ["check_pickle_rule", "unsafe_serializers"],
    "raftkit.prometheus": ["Collector", "PrometheusServer", "serve_prometheus"],
    "raftkit.reads": ["CLOCK_DRIFT_BOUND", "ReadBarriers"],
    "raftkit.replicated": [
        "CallError",
        "CodeVersionError",
        "FAIL_REASON",
        "FailReason",
        "SyncObj",
        "SyncObjConf",
        "SyncObjConsumer",
        "SyncObjException",
        "UnsupportedCodeVersionError",
        "fail_reason",
        "replicated",
        "replicated_sync",
    ],
    "raftkit.snapshot_admission": ["RefusalLog", "capped", "snapshot_refusal"],
    "raftkit.snapshot_capture": [
        "CaptureCancelledError",
        "CaptureJob",
        "CaptureReport",
        "InlineCapture",
        "SnapshotCapture",
        "ThreadCapture",
    ],
    "raftkit.snapshot_policy": ["CompactionPolicy", "Progress"],
    "raftkit.snapshots": [
        "Recovery",
        "RecoveryError",
        "SnapshotPipeline",
        "StorageUnavailableError",
        "choose_capture",
    ],
    "raftkit.syncobj_conf": ["SyncObjConf"],
    "raftkit.versions": [
        "CodeVersionError",
        "UnsupportedCodeVersionError",
        "check_version",
        "select_version",
    ],
}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(("old", "names"), sorted(OLD_ALL.items()))
def test_an_old_path_keeps_every_name_its_all_listed(old: str, names: list[str]) -> None:
    code = (
        f"import importlib\nm = importlib.import_module({old!r})\n"
        f"print([n for n in {names!r} if not hasattr(m, n)])"
    )
    done = _run("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"`from {old} import ...` lost: {done.stdout.strip()}"


def test_importing_the_old_replicated_path_leaves_the_replicated_decorator_alone() -> None:
    """``raftkit.replicated`` is the decorator (the package's own name); the
    import system binds a submodule it loads on its parent, so loading the
    old path ``raftkit.replicated`` must not replace the decorator with a
    module for every later ``from raftkit import replicated``."""
    code = (
        "import raftkit, importlib\n"
        "importlib.import_module('raftkit.replicated')\n"
        "from raftkit import replicated\n"
        "assert callable(replicated) and not isinstance(replicated, type(raftkit)), replicated\n"
        "assert raftkit.replicated is raftkit.syncobj.replicated\n"
        "class Counter(raftkit.SyncObj):\n"
        "    @replicated\n"
        "    def incr(self):\n"
        "        pass\n"
    )
    done = _run("-c", code)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("raftkit.demo", "raftkit.cli.demo"),
        ("raftkit.sim_demo", "raftkit.cli.sim_demo"),
        ("raftkit.kvnode", "raftkit node"),
    ],
)
def test_python_m_on_an_old_path_says_where_it_went(old: str, new: str) -> None:
    """``python -m raftkit.demo`` was the documented way to run the demo
    (Makefile, its --help): it must not die with an AttributeError from runpy."""
    done = _run("-m", old, "--help")
    assert "Traceback" not in done.stderr, done.stderr
    assert new in done.stderr + done.stdout, done.stderr


def test_an_old_module_is_an_attribute_of_raftkit_as_it_was() -> None:
    """Before 0.2 ``import raftkit`` loaded most flat modules, so code could
    reach them as ``raftkit.node`` or ``raftkit.config`` without importing them."""
    code = (
        "import raftkit\n"
        "assert raftkit.node.Node is raftkit.Node\n"
        "assert raftkit.config.NodeConfig is raftkit.NodeConfig\n"
        "assert hasattr(raftkit, 'outcomes') and not hasattr(raftkit, 'no_such_module')\n"
    )
    done = _run("-c", code)
    assert done.returncode == 0, done.stderr


def test_raftkit_cli_keeps_the_names_of_the_module_it_was() -> None:
    """``raftkit.cli`` was a module (cli.py) before it became a package; the
    environment variables it named are part of the command's interface."""
    import raftkit.cli

    assert (raftkit.cli.PASSWORD_ENV, raftkit.cli.ADMIN_ENV, raftkit.cli.CLUSTER_ID_ENV) == (
        "RAFTKIT_PASSWORD", "RAFTKIT_ADMIN", "RAFTKIT_CLUSTER_ID",
    )


@pytest.mark.parametrize("statement", [
    "from raftkit import reads",
    "import importlib; importlib.import_module('raftkit.reads')",
    "import raftkit; raftkit.reads",
])
def test_the_warning_names_the_users_line_however_the_old_path_is_asked_for(
    tmp_path: pathlib.Path, statement: str
) -> None:
    script = tmp_path / "user_code.py"
    script.write_text(f"import warnings\nwarnings.simplefilter('always')\n{statement}\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = "user_code.py:3: DeprecationWarning: raftkit.reads moved to raftkit.runtime.reads"
    assert expected in done.stderr, done.stderr


def test_the_old_replicated_path_still_tells_a_call_its_entry_index() -> None:
    """Up to 0.1 raftkit's own LmdbDict found ``current_entry_index`` with
    ``getattr(import_module("raftkit.replicated"), "current_entry_index",
    lambda: None)``: code that copied the idiom must not silently lose it
    (it applies entries exactly once by their index)."""
    code = (
        "import importlib\n"
        "found = getattr(importlib.import_module('raftkit.replicated'), 'current_entry_index', None)\n"
        "from raftkit.syncobj.object_machine import current_entry_index\n"
        "assert found is current_entry_index, found\n"
    )
    done = _run("-c", code)
    assert done.returncode == 0, done.stderr
