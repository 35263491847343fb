"""ReplList, ReplDict and ReplSet: replicated containers with PySyncObj's
names and semantics.

Mutating methods are replicated calls (``sync=``, ``callback=``,
``timeout=``); getters read the local copy. A call that cannot succeed
(``pop`` from an empty container, ``remove`` of a missing item, an index
out of range) raises the exception the plain Python container raises, with
a message naming the battery; it is the call's outcome on every node and
leaves the state unchanged. Getters that return collections return copies,
so iterating them never races with the node applying new calls;
``rawData()`` is the live object (read it, never change it).
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from raftkit.batteries._base import Battery, ReadMode, reader, short_repr, stable_key
from raftkit.syncobj.decorator import replicated

__all__ = ["ReplDict", "ReplList", "ReplSet"]


class _Collection(Battery):
    """The reads every container battery answers the same way from ``_data``."""

    _data: Any

    @reader
    def __len__(self) -> int:
        return len(self._data)

    @reader
    def len(self) -> int:
        return len(self._data)

    @reader
    def __contains__(self, item: Any) -> bool:
        return item in self._data

    @reader
    def contains(self, item: Any) -> bool:
        return item in self._data

    @reader
    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._data))  # a copy: applies may change _data meanwhile


class ReplList(_Collection):
    """A replicated ``list``."""

    def __init__(self, *, read: ReadMode = "local") -> None:
        super().__init__(read=read)
        self._data: list[Any] = []

    def _index(self, position: Any, what: str) -> int:
        """``position`` as a valid index, or the IndexError list would raise."""
        if not isinstance(position, int):
            raise TypeError(f"ReplList.{what}: indices must be integers, not {type(position).__name__}")
        n = len(self._data)
        if not -n <= position < n:
            raise IndexError(f"ReplList.{what}: index {position} out of range (length {n})")
        return position

    # -- replicated ---------------------------------------------------------------

    @replicated
    def reset(self, newData: list[Any]) -> None:  # noqa: N803 - PySyncObj's parameter names
        """Replace the whole list."""
        if not isinstance(newData, (list, tuple)):
            raise TypeError(f"ReplList.reset needs a list, got {type(newData).__name__}")
        self._data = list(newData)

    @replicated
    def set(self, position: int, newValue: Any) -> None:  # noqa: N803
        """``l[position] = newValue``."""
        self._data[self._index(position, "set")] = newValue

    @replicated
    def __setitem__(self, position: int, element: Any) -> None:
        self._data[self._index(position, "__setitem__")] = element

    @replicated
    def append(self, item: Any) -> None:
        self._data.append(item)

    @replicated
    def extend(self, other: Any) -> None:
        """Append every item of ``other`` (a list or tuple)."""
        self._data.extend(list(other))

    @replicated
    def insert(self, position: int, element: Any) -> None:
        """Insert before ``position`` (clamped to the ends, as ``list.insert``)."""
        self._data.insert(position, element)

    @replicated
    def remove(self, element: Any) -> None:
        """Remove the first occurrence; ValueError if there is none."""
        if element not in self._data:
            raise ValueError(f"ReplList.remove({short_repr(element)}): the item is not in the list")
        self._data.remove(element)

    @replicated
    def pop(self, position: int | None = None) -> Any:
        """Remove and return the item at ``position`` (default: the last);
        IndexError if the list is empty or the index is out of range."""
        if not self._data:
            raise IndexError("pop from an empty ReplList")
        return self._data.pop(self._index(-1 if position is None else position, "pop"))

    @replicated
    def sort(self, reverse: bool = False) -> None:
        """Stable sort in place; a TypeError (items that cannot be compared)
        leaves the list as it was."""
        self._data[:] = sorted(self._data, reverse=reverse)

    # -- reads ----------------------------------------------------------------------

    @reader
    def index(self, element: Any) -> int:
        """Position of the first occurrence; ValueError if there is none."""
        try:
            return self._data.index(element)
        except ValueError:
            raise ValueError(f"ReplList.index({short_repr(element)}): the item is not in the list") from None

    @reader
    def count(self, element: Any) -> int:
        return self._data.count(element)

    @reader
    def get(self, position: int) -> Any:
        """The item at ``position`` (IndexError if out of range)."""
        return self._data[position]

    @reader
    def __getitem__(self, position: Any) -> Any:
        return self._data[position]

    @reader
    def rawData(self) -> list[Any]:  # noqa: N802 - PySyncObj's name
        """The live list (do not change it: changes would not be replicated)."""
        return self._data

    raw_data = rawData

    def _serialize(self) -> Any:
        return self._data

    def _deserialize(self, data: Any) -> None:
        self._data = list(data)

    def __repr__(self) -> str:
        return f"ReplList({short_repr(self._data)})"


class ReplDict(_Collection):
    """A replicated ``dict`` (insertion order kept, as in a dict)."""

    def __init__(self, *, read: ReadMode = "local") -> None:
        super().__init__(read=read)
        self._data: dict[Any, Any] = {}

    # -- replicated ---------------------------------------------------------------

    @replicated
    def reset(self, newData: Mapping[Any, Any]) -> None:  # noqa: N803
        """Replace the whole dict."""
        if not isinstance(newData, Mapping):
            raise TypeError(f"ReplDict.reset needs a dict, got {type(newData).__name__}")
        self._data = dict(newData)

    @replicated
    def __setitem__(self, key: Any, value: Any) -> None:
        """``d[key] = value``: an asynchronous replicated call."""
        self._data[key] = value

    @replicated
    def set(self, key: Any, value: Any) -> None:
        """``d[key] = value``, with ``sync=`` / ``callback=`` / ``timeout=``."""
        self._data[key] = value

    @replicated
    def setdefault(self, key: Any, default: Any = None) -> Any:
        """The value for ``key``, stored as ``default`` first if missing."""
        return self._data.setdefault(key, default)

    @replicated
    def update(self, other: Any) -> None:
        """Add every item of ``other`` (a dict, or a list of pairs): all or none."""
        items = dict(other)  # a bad item raises before anything changed
        self._data.update(items)

    @replicated
    def pop(self, key: Any, default: Any = None) -> Any:
        """Remove and return the value for ``key``; ``default`` if missing
        (PySyncObj's semantics: never raises)."""
        return self._data.pop(key, default)

    @replicated
    def clear(self) -> None:
        self._data.clear()

    # -- reads ----------------------------------------------------------------------

    @reader
    def get(self, key: Any, default: Any = None) -> Any:
        return self._data.get(key, default)

    @reader
    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    @reader
    def keys(self) -> KeysView[Any]:
        """A keys view of a copy (safe to iterate while calls are applied)."""
        return dict(self._data).keys()

    @reader
    def values(self) -> ValuesView[Any]:
        return dict(self._data).values()

    @reader
    def items(self) -> ItemsView[Any, Any]:
        return dict(self._data).items()

    @reader
    def rawData(self) -> dict[Any, Any]:  # noqa: N802 - PySyncObj's name
        """The live dict (do not change it: changes would not be replicated)."""
        return self._data

    raw_data = rawData

    def _serialize(self) -> Any:
        return self._data

    def _deserialize(self, data: Any) -> None:
        self._data = dict(data)

    def __repr__(self) -> str:
        return f"ReplDict({short_repr(self._data)})"


class ReplSet(_Collection):
    """A replicated ``set``. ``pop()`` removes the smallest element in a
    hash-independent order (``stable_key``), so every node removes the same
    one (a plain ``set.pop()`` depends on the process's hash seed)."""

    def __init__(self, *, read: ReadMode = "local") -> None:
        super().__init__(read=read)
        self._data: set[Any] = set()

    # -- replicated ---------------------------------------------------------------

    @replicated
    def reset(self, newData: Any) -> None:  # noqa: N803
        """Replace the whole set (from a set, frozenset, list or tuple)."""
        if not isinstance(newData, (set, frozenset, list, tuple)):
            raise TypeError(f"ReplSet.reset needs a set, got {type(newData).__name__}")
        self._data = set(newData)

    @replicated
    def add(self, item: Any) -> None:
        self._data.add(item)

    @replicated
    def remove(self, item: Any) -> None:
        """Remove ``item``; KeyError if it is not a member."""
        if item not in self._data:
            raise KeyError(f"ReplSet.remove({short_repr(item)}): not a member")
        self._data.remove(item)

    @replicated
    def discard(self, item: Any) -> None:
        """Remove ``item`` if it is a member."""
        self._data.discard(item)

    @replicated
    def pop(self) -> Any:
        """Remove and return the smallest element (by ``stable_key``);
        KeyError if the set is empty."""
        if not self._data:
            raise KeyError("pop from an empty ReplSet")
        item = min(self._data, key=stable_key)
        self._data.remove(item)
        return item

    @replicated
    def clear(self) -> None:
        self._data.clear()

    @replicated
    def update(self, other: Any) -> None:
        """Add every element of ``other``: all or none."""
        items = set(other)  # an unhashable element raises before anything changed
        self._data.update(items)

    # -- reads ----------------------------------------------------------------------

    @reader
    def rawData(self) -> set[Any]:  # noqa: N802 - PySyncObj's name
        """The live set (do not change it: changes would not be replicated)."""
        return self._data

    raw_data = rawData

    def _serialize(self) -> Any:
        # A list in a hash-independent order: the same bytes on every node,
        # and serializers without sets (JSON) can carry it.
        return sorted(self._data, key=stable_key)

    def _deserialize(self, data: Any) -> None:
        self._data = set(data)

    def __repr__(self) -> str:
        return f"ReplSet({short_repr(self._data)})"
