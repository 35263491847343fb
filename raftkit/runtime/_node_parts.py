"""Small pieces of the node runtime that are not the Ready loop itself:
the log entry envelope, the record of a Ready the disk refused, and loop and
future plumbing. Kept apart so ``raftkit/runtime/node.py`` reads as one idea."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from raftkit.core.raft import RaftConfig
from raftkit.core.rawnode import Status
from raftkit.core.types import Message, NodeId, Ready
from raftkit.errors import CodecError
from raftkit.runtime.config import NodeConfig

if TYPE_CHECKING:
    from raftkit.runtime.node import Node


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


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close a loop the node owns, with the executor threads it may have
    started (a transport resolving names with getaddrinfo): a stopped node
    leaves no thread behind."""
    try:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def chain(src: concurrent.futures.Future[Any], dst: concurrent.futures.Future[Any]) -> None:
    if dst.done():
        return
    exc = src.exception()
    if exc is not None:
        dst.set_exception(exc)
    else:
        dst.set_result(src.result())


def closing_chunks(source: Any, size: int) -> Iterable[bytes]:
    with source:
        yield from source.chunks(size)


def raft_config(
    c: NodeConfig,
    node_id: NodeId,
    *,
    applied: int,
    recovering: bool = False,
    incarnation: bytes = b"",
    fresh: bool = False,
    authenticated: bool = True,
) -> RaftConfig:
    """The core's settings for a node configured by ``c`` whose state
    machine holds every entry up to ``applied`` (``recovering``,
    ``incarnation``: see RaftConfig and raftkit.core.recovery).
    ``authenticated``: whether the transport authenticates every peer; only
    then may a non-member ask to join (raftkit.core.admission)."""
    return RaftConfig(
        id=node_id,
        election_tick=c.election_tick,
        election_tick_max=c.election_tick_max,
        heartbeat_tick=c.heartbeat_tick,
        pre_vote=c.pre_vote,
        check_quorum=c.check_quorum,
        max_entries_per_msg=c.max_entries_per_msg,
        max_bytes_per_msg=c.max_bytes_per_msg,
        max_inflight_msgs=c.max_inflight_msgs,
        max_inflight_bytes=c.max_inflight_bytes,
        applied=applied,
        recovering=recovering,
        incarnation=incarnation,
        fresh=fresh,
        accept_join_requests=authenticated,
    )


class Inbound:
    """The transport's view of the node (keeps the node's own API clean)."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def on_message(self, message: Message) -> None:
        self._contact(message.src)
        self._node._on_message(message)

    def admit_snapshot(self, message: Message) -> int | None:
        return self._node._admit_snapshot(message)

    def on_snapshot(self, message: Message, chunks: Iterable[bytes]) -> None:
        self._contact(message.src)
        self._node._on_snapshot(message, chunks)

    def _contact(self, src: NodeId) -> None:
        if src in self._node.peers:  # not every name a stranger makes up (memory)
            self._node.metrics.contact(src)

    def on_snapshot_status(self, peer: NodeId, ok: bool) -> None:
        self._node._on_snapshot_status(peer, ok)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh loop for a node: uvloop's when it is installed (faster I/O),
    asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def waiting_reason(
    status: Status, contact: dict[NodeId, float | None], fresh: float, *, first_start: bool = False
) -> str | None:
    """Why a node has no leader, in words for status() and the log (None
    when it has one). ``contact``: seconds since each peer was last heard
    from; a peer heard within ``fresh`` seconds counts as reachable.
    ``first_start``: the node never held state (no restart marker)."""
    if status.leader is not None:
        return None
    if status.quorum_lost:
        return status.quorum_lost
    voters = sorted(status.conf.all_voters)
    if status.recovering and first_start and status.id in voters:
        heard = [v for v in voters if v == status.id or (contact.get(v) is not None and contact[v] <= fresh)]
        return (
            f"first start (no restart marker): waiting for a majority of the voters "
            f"({len(voters) // 2 + 1} of {len(voters)}) to start and answer; heard from {', '.join(heard)}"
        )
    if status.recovering:
        return "this node restarted without its state and waits for a leader to readmit it (it does not vote)"
    if status.id not in voters:
        cluster = ", ".join(voters) or "any cluster"
        return f"this node is not a voter of {cluster} and waits to hear from a leader"
    heard = [v for v in voters if v == status.id or (contact.get(v) is not None and contact[v] <= fresh)]
    need = len(voters) // 2 + 1
    if len(heard) < need:
        return (
            f"waiting for a majority: an election needs {need} of {len(voters)} voters and only "
            f"{', '.join(heard)} answered recently"
        )
    return f"electing a leader (term {status.term}; {len(heard)} of {len(voters)} voters reachable)"


def write_marker(path: Path) -> None:
    """Create an empty file durably (the file and its directory entry)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        os.fsync(f.fileno())
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
