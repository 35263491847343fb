"""ProcessCluster: real raftkit nodes as OS processes on the loopback.

Each node runs ``raftkit.testing.proc_node`` and answers JSON requests on
its stdin/stdout. The cluster only ever signals processes it started, by
PID, and ``close()`` (or the context manager) reaps every one of them.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = []
    for _ in range(n):
        s = socket.socket(family)
        s.bind((host, 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class NodeProcess:
    def __init__(self, address: str, partners: list[str], password: str | None) -> None:
        self.address = address
        cmd = [
            sys.executable,
            "-m",
            "raftkit.testing.proc_node",
            "--self",
            address,
            "--partners",
            ",".join(partners),
        ]
        if password is not None:
            cmd += ["--password", password]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._lock = threading.Lock()
        first = self._next_line(30.0)
        if not first or not json.loads(first).get("ok"):
            self.kill()
            raise RuntimeError(f"node {address} failed to start: {first!r}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next_line(self, timeout: float) -> str | None:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def request(self, op: str, timeout: float = 20.0, **fields: Any) -> dict[str, Any]:
        """Send one request and wait (bounded) for its answer."""
        with self._lock:
            if self.proc.poll() is not None or self.proc.stdin is None:
                return {"ok": False, "error": "process is not running"}
            try:
                self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                return {"ok": False, "error": f"process pipe closed: {exc}"}
            line = self._next_line(timeout)
        if line is None:
            return {"ok": False, "error": "no answer (timeout or process exit)"}
        return json.loads(line)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL this node's process (only ours, by PID) and reap it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()


class ProcessCluster:
    def __init__(self, n: int = 3, *, host: str = "127.0.0.1", password: str | None = None) -> None:
        self.password = password
        self.addresses = [format_address(host, p) for p in free_ports(n, host)]
        self.nodes: dict[str, NodeProcess] = {}
        try:
            for addr in self.addresses:
                self.start(addr)
        except BaseException:
            self.close()
            raise

    def start(self, address: str) -> NodeProcess:
        partners = [a for a in self.addresses if a != address]
        node = NodeProcess(address, partners, self.password)
        self.nodes[address] = node
        return node

    def status(self, address: str) -> dict[str, Any] | None:
        r = self.nodes[address].request("status", timeout=5)
        return r["result"] if r.get("ok") else None

    def leader(self) -> str | None:
        """The leader a majority of live nodes agree on, if any."""
        votes: dict[str, int] = {}
        for addr, node in self.nodes.items():
            if not node.alive:
                continue
            st = self.status(addr)
            if st and st.get("leader"):
                votes[st["leader"]] = votes.get(st["leader"], 0) + 1
        for lead, count in votes.items():
            if count > len(self.addresses) // 2 and lead in self.nodes and self.nodes[lead].alive:
                return lead
        return None

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")

    def wait_leader(self, timeout: float = 30.0) -> str:
        return self.wait_for(self.leader, timeout, "a leader")

    def dump(self, address: str) -> dict[str, Any] | None:
        r = self.nodes[address].request("dump", timeout=10)
        return r["result"] if r.get("ok") else None

    def close(self) -> None:
        for node in self.nodes.values():
            node.stop()
        for node in self.nodes.values():
            node.kill()

    def __enter__(self) -> ProcessCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
