"""ProcessCluster: real raftkit nodes as OS processes on the loopback.

Each node runs ``raftkit.testing.proc_node`` and answers JSON requests on
its stdin/stdout. The cluster only ever signals processes it started, by
PID, and ``close()`` (or the context manager) reaps every one of them.

With ``data_dir`` each node keeps its state on disk in
``<data_dir>/<name>`` (``name`` is ``n1``, ``n2``...) and logs to
``<data_dir>/<name>.log``, so a node killed with SIGKILL and started again
(``restart``) resumes from its own snapshots and log.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from raftkit.runtime.state_marker import MARKER_DIR_ENV

T = TypeVar("T")


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_BELOW_EPHEMERAL = 10_000  # how many ports under the ephemeral range to pick from


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports that are free on ``host`` now, for nodes that
    bind them a little later.

    Where the kernel says which ports it hands out on its own (Linux), they
    are taken from just below that range: a port picked by binding port 0
    is an ephemeral one, and in the moment before its node binds it, any
    outgoing connection or ``bind(0)`` (a proxy's listener, another test)
    may be given the same number, so the node then fails with "Address
    already in use". Each candidate is checked by binding it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low = _ephemeral_low()
    if low is None:
        return _kernel_ports(n, host, family)
    ports: list[int] = []
    pool = list(range(max(1024, low - _BELOW_EPHEMERAL), low))
    random.shuffle(pool)
    for port in pool:  # bounded by the pool's size
        with socket.socket(family) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue  # in use (another test's node): try the next
        ports.append(port)
        if len(ports) == n:
            return ports
    return ports + _kernel_ports(n - len(ports), host, family)  # the pool ran out


def _ephemeral_low() -> int | None:
    """The first port the kernel hands out on its own, where it says (Linux)."""
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return low if low > 1024 + 100 else None


def _kernel_ports(n: int, host: str, family: socket.AddressFamily) -> list[int]:
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


class NodeStartError(RuntimeError):
    """A node process did not come up; ``reason`` is what it said (or None)."""

    def __init__(self, address: str, reason: str | None) -> None:
        super().__init__(f"node {address} failed to start: {reason!r}")
        self.reason = reason


class NodeProcess:
    def __init__(
        self,
        address: str,
        partners: list[str],
        password: str | None,
        data_dir: Path | None = None,
        extra_args: Sequence[str] = (),
        log_file: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
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
        if data_dir is not None:
            cmd += ["--data-dir", str(data_dir)]
        if log_file is not None:
            cmd += ["--log-file", str(log_file)]
        cmd += list(extra_args)
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=None if env is None else dict(env),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._lock = threading.Lock()
        self._seq = 0
        first = self._next_line(30.0)
        answer = json.loads(first) if first else {}
        if not answer.get("ok"):
            self.kill()
            raise NodeStartError(address, answer.get("error", first))

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

    def request(
        self, op: str, timeout: float = 20.0, op_timeout: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Send one request and wait (up to ``timeout``) for its answer.
        ``op_timeout`` is the node's own deadline for the operation (its
        replicated calls). Requests carry an id, so an answer that arrives
        after its request gave up is never taken for a later one's."""
        if op_timeout is not None:
            fields["timeout"] = op_timeout
        with self._lock:
            if self.proc.poll() is not None or self.proc.stdin is None:
                return {"ok": False, "error": "process is not running"}
            self._seq += 1
            rid = self._seq
            try:
                self.proc.stdin.write(json.dumps({"op": op, "id": rid, **fields}) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                return {"ok": False, "error": f"process pipe closed: {exc}"}
            deadline = time.monotonic() + timeout
            while True:
                line = self._next_line(max(0.0, deadline - time.monotonic()))
                if line is None:
                    return {"ok": False, "error": "no answer (timeout or process exit)"}
                answer: dict[str, Any] = json.loads(line)
                if answer.pop("id", rid) == rid:
                    return answer  # older ids: answers to requests that timed out

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
    def __init__(
        self,
        n: int = 3,
        *,
        host: str = "127.0.0.1",
        password: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        node_args: Sequence[str] = (),
    ) -> None:
        """``node_args`` are extra ``proc_node`` options for every node
        (``--compaction-entries 200``, ``--fast``...)."""
        self.password = password
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.node_args = list(node_args)
        self.addresses = [format_address(host, p) for p in free_ports(n, host)]
        self.names = {a: f"n{i}" for i, a in enumerate(self.addresses, 1)}
        self.nodes: dict[str, NodeProcess] = {}
        # A throwaway cluster is a world of its own: its memory-mode nodes keep
        # their restart markers here for its lifetime (kills and restarts
        # within it see them), never in the user's shared folder.
        self._markers = tempfile.TemporaryDirectory(prefix="raftkit-cluster-markers-")
        self.env = {**os.environ, MARKER_DIR_ENV: self._markers.name}
        try:
            for addr in self.addresses:
                self.start(addr)
        except BaseException:
            self.close()
            raise

    def start(self, address: str, extra_args: Sequence[str] = ()) -> NodeProcess:
        """Start (or restart, on its data directory) the node at ``address``."""
        partners = [a for a in self.addresses if a != address]
        data_dir = log_file = None
        if self.data_dir is not None:
            data_dir = self.node_dir(address)
            log_file = self.data_dir / f"{self.names[address]}.log"
        node = NodeProcess(
            address, partners, self.password, data_dir, [*self.node_args, *extra_args], log_file, self.env
        )
        self.nodes[address] = node
        return node

    def grow(self, host: str = "127.0.0.1", *, join: bool = True) -> str:
        """Start a new node on a fresh port; with ``join`` it asks the cluster
        to add it (``--join``), otherwise it waits, empty, to be added. It is
        one of ``addresses`` from now on."""
        address = format_address(host, free_ports(1, host)[0])
        self.names[address] = f"n{len(self.names) + 1}"
        partners = list(self.addresses)
        self.addresses.append(address)
        data_dir = log_file = None
        if self.data_dir is not None:
            data_dir = self.node_dir(address)
            log_file = self.data_dir / f"{self.names[address]}.log"
        args = [*self.node_args, *(["--join"] if join else [])]
        self.nodes[address] = NodeProcess(
            address, partners, self.password, data_dir, args, log_file, self.env
        )
        return address

    def pause(self, address: str) -> None:
        """Freeze the node at ``address`` (SIGSTOP, our own process by PID):
        alive but silent, as a node stuck on a long GC or a dead switch."""
        os.kill(self.nodes[address].proc.pid, signal.SIGSTOP)

    def resume(self, address: str) -> None:
        os.kill(self.nodes[address].proc.pid, signal.SIGCONT)

    def retire(self, address: str) -> None:
        """Stop the node at ``address`` for good (after it was removed)."""
        self.nodes.pop(address).stop()
        self.addresses.remove(address)

    def node_dir(self, address: str) -> Path:
        """The data directory of the node at ``address`` (with ``data_dir``)."""
        if self.data_dir is None:
            raise ValueError("this cluster keeps its nodes' state in memory (no data_dir)")
        return self.data_dir / self.names[address]

    def log_text(self, address: str) -> str:
        """Everything the node at ``address`` logged so far (with ``data_dir``)."""
        assert self.data_dir is not None
        path = self.data_dir / f"{self.names[address]}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, address: str) -> None:
        """SIGKILL the node at ``address`` (our own process, by PID)."""
        self.nodes[address].kill()

    def restart(self, address: str, extra_args: Sequence[str] = ()) -> NodeProcess:
        """Kill the node at ``address`` if it runs, and start it again."""
        old = self.nodes.get(address)
        if old is not None:
            old.kill()
        return self.start(address, extra_args)

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

    def wait_for(self, predicate: Callable[[], T | None], timeout: float, what: str) -> T:
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
        self._markers.cleanup()

    def __enter__(self) -> ProcessCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
