"""raftkit's own timeout errors reach the caller unchanged (issue 10, item 8).

``CommandTimeoutError`` is a ``TimeoutError``, and since Python 3.11 so is
``concurrent.futures.TimeoutError``: a blocking wait that caught the latter
also caught the command's own error and replaced its message (and its
timing) with the wait's ("no outcome within 3.0s" after 2.0 s)."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import pytest

from raftkit import CommandTimeoutError, SyncObj, SyncObjException, replicated
from raftkit.runtime.futures import wait_outcome
from raftkit.testing.cluster import LocalCluster, fast_conf


def test_wait_outcome_raises_the_futures_own_timeout_error_unchanged() -> None:
    own = concurrent.futures.Future()
    own.set_exception(CommandTimeoutError("the command was proposed but got no outcome in time"))
    with pytest.raises(CommandTimeoutError, match="proposed but got no outcome"):
        wait_outcome(own, 5.0, lambda: CommandTimeoutError("the wait ran out"))
    raised = concurrent.futures.Future()  # a state machine's apply raised a plain TimeoutError
    raised.set_exception(TimeoutError("the lock server said no"))
    with pytest.raises(TimeoutError, match="lock server"):
        wait_outcome(raised, 5.0, lambda: CommandTimeoutError("the wait ran out"))
    done = concurrent.futures.Future()
    done.set_result(7)
    assert wait_outcome(done, 5.0, lambda: CommandTimeoutError("the wait ran out")) == 7


def test_wait_outcome_raises_the_timeout_only_when_the_wait_runs_out() -> None:
    never = concurrent.futures.Future()
    with pytest.raises(CommandTimeoutError, match="the wait ran out"):
        wait_outcome(never, 0.05, lambda: CommandTimeoutError("the wait ran out"))


class Box(SyncObj):
    def __init__(self, address: str, partners: list[str], transport: Any) -> None:
        # Long election timeouts: the leader keeps leading for about 2 s after
        # losing its followers (check-quorum), so commands are proposed and wait.
        conf = fast_conf(raftMinTimeout=2.0, raftMaxTimeout=2.5, appendEntriesPeriod=0.05)
        super().__init__(address, partners, conf, transport=transport)
        self.items: list[Any] = []

    @replicated
    def put(self, item: Any) -> int:
        self.items.append(item)
        return len(self.items)


def test_a_leader_that_lost_its_followers_reports_the_commands_own_timeout(cluster: LocalCluster) -> None:
    """The command's deadline passes while it waits for a quorum that is
    gone: every blocking API raises the node's own CommandTimeoutError, with
    its message, at the command's deadline rather than the wait's."""
    objs = cluster.add_syncobjs(Box)
    leader = cluster.wait_leader(10.0)
    box = next(o for o in objs if o.get_node().id == leader)
    assert box.put(0, sync=True, timeout=5.0) == 1
    for follower in cluster.followers():
        cluster.stop(follower)

    node = box.get_node()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:  # all within the leader's remaining term
        calls = {
            "propose": pool.submit(_timed, node.propose, b"\x00", timeout=0.3),
            "sync": pool.submit(_timed, box.put, 1, sync=True, timeout=0.3),
            "read": pool.submit(_timed, box.read_barrier, timeout=0.3),
        }
    assert node.is_leader  # the scenario held: the calls timed out under a live leader
    for name, call in calls.items():
        exc, seconds = call.result()
        assert isinstance(exc, CommandTimeoutError), (name, exc)
        assert "within" not in str(exc), (name, exc)  # not the wait's rewritten message
        assert seconds < 1.0, (name, seconds)  # the command's deadline, not the wait's (1.3 s)
    assert "proposed but got no outcome" in str(calls["propose"].result()[0])
    sync_error = calls["sync"].result()[0]
    assert "proposed but got no outcome" in str(sync_error)
    assert isinstance(sync_error, SyncObjException) and sync_error.errorCode == "Timeout"  # PySyncObj's type


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[BaseException | None, float]:
    t0 = time.monotonic()
    try:
        fn(*args, **kwargs)
    except BaseException as exc:  # returned to the test
        return exc, time.monotonic() - t0
    return None, time.monotonic() - t0
