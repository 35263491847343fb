"""Apply-side cost of a replicated call: ``_ObjectStateMachine.apply_entries``
over batch entries of 1,000 ``set(key, value)`` calls with 10-byte values,
as every node runs them (decode, dispatch, the method itself).

    .venv/bin/python -m benchmarks.micro_apply

Prints CPU µs per applied call (best of 30 rounds of 20 entries).
"""

from __future__ import annotations

import time
from typing import Any

from raftkit.serializers.msgpack_serializer import MsgpackSerializer
from raftkit.syncobj.decorator import replicated
from raftkit.syncobj.object_machine import _ObjectStateMachine


class _Owner:
    """What the state machine needs of a SyncObj, and one replicated method."""

    _rk_consumers: list[Any] = []
    _rk_address = "micro"

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    @replicated
    def set(self, key: str, value: str) -> None:
        self.data[key] = value


def main() -> None:
    serializer = MsgpackSerializer()
    sm = _ObjectStateMachine(_Owner(), serializer)  # type: ignore[arg-type]
    calls = [serializer.dumps([-1, "set", [f"127.0.0.1:9001-{i % 1000}", "x" * 10], {}]) for i in range(1000)]
    best = float("inf")
    index = 0
    for _ in range(30):
        started = time.process_time()
        for _ in range(20):
            index += 1
            sm.apply_entries(index, calls)
        best = min(best, (time.process_time() - started) / (20 * len(calls)))
    print(f"apply: {best * 1e6:.3f} µs CPU per call")


if __name__ == "__main__":
    main()
