"""A read-only node asks to be removed as it is destroyed
(raftkit.syncobj.membership_requests.leave)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from raftkit.syncobj import membership_requests


class _Node:
    """Just what leave() looks at, for a node destroyed from its own loop."""

    id = "readonly@127.0.0.1:5000"
    leader = "127.0.0.1:4000"
    started = True

    def __init__(self) -> None:
        self.blocked = 0.0

    def status(self) -> dict[str, Any]:
        return {"learners": [self.id]}

    def _in_loop(self) -> bool:
        return True

    def call_in_loop(self, fn: Any, timeout: float = 10.0) -> Any:
        self.blocked = timeout  # from the loop's own thread this waits for itself, then times out
        time.sleep(0.01)
        raise TimeoutError

    def dispatch(self, fn: Any) -> None:
        raise AssertionError("not in autoTick mode")


def test_leave_from_the_nodes_own_loop_asks_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: destroy() from a callback on the node's thread (PySyncObj
    programs do) made leave() wait on that very thread with call_in_loop:
    the loop stood still for two seconds and the request never went out."""
    asked: list[tuple[str, str, Any]] = []

    class Ops:
        def __init__(self, node: Any) -> None:
            pass

        def ask(self, op: str, node_id: str, address: Any = None, via: Any = None) -> None:
            asked.append((op, node_id, via))

    monkeypatch.setattr(membership_requests, "MembershipOps", Ops)
    node = _Node()
    membership_requests.leave(node, manual=False)  # type: ignore[arg-type]
    assert node.blocked == 0.0
    assert asked == [("remove", node.id, node.leader)]
