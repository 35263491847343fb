"""ReplLockManager: named distributed locks that expire when their holder
goes away (PySyncObj's ``ReplLockManager``, without its double grants).

How a lock stays safe without reading clocks inside replicated methods:

* Every call that takes or keeps a lock carries the *proposer's* wall-clock
  time (``time.time()``), decided before the call is logged. The replicated
  table stores ``lock -> (holder, since)`` where ``since`` is the holder's
  time at its last acquire or refresh.
* Another client may take the lock only with a request whose own time is
  ``autoUnlockTime`` or more after ``since``. The holder counts its lock as
  held only while its clock says less than ``autoUnlockTime`` has passed
  since ``since`` (as seen in its local, possibly older, copy: an older
  copy only shortens the holder's view). So the two periods never overlap,
  provided the nodes' clocks agree to well within ``autoUnlockTime`` (run
  NTP), whatever the leader does.
* A request older than a lock lives, compared with the newest request the
  table has seen (it waited for a leader at start-up, say), is refused; and
  ``tryAcquire`` reports False for a grant that came back after half of
  ``autoUnlockTime``, and releases it: a late grant would already be about
  to lapse. Together they close the start-up double grant PySyncObj had
  (its issue #108).
* A keeper thread per manager refreshes this client's locks every
  ``autoUnlockTime / 4`` while a leader is known, and prunes expired locks.
  After a leader crash a refresh is re-sent as soon as a new leader is
  known, so live holders keep their locks as long as the election takes
  well under ``3/4 * autoUnlockTime``.
* The keeper only refreshes locks this client was told it holds. A lock the
  table gives it that it never heard of (a ``tryAcquire`` that timed out yet
  was applied) or no longer wants (a ``release`` that did not commit) is
  released by the keeper instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raftkit.batteries._base import Battery, reader, with_aio
from raftkit.errors import CommandTimeoutError, RaftkitError
from raftkit.runtime.futures import wait_outcome
from raftkit.syncobj.decorator import replicated
from raftkit.syncobj.outcomes import FAIL_REASON, compat_error

if TYPE_CHECKING:
    from raftkit.runtime.node import Node

__all__ = ["ReplLockManager"]

log = logging.getLogger(__name__)

_POLL = 0.1  # the keeper notices destroy / a stopped node this fast
_WAIT_GRACE = 1.0  # as a sync replicated call: wait past the deadline for the node's verdict


class _LockTable(Battery):
    """The replicated part: ``lock id -> (holder id, since, autoUnlockTime)``.

    The lifetime travels with each grant, so nodes configured with different
    ``autoUnlockTime`` values still apply every call identically."""

    def __init__(self) -> None:
        super().__init__()
        self._rk_keeper: tuple[threading.Event, threading.Thread] | None = None
        self._locks: dict[Any, tuple[Any, float, float]] = {}
        self._latest = 0.0  # the newest proposer time applied: requests far older are stale

    @replicated
    def acquire(self, lockID: Any, clientID: Any, currentTime: float, autoUnlockTime: float) -> bool:  # noqa: N803
        """Take ``lockID`` for ``clientID`` unless another live holder has it."""
        self._latest = max(self._latest, currentTime)
        if self._latest - currentTime >= autoUnlockTime:
            return False  # older than a lock lives: it would be granted already expired
        held = self._locks.get(lockID)
        if held is not None and held[0] != clientID and currentTime - held[1] < held[2]:
            return False
        since = max(held[1], currentTime) if held is not None and held[0] == clientID else currentTime
        self._locks[lockID] = (clientID, since, autoUnlockTime)
        return True

    @replicated
    def refresh(self, clientID: Any, currentTime: float, keep: list[Any], drop: list[Any]) -> None:  # noqa: N803
        """Prolong ``clientID``'s locks in ``keep``, release those in
        ``drop``, and forget every lock that has expired by ``currentTime``."""
        self._latest = max(self._latest, currentTime)
        for lock_id in drop:
            held = self._locks.get(lock_id)
            if held is not None and held[0] == clientID:
                del self._locks[lock_id]
        prolong = set(keep)
        for lock_id, (holder, since, ttl) in list(self._locks.items()):
            if currentTime - since >= ttl:
                del self._locks[lock_id]
            elif holder == clientID and lock_id in prolong and currentTime > since:
                self._locks[lock_id] = (holder, currentTime, ttl)

    @replicated
    def release(self, lockID: Any, clientID: Any) -> bool:  # noqa: N803
        """Release ``lockID`` if ``clientID`` holds it; True if it did."""
        held = self._locks.get(lockID)
        if held is None or held[0] != clientID:
            return False
        del self._locks[lockID]
        return True

    @reader
    def holder(self, lockID: Any, now: float) -> Any:  # noqa: N803
        """Who holds ``lockID`` at time ``now`` in the local copy, or None."""
        held = self._locks.get(lockID)
        return held[0] if held is not None and now - held[1] < held[2] else None

    def _serialize(self) -> Any:
        return {"locks": [[k, *held] for k, held in self._locks.items()], "latest": self._latest}

    def _deserialize(self, data: Any) -> None:
        self._locks = {k: (h, s, ttl) for k, h, s, ttl in data["locks"]}
        self._latest = data["latest"]

    def _destroy(self) -> None:
        keeper = self._rk_keeper
        if keeper is None:
            return
        stop, thread = keeper
        stop.set()
        if thread is not threading.current_thread() and thread.is_alive():
            thread.join(5.0)


def _keep_alive(ref: weakref.ReferenceType[ReplLockManager], stop: threading.Event, poll: float) -> None:
    """The keeper thread: holds the manager only weakly, so a forgotten
    manager ends it; so do ``destroy()`` and a stopped node."""
    while not stop.wait(poll):
        manager = ref()
        if manager is None:
            return
        try:
            alive = manager._tick()
        except Exception:  # never let one bad pass end the keeper
            log.exception("lock manager %s: refresh failed", manager.self_id)
            alive = True
        del manager
        if not alive:
            return


def _wait(future: concurrent.futures.Future[Any], node: Node, timeout: float | None, what: str) -> Any:
    """Wait like a ``sync=True`` replicated call does."""
    limit = (node.config.command_timeout if timeout is None else timeout) + _WAIT_GRACE
    return wait_outcome(
        future, limit, lambda: compat_error(CommandTimeoutError(f"{what}: no outcome within {limit:.1f}s"))
    )


class ReplLockManager:
    """Distributed locks (PySyncObj's API): pass the manager in
    ``SyncObj(..., consumers=[lockManager])``, then ``tryAcquire(name)`` /
    ``isAcquired(name)`` / ``release(name)`` (snake_case aliases too).

    ``autoUnlockTime``: a lock whose holder has not refreshed it for this
    many seconds (its node is gone, or cut off) is free for others.
    ``selfID``: this client's identity (default: host, pid and a random
    part). Call ``destroy()`` when done (``SyncObj.destroy()`` does it):
    it stops the keeper thread; locks still held then expire.

    The manager knows which locks it was *told* it holds. A grant it never
    heard of (the call timed out, or failed with a leader change, yet was
    applied) is released by the keeper instead of being kept alive forever.
    """

    def __init__(self, autoUnlockTime: float, selfID: str | None = None) -> None:  # noqa: N803
        ttl = float(autoUnlockTime)
        if not ttl > 0:
            raise ValueError(f"autoUnlockTime must be a positive number of seconds, got {autoUnlockTime!r}")
        self._ttl = ttl
        self._period = ttl / 4  # PySyncObj's refresh rhythm
        if selfID is None:
            selfID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"  # noqa: N806
        self._id = selfID
        self._table = _LockTable()
        # _held: locks this client was told it holds and has not released.
        # _acquiring: lock -> tryAcquire calls without an outcome yet. The
        # guard makes "what to keep, what to drop" decisions atomic with them.
        self._guard = threading.RLock()
        self._held: set[Any] = set()
        self._acquiring: dict[Any, int] = {}
        self._inflight: concurrent.futures.Future[Any] | None = None
        self._inflight_leader: Any = None
        self._next_refresh = 0.0
        stop = threading.Event()
        thread = threading.Thread(
            target=_keep_alive,
            args=(weakref.ref(self), stop, min(self._period, _POLL)),
            name=f"raftkit-locks-{self._id}",
            daemon=True,
        )
        self._table._rk_keeper = (stop, thread)
        thread.start()

    @property
    def self_id(self) -> str:
        return self._id

    @property
    def auto_unlock_time(self) -> float:
        return self._ttl

    def _consumer(self) -> _LockTable:
        """The replicated part, for ``SyncObj(consumers=[...])`` (PySyncObj's protocol)."""
        return self._table

    def destroy(self) -> None:
        """Stop the keeper thread (idempotent). Locks still held expire."""
        self._table._destroy()

    # -- acquiring ----------------------------------------------------------------

    def _node(self) -> Node:
        owner = self._table.__dict__.get("_rk_owner")
        if owner is None:
            raise RuntimeError(
                "ReplLockManager is not attached to a SyncObj: pass it in SyncObj(..., consumers=[...])"
            )
        node: Node = owner._rk_node_for_call()
        return node

    def _begin(self, lock_id: Any) -> None:
        with self._guard:
            self._acquiring[lock_id] = self._acquiring.get(lock_id, 0) + 1

    def _end(self, lock_id: Any, granted: bool | None) -> None:
        """Record a tryAcquire's outcome: True held, False not, None unknown."""
        with self._guard:
            left = self._acquiring.get(lock_id, 1) - 1
            if left:
                self._acquiring[lock_id] = left
            else:
                self._acquiring.pop(lock_id, None)
            if granted:
                self._held.add(lock_id)
            elif granted is not None:
                self._held.discard(lock_id)

    def _confirm(self, lock_id: Any, granted: Any, attempt: float) -> bool:
        """A grant that came back after half the lock's life is given back
        (PySyncObj's rule): it would lapse before the first refresh."""
        if granted and time.time() - attempt >= self._ttl / 2:
            late = time.time() - attempt
            log.info("lock %r was granted %.2fs after the request: releasing it", lock_id, late)
            self._release_async(lock_id, None, None)
            return False
        return bool(granted)

    def _submit_acquire(self, lock_id: Any, attempt: float, timeout: float | None) -> Any:
        self._begin(lock_id)
        try:
            with self._guard:
                return self._table.acquire.submit(lock_id, self._id, attempt, self._ttl, timeout=timeout)
        except BaseException:
            self._end(lock_id, None)
            raise

    def _finish_acquire(self, lock_id: Any, attempt: float, call: Callable[[], Any]) -> bool:
        try:
            granted = call()
        except BaseException:
            self._end(lock_id, None)
            raise
        confirmed = self._confirm(lock_id, granted, attempt)
        self._end(lock_id, confirmed)
        return confirmed

    async def _try_acquire_aio(self, lockID: Any, timeout: float | None = None) -> bool:  # noqa: N803
        attempt = time.time()
        future = asyncio.wrap_future(self._submit_acquire(lockID, attempt, timeout))
        try:
            granted = await future
        except BaseException:
            self._end(lockID, None)
            raise
        confirmed = self._confirm(lockID, granted, attempt)
        self._end(lockID, confirmed)
        return confirmed

    @with_aio(_try_acquire_aio)
    def tryAcquire(  # noqa: N802 - PySyncObj's name
        self,
        lockID: Any,  # noqa: N803
        callback: Callable[[Any, Any], Any] | None = None,
        sync: bool = False,
        timeout: float | None = None,
    ) -> bool | None:
        """Try to take ``lockID``. ``sync=True``: True if this client now
        holds it, False if someone else does. ``callback(result, err)``:
        the same, later. Neither: fire and forget (check ``isAcquired``).
        A call that fails (timeout, leader change) leaves the lock not held."""
        attempt = time.time()
        if callback is not None or not sync:

            def done(granted: Any, err: Any) -> None:
                if err == FAIL_REASON.SUCCESS:
                    granted = self._confirm(lockID, granted, attempt)
                    self._end(lockID, granted)
                else:
                    self._end(lockID, None)
                if callback is not None:
                    callback(granted, err)

            self._begin(lockID)
            try:
                with self._guard:
                    self._table.acquire(lockID, self._id, attempt, self._ttl, callback=done, timeout=timeout)
            except BaseException:  # refused before it was logged (e.g. an unencodable lock id)
                self._end(lockID, None)
                raise
            return None
        node = self._node()
        if node._in_loop():
            raise RuntimeError("tryAcquire(sync=True) from the node's own event loop would deadlock; "
                               "use callback= or await tryAcquire.aio()")
        future = self._submit_acquire(lockID, attempt, timeout)
        return self._finish_acquire(lockID, attempt, lambda: _wait(future, node, timeout, "tryAcquire"))

    try_acquire = tryAcquire

    # -- checking and releasing ------------------------------------------------------------

    async def _is_acquired_aio(self, lockID: Any) -> bool:  # noqa: N803
        return self.isAcquired(lockID)

    @with_aio(_is_acquired_aio)
    def isAcquired(self, lockID: Any) -> bool:  # noqa: N802, N803 - PySyncObj's names
        """True while this client holds ``lockID``: granted, not released,
        and refreshed less than ``autoUnlockTime`` ago by this node's clock."""
        return lockID in self._held and self._table.holder(lockID, time.time()) == self._id

    is_acquired = isAcquired

    def _release_async(
        self, lock_id: Any, callback: Callable[[Any, Any], Any] | None, timeout: float | None
    ) -> None:
        with self._guard:
            self._held.discard(lock_id)  # not ours any more, from this moment
            self._table.release(lock_id, self._id, callback=callback, timeout=timeout)

    def _submit_release(self, lock_id: Any, timeout: float | None) -> concurrent.futures.Future[Any]:
        with self._guard:
            self._held.discard(lock_id)
            release = self._table.release
            future: concurrent.futures.Future[Any] = release.submit(lock_id, self._id, timeout=timeout)
            return future

    async def _release_aio(self, lockID: Any, timeout: float | None = None) -> bool:  # noqa: N803
        return bool(await asyncio.wrap_future(self._submit_release(lockID, timeout)))

    @with_aio(_release_aio)
    def release(
        self,
        lockID: Any,  # noqa: N803
        callback: Callable[[Any, Any], Any] | None = None,
        sync: bool = False,
        timeout: float | None = None,
    ) -> bool | None:
        """Give ``lockID`` back. ``isAcquired`` is False from this call on;
        if the release does not commit, the keeper sends it again.
        ``sync=True`` returns whether this client held the lock."""
        if callback is not None or not sync:
            self._release_async(lockID, callback, timeout)
            return None
        node = self._node()
        if node._in_loop():
            raise RuntimeError("release(sync=True) from the node's own event loop would deadlock; "
                               "use callback= or await release.aio()")
        return bool(_wait(self._submit_release(lockID, timeout), node, timeout, "release"))

    # -- the keeper ------------------------------------------------------------------------

    def _tick(self) -> bool:
        """One pass of the keeper thread; False once the node has stopped."""
        owner = self._table.__dict__.get("_rk_owner")
        node = None if owner is None else owner.__dict__.get("_rk_node")
        if node is None or not node.started:
            return True  # not attached, being built, or a manual node not ticked yet
        if not node.status()["running"]:
            return False
        leader = node.leader
        now_mono = time.monotonic()
        inflight = self._inflight
        busy = inflight is not None and not inflight.done() and self._inflight_leader == leader
        if leader is None or busy or now_mono < self._next_refresh:
            return True
        with self._guard:
            now = time.time()
            keep, drop, prune = self._plan(now)
            if keep or drop or prune:
                try:
                    refresh = self._table.refresh
                    self._inflight = refresh.submit(self._id, now, keep, drop, timeout=self._period)
                    self._inflight_leader = leader
                except RaftkitError as exc:  # queue full, node stopping: try again next time
                    log.debug("lock manager %s: refresh not sent: %s", self._id, exc)
        self._next_refresh = now_mono + self._period
        return True

    def _plan(self, now: float) -> tuple[list[Any], list[Any], bool]:
        """(locks to prolong, locks to release, whether any lock has expired).
        Called with the guard held."""
        locks = dict(self._table._locks)
        mine = {k for k, (holder, _, _) in locks.items() if holder == self._id}
        self._held &= mine | set(self._acquiring)  # lost (expired, taken over): forget them
        keep = [k for k in mine if k in self._held and now - locks[k][1] < locks[k][2]]
        # Ours in the table but not to this client's knowledge: released
        # calls that did not commit, grants whose outcome never came back.
        drop = [k for k in mine if k not in self._held and k not in self._acquiring]
        prune = any(now - since >= ttl for _, since, ttl in locks.values())
        return keep, drop, prune

    def __repr__(self) -> str:
        return f"<ReplLockManager {self._id} autoUnlockTime={self._ttl}>"
