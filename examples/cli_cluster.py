"""A cluster of `raftkit node` processes, driven with the `raftkit` command.

    python examples/cli_cluster.py

What it does, printing each command and its output as a shell session would:

1. starts three `raftkit node` processes on 127.0.0.1 (ports from the OS),
   with a cluster password (in a file only you can read), a cluster id and
   a data directory each;
2. `raftkit admin status` until a leader is known, then writes and reads
   through different nodes with `raftkit kv set/incr/get`;
3. grows the cluster: `raftkit admin add n4 ADDRESS --learner`, then starts
   the n4 process with `--join`, which finds itself a learner and asks for
   its promotion; `raftkit admin members` shows four voters, and a
   linearizable read through n4 sees the earlier writes;
4. shrinks it: `raftkit admin remove n1`, stops n1's process, and writes
   through the three that are left.

Every process it started is stopped by its PID (SIGTERM, then SIGKILL if it
lingers) whatever happens (an error, Ctrl-C, a SIGTERM to this program),
and its temporary directory is removed. Exit
status 0 when every step gave the expected answer, 1 otherwise (with the
nodes' logs on stderr). The `raftkit` command is run as
``python -m raftkit.cli`` with this interpreter, so no PATH is needed.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RAFTKIT = [sys.executable, "-m", "raftkit.cli"]  # the `raftkit` command, run by this interpreter
CLUSTER_ID = "cli-example"


class Failed(Exception):
    """A step did not give the expected answer."""


def free_ports(n: int) -> list[int]:
    """``n`` loopback ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Cluster:
    """The node processes this program started, and how to reach them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.password_file = tmp / "pw"
        self.password_file.write_text("example only: use a long random secret\n")
        self.password_file.chmod(0o600)  # the CLI warns about a file others can read
        ports = free_ports(8)
        self.raft = {f"n{i + 1}": f"127.0.0.1:{ports[i]}" for i in range(4)}
        self.admin = {f"n{i + 1}": f"127.0.0.1:{ports[4 + i]}" for i in range(4)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def auth(self) -> list[str]:
        return ["--password-file", str(self.password_file), "--cluster-id", CLUSTER_ID]

    def start(self, name: str, *how: str) -> None:
        """Start `raftkit node` for ``name``; its output goes to a log file."""
        args = [
            "node", "--id", name, "--address", self.raft[name], "--admin", self.admin[name],
            "--data-dir", str(self.tmp / name), *how,
        ]
        print("$ raftkit", " ".join(shlex.quote(a) for a in args), "$AUTH &", flush=True)
        args += self.auth()
        # The nodes keep a second copy of their restart marker outside the
        # data directory (raftkit.runtime.state_marker): here, in this run's directory.
        env = {**os.environ, "RAFTKIT_STATE_MARKER_DIR": str(self.tmp / "markers")}
        with open(self.tmp / f"{name}.log", "wb") as log:
            self.procs[name] = subprocess.Popen([*RAFTKIT, *args], stdout=log, stderr=subprocess.STDOUT, env=env)

    def stop(self, name: str) -> int:
        """SIGTERM ``name``'s process (ours, by its PID) and wait; SIGKILL if it lingers."""
        proc = self.procs[name]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        return proc.returncode

    def stop_all(self) -> None:
        for name in self.procs:
            self.stop(name)

    def run(self, *args: str, via: str, show: bool = True) -> str:
        """Run ``raftkit ADMIN-OR-KV --node <via's admin endpoint> ...``; its
        stdout, or Failed with its stderr when it exits non-zero."""
        command, rest = args[0], list(args[1:])
        # The options after the operation: given before it, --cluster-id is
        # lost (reset by the operation's parser) and authentication fails.
        argv = [command, "--node", self.admin[via], *rest, *self.auth()]
        if show:
            print(f"$ raftkit {command} --node {self.admin[via]} {' '.join(rest)} $AUTH", flush=True)
        done = subprocess.run([*RAFTKIT, *argv], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise Failed(f"raftkit {' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
        if show and done.stdout.strip():
            print(done.stdout.rstrip(), flush=True)
        return done.stdout

    def status(self, via: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.run("admin", "--json", "status", via=via, show=False))
        return result

    def wait_leader(self, via: str, timeout: float = 30) -> str:
        """Poll ``via``'s status until it names a leader."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                leader = self.status(via).get("leader")
                if leader:
                    return str(leader)
                last = "no leader yet"
            except Failed as exc:  # the endpoint may not be up yet
                last = str(exc)
            time.sleep(0.3)
        raise Failed(f"{via} knew no leader within {timeout:.0f} s ({last})")

    def wait_voters(self, via: str, voters: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        seen: Any = None
        while time.monotonic() < deadline:
            seen = json.loads(self.run("admin", "--json", "members", via=via, show=False))
            if sorted(seen.get("voters") or []) == sorted(voters):
                return
            time.sleep(0.3)
        raise Failed(f"the voters are {seen}, not {voters}, after {timeout:.0f} s")

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}.log (exit {proc.poll()}) ---\n{(self.tmp / f'{name}.log').read_text(errors='replace')[-3000:]}"
            for name, proc in self.procs.items()
        )


def expect(got: str, wanted: str) -> None:
    if got.strip() != wanted:
        raise Failed(f"expected {wanted!r}, got {got.strip()!r}")


def scenario(c: Cluster) -> None:
    print("$ AUTH=" + shlex.quote(" ".join(c.auth())), flush=True)
    peers = ",".join(f"{n}={c.raft[n]}" for n in ("n1", "n2", "n3"))
    for name in ("n1", "n2", "n3"):
        c.start(name, "--peers", peers)
    leader = c.wait_leader("n1")
    print("leader:", leader, flush=True)
    c.run("admin", "status", via="n1")

    c.run("kv", "set", "greeting", "hello", via="n1")
    c.run("kv", "incr", "visits", via="n2")
    expect(c.run("kv", "incr", "visits", via="n3"), "2")
    expect(c.run("kv", "get", "greeting", "--linearizable", via="n3"), "hello")

    # Grow: register n4 as a learner, then start it; --join promotes it.
    c.run("admin", "add", "n4", c.raft["n4"], "--learner", via="n2")
    c.start("n4", "--join", c.admin["n1"])
    c.wait_voters("n1", ["n1", "n2", "n3", "n4"])
    c.run("admin", "members", via="n1")
    expect(c.run("kv", "get", "visits", "--linearizable", via="n4"), "2")

    # Shrink: remove n1 (ask another member), then stop its process.
    c.run("admin", "remove", "n1", via="n2")
    print("n1 stopped, exit status", c.stop("n1"), flush=True)
    c.wait_voters("n2", ["n2", "n3", "n4"])
    c.wait_leader("n4")
    expect(c.run("kv", "incr", "visits", via="n4"), "3")
    expect(c.run("kv", "get", "visits", "--linearizable", via="n2"), "3")
    c.run("admin", "members", via="n3")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="raftkit-cli-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            scenario(cluster)
            print("all steps gave the expected answers", flush=True)
            return 0
        except (Failed, subprocess.TimeoutExpired) as exc:
            print(f"failed: {exc}\n{cluster.logs()}", file=sys.stderr)
            return 1
        finally:
            cluster.stop_all()  # every process we started, by PID
            print("stopped:", ", ".join(f"{n} (pid {p.pid})" for n, p in cluster.procs.items()), flush=True)


def on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(143)  # unwinds through main's finally: the nodes are stopped too


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.monotonic()
    code = main()
    print(f"stopped after {time.monotonic() - started:.1f} s", flush=True)
    sys.exit(code)
