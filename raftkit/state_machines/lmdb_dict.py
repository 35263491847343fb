"""LmdbDictStateMachine: the state machine behind ``raftkit.batteries.LmdbDict``,
a dict kept on disk in LMDB.

Used on its own (given to ``NodeBuilder.state_machine``, commands made by
its ``*_command`` static methods) it is the durable mode: every entry is
applied exactly once across crashes and snapshots are streamed (see
``LmdbStateMachine``). Keys and values are encoded by the proposer with
``MsgpackSerializer``; see ``raftkit.batteries.lmdb_dict`` for the key rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import lmdb
import msgpack

from raftkit.errors import CodecError
from raftkit.serializers.msgpack_serializer import MsgpackSerializer
from raftkit.state_machines.lmdb_machine import LmdbStateMachine

__all__ = ["LmdbDictStateMachine", "encode_key"]

_SERIALIZER = MsgpackSerializer()
_MAX_KEY = 511
_PAGE = 1000  # items per read transaction while iterating
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
        out: bytes = msgpack.packb(["set", encode_key(key), _SERIALIZER.dumps(value)], use_bin_type=True)
        return out

    @staticmethod
    def pop_command(key: Any, default: Any = None) -> bytes:
        out: bytes = msgpack.packb(["pop", encode_key(key), _SERIALIZER.dumps(default)], use_bin_type=True)
        return out

    @staticmethod
    def update_command(other: Mapping[Any, Any]) -> bytes:
        pairs = [[encode_key(k), _SERIALIZER.dumps(v)] for k, v in other.items()]
        out: bytes = msgpack.packb(["update", pairs], use_bin_type=True)
        return out

    @staticmethod
    def clear_command() -> bytes:
        out: bytes = msgpack.packb(["clear"], use_bin_type=True)
        return out

    # -- applying ------------------------------------------------------------------------

    def apply_in_txn(self, txn: lmdb.Transaction[bytes], command: bytes) -> Any:
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
                page: list[tuple[bytes, bytes]] = []
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
