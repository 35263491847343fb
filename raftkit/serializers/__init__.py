"""Serializers for commands and snapshots, and the fixed wire codec
(``raftkit.serializers.wire``) for Raft messages and stored records.

A plug-in package: it may import only ``raftkit.errors`` and
``raftkit.core`` (the types the wire codec encodes).
"""

from __future__ import annotations

from raftkit.serializers.base import Serializer
from raftkit.serializers.json_serializer import JsonSerializer
from raftkit.serializers.msgpack_serializer import MsgpackSerializer
from raftkit.serializers.pickle_serializer import PickleSerializer

__all__ = [
    "JsonSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "get_serializer",
]

_BUILTIN: dict[str, type[Serializer]] = {  # spelled out: mypy 1.8 joins a tuple of them to the ABC
    MsgpackSerializer.name: MsgpackSerializer,
    JsonSerializer.name: JsonSerializer,
    PickleSerializer.name: PickleSerializer,
}


def get_serializer(name: str) -> Serializer:
    """A built-in serializer by its ``name`` (as written in configuration)."""
    try:
        return _BUILTIN[name]()
    except KeyError:
        known = ", ".join(sorted(_BUILTIN))
        raise ValueError(f"unknown serializer {name!r}; the built-in ones are: {known}") from None
