"""The package layout as a checked rule: which raftkit package may import
which, no import circles between modules, and the size and shape of each
package (a docstring, ``__all__``). The checker reads the source with
``ast`` (no import-linter needed) and is itself tested on a small
package built in a temporary folder, so it is shown to fail."""

from __future__ import annotations

import ast
import pathlib
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "raftkit"

PLUGINS = {"serializers", "storage", "state_machines", "transports"}

# The package an importing module belongs to -> the packages it may import
# (besides itself). "errors" and "builder" are the two top-level modules.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_moved": set(),  # old module paths: it names the new ones only as strings
    "core": {"errors"},  # plus the LogStore interface: CORE_INTERFACES
    "serializers": {"errors", "core"},
    "storage": {"errors", "core", "serializers", "state_machines"},
    "state_machines": {"errors", "core", "serializers", "storage"},
    "transports": {"errors", "core", "serializers"},
    "runtime": {"errors", "core"} | PLUGINS,
    "builder": {"errors", "core", "runtime"} | PLUGINS,
    "admin": {"errors", "core", "runtime"} | PLUGINS,
    "syncobj": {"errors", "core", "runtime", "builder", "admin"} | PLUGINS,
    "batteries": {"errors", "core", "runtime", "builder", "admin", "syncobj"} | PLUGINS,
    "testing": {"errors", "core", "runtime", "builder", "admin", "syncobj", "batteries", "raftkit"} | PLUGINS,
    "cli": {"errors", "core", "runtime", "builder", "admin", "syncobj", "batteries", "testing"} | PLUGINS,
    "raftkit": {"errors", "core", "runtime", "builder", "syncobj", "serializers", "state_machines", "_moved"},
}
# The plug-in interfaces the sans-I/O core consumes (it persists through them).
CORE_INTERFACES = {"raftkit.storage.log_store"}
TOP_LEVEL_MODULES = {"__init__.py", "builder.py", "errors.py"}
MAX_LINES = 800


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports_by_name(func: ast.expr) -> bool:
    """``import_module(...)``, ``importlib.import_module(...)``, ``__import__(...)``."""
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    return name in {"import_module", "__import__"}


def _is_lazy_exports(node: ast.AST) -> bool:
    """A package's ``_EXPORTS = {name: module}``: its names are imported on first use."""
    return (
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
        and isinstance(node.value, ast.Dict)
    )


def imports_of(path: pathlib.Path, root: pathlib.Path, modules: set[str]) -> set[str]:
    """The raftkit modules ``path`` imports, at module level or inside
    functions; imports only for type checkers do not count (they never run).
    ``from package import name`` counts as importing ``package.name`` when
    that is a module; so does a literal name given to ``import_module`` or
    ``__import__``, or listed in a package's lazy ``_EXPORTS`` map."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            for child in node.orelse:  # type: ignore[attr-defined]
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules)
        elif isinstance(node, ast.Call) and _imports_by_name(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
        elif _is_lazy_exports(node):
            found.update(v.value for v in node.value.values if isinstance(v, ast.Constant))  # type: ignore[attr-defined]
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in found if m == root.name or m.startswith(root.name + ".")}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def import_graph(root: pathlib.Path) -> dict[str, set[str]]:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(p, root) for p in files}
    return {module_name(p, root): imports_of(p, root, modules) & modules for p in files}


def forbidden_imports(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, deps in sorted(graph.items()):
        layer = layer_of(module)
        allowed = ALLOWED.get(layer)
        if allowed is None:
            problems.append(f"{module}: package {layer!r} has no place in ALLOWED (tests/test_layers.py)")
            continue
        for dep in sorted(deps):
            target = layer_of(dep)
            if target == layer or target in allowed:
                continue
            if layer == "core" and dep in CORE_INTERFACES:
                continue
            problems.append(f"{module} imports {dep}: {layer!r} may not import {target!r}")
    return problems


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan),
    plus modules that import themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return cycles


# -- the rules, on raftkit itself ------------------------------------------------------------


def test_packages_import_only_from_layers_below_them() -> None:
    problems = forbidden_imports(import_graph(ROOT))
    assert problems == [], "forbidden imports:\n" + "\n".join(problems)


def test_no_import_circles_between_modules() -> None:
    cycles = import_cycles(import_graph(ROOT))
    assert cycles == [], "modules importing each other (directly or in a circle):\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_raftkit_holds_only_packages_and_the_three_top_level_modules() -> None:
    loose = sorted(p.name for p in ROOT.glob("*.py") if p.name not in TOP_LEVEL_MODULES)
    assert loose == [], f"modules directly in raftkit/: {loose}; give them a package"


def test_every_package_says_what_it_is_for_and_what_it_exports() -> None:
    for init in sorted(ROOT.rglob("__init__.py")):
        tree = ast.parse(init.read_text())
        doc = ast.get_docstring(tree)
        assert doc and len(doc) > 80, f"{init}: the package docstring should say what it is for"
        assert "import" in doc, f"{init}: the package docstring should say what the package may import"
        if init.parent.name in {"conformance"} or init.parent == ROOT / "testing":
            continue
        assigned = [n for n in tree.body if isinstance(n, ast.Assign)]
        names = [t.id for n in assigned for t in n.targets if isinstance(t, ast.Name)]
        assert "__all__" in names, f"{init}: no __all__"


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {str(p.relative_to(ROOT.parent)): len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    big = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert big == {}, f"modules over {MAX_LINES} lines: split them by idea"


# -- the checker fails on what it forbids ------------------------------------------------------


def _tree(tmp_path: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    root = tmp_path / "raftkit"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_the_checker_reports_a_plugin_importing_the_runtime(tmp_path: pathlib.Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "",
        "runtime/__init__.py": "",
        "runtime/node.py": "from raftkit.storage.memory import MemoryLogStore\n",
        "storage/__init__.py": "",
        "storage/memory.py": "def f():\n    from raftkit.runtime import node\n",
    })
    assert forbidden_imports(import_graph(root)) == [
        "raftkit.storage.memory imports raftkit.runtime: 'storage' may not import 'runtime'",
        "raftkit.storage.memory imports raftkit.runtime.node: 'storage' may not import 'runtime'",
    ]


def test_the_checker_reports_the_library_importing_testing_and_core_reaching_out(
    tmp_path: pathlib.Path
) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/raft.py": "from raftkit.storage.log_store import L\nfrom raftkit.storage.memory import M\n",
        "storage/__init__.py": "",
        "storage/log_store.py": "",
        "storage/memory.py": "",
        "syncobj/__init__.py": "",
        "syncobj/facade.py": "import raftkit.testing.sim\n",
        "testing/__init__.py": "",
        "testing/sim.py": "",
    })
    assert forbidden_imports(import_graph(root)) == [
        "raftkit.core.raft imports raftkit.storage.memory: 'core' may not import 'storage'",
        "raftkit.syncobj.facade imports raftkit.testing.sim: 'syncobj' may not import 'testing'",
    ]


def test_the_checker_reports_imports_by_name_string(tmp_path: pathlib.Path) -> None:
    """A module named in a string is imported all the same: ``import_module``
    and ``__import__`` with a literal name, and a package's lazy ``_EXPORTS``
    map (storage, state_machines and batteries load their names so)."""
    root = _tree(tmp_path, {
        "__init__.py": "",
        "cli/__init__.py": "",
        "testing/__init__.py": "",
        "testing/sim.py": "",
        "storage/__init__.py": "_EXPORTS = {'SimCluster': 'raftkit.testing.sim'}\n",
        "storage/memory.py": (
            "import importlib\n"
            "def f():\n"
            "    return importlib.import_module('raftkit.cli'), __import__('raftkit.testing')\n"
        ),
    })
    assert forbidden_imports(import_graph(root)) == [
        "raftkit.storage imports raftkit.testing.sim: 'storage' may not import 'testing'",
        "raftkit.storage.memory imports raftkit.cli: 'storage' may not import 'cli'",
        "raftkit.storage.memory imports raftkit.testing: 'storage' may not import 'testing'",
    ]


def test_the_checker_finds_a_circle_through_a_function_level_import(tmp_path: pathlib.Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "",
        "runtime/__init__.py": "",
        "runtime/node.py": "from raftkit.runtime import reads\n",
        "runtime/reads.py": "import typing\nif typing.TYPE_CHECKING:\n    from raftkit.runtime import node\n",
        "runtime/pending.py": "from . import membership\n",
        "runtime/membership.py": "def f():\n    from .pending import x\n",
    })
    assert import_cycles(import_graph(root)) == [["raftkit.runtime.membership", "raftkit.runtime.pending"]]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_no_layer_may_import_a_layer_that_may_import_it(layer: str) -> None:
    """The table itself has no circle between packages (the storage <->
    state_machines pair aside: plug-ins of one layer, kept acyclic at the
    module level by the circle test)."""
    peers = {("storage", "state_machines"), ("state_machines", "storage")}
    for other in ALLOWED[layer]:
        if (layer, other) in peers:
            continue
        assert layer not in ALLOWED.get(other, set()), f"{layer} and {other} may import each other"
