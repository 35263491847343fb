"""The log entry envelope of a client command (``wrap``/``unwrap``: who
proposed it and the command) and ``Held``, the Ready whose write failed and
that keeps every command out of the log until the write succeeds."""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from raftkit.core.types import Ready
from raftkit.errors import CodecError

__all__ = ["Held", "unwrap", "wrap"]


@dataclass
class Held:
    """A Ready the log store failed to persist: retried, never sent before."""

    ready: Ready
    error: str
    since: float
    attempts: int = 1


def wrap(origin: bytes, seq: int, command: bytes) -> bytes:
    """A log entry's payload: who proposed it (a per-process nonce, so a
    restarted node never mistakes an old entry for its own) and the command."""
    return msgpack.packb((origin, seq, command), use_bin_type=True)


def unwrap(data: bytes) -> tuple[bytes, int, bytes]:
    try:
        origin, seq, command = msgpack.unpackb(data, use_list=False)
    except (ValueError, TypeError, msgpack.ExtraData) as exc:
        raise CodecError(f"malformed command entry: {exc}") from exc
    return origin, seq, command
