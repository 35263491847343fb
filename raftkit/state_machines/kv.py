"""KvStateMachine: the key-value store ``raftkit node`` serves.

It keeps a dict of string keys to JSON-like values. Commands are msgpack
lists: ``["set", key, value]``, ``["del", key]``, ``["incr", key, by]``;
``incr`` of a missing key starts at 0, and of a value that is not an
integer, or to a value msgpack cannot store (outside -2**63 .. 2**64-1,
which would make every later snapshot fail), fails on every replica
without changing anything.
"""

from __future__ import annotations

from typing import Any

import msgpack

from raftkit.state_machines.base import StateMachine

__all__ = ["KvStateMachine"]

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what msgpack can encode


class KvStateMachine(StateMachine):
    """A dict of str keys to JSON-like values, replicated through the log."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    @staticmethod
    def set_command(key: str, value: Any) -> bytes:
        packed: bytes = msgpack.packb(["set", key, value], use_bin_type=True)
        return packed

    @staticmethod
    def delete_command(key: str) -> bytes:
        packed: bytes = msgpack.packb(["del", key], use_bin_type=True)
        return packed

    @staticmethod
    def incr_command(key: str, by: int = 1) -> bytes:
        packed: bytes = msgpack.packb(["incr", key, by], use_bin_type=True)
        return packed

    def apply(self, command: bytes) -> Any:
        try:
            op = msgpack.unpackb(command, raw=False)
        except Exception as exc:  # msgpack raises several unrelated types for garbage
            raise ValueError(f"command is not valid msgpack: {exc}") from exc
        match op:
            case ["set", str() as key, value]:
                previous = self.data.get(key)
                self.data[key] = value
                return previous
            case ["del", str() as key]:
                if key not in self.data:
                    return False
                del self.data[key]
                return True
            case ["incr", str() as key, int() as by] if not isinstance(by, bool):
                current = self.data.get(key, 0)
                if isinstance(current, bool) or not isinstance(current, int):
                    raise ValueError(f"cannot increment {key!r}: its value {current!r} is not an integer")
                total = current + by
                if not _INT_MIN <= total <= _INT_MAX:
                    raise ValueError(
                        f"cannot increment {key!r} by {by}: {total} is outside the storable range "
                        f"{_INT_MIN}..{_INT_MAX}"
                    )
                self.data[key] = total
                return total
        raise ValueError(f"malformed command {op!r}")

    def snapshot(self) -> bytes:
        packed: bytes = msgpack.packb(dict(sorted(self.data.items())), use_bin_type=True)
        return packed

    def restore(self, data: bytes) -> None:
        state = msgpack.unpackb(data, raw=False)
        if not isinstance(state, dict):
            raise ValueError(f"snapshot is not a key-value map but {type(state).__name__}")
        self.data = state
