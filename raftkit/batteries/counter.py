"""ReplCounter: a replicated number (PySyncObj's ``ReplCounter``)."""

from __future__ import annotations

from typing import Any

from raftkit.batteries._base import Battery, ReadMode, reader
from raftkit.syncobj.decorator import replicated

__all__ = ["ReplCounter"]


class ReplCounter(Battery):
    """A number every node agrees on. ``set``, ``add``, ``sub`` and ``inc``
    are replicated calls (``sync=``, ``callback=``, ``timeout=``) that
    return the new value; ``get()`` reads the local copy."""

    def __init__(self, *, read: ReadMode = "local") -> None:
        super().__init__(read=read)
        self._value: int = 0

    # Typed as int (what a counter counts); at run time any number that
    # supports + and - works, as in PySyncObj.
    @replicated
    def set(self, newValue: int) -> int:  # noqa: N803 - PySyncObj's parameter names
        """Replace the value; returns it."""
        self._value = newValue
        return self._value

    @replicated
    def add(self, value: int) -> int:
        """Add ``value``; returns the new value."""
        self._value = self._value + value  # a TypeError leaves the value unchanged
        return self._value

    @replicated
    def sub(self, value: int) -> int:
        """Subtract ``value``; returns the new value."""
        self._value = self._value - value
        return self._value

    @replicated
    def inc(self) -> int:
        """Add one; returns the new value."""
        self._value = self._value + 1
        return self._value

    @reader
    def get(self) -> int:
        """The value this node has applied."""
        return self._value

    def _serialize(self) -> int:
        return self._value

    def _deserialize(self, data: Any) -> None:
        self._value = data

    def __repr__(self) -> str:
        return f"ReplCounter({self._value!r})"
