"""LmdbDict: a replicated dict kept on disk in LMDB, for state larger than memory.

Two ways to use it:

* as a PySyncObj-style consumer: ``d = LmdbDict(path)`` passed in
  ``SyncObj(..., consumers=[d])``; ``d.set(k, v)``, ``d.pop(k)``,
  ``d.update(m)``, ``d.clear()`` are replicated calls (``sync=``,
  ``callback=``, ``timeout=`` as usual) and reads are local;
* as a ``StateMachine`` of its own: ``LmdbDictStateMachine(path)`` given to
  ``NodeBuilder.state_machine``, with commands made by its ``*_command``
  static methods and proposed with ``node.propose``. This is the durable
  mode: every entry is applied exactly once across crashes and snapshots
  are streamed (see ``LmdbStateMachine``).

Keys and values are encoded with raftkit's ``MsgpackSerializer`` (safe for
untrusted input; exact types: a tuple stays a tuple). The *proposer*
encodes them, so a command carries the bytes that get stored and applying
it never re-encodes a value. Keys are compared by their encoding: ``1``,
``1.0`` and ``True`` are three different keys (unlike a ``dict``), sets are
refused as keys (their encoding depends on the hash seed), and an encoded
key must fit LMDB's 511 bytes. Iteration is in key-encoding order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from raftkit.state_machines.lmdb_dict import LmdbDictStateMachine
from raftkit.syncobj.consumer import SyncObjConsumer
from raftkit.syncobj.decorator import replicated
from raftkit.syncobj.object_machine import current_entry_index

__all__ = ["LmdbDict", "LmdbDictStateMachine"]




class LmdbDict(SyncObjConsumer):
    """PySyncObj's ``ReplDict`` on disk: pass it in ``SyncObj(..., consumers=[d])``.

    ``options`` go to ``LmdbDictStateMachine`` (``durability``, ``map_size``,
    ``max_map_size``...). The environment closes when the SyncObj is
    destroyed (``_destroy``) or on ``close()``. It is not ``fork_safe``: a
    forked child must not capture it (``SyncObjConf(useFork=False)``).

    SyncObj applies its calls with their log index (``current_entry_index``),
    so each is applied exactly once across restarts, and streams its LMDB
    contents in SyncObj's snapshot (the ``_rk_state_machine`` hook below)
    instead of building them in memory.
    """

    fork_safe: ClassVar[bool] = False

    def __init__(self, path: str | os.PathLike[str], **options: Any) -> None:
        super().__init__()
        self._rk_state = LmdbDictStateMachine(path, **options)

    @property
    def state_machine(self) -> LmdbDictStateMachine:
        return self._rk_state

    def _rk_state_machine(self) -> LmdbDictStateMachine:
        """SyncObj's hook for consumers whose state is a state machine of their own."""
        return self._rk_state

    def _rk_apply(self, command: bytes) -> Any:
        index = current_entry_index()  # set while SyncObj applies a log entry: apply it exactly once
        return self._rk_state.apply(command) if index is None else self._rk_state.apply_entry(index, command)

    @replicated
    def set(self, key: Any, value: Any) -> None:
        self._rk_apply(LmdbDictStateMachine.set_command(key, value))

    @replicated
    def pop(self, key: Any, default: Any = None) -> Any:
        return self._rk_apply(LmdbDictStateMachine.pop_command(key, default))

    @replicated
    def update(self, other: Mapping[Any, Any]) -> None:
        self._rk_apply(LmdbDictStateMachine.update_command(other))

    @replicated
    def clear(self) -> None:
        self._rk_apply(LmdbDictStateMachine.clear_command())

    def get(self, key: Any, default: Any = None) -> Any:
        return self._rk_state.get(key, default)

    def __getitem__(self, key: Any) -> Any:
        return self._rk_state[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._rk_state

    def __len__(self) -> int:
        return len(self._rk_state)

    def __iter__(self) -> Iterator[Any]:
        return self._rk_state.keys()

    def keys(self) -> Iterator[Any]:
        return self._rk_state.keys()

    def values(self) -> Iterator[Any]:
        return self._rk_state.values()

    def items(self) -> Iterator[tuple[Any, Any]]:
        return self._rk_state.items()

    def close(self) -> None:
        self._rk_state.close()

    def _destroy(self) -> None:
        self.close()

    def _serialize(self) -> bytes:
        return self._rk_state.snapshot()

    def _deserialize(self, data: Any) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"an LmdbDict snapshot part must be bytes, got {type(data).__name__}")
        self._rk_state.restore(bytes(data))
