"""``NodeOperations``, the part of ``SyncObj`` that asks the raftkit node
underneath: its status (raftkit's and PySyncObj's keys), leader and
readiness, linearizable reads, log compaction, membership changes,
leadership transfer and the admin endpoint. ``SyncObj`` inherits it; the
facade itself keeps construction, calls, code versions and the life cycle."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raftkit.errors import CommandTimeoutError, RaftkitError
from raftkit.runtime.futures import wait_outcome
from raftkit.runtime.membership_ops import MembershipOps
from raftkit.runtime.node import Node
from raftkit.syncobj.conf import pysyncobj_state
from raftkit.syncobj.membership_requests import READONLY_PREFIX, ChangeRequest, Step, add_voter, remove
from raftkit.syncobj.nodes import TCPNode
from raftkit.syncobj.outcomes import FAIL_REASON, CallError

if TYPE_CHECKING:
    from raftkit.core.types import SnapshotMeta
    from raftkit.syncobj.conf import SyncObjConf  # noqa: TC004 - the conf property's type
    from raftkit.syncobj.object_machine import _ObjectStateMachine

__all__ = ["NodeOperations"]

log = logging.getLogger("raftkit.syncobj")

CHANGE_DEADLINE = 120.0  # seconds a PySyncObj-style membership change keeps trying


def _version() -> str:
    try:
        return importlib.metadata.version("pyraftkit")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class PySyncObjStatus(dict[str, Any]):
    """``getStatus()``'s dict: PySyncObj's keys, and only those when listed,
    printed or sent (``syncobj_admin -status``). A key raftkit 0.1's
    ``getStatus()`` also had (``role``, ``commit_index``...: ``status()``'s)
    is still read through ``[]`` and ``get``, with a DeprecationWarning."""

    def __init__(self, raftkit_status: dict[str, Any]) -> None:
        super().__init__()
        self._raftkit = raftkit_status

    def __missing__(self, key: str) -> Any:
        if key not in self._raftkit:
            raise KeyError(key)
        warnings.warn(
            f"getStatus()[{key!r}] is a key of raftkit's status(); getStatus() has PySyncObj's keys since "
            "raftkit 0.2: read it from status()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._raftkit[key]

    def get(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        return self.__missing__(key) if key in self._raftkit else default


class NodeOperations:
    """SyncObj's node queries and cluster operations (a base class of
    ``SyncObj``, not for use on its own)."""

    # Set by SyncObj.__init__ / _rk_finish_init (facade.py):
    _rk_conf: SyncObjConf
    _rk_address: str
    _rk_partners: list[str]
    _rk_started_at: float
    _rk_sm: _ObjectStateMachine
    _rk_readonly: bool  # a read-only node (PySyncObj's selfNode=None): a learner
    _rk_spelling: dict[str, str]  # normalized address -> as the program wrote it
    _rk_start_lock: threading.Lock
    set_code_version: Callable[..., int | None]  # SyncObj's: the admin endpoint's set-version runs it
    _rk_address_of: Callable[[Any], str]  # SyncObj's: an address or node object, normalized
    _rk_run_on_ticks: Callable[[Callable[[], bool]], None]  # SyncObj's: fn() on every tick while True

    # -- state of the node ----------------------------------------------------------------

    def get_node(self) -> Node:
        """The raftkit Node underneath (for status, metrics, leadership transfer)."""
        node: Node | None = self.__dict__.get("_rk_node")
        if node is None:
            raise RuntimeError(f"{type(self).__name__} is still being constructed: it has no node yet")
        return node

    # -- cluster operations (raftkit.runtime.membership_ops; docs/operations.md) -----------------------

    def addNodeToCluster(  # noqa: N802 - PySyncObj's name
        self, nodeName: Any, callback: Callable[[Any, Any], Any] | None = None  # noqa: N803
    ) -> None:
        """Add the node at ``nodeName`` (an address or a ``TCPNode``), as
        PySyncObj does: returns at once, and ``callback(None, err)`` gets
        ``FAIL_REASON.SUCCESS`` once it is a voter. raftkit adds it as a
        learner first and promotes it once it has caught up, so start the new
        node (every member as its partners) within two minutes. Works in
        manual mode too (the change advances as the node ticks). The
        blocking form is ``add_node_to_cluster``."""
        address = self._rk_address_of(nodeName)
        self._rk_change(add_voter(address, address), callback)

    def removeNodeFromCluster(  # noqa: N802 - PySyncObj's name
        self, nodeName: Any, callback: Callable[[Any, Any], Any] | None = None  # noqa: N803
    ) -> None:
        """Remove the node at ``nodeName`` (a voter or a read-only node);
        returns at once, see ``addNodeToCluster``."""
        self._rk_change(remove(self._rk_member_id(self._rk_address_of(nodeName))), callback)

    def add_node_to_cluster(self, address: str, *, timeout: float = 30.0) -> None:
        """Add a voter (learner first, promoted once caught up); blocks until
        done, raises on failure. Start the new node with every member as its
        partners."""
        normal = self._rk_address_of(address)
        self.get_node().add_member(normal, normal, timeout=timeout)

    def remove_node_from_cluster(self, address: str, *, timeout: float = 30.0) -> None:
        """Remove a voter or read-only node; blocks until done, raises on failure."""
        self.get_node().remove_member(self._rk_member_id(self._rk_address_of(address)), timeout=timeout)

    def _rk_member_id(self, address: str) -> str:
        """The id of the member at ``address`` (a read-only node's differs)."""
        readonly = READONLY_PREFIX + address
        return readonly if readonly in self.get_node().status()["learners"] else address

    def _rk_change(self, steps: list[Step], callback: Callable[[Any, Any], Any] | None) -> None:
        def done(error: RaftkitError | None) -> None:
            if callback is not None:
                callback(None, FAIL_REASON.SUCCESS if error is None else CallError(error))

        node = self.get_node()
        request = ChangeRequest(node, steps, deadline=time.monotonic() + CHANGE_DEADLINE, done=done)
        self._rk_run_on_ticks(request.tick)

    def transferLeadership(  # noqa: N802 - PySyncObj's name
        self, node: Any = None, callback: Callable[[Any, Any], Any] | None = None
    ) -> None:
        """PySyncObj's form, on the leader: start handing leadership to
        ``node`` (None: the most up-to-date voter) and return at once;
        ``callback(None, FAIL_REASON.SUCCESS)`` once the handover is under way
        (watch ``getLeader()``), ``NOT_LEADER`` on another node,
        ``REQUEST_DENIED`` for a target that is not another voter. Works in
        manual mode (the request starts on the next tick). The blocking form
        is ``transfer_leadership``."""
        raft = self.get_node()
        to = None if node is None else self._rk_member_id(self._rk_address_of(node))
        s = raft.status()

        def reply(reason: FAIL_REASON) -> None:
            if callback is not None:
                callback(None, reason)

        if s["role"] != "leader":
            return reply(FAIL_REASON.NOT_LEADER)
        alone = to is None and len(s["members"]) < 2
        if alone or (to is not None and (to not in s["members"] or to == raft.id)):
            return reply(FAIL_REASON.REQUEST_DENIED)

        def start() -> None:
            MembershipOps(raft).start_transfer(to or "")
            underway = raft.raw.raft.lead_transferee is not None or raft.raw.raft.lead != raft.id
            reply(FAIL_REASON.SUCCESS if underway else FAIL_REASON.REQUEST_DENIED)

        raft.dispatch(start)
        return None

    def transfer_leadership(self, to: str | None = None, *, timeout: float = 10.0) -> str:
        """Hand leadership to ``to`` (None: the most up-to-date voter); returns the new leader."""
        return self.get_node().transfer_leadership(to, timeout=timeout)

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
            handlers=self._rk_admin_handlers(),
        )
        server.start()
        self._rk_admin = server
        return server

    def _rk_admin_handlers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "set-version": self._rk_admin_set_version,
            "syncobj-status": self._rk_admin_status,
            "syncobj-add": self._rk_admin_add,
        }

    def _rk_admin_add(self, args: dict[str, Any]) -> dict[str, Any]:
        """``syncobj_admin -add``: done, as in PySyncObj, once the new member
        is in the committed membership (a learner here); its promotion goes on
        as this node ticks, as for ``addNodeToCluster``."""
        address = self._rk_address_of(str(args["id"]))
        steps = add_voter(address, address)
        listed = steps[0].holds
        self._rk_change(steps, None)
        deadline = time.monotonic() + float(args.get("timeout", 30.0))
        while not listed(self.get_node().status()):
            if time.monotonic() >= deadline:
                raise CommandTimeoutError(f"{address} was not added within {args.get('timeout', 30.0)} s")
            time.sleep(0.02)
        return {"added": address}

    def _rk_adopt_admin(self, sock: Any, early: bytes) -> None:
        """An admin connection that arrived on the Raft port (PySyncObj's
        ``syncobj_admin -conn <node address>``): served by an endpoint of its
        own, started on first use, that checks the cluster password."""
        from raftkit.admin.server import AdminServer

        with self._rk_start_lock:
            if self.__dict__.get("_rk_admin_closed"):  # destroyed: a late connection starts nothing
                sock.close()
                return
            server = self.__dict__.get("_rk_port_admin")
            if server is None:
                server = AdminServer(
                    self.get_node(), self._rk_address, password=self._rk_conf.password,
                    handlers=self._rk_admin_handlers(),
                ).start(listen=False)
                self.__dict__["_rk_port_admin"] = server
        server.adopt(sock, early)

    def _rk_admin_status(self, args: dict[str, Any]) -> dict[str, Any]:
        """``getStatus()`` for ``syncobj_admin -status``: node objects as their addresses."""
        return {k: str(v) if isinstance(v, TCPNode) else v for k, v in self.getStatus().items()}

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
        """PySyncObj's status dict, key for key: ``self`` and ``leader`` as
        node objects, ``state`` 0/1/2, ``has_quorum`` (the ``hasQuorum``
        property), ``partner_node_status_server_<address>`` and
        ``readonly_node_status_server_<address>`` 2 (heard from lately) or 0,
        the leader's ``next_node_idx_server_`` / ``match_idx_server_``, the
        code versions... raftkit's own, richer one is ``status()``."""
        s = self.status()
        contact = self._rk_contact(s)
        progress = s.get("peers") or {}
        others, readonly = self._rk_others(s), self._rk_readonly_members(s)  # one snapshot throughout
        out = PySyncObjStatus(s)
        out.update({
            "version": _version(),
            "revision": "deprecated",
            "self": self.selfNode,
            "state": pysyncobj_state(s["role"]),
            "leader": self.getLeader(),
            "has_quorum": self._rk_has_quorum(contact, s),
            "partner_nodes_count": len(others),
            "readonly_nodes_count": len(readonly),
            "log_len": s["log_last_index"] - s["log_first_index"] + 1,
            "last_applied": s["applied_index"],
            "commit_idx": s["commit_index"],
            "raft_term": s["term"],
            "next_node_idx_count": len(progress),
            "match_idx_count": len(progress),
            "leader_commit_idx": s["commit_index"] if s["leader"] is not None else None,
            "uptime": int(time.monotonic() - self._rk_started_at),
            "self_code_version": s["code_version_supported"],
            "enabled_code_version": s["code_version"],
        })
        for member in others:
            out[f"partner_node_status_server_{self._rk_shown(member)}"] = 2 if member in contact else 0
        for member in readonly:
            out[f"readonly_node_status_server_{self._rk_shown(member)}"] = 2 if member in contact else 0
        for peer, p in progress.items():
            shown = self._rk_shown(peer)
            out[f"next_node_idx_server_{shown}"] = p["next"]
            out[f"match_idx_server_{shown}"] = p["match"]
        return out

    get_status = getStatus

    def printStatus(self) -> None:  # noqa: N802 - PySyncObj's name
        """Log ``getStatus()``, one ``key: value`` line each, at INFO (as PySyncObj does)."""
        for key, value in sorted(self.getStatus().items(), key=lambda kv: kv[0]):
            log.info("%s: %s", key, value)

    _printStatus = printStatus  # noqa: N815

    def get_leader(self) -> str | None:
        """The address of the leader this node knows, or None."""
        node = self.get_node()
        leader = node.leader
        return None if leader is None else self._rk_shown(leader)

    def getLeader(self) -> TCPNode | None:  # noqa: N802 - PySyncObj's name
        """The leader this node knows, as PySyncObj's node object (``.address``,
        ``.id``; it also equals its address string), or None."""
        address = self.get_leader()
        return None if address is None else TCPNode(address)

    _getLeader = getLeader  # noqa: N815

    # -- PySyncObj's view of the nodes ------------------------------------------------

    @property
    def selfNode(self) -> TCPNode | None:  # noqa: N802 - PySyncObj's name
        """This node (None for a read-only node)."""
        return None if self._rk_readonly else TCPNode(self._rk_shown(self._rk_address))

    @property
    def otherNodes(self) -> set[TCPNode]:  # noqa: N802 - PySyncObj's name
        """The other members but read-only nodes: the voters, and a node
        being added (a learner until it has caught up)."""
        return {TCPNode(self._rk_shown(n)) for n in self._rk_others()}

    @property
    def readonlyNodes(self) -> set[TCPNode]:  # noqa: N802 - PySyncObj's name
        """The read-only nodes following the cluster (learners that joined as such)."""
        return {TCPNode(self._rk_shown(n)) for n in self._rk_readonly_members()}

    def isNodeConnected(self, node: Any) -> bool:  # noqa: N802 - PySyncObj's name
        """Whether this node heard from ``node`` (an object or its address)
        within the longest election timeout."""
        return self._rk_member_id(self._rk_normal(str(node))) in self._rk_contact(self.status())

    @property
    def hasQuorum(self) -> bool:  # noqa: N802 - PySyncObj's name
        """Whether this node, with the voters it heard from lately, is a majority."""
        s = self.status()
        return self._rk_has_quorum(self._rk_contact(s), s)

    @property
    def raftLastApplied(self) -> int:  # noqa: N802 - PySyncObj's name
        return int(self.status()["applied_index"])

    @property
    def raftCommitIndex(self) -> int:  # noqa: N802 - PySyncObj's name
        return int(self.status()["commit_index"])

    @property
    def raftCurrentTerm(self) -> int:  # noqa: N802 - PySyncObj's name
        return int(self.status()["term"])

    def _getTerm(self) -> int:  # noqa: N802 - PySyncObj's name
        return self.raftCurrentTerm

    def _getRaftLogSize(self) -> int:  # noqa: N802 - PySyncObj's name
        """Entries in the log (PySyncObj's ``len(journal)``)."""
        s = self.status()
        return int(s["log_last_index"] - s["log_first_index"] + 1)

    @property
    def conf(self) -> SyncObjConf:
        return self._rk_conf

    def _getConf(self) -> SyncObjConf:  # noqa: N802 - PySyncObj's name
        return self._rk_conf

    def _rk_members(self, kind: str, status: dict[str, Any] | None = None) -> list[str]:
        """Voters or learners as of ``status`` (default: the node's last;
        any thread, manual mode too)."""
        s = self.get_node().status() if status is None else status
        return list(s["members" if kind == "voters" else "learners"])

    def _rk_others(self, status: dict[str, Any] | None = None) -> list[str]:
        s = self.get_node().status() if status is None else status
        me = self.get_node().id
        return [n for n in self._rk_members("voters", s) + self._rk_members("learners", s)
                if n != me and not n.startswith(READONLY_PREFIX)]

    def _rk_readonly_members(self, status: dict[str, Any] | None = None) -> list[str]:
        me = self.get_node().id
        return [n for n in self._rk_members("learners", status) if n != me and n.startswith(READONLY_PREFIX)]

    def _rk_contact(self, status: dict[str, Any]) -> set[str]:
        """The members this node heard from within the longest election timeout."""
        window = self.get_node().config.election_timeout_max
        return {peer for peer, ago in (status.get("last_contact") or {}).items()
                if ago is not None and ago <= window}

    def _rk_has_quorum(self, contact: set[str], status: dict[str, Any] | None = None) -> bool:
        node = self.get_node()
        voters = self._rk_members("voters", status)
        heard = sum(1 for v in voters if v == node.id or v in contact)
        return heard > len(voters) / 2

    def _rk_shown(self, node_id: str) -> str:
        """A node's address as the program wrote it (``'::1:6000'`` stays so)."""
        node = self.get_node()
        address = node.peers.get(node_id, node_id)
        return self._rk_spelling.get(address, address)

    def _rk_normal(self, address: str) -> str:
        """The inverse of ``_rk_shown``."""
        for normal, given in self._rk_spelling.items():
            if given == address:
                return normal
        return address

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
        """Raise ``SyncObjException`` (errorCode ``'BindError'``) if this
        node could not bind its port; otherwise it is bound already (a node
        started by ``autoTick`` binds before the constructor returns, a
        manual one on its first ``doTick``)."""
        error = self.__dict__.get("_rk_bind_error")
        if error is not None:
            raise error

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
        index: int = wait_outcome(
            node.read_barrier(limit, lease=lease),
            limit + 1.0,
            lambda: CommandTimeoutError(f"no read index within {limit:.1f}s"),
        )
        return index

    async def aread_barrier(self, timeout: float | None = None, *, lease: bool = False) -> int:
        """``read_barrier`` for asyncio code (never blocks the loop)."""
        return await self.get_node().aread_barrier(timeout, lease=lease)

    def force_log_compaction(self) -> concurrent.futures.Future[SnapshotMeta | None]:
        """Snapshot now and compact the log; the Future completes when done."""
        return self.get_node().request_log_compaction()

    forceLogCompaction = _forceLogCompaction = force_log_compaction  # noqa: N815
