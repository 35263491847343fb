"""``raftkit node``: a standalone node serving a replicated key-value store.

An operator can start three of these, look at them with ``raftkit admin``,
write and read with ``raftkit kv``, kill one and watch the others elect a
new leader, all without writing code. Each node runs the Raft transport on
``--address`` and the authenticated admin endpoint (``raftkit.admin``) on
``--admin``; the key-value operations are admin operations too (``kv-set``,
``kv-get``, ``kv-delete``, ``kv-incr``), so they need the same credentials.

The state machine is ``raftkit.state_machines.KvStateMachine``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raftkit.state_machines.kv import KvStateMachine

__all__ = ["KvNodeOptions", "kv_handlers", "run_node"]


def kv_handlers(
    node: Any, sm: KvStateMachine, default_timeout: float = 10.0
) -> dict[str, Callable[..., Any]]:
    """Admin operations that read and write ``sm`` through ``node``."""

    def key_of(args: dict[str, Any]) -> str:
        key = args.get("key")
        if not isinstance(key, str) or not key:
            raise ValueError(f"'key' must be a non-empty string, got {key!r}")
        return key

    def timeout_of(args: dict[str, Any]) -> float:
        value = args.get("timeout", default_timeout)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"'timeout' must be a positive number, got {value!r}")
        return float(value)

    def kv_set(args: dict[str, Any]) -> Any:
        key = key_of(args)
        if "value" not in args:
            raise ValueError("'value' is missing")
        previous = node.propose(KvStateMachine.set_command(key, args["value"]), timeout_of(args))
        return {"key": key, "previous": previous}

    def kv_get(args: dict[str, Any]) -> Any:
        key = key_of(args)
        if args.get("linearizable"):
            timeout = timeout_of(args)
            node.read_barrier(timeout).result(timeout + 1.0)
        found = key in sm.data
        return {"key": key, "found": found, "value": sm.data.get(key)}

    def kv_delete(args: dict[str, Any]) -> Any:
        key = key_of(args)
        deleted = node.propose(KvStateMachine.delete_command(key), timeout_of(args))
        return {"key": key, "deleted": bool(deleted)}

    def kv_incr(args: dict[str, Any]) -> Any:
        key = key_of(args)
        by = args.get("by", 1)
        if isinstance(by, bool) or not isinstance(by, int):
            raise ValueError(f"'by' must be an integer, got {by!r}")
        return {"key": key, "value": node.propose(KvStateMachine.incr_command(key, by), timeout_of(args))}

    return {"kv-set": kv_set, "kv-get": kv_get, "kv-delete": kv_delete, "kv-incr": kv_incr}


@dataclass
class KvNodeOptions:
    node_id: str
    address: str
    admin: str
    peers: dict[str, str] = field(default_factory=dict)  # the whole cluster; this node is added
    join: str | None = None  # an admin endpoint of a member to join through
    password: str | None = None
    cluster_id: str | None = None  # salts the password's key; the same on every node of the cluster
    tls: tuple[str, str | None, str] | None = None  # cert, key, CA
    data_dir: str | None = None
    election_timeout: tuple[float, float] | None = None
    join_timeout: float = 120.0
    verbose: bool = False
    initial_cluster_state: str = "auto"  # NodeConfig.initial_cluster_state


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def run_node(opts: KvNodeOptions, stop: threading.Event | None = None) -> int:
    """Run a KV node until SIGTERM/SIGINT (or ``stop`` is set); the exit code."""
    from raftkit.admin import AdminClient, AdminError, AdminServer
    from raftkit.builder import NodeBuilder
    from raftkit.runtime.config import NodeConfig

    stop = stop or threading.Event()
    name = opts.node_id
    logging.basicConfig(
        level=logging.INFO if opts.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    ssl_server = ssl_client = None
    if opts.tls is not None:
        from raftkit.transports.tls import client_context, server_context

        ssl_server = server_context(*opts.tls)
        ssl_client = client_context(*opts.tls)

    peers = dict(opts.peers)
    admin_key = None
    if opts.password is not None:
        from raftkit.transports.encrypted import cluster_salt, derive_cluster_key

        # Once, for the endpoint and --join.
        admin_key = derive_cluster_key(opts.password, cluster_salt(opts.cluster_id))
    if opts.join and not peers:
        _say(f"{name}: asking {opts.join} for the cluster's members")
        with AdminClient(opts.join, key=admin_key, ssl_context=ssl_client, timeout=10.0) as client:
            members = client.call("members")
        addresses = members.get("addresses") or {}
        peers = {v: addresses[v] for v in members.get("voters", []) if v in addresses}
        _say(f"{name}: the cluster is {', '.join(f'{k}={v}' for k, v in sorted(peers.items()))}")
    if peers.get(name, opts.address) != opts.address:
        raise ValueError(f"--peers gives {name} the address {peers[name]}, but --address is {opts.address}")
    peers[name] = opts.address

    def on_state_changed(old: str, new: str) -> None:
        _say(f"{name}: {old} -> {new}")

    config_args: dict[str, Any] = {
        "on_state_changed": on_state_changed,
        "initial_cluster_state": opts.initial_cluster_state,
    }
    if opts.cluster_id is not None:
        config_args["cluster_id"] = opts.cluster_id
    if opts.join:
        config_args["join"] = True  # start as an outsider until the cluster adds this node
    if opts.election_timeout is not None:
        low, high = opts.election_timeout
        config_args.update(election_timeout_min=low, election_timeout_max=high,
                           heartbeat_interval=min(0.1, low / 4), tick_interval=min(0.05, low / 8))
    config = NodeConfig(**config_args)

    sm = KvStateMachine()
    builder = NodeBuilder(name, opts.address).peers(peers).state_machine(sm).config(config)
    builder.data_dir(opts.data_dir)
    if opts.password is not None:
        builder.password(opts.password, cluster_id=opts.cluster_id)
    elif opts.tls is not None:
        builder.tls(certfile=opts.tls[0], keyfile=opts.tls[1], cafile=opts.tls[2])
    node = builder.build()
    handlers = kv_handlers(node, sm)
    admin = AdminServer(node, opts.admin, key=admin_key, ssl_context=ssl_server, handlers=handlers)

    def on_signal(signum: int, frame: Any) -> None:
        _say(f"{name}: {signal.Signals(signum).name}: stopping")
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    node.start()
    try:
        admin.start()
    except BaseException:
        node.stop()
        raise
    auth = admin.auth
    others = ", ".join(f"{k}={v}" for k, v in sorted(peers.items()) if k != name) or "none"
    _say(f"{name}: raft on {opts.address}, admin on {admin.address} ({auth}); peers: {others}")
    _say(f"{name}: ready (pid {os.getpid()})")
    code = 0
    try:
        if opts.join:
            code = _join(opts, admin_key, ssl_client, stop)
            if code:
                return code
        last_leader = None
        while not stop.wait(0.2):
            leader = node.status().get("leader")
            if leader != last_leader:
                _say(f"{name}: leader is {leader or 'unknown'} (term {node.status().get('term')})")
                last_leader = leader
    except AdminError as exc:
        _say(f"{name}: {exc}")
        code = 1
    finally:
        admin.stop()
        node.stop()
        _say(f"{name}: stopped")
    return code


def _join(opts: KvNodeOptions, key: bytes | None, ssl_context: Any, stop: threading.Event) -> int:
    """Ask ``opts.join``'s endpoint to add this node as a learner, then to
    promote it to voter; 0 on success."""
    from raftkit.admin import AdminClient, AdminError

    name = opts.node_id
    assert opts.join is not None
    deadline = time.monotonic() + opts.join_timeout
    with AdminClient(opts.join, key=key, ssl_context=ssl_context, timeout=10.0) as client:
        members = client.call("members")
        if name in members.get("voters", []):
            _say(f"{name}: already a voter")
            return 0
        if name not in members.get("learners", []):
            _say(f"{name}: joining through {opts.join}: adding as a learner")
            client.call("add", {"id": name, "address": opts.address, "learner": True}, timeout=30.0)
        _say(f"{name}: added as a learner; asking for promotion to voter")
        attempt = 0
        while True:  # a learner still catching up may be refused: retry until the deadline
            attempt += 1
            left = deadline - time.monotonic()
            try:
                client.call("promote", {"id": name}, timeout=max(1.0, min(60.0, left)))
                break
            except AdminError as exc:
                if stop.is_set() or time.monotonic() + 1.0 >= deadline or attempt >= 20:
                    _say(f"{name}: promotion failed: {exc}")
                    return 1
                _say(f"{name}: promotion not done yet ({exc}); retrying")
                stop.wait(1.0)
    _say(f"{name}: joined as a voter")
    return 0
