"""One real raftkit node running YOUR state machine, in its own process.

``raftkit.testing.process_test`` starts one per node and speaks JSON lines
with it over stdin/stdout. Unlike ``proc_node`` (a fixed key-value
SyncObj), the state machine here is built by the user's factory, which the
child imports by reference (``module``, ``file``, ``qualname``: the same
reference ``StateMachineConformance`` uses for its child processes).

Requests carry an ``id``; answers come back with it, in any order, so many
commands can be in flight on one node (each command is submitted and
answered from its future's callback; the reading loop never blocks)::

    {"id": 1, "op": "propose", "command": "<base64>", "timeout": 1.0}
      -> {"id": 1, "ok": true, "value": "<base64 pickle>"}     the command returned
      -> {"id": 1, "ok": true, "raised": "ValueError", "message": "..."}  it raised
      -> {"id": 1, "ok": false, "error": "...", "sent": true}   no outcome: it may or may not apply
    {"id": 2, "op": "ledger"} -> {"id": 2, "ok": true, "tags": [...], "digest": "<hex>", "leader": "n1"}
    {"id": 3, "op": "leader"} -> {"id": 3, "ok": true, "leader": "n1"}

Pickle travels only between the test and the children it started, over
their own pipes. Every command the test proposes starts with an 8-byte tag;
the ``Ledger`` wrapper strips it before the user's state machine sees the
command and records the tags in applied order, inside its snapshots too, so
the test can see which commands the replicas applied, in which order,
after any number of kills, restarts and snapshot installs.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import pickle
import sys
import threading
from concurrent.futures import Future
from typing import Any, TextIO

import msgpack

from raftkit.builder import NodeBuilder
from raftkit.errors import RaftkitError
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.node import Node
from raftkit.state_machines.base import StateMachine
from raftkit.testing.conformance.state_machine_child import load_suite

__all__ = ["TAG_BYTES", "Ledger", "main"]

TAG_BYTES = 8
"""Bytes of tag in front of every command the test proposes."""


class Ledger(StateMachine):
    """The user's state machine behind the tag: it applies ``command[8:]``
    and remembers the tags in the order they were applied."""

    def __init__(self, inner: StateMachine) -> None:
        if type(inner).applied_index is not StateMachine.applied_index:
            raise TypeError(
                f"{type(inner).__name__} keeps its own applied index (a durable state machine); "
                "process_test runs in-memory state machines only"
            )
        self.inner = inner
        self.tags: list[int] = []
        self.serializer = inner.serializer  # the node's pickle rule checks the user's choice
        self.fork_safe = inner.fork_safe

    def apply_entry(self, index: int, command: bytes) -> Any:
        self.tags.append(int.from_bytes(command[:TAG_BYTES], "big"))
        return self.inner.apply_entry(index, command[TAG_BYTES:])

    def apply(self, command: bytes) -> Any:
        self.tags.append(int.from_bytes(command[:TAG_BYTES], "big"))
        return self.inner.apply(command[TAG_BYTES:])

    def snapshot(self) -> bytes:
        packed: bytes = msgpack.packb([self.tags, self.inner.snapshot()], use_bin_type=True)
        return packed

    def restore(self, data: bytes) -> None:
        tags, inner = msgpack.unpackb(data, raw=False)
        self.inner.restore(inner)
        self.tags = list(tags)

    def digest(self) -> str:
        return hashlib.sha256(self.inner.snapshot()).hexdigest()


class _Server:
    """Answers the test's requests; writes to the protocol stream under one lock."""

    def __init__(self, node: Node, ledger: Ledger, out: TextIO) -> None:
        self.node = node
        self.ledger = ledger
        self.out = out
        self._out = threading.Lock()

    def send(self, answer: dict[str, Any]) -> None:
        line = json.dumps(answer)
        with self._out:
            self.out.write(line + "\n")
            self.out.flush()

    def handle(self, req: dict[str, Any]) -> None:
        rid, op = req.get("id"), req.get("op")
        try:
            if op == "propose":
                self._propose(rid, base64.b64decode(req["command"]), float(req.get("timeout", 1.0)))
                return
            if op == "ledger":
                tags, digest = self.node.call_in_loop(lambda: (list(self.ledger.tags), self.ledger.digest()))
                self.send({"id": rid, "ok": True, "tags": tags, "digest": digest, "leader": self.node.leader})
                return
            if op == "leader":
                self.send({"id": rid, "ok": True, "leader": self.node.leader})
                return
            self.send({"id": rid, "ok": False, "error": f"unknown op {op!r}", "sent": False})
        except Exception as exc:  # the test reads why
            self.send({"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}", "sent": False})

    def _propose(self, rid: Any, command: bytes, timeout: float) -> None:
        try:
            future = self.node.submit(command, timeout)
        except RaftkitError as exc:  # refused at once (queue full, stopped): never proposed
            self.send({"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}", "sent": False})
            return
        future.add_done_callback(lambda f: self.send(_answer(rid, f)))


def _answer(rid: Any, future: Future[Any]) -> dict[str, Any]:
    exc = future.exception()
    if exc is None:
        try:
            value = base64.b64encode(pickle.dumps(future.result())).decode()
        except Exception as err:  # the result cannot travel; the command did apply
            return {"id": rid, "ok": True, "unpicklable": f"{type(err).__name__}: {err}"}
        return {"id": rid, "ok": True, "value": value}
    if isinstance(exc, RaftkitError):  # the node's failure (timeout, leadership lost): no outcome
        return {"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}", "sent": True}
    return {"id": rid, "ok": True, "raised": type(exc).__name__, "message": str(exc)}


def _protocol_stream() -> TextIO:
    """The test's end of stdout, kept for the answers alone: whatever else the
    process prints (the state machine's debugging output, a library's) goes to
    stderr, so it cannot break the answers' lines."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def main() -> int:
    out = _protocol_stream()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--id", required=True)
    ap.add_argument("--peers", required=True, help="JSON: node id -> address, as this node dials them")
    ap.add_argument("--factory", required=True, help="JSON reference to the state machine factory")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--password", default=None)
    ap.add_argument("--election-timeout", default="0.3:0.6", metavar="MIN:MAX")
    ap.add_argument("--compaction-entries", type=int, default=200)
    ap.add_argument("--commands-per-entry", type=int, default=NodeConfig.commands_per_entry)
    ap.add_argument("--log-file", default=None)
    args = ap.parse_args()
    if args.log_file:
        logging.basicConfig(
            filename=args.log_file, level=logging.INFO,
            format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        )
    try:
        low, high = (float(x) for x in args.election_timeout.split(":"))
        peers = json.loads(args.peers)
        ledger = Ledger(load_suite(json.loads(args.factory)))
        config = NodeConfig(
            tick_interval=0.02, heartbeat_interval=0.05, election_timeout_min=low, election_timeout_max=high,
            data_dir=args.data_dir, log_compaction_min_entries=args.compaction_entries,
            log_compaction_keep=args.compaction_entries // 4, commands_per_entry=args.commands_per_entry,
        )
        builder = NodeBuilder(args.id, peers[args.id]).peers(peers).config(config).state_machine(ledger)
        if args.password:
            builder.password(args.password)
        node = builder.build().start()
    except Exception as exc:  # the test reads why
        logging.getLogger(__name__).exception("cannot start")
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), file=out, flush=True)
        return 1
    server = _Server(node, ledger, out)
    server.send({"ok": True, "started": args.id})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
        except ValueError as exc:
            server.send({"ok": False, "error": f"bad request: {exc}"})
            continue
        if req.get("op") == "quit":
            break
        server.handle(req)
    node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
