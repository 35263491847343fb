"""A tiny key-value state machine for tests, examples and the demo.

Commands are msgpack-encoded lists: ``["set", key, value]`` and
``["del", key]``; keys are strings, values any msgpack value (maps keyed by strings). Use
``set_command`` / ``del_command`` to build them.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgpack

from raftkit.state_machines.base import StateMachine


def set_command(key: str, value: Any) -> bytes:
    """The command that sets ``key`` to ``value``."""
    packed: bytes = msgpack.packb(["set", key, value], use_bin_type=True)
    return packed


def del_command(key: str) -> bytes:
    """The command that deletes ``key``."""
    packed: bytes = msgpack.packb(["del", key], use_bin_type=True)
    return packed


class KeyValueStateMachine(StateMachine):
    """A dict replicated through the log.

    ``apply`` returns the key's previous value (``None`` if it was absent)
    and raises ``ValueError`` for a malformed command without changing the
    state, so the same bad command fails the same way on every replica.
    """

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

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
                return self.data.pop(key, None)
        raise ValueError(f"malformed command {op!r}: expected ['set', key, value] or ['del', key]")

    def snapshot(self) -> bytes:
        # Sorted so that equal states give equal bytes on every replica.
        packed: bytes = msgpack.packb(dict(sorted(self.data.items())), use_bin_type=True)
        return packed

    def restore(self, data: bytes) -> None:
        state = msgpack.unpackb(data, raw=False)
        if not isinstance(state, dict):
            raise ValueError(f"snapshot is not a key-value map but {type(state).__name__}")
        self.data = state


class FileKeyValueStateMachine(KeyValueStateMachine):
    """A stand-in for an on-disk state machine (tests): the data and the
    index of the last applied entry are written together to ``path`` (JSON)
    after every apply, and read back when it exists. ``disk_full`` makes
    applies fail without recording anything (the entry is not applied);
    ``applied`` lists the indexes applied, ``restores`` counts restores."""

    fork_safe = False
    disk_full = False

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.applied: list[int] = []
        self.restores = 0
        self._index = 0
        if path.exists():
            saved = json.loads(path.read_text())
            self.data, self._index = saved["data"], saved["index"]

    @property
    def applied_index(self) -> int:
        return self._index

    def apply_entry(self, index: int, command: bytes) -> Any:
        if self.disk_full:  # nothing recorded: the entry is not applied
            raise OSError(errno.ENOSPC, "state disk full")
        result = self.apply(command)
        self.applied.append(index)
        self._index = index
        self.path.write_text(json.dumps({"data": self.data, "index": index}))
        return result

    def restore_from(self, chunks: Iterable[bytes]) -> None:
        self.restores += 1
        super().restore_from(chunks)

