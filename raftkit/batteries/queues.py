"""ReplQueue (FIFO) and ReplPriorityQueue (smallest first): replicated
queues with PySyncObj's semantics and ``queue.Queue``'s vocabulary.

``put`` and ``get`` are replicated calls, because both change the queue:
``put(item)`` returns False when the queue is full and ``get(default)``
returns ``default`` when it is empty, as in PySyncObj. ``put_nowait`` and
``get_nowait`` are the same calls raising ``queue.Full`` / ``queue.Empty``
instead, for code that prefers exceptions. ``maxsize`` is configuration,
not replicated state: give every node the same one.
"""

from __future__ import annotations

import heapq
import queue
from collections import deque
from typing import Any

from raftkit.batteries._base import Battery, ReadMode, reader, short_repr
from raftkit.syncobj.decorator import replicated

__all__ = ["ReplPriorityQueue", "ReplQueue"]


class _BoundedQueue(Battery):
    """What both queues share: the size limit and the size reads."""

    _kind = "queue"

    def __init__(self, maxsize: int = 0, *, read: ReadMode = "local") -> None:
        super().__init__(read=read)
        if not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, got {type(maxsize).__name__}")
        self._rk_maxsize = maxsize

    @property
    def maxsize(self) -> int:
        """The size limit; 0 (or less) means unbounded, as in ``queue.Queue``."""
        return self._rk_maxsize

    def _items(self) -> Any:
        raise NotImplementedError

    def _is_full(self) -> bool:
        return 0 < self._rk_maxsize <= len(self._items())

    def _full_error(self) -> queue.Full:
        return queue.Full(f"{type(self).__name__} is full (maxsize={self._rk_maxsize})")

    @reader
    def qsize(self) -> int:
        return len(self._items())

    @reader
    def __len__(self) -> int:
        return len(self._items())

    @reader
    def empty(self) -> bool:
        return not self._items()

    @reader
    def full(self) -> bool:
        return self._is_full()


class ReplQueue(_BoundedQueue):
    """A replicated FIFO queue."""

    def __init__(self, maxsize: int = 0, *, read: ReadMode = "local") -> None:
        super().__init__(maxsize, read=read)
        self._queue: deque[Any] = deque()

    def _items(self) -> deque[Any]:
        return self._queue

    @replicated
    def put(self, item: Any) -> bool:
        """Append ``item``: True, or False if the queue is full."""
        if self._is_full():
            return False
        self._queue.append(item)
        return True

    @replicated
    def put_nowait(self, item: Any) -> None:
        """Append ``item``; ``queue.Full`` if the queue is full."""
        if self._is_full():
            raise self._full_error()
        self._queue.append(item)

    @replicated
    def get(self, default: Any = None) -> Any:
        """Remove and return the oldest item; ``default`` if the queue is empty."""
        return self._queue.popleft() if self._queue else default

    @replicated
    def get_nowait(self) -> Any:
        """Remove and return the oldest item; ``queue.Empty`` if there is none."""
        if not self._queue:
            raise queue.Empty("ReplQueue is empty")
        return self._queue.popleft()

    @reader
    def rawData(self) -> deque[Any]:  # noqa: N802 - PySyncObj-style name
        """The live deque, oldest first (do not change it)."""
        return self._queue

    raw_data = rawData

    def _serialize(self) -> Any:
        return list(self._queue)

    def _deserialize(self, data: Any) -> None:
        self._queue = deque(data)

    def __repr__(self) -> str:
        return f"ReplQueue({short_repr(list(self._queue))}, maxsize={self._rk_maxsize})"


class ReplPriorityQueue(_BoundedQueue):
    """A replicated priority queue (a ``heapq`` heap): ``get`` returns the
    smallest item. Items must be comparable with each other, e.g.
    ``(priority, payload)`` tuples."""

    def __init__(self, maxsize: int = 0, *, read: ReadMode = "local") -> None:
        super().__init__(maxsize, read=read)
        self._heap: list[Any] = []

    def _items(self) -> list[Any]:
        return self._heap

    def _push(self, item: Any) -> None:
        # First the comparisons heappush will make (item < each parent on its
        # way up, as heapq's siftdown does), so an item that cannot be
        # compared is refused before the heap changes at all.
        heap = self._heap
        pos = len(heap)
        try:
            while pos > 0:
                pos = (pos - 1) >> 1
                if not item < heap[pos]:
                    break
        except TypeError as exc:
            raise TypeError(
                "ReplPriorityQueue items must be comparable with each other; "
                f"{short_repr(item)} is not ({exc})"
            ) from None
        heapq.heappush(heap, item)

    @replicated
    def put(self, item: Any) -> bool:
        """Add ``item``: True, or False if the queue is full."""
        if self._is_full():
            return False
        self._push(item)
        return True

    @replicated
    def put_nowait(self, item: Any) -> None:
        """Add ``item``; ``queue.Full`` if the queue is full."""
        if self._is_full():
            raise self._full_error()
        self._push(item)

    @replicated
    def get(self, default: Any = None) -> Any:
        """Remove and return the smallest item; ``default`` if the queue is empty."""
        return heapq.heappop(self._heap) if self._heap else default

    @replicated
    def get_nowait(self) -> Any:
        """Remove and return the smallest item; ``queue.Empty`` if there is none."""
        if not self._heap:
            raise queue.Empty("ReplPriorityQueue is empty")
        return heapq.heappop(self._heap)

    @reader
    def rawData(self) -> list[Any]:  # noqa: N802
        """The live heap list (``heapq`` order; do not change it)."""
        return self._heap

    raw_data = rawData

    def _serialize(self) -> Any:
        return self._heap

    def _deserialize(self, data: Any) -> None:
        self._heap = list(data)

    def __repr__(self) -> str:
        return f"ReplPriorityQueue({short_repr(self._heap)}, maxsize={self._rk_maxsize})"
