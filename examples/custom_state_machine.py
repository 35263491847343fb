"""A custom StateMachine composed with NodeBuilder: three nodes in one
process on 127.0.0.1, each with an LMDB log, file snapshots and links
encrypted with a cluster password. It writes through one node, reads the
result back on every node, and stops.

    python examples/custom_state_machine.py

docs/state-machine.md explains each part.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from raftkit import JsonSerializer, Node, NodeBuilder, NodeConfig, StateMachine
from raftkit.storage import FileSnapshotter, LmdbLogStore


class Tally(StateMachine):
    """Named counters. A command is ``{"add": name, "n": amount}`` encoded
    as JSON; applying it returns the counter's new value."""

    # Declared so NodeBuilder.serializer(...) may name it and the builder
    # checks it against the transport; the node itself never decodes commands.
    serializer = JsonSerializer()

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    @staticmethod
    def add(name: str, n: int = 1) -> bytes:
        """The command that adds ``n`` to ``name`` (made by the proposer)."""
        return Tally.serializer.dumps({"add": name, "n": n})

    def apply(self, command: bytes) -> int:
        op: dict[str, Any] = self.serializer.loads(command)
        if not isinstance(op.get("n"), int):
            # Raised on every replica alike, before any change: the state stays the same everywhere.
            raise ValueError(f"n must be an int, got {op.get('n')!r}")
        value: int = self.counts.get(op["add"], 0) + op["n"]
        self.counts[op["add"]] = value
        return value

    def snapshot(self) -> bytes:
        # sort_keys: equal states give equal bytes on every node.
        return self.serializer.dumps(dict(sorted(self.counts.items())))

    def restore(self, data: bytes) -> None:
        self.counts = dict(self.serializer.loads(data))


def free_addresses(n: int) -> list[str]:
    """``n`` loopback addresses whose ports were free a moment ago."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()


def build_node(address: str, cluster: list[str], data: Path, password: str, tally: Tally) -> Node:
    directory = data / address.replace(":", "_")  # each node its own directories: the stores lock them
    return (
        NodeBuilder(address)
        .partners([a for a in cluster if a != address])
        # state_marker_dir: the restart marker (raftkit.runtime.state_marker) stays in this run's directory.
        .config(NodeConfig(cluster_id="tally-example", state_marker_dir=str(data / "markers")))
        .log_store(LmdbLogStore(directory / "log"))
        .snapshotter(FileSnapshotter(directory / "snapshots", cluster_id="tally-example"))
        .password(password)  # EncryptedTcpTransport: every link encrypted and authenticated
        .serializer(Tally.serializer)  # names the one Tally declares; anything else is refused
        .state_machine(tally)
        .build()
    )


def main() -> int:
    cluster = free_addresses(3)
    with tempfile.TemporaryDirectory(prefix="raftkit-tally-") as tmp:
        tallies = [Tally() for _ in cluster]
        secret = "example only: use a secret"
        nodes = [build_node(a, cluster, Path(tmp), secret, t) for a, t in zip(cluster, tallies, strict=True)]
        try:
            for node in nodes:
                node.start()
            if not all(node.wait_ready(timeout=30) for node in nodes):
                print("no leader elected within 30 s", file=sys.stderr)
                return 1
            # Any node takes a command: a follower forwards it to the leader.
            print("apples:", nodes[0].propose(Tally.add("apples", 3)), flush=True)
            print("apples:", nodes[1].propose(Tally.add("apples", 2)), flush=True)
            try:
                nodes[2].propose(Tally.serializer.dumps({"add": "apples", "n": "many"}))
            except ValueError as exc:  # the command's outcome, re-raised to its proposer
                print("refused:", exc, flush=True)
            for node, tally in zip(nodes, tallies, strict=True):
                # A linearizable read: wait until this node has applied
                # everything committed before the read began, then read locally.
                node.read_barrier().result(timeout=10)
                print(node.id, "reads", tally.counts, flush=True)
        finally:
            for node in nodes:
                node.stop()
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"stopped after {time.monotonic() - started:.1f} s", flush=True)
    sys.exit(code)
