"""``NodeOperations``, the part of ``SyncObj`` that asks the raftkit node
underneath: its status (raftkit's and PySyncObj's keys), leader and
readiness, linearizable reads, log compaction, membership changes,
leadership transfer and the admin endpoint. ``SyncObj`` inherits it; the
facade itself keeps construction, calls, code versions and the life cycle."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raftkit.errors import CommandTimeoutError, RaftkitError
from raftkit.runtime.futures import wait_outcome
from raftkit.runtime.node import Node
from raftkit.syncobj.conf import pysyncobj_state
from raftkit.syncobj.outcomes import FAIL_REASON, fail_reason

if TYPE_CHECKING:
    from raftkit.syncobj.conf import SyncObjConf
    from raftkit.syncobj.object_machine import _ObjectStateMachine

__all__ = ["NodeOperations"]


class NodeOperations:
    """SyncObj's node queries and cluster operations (a base class of
    ``SyncObj``, not for use on its own)."""

    # Set by SyncObj.__init__ / _rk_finish_init (facade.py):
    _rk_conf: SyncObjConf
    _rk_address: str
    _rk_partners: list[str]
    _rk_started_at: float
    _rk_sm: _ObjectStateMachine
    set_code_version: Callable[..., int | None]  # SyncObj's: the admin endpoint's set-version runs it

    # -- state of the node ----------------------------------------------------------------

    def get_node(self) -> Node:
        """The raftkit Node underneath (for status, metrics, leadership transfer)."""
        node = self.__dict__.get("_rk_node")
        if node is None:
            raise RuntimeError(f"{type(self).__name__} is still being constructed: it has no node yet")
        return node

    # -- cluster operations (raftkit.runtime.membership_ops; docs/operations.md) -----------------------

    def addNodeToCluster(  # noqa: N802 - PySyncObj's name
        self, nodeName: str, callback: Callable[[Any, Any], Any] | None = None  # noqa: N803
    ) -> None:
        """Add ``nodeName`` (its address): as a learner first, a voter once it
        has caught up. Start the new node with every member as its partners.
        With ``callback(None, err)`` it runs in the background, as in
        PySyncObj; without, it blocks and raises on failure."""
        self._rk_cluster_op(lambda: self.get_node().add_member(nodeName), callback)

    def removeNodeFromCluster(  # noqa: N802 - PySyncObj's name
        self, nodeName: str, callback: Callable[[Any, Any], Any] | None = None  # noqa: N803
    ) -> None:
        """Remove ``nodeName`` from the cluster (see ``addNodeToCluster``)."""
        self._rk_cluster_op(lambda: self.get_node().remove_member(nodeName), callback)

    add_node_to_cluster = addNodeToCluster
    remove_node_from_cluster = removeNodeFromCluster

    def transfer_leadership(self, to: str | None = None, *, timeout: float = 10.0) -> str:
        """Hand leadership to ``to`` (None: the most up-to-date voter); returns the new leader."""
        return self.get_node().transfer_leadership(to, timeout=timeout)

    def _rk_cluster_op(self, op: Callable[[], None], callback: Callable[[Any, Any], Any] | None) -> None:
        if callback is None:
            op()
            return

        def run() -> None:
            try:
                op()
            except RaftkitError as exc:
                callback(None, fail_reason(exc))
            else:
                callback(None, FAIL_REASON.SUCCESS)

        threading.Thread(target=run, name="raftkit-membership", daemon=True).start()

    def serve_admin(
        self, address: str, *, password: str | None = None, ssl_context: Any = None
    ) -> Any:
        """Serve ``raftkit admin`` on ``address`` (``"host:port"``), with the
        cluster password (default: this object's ``SyncObjConf.password``) or
        a TLS server context requiring client certificates. Besides status,
        membership, transfer and snapshot, it serves ``set-version``. Stopped
        by ``destroy()``. Returns the started ``raftkit.admin.AdminServer``."""
        from raftkit.admin.server import AdminServer  # only for objects that serve it

        password = password if password is not None else self._rk_conf.password
        server = AdminServer(
            self.get_node(),
            address,
            password=password,
            ssl_context=ssl_context,
            handlers={"set-version": self._rk_admin_set_version},
        )
        server.start()
        self._rk_admin = server
        return server

    def _rk_admin_set_version(self, args: dict[str, Any]) -> dict[str, Any]:
        version = self.set_code_version(int(args["version"]), timeout=float(args.get("timeout", 30.0)))
        return {"code_version": version}

    def status(self) -> dict[str, Any]:
        """raftkit's status dict (role, term, leader, indexes, peers...)."""
        node = self.get_node()
        status = node.status()
        status["self"] = self._rk_address
        status["partners"] = list(self._rk_partners)
        status["ready"] = self.is_ready()
        sm: _ObjectStateMachine = self._rk_sm
        status["code_version"] = sm.code_version
        status["code_version_supported"] = sm.supported
        if sm.version_error is not None and not status.get("error"):
            status["error"] = sm.version_error  # e.g. restored at a newer version, nothing to apply yet
        return status

    def getStatus(self) -> dict[str, Any]:  # noqa: N802 - PySyncObj's name
        """``status()`` plus PySyncObj's key names (state as 0/1/2, log_len...)."""
        s = self.status()
        s.update(
            {
                "state": pysyncobj_state(s["role"]),
                "has_quorum": s["leader"] is not None,
                "partner_nodes_count": len(self._rk_partners),
                "log_len": s["log_last_index"] - s["log_first_index"] + 1,
                "last_applied": s["applied_index"],
                "commit_idx": s["commit_index"],
                "raft_term": s["term"],
                "uptime": int(time.monotonic() - self._rk_started_at),
                "self_code_version": s["code_version_supported"],
                "enabled_code_version": s["code_version"],
            }
        )
        return s

    get_status = getStatus

    def printStatus(self) -> None:  # noqa: N802 - PySyncObj's name
        for key, value in sorted(self.getStatus().items()):
            print(f"{key}: {value}")

    def get_leader(self) -> str | None:
        """The address of the leader this node knows, or None."""
        node = self.get_node()
        leader = node.leader
        return None if leader is None else node.peers.get(leader, leader)

    getLeader = _getLeader = get_leader  # noqa: N815 - PySyncObj's names

    def is_leader(self) -> bool:
        return self.get_node().is_leader

    _isLeader = is_leader  # noqa: N815

    def is_ready(self) -> bool:
        """True once this node has known a leader (PySyncObj's onReady moment)."""
        return self.get_node().wait_ready(0)

    isReady = _isReady = is_ready  # noqa: N815

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until ready; False on timeout."""
        return self.get_node().wait_ready(timeout)

    def waitReady(self, timeout: float | None = None) -> bool:  # noqa: N802
        return self.wait_ready(timeout)

    def waitBinded(self) -> None:  # noqa: N802 - PySyncObj's name
        """PySyncObj compatibility: the port is bound once the node started."""

    async def await_ready(self, timeout: float | None = None) -> bool:
        """``wait_ready`` for asyncio code: polls without blocking the loop."""
        node = self.get_node()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not node.wait_ready(0):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(node.config.tick_interval)
        return True

    def read_barrier(self, timeout: float | None = None, *, lease: bool = False) -> int:
        """Block until a read of this object's local state is linearizable:
        the leader confirmed its commit index (ReadIndex; ``lease=True``: a
        leader with a valid lease skips the round) and this node applied it.
        Returns that index; raises NoLeaderError, CommandTimeoutError or
        NodeStoppedError. Not from inside the node's own loop."""
        node = self.get_node()
        if node._in_loop():
            raise RuntimeError("a blocking read_barrier in the node's loop would deadlock: use aread_barrier")
        limit = node.config.command_timeout if timeout is None else timeout
        return wait_outcome(
            node.read_barrier(limit, lease=lease),
            limit + 1.0,
            lambda: CommandTimeoutError(f"no read index within {limit:.1f}s"),
        )

    async def aread_barrier(self, timeout: float | None = None, *, lease: bool = False) -> int:
        """``read_barrier`` for asyncio code (never blocks the loop)."""
        return await self.get_node().aread_barrier(timeout, lease=lease)

    def force_log_compaction(self) -> concurrent.futures.Future[None]:
        """Snapshot now and compact the log; the Future completes when done."""
        return self.get_node().request_log_compaction()

    forceLogCompaction = force_log_compaction  # noqa: N815
