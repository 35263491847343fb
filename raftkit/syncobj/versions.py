"""Code versions of replicated methods (PySyncObj's ``@replicated(ver=N)``
and ``setCodeVersion``), the parts that do not depend on ``SyncObj``.

A class may define one replicated method name several times, each with its
own ``ver``. A class body keeps only the last binding of a name, so each
decorated definition is parked in a registry keyed by its function's
``(module, qualname)`` when it is decorated, and the one binding that
survives collects its siblings in ``__set_name__`` when the class is
created (the way ``typing.overload`` keeps its overloads).

The cluster runs at one *code version*, replicated state changed only by a
logged ``set_code_version`` entry. A call of method ``m`` applied at
version ``V`` runs the implementation with the highest ``ver <= V``: every
node decides at the same log index from the same state, so all replicas
compute the same result whichever node proposed the call.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from raftkit.errors import RaftkitError

__all__ = [
    "CodeVersionError",
    "UnsupportedCodeVersionError",
    "check_version",
    "select_version",
]


class CodeVersionError(RaftkitError, ValueError):
    """``set_code_version`` was refused on the calling node before anything
    was logged: a version this process's code does not have, or a
    downgrade. The message says which and what to do."""


class UnsupportedCodeVersionError(RaftkitError):
    """The cluster switched to a code version this process does not have.
    Applying calls with older code would make this replica diverge, so it
    stops applying (status()["error"] says so) until it runs newer code."""

    def __init__(self, version: int, supported: int) -> None:
        super().__init__(
            f"cluster switched to code version {version} but this process supports up to {supported}: "
            "upgrade this node; it stops applying until then"
        )
        self.version = version
        self.supported = supported


def check_version(ver: object, what: str = "ver") -> int:
    """``ver`` if it is a valid code version (an int >= 0), else TypeError /
    ValueError naming ``what``."""
    if isinstance(ver, bool) or not isinstance(ver, int):
        raise TypeError(f"{what} must be an int >= 0, got {type(ver).__name__} {ver!r}")
    if ver < 0:
        raise ValueError(f"{what} must be >= 0, got {ver}")
    return ver


class _Versioned(Protocol):
    ver: int


V = TypeVar("V", bound=_Versioned)


def select_version(impls: Mapping[int, V], version: int) -> V | None:
    """The implementation to run at cluster code ``version``: the highest
    ``ver <= version`` (None if every one is newer)."""
    eligible = [v for v in impls if v <= version]
    return impls[max(eligible)] if eligible else None


# -- collecting same-name definitions of one class body ------------------------------------

# Class bodies run in one thread, start to end, so sibling definitions are
# parked per thread: two threads building classes cannot mix theirs up.
_parked = threading.local()


def _registry() -> dict[tuple[str, str], dict[int, Any]]:
    reg: dict[tuple[str, str], dict[int, Any]] | None = getattr(_parked, "reg", None)
    if reg is None:
        reg = _parked.reg = {}
    return reg


def _key(func: Any) -> tuple[str, str]:
    return (getattr(func, "__module__", None) or "?", getattr(func, "__qualname__", None) or func.__name__)


def _line(func: Any) -> int:
    code = getattr(func, "__code__", None)
    line: int = code.co_firstlineno if code is not None else -1
    return line


def park(method: Any) -> None:
    """Record a freshly decorated definition (``method.func``, ``method.ver``)
    until its class is created. Two definitions of one name with the same
    ``ver`` in one class body are refused here, at definition time; the same
    line seen again is a class body running again (a class factory, or a
    body that raised half-way), which replaces the stale entry."""
    found = _registry().setdefault(_key(method.func), {})
    previous = found.get(method.ver)
    if previous is not None and _line(previous.func) != _line(method.func):
        raise TypeError(
            f"{method.func.__qualname__} is defined twice with ver={method.ver} "
            f"(lines {_line(previous.func)} and {_line(method.func)}): give each definition its own ver"
        )
    found[method.ver] = method


def collect(method: Any) -> dict[int, Any]:
    """The definitions sharing ``method``'s class body and name, by ver
    (including ``method``); called from ``__set_name__`` once per class."""
    found = _registry().pop(_key(method.func), None) or {}
    found[method.ver] = method
    return dict(sorted(found.items()))


def discard_strays(owner: type) -> None:
    """Forget definitions parked by ``owner``'s body that no class attribute
    kept (shadowed by a later plain ``def`` of the same name), so they
    cannot leak into another class of the same qualified name."""
    module, prefix = owner.__module__, owner.__qualname__ + "."
    reg = _registry()
    # Only "Owner.name": nested classes and functions have a further dot.
    stale = [k for k in reg if k[0] == module and k[1].startswith(prefix) and "." not in k[1][len(prefix):]]
    for key in stale:
        del reg[key]
