"""Old module paths: up to 0.1 most of raftkit lay flat in ``raftkit/``
(``raftkit.node``, ``raftkit.replicated``, ...). Those paths keep working:
a finder on ``sys.meta_path`` serves each as the module at its new path
(the same object, so patching either patches both) with a
``DeprecationWarning`` that names the new path and the line that asked.

It imports nothing from raftkit by name: the new paths are strings, loaded
only when an old path is asked for. ``raftkit/__init__.py`` installs it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Callable, Sequence
from types import FrameType, ModuleType

__all__ = ["MOVED_MODULES", "install"]

# Modules that lived flat in raftkit/ up to 0.1, and where they are now. Old
# imports keep working (with a DeprecationWarning) until 0.3.
MOVED_MODULES = {
    "raftkit._node_parts": "raftkit.runtime.commands",
    "raftkit.config": "raftkit.runtime.config",
    "raftkit.demo": "raftkit.cli.demo",
    "raftkit.kvnode": "raftkit.cli.kvnode",
    "raftkit.lease": "raftkit.runtime.lease",
    "raftkit.lmdb_snapshot_stream": "raftkit.state_machines.lmdb_snapshot_stream",
    "raftkit.lmdb_state_machine": "raftkit.state_machines.lmdb_machine",
    "raftkit.membership_ops": "raftkit.runtime.membership_ops",
    "raftkit.metrics": "raftkit.runtime.metrics",
    "raftkit.node": "raftkit.runtime.node",
    "raftkit.outcomes": "raftkit.syncobj.outcomes",
    "raftkit.pending": "raftkit.runtime.pending",
    "raftkit.pickle_rule": "raftkit.runtime.pickle_rule",
    "raftkit.prometheus": "raftkit.runtime.prometheus",
    "raftkit.reads": "raftkit.runtime.reads",
    "raftkit.replicated": "raftkit.syncobj",
    "raftkit.sim_demo": "raftkit.cli.sim_demo",
    "raftkit.snapshot_admission": "raftkit.runtime.snapshot_admission",
    "raftkit.snapshot_capture": "raftkit.storage.capture",
    "raftkit.snapshot_policy": "raftkit.runtime.snapshot_policy",
    "raftkit.snapshots": "raftkit.runtime.snapshots",
    "raftkit.state_machine": "raftkit.state_machines.base",
    "raftkit.state_marker": "raftkit.runtime.state_marker",
    "raftkit.syncobj_conf": "raftkit.syncobj.conf",
    "raftkit.versions": "raftkit.syncobj.versions",
}


def _importer_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning issued by the caller name the
    line that asked for an old path: an import statement, ``from raftkit
    import node``, ``importlib.import_module`` or ``raftkit.node``. Like
    ``warnings``, it does not count the import system's frozen frames; it
    also passes over ``importlib/__init__.py`` and this module."""
    level = 1
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if not ("importlib" in name and "_bootstrap" in name):  # what warnings skips
            level += 1
            if name not in (__file__, importlib.__file__):
                return level
        frame = frame.f_back
    return level


# What ``python -m <old path>`` runs now, for the old modules that were commands.
_RUN_INSTEAD = {
    "raftkit.demo": "python -m raftkit.cli.demo",
    "raftkit.kvnode": "raftkit node (python -m raftkit.cli node)",
    "raftkit.sim_demo": "python -m raftkit.cli.sim_demo",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves an old module path as the module at its new path (the same
    object, so patching either patches both)."""

    def __init__(self) -> None:
        self._real_specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED_MODULES[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new} in raftkit 0.2; import it from there (the old path goes in 0.3)",
            DeprecationWarning,
            stacklevel=_importer_stacklevel(),
        )
        module = importlib.import_module(new)
        self._real_specs[spec.name] = module.__spec__
        return module

    def get_code(self, fullname: str) -> None:
        """Only ``python -m`` asks for an old path's code (runpy): say what
        to run now instead of failing inside runpy."""
        new = MOVED_MODULES[fullname]
        instead = _RUN_INSTEAD.get(fullname)
        raise ImportError(
            f"{fullname} moved to {new} in raftkit 0.2: "
            + (f"run {instead}" if instead else "it is a module to import, not a command")
        )

    def exec_module(self, module: ModuleType) -> None:
        # The module ran at its new path already; the import system has just
        # set its __spec__ to the old path's, so put the real one back.
        spec = module.__spec__
        assert spec is not None  # the old path's, set by the import system
        module.__spec__ = self._real_specs[spec.name]


class _Package(ModuleType):
    """raftkit's own module type. Importing a submodule binds it on its
    parent, old paths included: loading ``raftkit.replicated`` would replace
    ``raftkit.replicated``, the decorator, with a module for every later
    ``from raftkit import replicated``. An old path never hides a name the
    package defines itself."""

    def __setattr__(self, name: str, value: object) -> None:
        if (
            isinstance(value, ModuleType)
            and f"{self.__name__}.{name}" in MOVED_MODULES
            and not isinstance(self.__dict__.get(name, value), ModuleType)
        ):
            return
        super().__setattr__(name, value)


def install(package: ModuleType) -> Callable[[str], ModuleType]:
    """Make ``package`` (raftkit itself) serve its old module paths: the
    finder on ``sys.meta_path`` (once), the module type that keeps an old
    path from hiding a name, and the module ``__getattr__`` it returns."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
    package.__class__ = _Package

    def __getattr__(name: str) -> ModuleType:  # noqa: N807 - a module's __getattr__
        """``raftkit.node``, ``raftkit.config``...: up to 0.1 ``import raftkit``
        loaded the flat modules, so code reached them as attributes; an old
        path asked for so is imported as such (with its warning)."""
        if f"{package.__name__}.{name}" in MOVED_MODULES:
            return importlib.import_module(f"{package.__name__}.{name}")
        raise AttributeError(f"module {package.__name__!r} has no attribute {name!r}")

    return __getattr__
