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

import importlib
import os
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import lmdb
import msgpack

from raftkit.errors import CodecError
from raftkit.lmdb_state_machine import LmdbStateMachine
from raftkit.replicated import SyncObjConsumer, replicated
from raftkit.serializers.msgpack_serializer import MsgpackSerializer

__all__ = ["LmdbDict", "LmdbDictStateMachine"]

_SERIALIZER = MsgpackSerializer()
_MAX_KEY = 511
_PAGE = 1000  # items per read transaction while iterating
# Set while SyncObj runs a call for a log entry, once replicated.py provides
# it (see LmdbDict): the dict then applies that entry exactly once.
# (import_module: the package attribute ``raftkit.replicated`` is the decorator.)
_entry_index = getattr(importlib.import_module("raftkit.replicated"), "current_entry_index", lambda: None)


def encode_key(key: Any) -> bytes:
    """The stored form of ``key``; TypeError/ValueError for keys that cannot be one."""
    _check_key_type(key)
    data = _SERIALIZER.dumps(key)
    if len(data) > _MAX_KEY:
        raise ValueError(f"the key encodes to {len(data)} bytes; LMDB keys are limited to {_MAX_KEY}")
    return data


def _check_key_type(key: Any) -> None:
    if isinstance(key, (set, frozenset, dict, list, bytearray)):
        raise TypeError(f"{type(key).__name__} cannot be an LmdbDict key (unhashable, or its encoding "
                        "depends on the process's hash seed)")
    if isinstance(key, tuple):
        for item in key:
            _check_key_type(item)


def _decode(data: bytes) -> Any:
    return _SERIALIZER.loads(data)


class LmdbDictStateMachine(LmdbStateMachine):
    """The dict's state machine: commands are msgpack arrays
    ``["set", key, value]``, ``["pop", key, default]``,
    ``["update", [[key, value], ...]]`` and ``["clear"]`` whose keys and
    values are already encoded (use the ``*_command`` helpers)."""

    databases = ("items",)

    # -- commands (built by the proposer) ------------------------------------------

    @staticmethod
    def set_command(key: Any, value: Any) -> bytes:
        return msgpack.packb(["set", encode_key(key), _SERIALIZER.dumps(value)], use_bin_type=True)

    @staticmethod
    def pop_command(key: Any, default: Any = None) -> bytes:
        return msgpack.packb(["pop", encode_key(key), _SERIALIZER.dumps(default)], use_bin_type=True)

    @staticmethod
    def update_command(other: Mapping[Any, Any]) -> bytes:
        pairs = [[encode_key(k), _SERIALIZER.dumps(v)] for k, v in other.items()]
        return msgpack.packb(["update", pairs], use_bin_type=True)

    @staticmethod
    def clear_command() -> bytes:
        return msgpack.packb(["clear"], use_bin_type=True)

    # -- applying ------------------------------------------------------------------------

    def apply_in_txn(self, txn: lmdb.Transaction, command: bytes) -> Any:
        try:
            op, *args = msgpack.unpackb(command, raw=False, use_list=True)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise CodecError(f"malformed LmdbDict command: {exc}") from exc
        if op == "set" and len(args) == 2:
            txn.put(_key_bytes(args[0]), _value_bytes(args[1]))
            return None
        if op == "pop" and len(args) == 2:
            found = txn.pop(_key_bytes(args[0]))
            return _decode(_value_bytes(args[1]) if found is None else found)
        if op == "update" and len(args) == 1 and isinstance(args[0], list):
            for key, value in _pairs(args[0]):  # a bad pair aborts the whole update
                txn.put(_key_bytes(key), _value_bytes(value))
            return None
        if op == "clear" and not args:
            txn.drop(self.db("items"), delete=False)
            return None
        raise CodecError(f"unknown LmdbDict command {op!r} with {len(args)} argument(s)")

    # -- local reads (not linearizable: this replica's applied state) -----------------

    def get(self, key: Any, default: Any = None) -> Any:
        raw = self._get_raw(key)
        return default if raw is None else _decode(raw)

    def __getitem__(self, key: Any) -> Any:
        raw = self._get_raw(key)
        if raw is None:
            raise KeyError(key)
        return _decode(raw)

    def __contains__(self, key: Any) -> bool:
        return self._get_raw(key) is not None

    def __len__(self) -> int:
        with self.read_txn() as txn:
            return int(txn.stat(self.db("items"))["entries"])

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def keys(self) -> Iterator[Any]:
        return (_decode(k) for k, _ in self.raw_items())

    def values(self) -> Iterator[Any]:
        return (_decode(v) for _, v in self.raw_items())

    def items(self) -> Iterator[tuple[Any, Any]]:
        return ((_decode(k), _decode(v)) for k, v in self.raw_items())

    def raw_items(self) -> Iterator[tuple[bytes, bytes]]:
        """Encoded (key, value) pairs in key order, read in short transactions
        of a thousand items: a slow consumer never pins old pages or blocks
        map growth, but writes applied meanwhile may show up part-way."""
        after: bytes | None = None
        while True:
            with self.read_txn() as txn:
                cursor = txn.cursor()
                more = cursor.first() if after is None else cursor.set_range(after)
                if more and cursor.key() == after:
                    more = cursor.next()
                page = []
                while more and len(page) < _PAGE:
                    page.append(cursor.item())
                    more = cursor.next()
            yield from page
            if not more:
                return
            after = page[-1][0]

    def _get_raw(self, key: Any) -> bytes | None:
        try:
            encoded = encode_key(key)
        except ValueError:  # too long to be stored, so absent
            return None
        with self.read_txn() as txn:
            return txn.get(encoded)


def _key_bytes(value: Any) -> bytes:
    if not isinstance(value, bytes) or not 0 < len(value) <= _MAX_KEY:
        raise CodecError("an LmdbDict command carries a key that is not 1..511 encoded bytes")
    return value


def _value_bytes(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise CodecError("an LmdbDict command carries a value that is not encoded bytes")
    return value


def _pairs(items: list[Any]) -> list[tuple[Any, Any]]:
    if not all(isinstance(p, list) and len(p) == 2 for p in items):
        raise CodecError("an LmdbDict update carries something other than [key, value] pairs")
    return [(k, v) for k, v in items]


class LmdbDict(SyncObjConsumer):
    """PySyncObj's ``ReplDict`` on disk: pass it in ``SyncObj(..., consumers=[d])``.

    ``options`` go to ``LmdbDictStateMachine`` (``durability``, ``map_size``,
    ``max_map_size``...). The environment closes when the SyncObj is
    destroyed (``_destroy``) or on ``close()``. It is not ``fork_safe``: a
    forked child must not capture it (``SyncObjConf(useFork=False)``).

    Until SyncObj streams consumers that own a state machine (the
    ``_rk_state_machine`` hook below), the dict rides in SyncObj's snapshot
    as one ``bytes`` value built in memory (``_serialize``) and calls are
    applied without their log index: fine for moderate sizes. For state that
    must not pass through memory, or must be applied exactly once across
    restarts, run ``LmdbDictStateMachine`` as the node's state machine.
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
        index = _entry_index()
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
