"""``raftkit node`` processes driven by the ``raftkit`` command line, end to
end: three nodes on 127.0.0.1, ``admin status``, ``kv`` writes and reads
through different nodes, a wrong password, leadership transfer, a fourth
node joining and leaving, the leader killed, and a clean SIGTERM.

Every process is ours and is signalled by its PID only. The tests of one
module share one cluster and run in file order (each states what it
expects of the cluster it finds).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raftkit.admin import AdminClient, AdminError
from raftkit.testing.cluster import wait_until
from raftkit.testing.process_cluster import free_ports

pytestmark = pytest.mark.timeout(180)


ELECTION = "0.3:0.6"  # a little faster than the default 0.4:0.8


class KvNode:
    """One ``raftkit node`` process; its output goes to a file."""

    def __init__(self, node_id: str, address: str, admin: str, args: list[str], log: Path) -> None:
        self.id, self.address, self.admin, self.log = node_id, address, admin, log
        cmd = [
            sys.executable,
            "-m",
            "raftkit.cli",
            "node",
            "--id",
            node_id,
            "--address",
            address,
            "--admin",
            admin,
            "--election-timeout",
            ELECTION,
            *args,
        ]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM (our own process, by PID) and wait for it to exit."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


class Cluster:
    def __init__(self, directory: Path, password: str) -> None:
        self.dir = directory
        self.password_file = directory / "password"
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)
        ports = free_ports(8)
        self.raft = {f"n{i}": f"127.0.0.1:{ports[i - 1]}" for i in range(1, 5)}
        self.admin = {f"n{i}": f"127.0.0.1:{ports[i + 3]}" for i in range(1, 5)}
        self.nodes: dict[str, KvNode] = {}
        from raftkit.transports.encrypted import derive_cluster_key

        self.key = derive_cluster_key(password)

    def start(self, node_id: str, args: list[str]) -> KvNode:
        node = KvNode(
            node_id,
            self.raft[node_id],
            self.admin[node_id],
            [*args, "--password-file", str(self.password_file)],
            self.dir / f"{node_id}.out",
        )
        self.nodes[node_id] = node
        return node

    def status(self, node_id: str) -> dict[str, Any] | None:
        try:
            with AdminClient(self.admin[node_id], key=self.key, timeout=2) as client:
                return client.call("status")  # type: ignore[no-any-return]
        except AdminError:
            return None

    def leader(self, among: list[str] | None = None) -> str | None:
        """The leader every live node (of ``among``) names, if they agree."""
        names = among or [n for n, p in self.nodes.items() if p.alive]
        leaders = set()
        for name in names:
            status = self.status(name)
            if status is None:
                return None
            leaders.add(status.get("leader"))
        leader = leaders.pop() if len(leaders) == 1 else None
        return leader if leader in names else None

    def wait_leader(self, among: list[str] | None = None, timeout: float = 20.0) -> str:
        return wait_until(lambda: self.leader(among), timeout, 0.05, "the nodes to agree on a leader")

    def close(self) -> None:
        for node in self.nodes.values():
            if node.alive:
                with contextlib.suppress(subprocess.TimeoutExpired):  # then terminate() killed it
                    node.terminate(10)


def raftkit(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the ``raftkit`` command line in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "raftkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "RAFTKIT_PASSWORD": ""},
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("kvnodes"), "a long shared secret for the tests")
    try:
        peers = ",".join(f"{n}={c.raft[n]}" for n in ("n1", "n2", "n3"))
        for name in ("n1", "n2", "n3"):
            c.start(name, ["--peers", peers])
        c.wait_leader(timeout=30)
        yield c
    finally:
        c.close()
        for node in c.nodes.values():
            if node.alive:  # pragma: no cover - only if terminate() failed
                node.kill()


def admin(c: Cluster, node: str, *args: str) -> subprocess.CompletedProcess[str]:
    return raftkit("admin", "--node", c.admin[node], "--password-file", str(c.password_file), *args)


def kv(c: Cluster, node: str, *args: str) -> subprocess.CompletedProcess[str]:
    return raftkit("kv", "--admin", c.admin[node], "--password-file", str(c.password_file), *args)


def test_admin_status_on_every_node(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    for name in ("n1", "n2", "n3"):
        result = admin(cluster, name, "status")
        assert result.returncode == 0, result.stderr
        rows = dict(line.split(None, 1) for line in result.stdout.splitlines()[:4])
        assert rows["node"] == name and rows["leader"] == leader
        assert rows["role"] == ("leader" if name == leader else "follower")
    for name in sorted({"n1", "n2", "n3"} - {leader}):  # a follower hears from its leader only
        other = ({"n1", "n2", "n3"} - {leader, name}).pop()
        table = admin(cluster, name, "status").stdout.split("\n\n")[1].splitlines()
        rows = {r.split()[0]: r.split()[3:] for r in table[1:-1]}
        assert rows[leader][-1] == "ago" and rows[other] == ["-"], table
        assert table[-1].startswith(f"last contact: a follower hears only from its leader ({leader}); "
                                    f"'-' for {other}"), table
    result = admin(cluster, leader, "--json", "status")
    status = json.loads(result.stdout)
    assert sorted(status["peers"]) == sorted({"n1", "n2", "n3"} - {leader})
    members = admin(cluster, "n2", "members")
    assert members.returncode == 0
    assert [line.split()[:2] for line in members.stdout.splitlines()[1:]] == [
        ["n1", "voter"],
        ["n2", "voter"],
        ["n3", "voter"],
    ]


def test_kv_writes_and_reads_through_any_node(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    follower, other = sorted({"n1", "n2", "n3"} - {leader})
    assert kv(cluster, follower, "set", "greeting", "hello").stdout == "OK\n"  # forwarded to the leader
    got = kv(cluster, other, "get", "greeting", "--linearizable")
    assert (got.returncode, got.stdout) == (0, "hello\n"), got.stderr
    assert kv(cluster, leader, "incr", "visits", "--by", "3").stdout == "3\n"
    assert kv(cluster, follower, "incr", "visits").stdout == "4\n"
    missing = kv(cluster, other, "get", "nothing-here")
    assert (missing.returncode, missing.stderr) == (1, "error: key 'nothing-here' not found\n")


def test_a_wrong_password_is_refused_and_changes_nothing(cluster: Cluster, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    wrong.chmod(0o600)
    for argv in (
        ["admin", "--node", cluster.admin["n1"], "--password-file", str(wrong), "remove", "n3"],
        ["kv", "--admin", cluster.admin["n2"], "--password-file", str(wrong), "set", "greeting", "x"],
    ):
        result = raftkit(*argv)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.startswith("error: authentication failed"), result.stderr
    assert kv(cluster, "n3", "get", "greeting", "--linearizable").stdout == "hello\n"
    members = json.loads(admin(cluster, "n1", "members", "--json").stdout)
    assert sorted(members["voters"]) == ["n1", "n2", "n3"]


def test_removing_a_node_that_is_not_a_member_fails_and_changes_nothing(cluster: Cluster) -> None:
    result = admin(cluster, "n2", "remove", "n9")
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    expected = "error: n9 is not a member of this cluster (members: n1, n2, n3); nothing changed\n"
    assert result.stderr == expected
    members = json.loads(admin(cluster, "n1", "members", "--json").stdout)
    assert sorted(members["voters"]) == ["n1", "n2", "n3"] and members["learners"] == []


def test_set_version_on_a_kv_node_says_it_has_no_code_versions(cluster: Cluster) -> None:
    result = admin(cluster, "n1", "set-version", "1")
    assert (result.returncode, result.stdout) == (1, ""), result
    assert "no code versions to switch" in result.stderr and "SyncObj" in result.stderr, result.stderr


def test_bad_arguments_and_missing_credentials_exit_2(cluster: Cluster) -> None:
    no_auth = raftkit("admin", "--node", cluster.admin["n1"], "status")
    assert no_auth.returncode == 2 and "admin endpoints need authentication" in no_auth.stderr
    bad = admin(cluster, "n1", "transfer", "n2", "n3")
    assert bad.returncode == 2 and "unrecognized arguments: n3" in bad.stderr
    raft_port = raftkit(
        "admin", "--node", cluster.raft["n1"], "--password-file", str(cluster.password_file), "status"
    )
    assert raft_port.returncode == 1 and "is this the node's admin address" in raft_port.stderr


def test_snapshot(cluster: Cluster) -> None:
    result = admin(cluster, "n1", "snapshot")
    assert result.returncode == 0 and result.stdout.startswith("snapshot taken at index"), result


def test_transfer_leadership(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    target = sorted({"n1", "n2", "n3"} - {leader})[0]
    result = admin(cluster, leader, "transfer", target)
    assert (result.returncode, result.stdout) == (0, f"the leader is now {target}\n"), result.stderr
    assert cluster.wait_leader() == target


def test_a_fourth_node_joins_then_leaves(cluster: Cluster) -> None:
    n4 = cluster.start("n4", ["--join", cluster.admin["n1"]])
    try:

        def joined() -> bool:
            members = json.loads(admin(cluster, "n2", "members", "--json").stdout or "{}")
            return "n4" in members.get("voters", [])

        wait_until(joined, 40, 0.2, "n4 to become a voter")
        wait_until(lambda: "joined as a voter" in n4.output(), 10, 0.05, "n4 to report it joined")
        got = kv(cluster, "n4", "get", "greeting", "--linearizable")
        assert got.stdout == "hello\n", got.stderr  # the new node has the cluster's state
        removed = admin(cluster, "n3", "remove", "n4")
        assert (removed.returncode, removed.stdout) == (0, "removed n4\n"), removed.stderr
        members = json.loads(admin(cluster, "n1", "members", "--json").stdout)
        assert "n4" not in members["voters"] + members["learners"]
        again = admin(cluster, "n1", "remove", "n4")  # the operator asks again: told, not "removed"
        assert again.returncode == 1 and "n4 is not a member of this cluster" in again.stderr, again
    finally:
        assert n4.terminate() == 0
    del cluster.nodes["n4"]


def test_the_leader_killed_a_new_one_serves(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    cluster.nodes[leader].kill()  # SIGKILL, by PID
    rest = sorted({"n1", "n2", "n3"} - {leader})
    new_leader = cluster.wait_leader(rest)
    assert new_leader != leader
    assert kv(cluster, rest[0], "set", "after", "failover").stdout == "OK\n"
    assert kv(cluster, rest[1], "get", "after", "--linearizable").stdout == "failover\n"
    status = admin(cluster, new_leader, "status")
    assert status.returncode == 0 and "peer" in status.stdout


def test_sigterm_stops_a_node_cleanly(cluster: Cluster) -> None:
    for name, node in cluster.nodes.items():
        if node.alive:
            assert node.terminate() == 0
            out = node.output()
            assert f"{name}: SIGTERM: stopping" in out and f"{name}: stopped" in out, out
