"""The pickle rule: nothing received from the network is decoded by an
unsafe serializer (pickle runs code while it decodes) unless the link is
authenticated (shared password, mutual TLS, or this very process).

Peer bytes reach application code as commands and snapshots, decoded by the
serializer the builder was given and by whatever serializer the state
machine decodes with itself, which it declares in its ``serializer``
attribute (``StateMachine.serializer``). Every way of making a node checks
the rule here: ``NodeBuilder.build`` (before anything is opened or bound),
``Node.__init__`` (so a node built by hand cannot skip it) and, through the
builder, ``SyncObj``. There is deliberately no opt-out.
"""

from __future__ import annotations

import types
from typing import Any

from raftkit.serializers.base import Serializer

__all__ = ["check_pickle_rule", "unsafe_serializers"]

# Modules a state machine may name as its serializer directly.
_UNSAFE_MODULES = frozenset({"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "marshal"})

REFUSAL = (
    "{what} over plain TCP would let anyone who can reach the port run code: "
    "set a password or TLS, or use the msgpack serializer (or json){hint}"
)


def unsafe_serializers(*sources: Any) -> list[str]:
    """Names of the serializers among ``sources`` that are not safe for
    untrusted input. A source is a serializer (judged by its
    ``safe_for_untrusted``), or an object declaring one in a ``serializer``
    attribute (a state machine); ``None`` and anything else are skipped."""
    found: dict[str, str] = {}  # one line per kind of serializer
    for source in sources:
        if source is None:
            continue
        serializer, owner = source, None
        if not _is_serializer(source):
            serializer, owner = getattr(source, "serializer", None), source
            if not _is_serializer(serializer):
                continue
        if _is_safe(serializer):
            continue
        name = _describe(serializer)
        if name not in found:
            found[name] = (
                name
                if owner is None
                else f"{name}, the serializer of the state machine {type(owner).__name__},"
            )
    return list(found.values())


def check_pickle_rule(transport: Any, *sources: Any, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` if a serializer among ``sources`` is unsafe and
    ``transport`` is not authenticated; ``transport=None`` stands for the
    builder's default, plain TCP."""
    unsafe = unsafe_serializers(*sources)
    if not unsafe or (transport is not None and getattr(transport, "authenticated", False) is True):
        return
    hint = "" if transport is None else f" (the transport {type(transport).__name__} is not authenticated)"
    raise error(REFUSAL.format(what=" and ".join(unsafe), hint=hint))


def _is_serializer(obj: Any) -> bool:
    if isinstance(obj, Serializer):
        return True
    if isinstance(obj, types.ModuleType):
        return obj.__name__ in _UNSAFE_MODULES
    return hasattr(obj, "safe_for_untrusted") and callable(getattr(obj, "loads", None))


def _is_safe(serializer: Any) -> bool:
    if isinstance(serializer, types.ModuleType):
        return False
    return getattr(serializer, "safe_for_untrusted", False) is True


def _describe(serializer: Any) -> str:
    if isinstance(serializer, types.ModuleType):
        return f"the {serializer.__name__} module"
    name = getattr(serializer, "name", None)
    return f"{type(serializer).__name__} ({name})" if isinstance(name, str) else type(serializer).__name__
