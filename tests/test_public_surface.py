"""The public surface: every raftkit name the docs use can be imported from
where the docs say, without a deprecation warning; each package's
``__all__`` names exist; and module paths from before the 0.2 layout still
import (the same module object) with a warning that says where it went."""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import pkgutil
import re
import subprocess
import sys
import warnings

import pytest

import raftkit

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"```python\n(.*?)```", re.S)
DOTTED = re.compile(r"`(raftkit(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def _import_statements(code: str) -> list[ast.stmt]:
    """The import statements of a code block, read line by line so that a
    block mixing code with ``...`` or prompts still yields them."""
    found: list[ast.stmt] = []
    try:
        tree = ast.parse(code)
    except SyntaxError:
        lines = [ln for ln in code.splitlines() if ln.lstrip().startswith(("from raftkit", "import raftkit"))]
        tree = ast.parse("\n".join(ln.strip() for ln in lines if not ln.rstrip().endswith("(")))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
    return found


def doc_imports() -> list[tuple[str, str, str]]:
    """(doc, module, name) for each ``from raftkit... import name`` and
    (doc, module, "") for each ``import raftkit...`` in a python block."""
    uses = []
    for doc in DOCS:
        for block in FENCE.findall(doc.read_text()):
            for node in _import_statements(block):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("raftkit"):
                    uses += [(doc.name, node.module, a.name) for a in node.names]
                elif isinstance(node, ast.Import):
                    uses += [(doc.name, a.name, "") for a in node.names if a.name.startswith("raftkit")]
    return sorted(set(uses))


def doc_dotted_names() -> list[tuple[str, str]]:
    """(doc, dotted) for each ``raftkit.x.y`` the prose names in backticks."""
    files = {"lock", "mdb", "py", "toml", "md"}  # `raftkit.lock` is a lock file's name
    found = {(doc.name, m) for doc in DOCS for m in DOTTED.findall(doc.read_text())}
    return sorted((doc, m) for doc, m in found if m.rpartition(".")[2] not in files)


def resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted`` and look up the rest."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_the_docs_use_names() -> None:
    assert len(doc_imports()) > 40 and len(doc_dotted_names()) > 20


@pytest.mark.parametrize(("doc", "module", "name"), doc_imports())
def test_every_name_a_doc_imports_is_there(doc: str, module: str, name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        imported = importlib.import_module(module)
        if name and name != "*":
            assert hasattr(imported, name) or importlib.util.find_spec(f"{module}.{name}"), (
                f"{doc}: `from {module} import {name}` fails"
            )


@pytest.mark.parametrize(("doc", "dotted"), doc_dotted_names())
def test_every_dotted_name_a_doc_mentions_resolves(doc: str, dotted: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            resolve(dotted)
        except (ImportError, AttributeError) as exc:
            pytest.fail(f"{doc} names `{dotted}`, which does not resolve: {exc}")


PUBLIC_PACKAGES = [
    "raftkit", "raftkit.admin", "raftkit.batteries", "raftkit.cli", "raftkit.core", "raftkit.runtime",
    "raftkit.serializers", "raftkit.state_machines", "raftkit.storage", "raftkit.syncobj",
    "raftkit.transports",
]


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_every_name_in_all_exists(package: str) -> None:
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


PLUG_IN_PACKAGES = ["raftkit.serializers", "raftkit.state_machines", "raftkit.storage", "raftkit.transports"]

# Public classes of a plug-in package's modules that its package does not
# export on purpose: the machinery behind the exported ones, imported from
# their module by raftkit's own code only.
INTERNAL = {
    "raftkit.storage.capture": {"CaptureCancelledError", "CaptureJob", "CaptureReport"},
    "raftkit.state_machines.lmdb_snapshot_stream": {"StreamReader", "StreamWriter"},
    "raftkit.transports.encrypted": {"EncryptedChannel"},
    "raftkit.transports.framing": {
        "AuthenticationError", "Channel", "FrameDecoder", "FrameError", "FrameKind",
    },
    "raftkit.transports.netutil": {"Resolver"},
}


def _public_classes(package: str) -> list[tuple[str, str]]:
    """(module, class) for each class a public module of ``package`` defines
    and lists in its ``__all__`` (or defines without a leading _)."""
    found = []
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        listed = getattr(module, "__all__", None)
        found += [
            (module.__name__, name)
            for name, obj in vars(module).items()
            if inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_")
            and (listed is None or name in listed)
        ]
    return found


@pytest.mark.parametrize("package", PLUG_IN_PACKAGES)
def test_every_public_class_of_a_plug_in_package_is_exported_from_it(package: str) -> None:
    """A user imports from the package (``from raftkit.storage import
    ForkSnapshotter``); a class reachable only through its module is either
    a missing export or belongs in INTERNAL."""
    exported = set(importlib.import_module(package).__all__)
    missing = [
        f"{module}.{name}" for module, name in _public_classes(package)
        if name not in exported and name not in INTERNAL.get(module, set())
    ]
    assert missing == []


def test_the_classes_left_internal_exist() -> None:
    """INTERNAL names nothing that was renamed or removed."""
    for module, names in INTERNAL.items():
        assert names <= {name for m, name in _public_classes(module.rpartition(".")[0]) if m == module}


def test_the_top_level_names_users_start_from() -> None:
    from raftkit import (  # noqa: F401 - importing is the test
        FAIL_REASON,
        Node,
        NodeBuilder,
        NodeConfig,
        StateMachine,
        SyncObj,
        SyncObjConf,
        SyncObjConsumer,
        replicated,
        replicated_sync,
    )
    from raftkit.batteries import LmdbDict, ReplCounter, ReplDict, ReplLockManager  # noqa: F401
    from raftkit.state_machines import SnapshotWriter, StateStorageError  # noqa: F401
    from raftkit.storage import FileSnapshotter, ForkSnapshotter, LmdbLogStore, MemoryLogStore  # noqa: F401
    from raftkit.transports import EncryptedTcpTransport, TcpTransport, TlsTransport  # noqa: F401

    assert raftkit.Node is raftkit.runtime.Node
    assert raftkit.SyncObj is raftkit.syncobj.SyncObj
    assert raftkit.StateMachine is raftkit.state_machines.StateMachine


@pytest.mark.parametrize(("old", "new"), sorted(raftkit.MOVED_MODULES.items()))
def test_an_old_module_path_is_the_new_module_with_a_warning(old: str, new: str) -> None:
    """Run in a fresh interpreter: in this one the old path may be imported
    already (then no warning is due)."""
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({new!r})\n"
        "assert old is new, (old, new)\n"
        "assert old.__spec__.name == new.__name__, old.__spec__\n"
        "msgs = [str(x.message) for x in w if issubclass(x.category, DeprecationWarning)]\n"
        f"assert any({old!r} in m and {new!r} in m for m in msgs), msgs\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_warning_names_the_line_that_imports_the_old_path(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "user_code.py"
    script.write_text("import warnings\nwarnings.simplefilter('always')\nfrom raftkit.node import Node\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "user_code.py:3: DeprecationWarning: raftkit.node moved to raftkit.runtime.node" in done.stderr


def _old_paths_imported(code: str) -> list[str]:
    """The old module paths an import statement in ``code`` loads, written
    ``import raftkit.node``, ``from raftkit.node import Node`` or ``from raftkit import node``."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.append(node.module)
            found += [  # not a name the package defines itself (raftkit.replicated is the decorator)
                f"{node.module}.{a.name}" for a in node.names
                if not (node.module == "raftkit" and a.name in raftkit.__all__)
            ]
    return sorted({m for m in found if m in raftkit.MOVED_MODULES})


def test_the_old_path_finder_sees_every_form_of_import() -> None:
    code = (
        "import raftkit.node\nfrom raftkit.config import NodeConfig\n"
        "def f():\n    from raftkit import reads, replicated, Node\n"
    )
    assert _old_paths_imported(code) == ["raftkit.config", "raftkit.node", "raftkit.reads"]


def test_the_library_and_its_tests_use_no_old_path() -> None:
    users = {
        str(p.relative_to(ROOT)): old
        for folder in ("raftkit", "tests", "benchmarks", "examples")
        for p in (ROOT / folder).rglob("*.py")
        if (old := _old_paths_imported(p.read_text()))
    }
    assert users == {}


def test_every_source_path_a_doc_names_exists() -> None:
    paths = re.compile(r"\b(raftkit/[\w/]*\w(?:\.py)?)\b")
    named = {(doc.name, path) for doc in DOCS for path in paths.findall(doc.read_text())}
    missing = sorted((doc, path) for doc, path in named if not (ROOT / path).exists())
    assert missing == []
