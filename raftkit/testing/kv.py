"""A tiny key-value state machine for tests, examples and the demo.

Commands are msgpack-encoded lists: ``["set", key, value]`` and
``["del", key]``; keys are strings, values any msgpack value (maps keyed by strings). Use
``set_command`` / ``del_command`` to build them.
"""

from __future__ import annotations

from typing import Any

import msgpack

from raftkit.state_machines.base import StateMachine


def set_command(key: str, value: Any) -> bytes:
    """The command that sets ``key`` to ``value``."""
    return msgpack.packb(["set", key, value], use_bin_type=True)


def del_command(key: str) -> bytes:
    """The command that deletes ``key``."""
    return msgpack.packb(["del", key], use_bin_type=True)


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
        return msgpack.packb(dict(sorted(self.data.items())), use_bin_type=True)

    def restore(self, data: bytes) -> None:
        state = msgpack.unpackb(data, raw=False)
        if not isinstance(state, dict):
            raise ValueError(f"snapshot is not a key-value map but {type(state).__name__}")
        self.data = state
