"""StorageRetry: what a node does while its log store cannot persist.

The Ready whose write failed is kept (``Held``), none of its messages is
sent (a leader's appends may already be out: ``LogWrites.send_ahead``),
and the write is retried every ``storage_retry_interval`` until it
succeeds; meanwhile the node is frozen (the node checks ``held``: it takes
no commands and ignores the network, so a leader steps down and its
followers elect another). Once the write succeeds the Ready completes as
if nothing happened.

Threads: everything runs on the node's loop thread (``Node._process_ready``
and the retry timer); client threads only see the outcome through
``status()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from raftkit.core.types import NodeId, Ready, Role
from raftkit.runtime.config import NodeConfig

__all__ = ["Held", "StorageRetry"]

# The node's log lines stay under one logger, wherever the code that writes them lives.
log = logging.getLogger("raftkit.runtime.node")


@dataclass
class Held:
    """A Ready the log store failed to persist: retried, never sent before."""

    ready: Ready
    error: str
    since: float
    attempts: int = 1


class StorageRetry:
    def __init__(
        self,
        node_id: NodeId,
        config: NodeConfig,
        *,
        persist: Callable[[Ready], None],
        frozen: Callable[[], None],
        changed: Callable[[], None],
        resumed: Callable[[Ready], None],
        stopped: Callable[[], bool],
        call_later: Callable[[float, Callable[[], None]], asyncio.TimerHandle],
    ) -> None:
        """``persist``: writes a Ready to the log store (raises on failure);
        ``frozen``: the node just froze (it fails its queued commands and
        reports it); ``changed``: the failure changed (refresh the status);
        ``resumed``: the held Ready is durable, complete it (send, apply,
        advance) and run the Ready loop; ``call_later``: the node's loop's."""
        self._id = node_id
        self._config = config
        self._persist = persist
        self._frozen = frozen
        self._changed = changed
        self._resumed = resumed
        self._stopped = stopped
        self._call_later = call_later
        self.held: Held | None = None  # a Ready the log store failed to persist
        self._handle: asyncio.TimerHandle | None = None

    def hold(self, rd: Ready, exc: Exception, role: Role) -> None:
        """The log store failed: keep ``rd`` (sending none of it), freeze and
        retry. A leader stops proposing and heartbeating, so its followers
        elect another; it rejoins once its disk works again."""
        error = f"{type(exc).__name__}: {exc}"
        self.held = Held(rd, error, time.monotonic())
        was = "leader" if role is Role.LEADER else role.value
        log.error(
            "%s: cannot persist to the log store (%s); as %s this node stops taking commands and "
            "sends nothing until the write succeeds, retrying every %.1fs",
            self._id, error, was, self._config.storage_retry_interval,
        )
        self._frozen()
        self._schedule()

    def cancel(self) -> None:
        """The node stops: no more attempts."""
        if self._handle is not None:
            self._handle.cancel()

    def _schedule(self) -> None:
        if not self._stopped():
            self._handle = self._call_later(self._config.storage_retry_interval, self._retry)

    def _retry(self) -> None:
        held = self.held
        if self._stopped() or held is None:
            return
        try:
            self._persist(held.ready)
        except Exception as exc:
            held.attempts += 1
            held.error = f"{type(exc).__name__}: {exc}"
            log.debug("%s: persisting still fails (attempt %d): %s", self._id, held.attempts, held.error)
            self._changed()
            self._schedule()
            return
        self.held = None
        log.warning(
            "%s: the log store works again after %.1fs (%d attempts); resuming",
            self._id, time.monotonic() - held.since, held.attempts,
        )
        self._resumed(held.ready)
