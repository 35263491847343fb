"""The ``raftkit`` command line against an admin endpoint in front of a fake
node: tables, ``--json``, messages and exit codes (0 done, 1 failed, 2 bad
arguments); and ``raftkit kv`` against the KV handlers of ``raftkit node``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from raftkit.cli import commands as cli
from raftkit.cli.kvnode import kv_handlers
from raftkit.errors import RaftkitError
from raftkit.state_machines.kv import KvStateMachine


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``raftkit argv...`` in this process: (exit code, stdout, stderr)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def admin(serve: Any, fake_node: Any, password_file: Path) -> list[str]:
    """The leading arguments of ``raftkit admin`` for the fake node's endpoint."""
    server = serve(fake_node, handlers={"set-version": lambda args: {"version": args["version"]}})
    return ["admin", "--node", server.address, "--password-file", str(password_file)]


def test_status_prints_a_table_of_the_node_and_its_peers(capsys: Any, admin: list[str]) -> None:
    code, out, err = run(capsys, *admin, "status")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:8] == [
        "node            n1",
        "role            leader",
        "term            7",
        "leader          n1",
        "commit          120",
        "applied         119",
        "log first       101",
        "log last        121",
    ]
    assert "snapshot index  100" in lines and "voters          n1, n2, n3" in lines
    assert "some future key" not in out  # lists are left to --json; scalars are shown
    assert "running         yes" in lines
    peers = lines[lines.index("") + 1 :]
    assert peers[0].split() == [
        "peer",
        "address",
        "role",
        "match",
        "next",
        "state",
        "active",
        "last",
        "contact",
    ]
    assert peers[1].split() == [
        "n2",
        "127.0.0.1:5002",
        "voter",
        "121",
        "122",
        "replicate",
        "yes",
        "0.04s",
        "ago",
    ]
    assert peers[2].split() == ["n3", "127.0.0.1:5003", "voter", "90", "91", "probe", "no", "12.50s", "ago"]


def test_a_followers_status_shows_last_contact_for_its_leader_only() -> None:
    status = {
        "id": "n2",
        "role": "follower",
        "term": 3,
        "leader": "n1",
        "members": ["n1", "n2", "n3", "n4"],
        "peers": {},
        # a follower never hears from the other followers: their figures only grow
        "last_contact": {"n1": 0.031, "n3": 4017.5, "n4": None},
        "metrics": {"proposals": 3},
    }
    text = cli.format_status(status)
    assert "metrics" not in text and "4017" not in text
    rows = text.split("\n\n")[1].splitlines()
    assert [r.split() for r in rows[:4]] == [
        ["peer", "last", "contact"],
        ["n1", "0.03s", "ago"],
        ["n3", "-"],
        ["n4", "-"],
    ]
    assert rows[4:] == [
        "last contact: a follower hears only from its leader (n1); '-' for n3, n4 (see the leader's status "
        "for them)"
    ]
    assert cli.format_status({}).startswith("node")  # nothing known: still a table


def test_without_a_leader_or_on_the_leader_every_last_contact_is_shown() -> None:
    electing = {"id": "n2", "role": "candidate", "leader": None, "last_contact": {"n1": 2.5, "n3": None}}
    leading = {"id": "n1", "role": "leader", "leader": "n1", "last_contact": {"n2": 0.02, "n3": 0.5}}
    for status, expected in (
        (electing, [["n1", "2.50s", "ago"], ["n3", "never"]]),
        (leading, [["n2", "0.02s", "ago"], ["n3", "0.50s", "ago"]]),
    ):
        text = cli.format_status(status)
        assert [r.split() for r in text.split("\n\n")[1].splitlines()[1:]] == expected
        assert "hears only from" not in text


def test_json_prints_the_raw_result_wherever_the_flag_is(
    capsys: Any, admin: list[str], fake_node: Any
) -> None:
    for argv in ([*admin, "--json", "status"], [*admin, "status", "--json"]):
        code, out, _ = run(capsys, *argv)
        assert code == 0
        status = json.loads(out)
        assert status["peers"]["n3"]["state"] == "probe" and status["some_future_key"] == ["a", "b"]
    code, out, _ = run(capsys, *admin, "members", "--json")
    assert json.loads(out) == fake_node.members()


def test_members_prints_voters_and_learners_with_addresses(
    capsys: Any, admin: list[str], fake_node: Any
) -> None:
    fake_node.learners.append("n4")
    fake_node.addresses["n4"] = "127.0.0.1:5004"
    code, out, _ = run(capsys, *admin, "members")
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ["id", "role", "address"],
        ["n1", "voter", "127.0.0.1:5001"],
        ["n2", "voter", "127.0.0.1:5002"],
        ["n3", "voter", "127.0.0.1:5003"],
        ["n4", "learner", "127.0.0.1:5004"],
    ]


def test_changes_say_what_was_done(capsys: Any, admin: list[str], fake_node: Any) -> None:
    expected = [
        (["add", "n4", "127.0.0.1:5004", "--learner"], "added n4 (127.0.0.1:5004) as a learner"),
        (["promote", "n4", "--timeout", "5"], "promoted n4 to voter"),
        (["remove", "n4"], "removed n4"),
        (["transfer", "n3"], "the leader is now n3"),
        (["transfer"], "the leader is now n2"),
        (["snapshot"], "snapshot taken at index 120 (term 7)"),
        (["set-version", "4"], "version=4"),
        (["ping"], "n1 answers; credentials accepted"),
    ]
    for argv, message in expected:
        assert run(capsys, *admin, *argv) == (0, message + "\n", "")
    assert fake_node.calls[0] == ("add_member", ("n4", "127.0.0.1:5004"), {"learner": True, "timeout": 30.0})
    assert fake_node.calls[1] == ("promote_member", ("n4",), {"timeout": 5.0})


def test_a_failed_operation_exits_1_with_the_reason(capsys: Any, admin: list[str], fake_node: Any) -> None:
    assert run(capsys, *admin, "remove", "n9") == (
        1,
        "",
        "error: n9 is not a member of this cluster (members: n1, n2, n3); nothing changed\n",
    )
    fake_node.fail["promote_member"] = RaftkitError("n4 has not caught up yet")
    assert run(capsys, *admin, "promote", "n4") == (1, "", "error: n4 has not caught up yet\n")


def test_set_version_where_it_is_not_served_says_where_to_run_it(
    capsys: Any, serve: Any, fake_node: Any, password_file: Path
) -> None:
    server = serve(fake_node)  # no set-version handler: a plain Node, as in `raftkit node`
    code, out, err = run(capsys, "admin", "--node", server.address, "--password-file", str(password_file),
                         "set-version", "1")
    assert (code, out) == (1, "")
    assert err.startswith("error: this node does not serve set-version: it has no code versions"), err
    for advice in ("SyncObj", "@replicated(ver=N)", "`raftkit node`", "obj.serve_admin(...)"):
        assert advice in err
    assert err.count("\n") == 1 and fake_node.mutating_calls() == []


def test_a_wrong_password_exits_1_and_changes_nothing(
    capsys: Any, serve: Any, fake_node: Any, tmp_path: Path
) -> None:
    server = serve(fake_node)
    wrong = tmp_path / "wrong"
    wrong.write_text("guess\n")
    wrong.chmod(0o600)
    code, out, err = run(
        capsys, "admin", "--node", server.address, "--password-file", str(wrong), "remove", "n2"
    )
    assert (code, out) == (1, "")
    assert err.startswith("error: authentication failed:"), err
    assert fake_node.calls == []


def test_the_password_may_come_from_the_environment_and_the_node_too(
    capsys: Any, serve: Any, fake_node: Any, monkeypatch: pytest.MonkeyPatch, admin_password: str
) -> None:
    server = serve(fake_node)
    monkeypatch.setenv(cli.PASSWORD_ENV, admin_password)
    monkeypatch.setenv(cli.ADMIN_ENV, server.address)
    assert run(capsys, "admin", "ping") == (0, "n1 answers; credentials accepted\n", "")
    monkeypatch.delenv(cli.PASSWORD_ENV)
    code, out, err = run(capsys, "admin", "--password", admin_password, "ping")
    assert code == 0 and "warning: --password shows the password" in err


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=oct)
def test_a_password_file_others_can_read_is_used_with_a_warning(
    capsys: Any, serve: Any, fake_node: Any, password_file: Path, mode: int
) -> None:
    ping = ["admin", "--node", serve(fake_node).address, "--password-file", str(password_file), "ping"]
    password_file.chmod(mode)
    code, out, err = run(capsys, *ping)
    assert (code, out) == (0, "n1 answers; credentials accepted\n")
    assert err == (
        f"warning: --password-file {password_file} is open to other users (mode {mode:04o}); "
        f"make it readable only by you: chmod 600 {password_file}\n"
    )
    # raftkit node reads it the same way (it stops here on a later bad argument)
    node = ["node", "--id", "n1", "--address", "127.0.0.1:1", "--admin", "127.0.0.1:2", "--peers", "n2=x:1"]
    code, _, err = run(capsys, *node, "--password-file", str(password_file), "--election-timeout", "1:0.5")
    assert code == 2 and err.startswith(f"warning: --password-file {password_file} is open to other users")
    password_file.chmod(0o600)  # readable by its owner only: nothing to say
    assert run(capsys, *ping)[2] == ""


def test_an_unreachable_node_exits_1(capsys: Any, password_file: Path) -> None:
    from raftkit.testing.process_cluster import free_ports

    (port,) = free_ports(1)
    code, _, err = run(
        capsys, "admin", "--node", f"127.0.0.1:{port}", "--password-file", str(password_file), "status"
    )
    assert code == 1 and err.startswith(f"error: cannot connect to the admin endpoint 127.0.0.1:{port}"), err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required"),
        (["admin", "--node", "127.0.0.1:1", "--password-file", "{pw}"], "required: COMMAND"),
        (["admin", "--node", "127.0.0.1:1", "--password-file", "{pw}", "frob"], "invalid choice: 'frob'"),
        (["admin", "--node", "127.0.0.1:1", "--password-file", "{pw}", "add"], "required: ID"),
        (
            ["admin", "--node", "127.0.0.1:1", "--password-file", "{pw}", "add", "n4", "nowhere"],
            "bad address",
        ),
        (["admin", "--node", "127.0.0.1:1", "--password-file", "{pw}", "set-version", "x"], "invalid int"),
        (
            ["admin", "--node", "127.0.0.1:1", "--password-file", "{pw}", "--timeout", "-1", "status"],
            "must be a positive number",
        ),
        (["admin", "--password-file", "{pw}", "status"], "which node? give --node HOST:PORT"),
        (["admin", "--node", "localhost", "--password-file", "{pw}", "status"], "--node: bad address"),
        (["admin", "--node", "127.0.0.1:1", "status"], "admin endpoints need authentication"),
        (
            ["admin", "--node", "127.0.0.1:1", "--password-file", "/nonexistent/pw", "status"],
            "cannot read --password-file",
        ),
        (
            ["admin", "--node", "127.0.0.1:1", "--tls-cert", "c.pem", "status"],
            "TLS needs --tls-cert and --tls-ca",
        ),
        (["kv", "--admin", "127.0.0.1:1", "--password-file", "{pw}", "set", "k"], "required: VALUE"),
        (
            ["kv", "--admin", "127.0.0.1:1", "--password-file", "{pw}", "set", "k", "{", "--json-value"],
            "VALUE is not JSON",
        ),
        (
            [
                "node",
                "--id",
                "n1",
                "--address",
                "127.0.0.1:1",
                "--admin",
                "127.0.0.1:2",
                "--password-file",
                "{pw}",
            ],
            "give --peers",
        ),
        (
            ["node", "--id", "n1", "--address", "127.0.0.1:1", "--admin", "127.0.0.1:2", "--peers", "n1=x:1"],
            "an admin endpoint must be authenticated",
        ),
        (
            [
                "node",
                "--id",
                "n1",
                "--address",
                "127.0.0.1:1",
                "--admin",
                "127.0.0.1:2",
                "--peers",
                "n1",
                "--password-file",
                "{pw}",
            ],
            "'n1' is not ID=HOST:PORT",
        ),
        (
            [
                "node",
                "--id",
                "n1",
                "--address",
                "127.0.0.1:1",
                "--admin",
                "127.0.0.1:2",
                "--peers",
                "n2=x:1",
                "--password-file",
                "{pw}",
                "--election-timeout",
                "1:0.5",
            ],
            "need 0 < MIN < MAX",
        ),
        (["admin", "--node", "127.0.0.1:1", "status", "--watch", "--interval", "1e-9"], "is too short"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, password_file: Path, argv: list[str], message: str
) -> None:
    monkeypatch.delenv(cli.PASSWORD_ENV, raising=False)
    monkeypatch.delenv(cli.ADMIN_ENV, raising=False)
    code, out, err = run(capsys, *[a.replace("{pw}", str(password_file)) for a in argv])
    assert code == 2 and out == ""
    assert message in err, err


def test_help_lists_every_admin_command(capsys: Any) -> None:
    code, out, _ = run(capsys, "admin", "--help")
    assert code == 0
    for command in ("status", "members", "add", "remove", "promote", "transfer", "snapshot", "set-version"):
        assert f"\n  {command}" in out


# -- raftkit kv -------------------------------------------------------------------------------


class OneNodeKv:
    """A single-node stand-in: proposals apply at once, reads are local."""

    id = "kv1"

    def __init__(self) -> None:
        self.sm = KvStateMachine()
        self.barriers = 0
        self.lock = threading.Lock()

    def propose(self, command: bytes, timeout: float | None = None) -> Any:
        with self.lock:
            return self.sm.apply(command)

    def read_barrier(self, timeout: float | None = None) -> Any:
        import concurrent.futures

        self.barriers += 1
        done: concurrent.futures.Future[int] = concurrent.futures.Future()
        done.set_result(0)
        return done

    def status(self) -> dict[str, Any]:
        return {"id": self.id}


def test_kv_commands(capsys: Any, serve: Any, password_file: Path) -> None:
    node = OneNodeKv()
    server = serve(node, handlers=kv_handlers(node, node.sm))
    kv = ["kv", "--admin", server.address, "--password-file", str(password_file)]
    assert run(capsys, *kv, "set", "greeting", "hello world") == (0, "OK\n", "")
    assert run(capsys, *kv, "get", "greeting") == (0, "hello world\n", "")
    assert run(capsys, *kv, "get", "greeting", "--linearizable") == (0, "hello world\n", "")
    assert node.barriers == 1
    assert run(capsys, *kv, "set", "n", "41", "--json-value") == (0, "OK\n", "")
    assert run(capsys, *kv, "incr", "n") == (0, "42\n", "")
    assert run(capsys, *kv, "incr", "n", "--by", "-2") == (0, "40\n", "")
    code, out, _ = run(capsys, *kv, "--json", "get", "n")
    assert code == 0 and json.loads(out) == {"key": "n", "found": True, "value": 40}
    assert run(capsys, *kv, "incr", "greeting") == (
        1,
        "",
        "error: cannot increment 'greeting': its value 'hello world' is not an integer\n",
    )
    assert run(capsys, *kv, "delete", "greeting") == (0, "deleted\n", "")
    assert run(capsys, *kv, "delete", "greeting") == (0, "not found (nothing deleted)\n", "")
    assert run(capsys, *kv, "get", "greeting") == (1, "", "error: key 'greeting' not found\n")


def test_the_kv_state_machine_is_deterministic_and_snapshots() -> None:
    sm = KvStateMachine()
    assert sm.apply(sm.set_command("a", {"x": [1, 2]})) is None
    assert sm.apply(sm.incr_command("c", 5)) == 5
    assert sm.apply(sm.set_command("a", "y")) == {"x": [1, 2]}
    with pytest.raises(ValueError, match="not an integer"):
        sm.apply(sm.incr_command("a"))
    with pytest.raises(ValueError, match="malformed command"):
        sm.apply(b"\x93\xa4incr\xa1a\xc3")  # ["incr", "a", true]
    with pytest.raises(ValueError, match="not valid msgpack"):
        sm.apply(b"\xc1")
    assert sm.apply(sm.delete_command("nope")) is False
    copy = KvStateMachine()
    copy.restore(sm.snapshot())
    assert copy.data == sm.data == {"a": "y", "c": 5}


def test_the_module_runs_as_a_program(password_file: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "raftkit.cli", "admin", "--node", "127.0.0.1:1", "status"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2 and "admin endpoints need authentication" in proc.stderr


def test_the_cluster_id_counts_before_or_after_the_operation_and_from_the_environment(
    capsys: Any, serve: Any, fake_node: Any, password_file: Path, admin_password: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An id given before the operation was reset by the operation's own parser,
    # so the key was derived without it and authentication failed.
    server = serve(fake_node, password=admin_password, cluster_id="shop-prod")
    auth = ["--node", server.address, "--password-file", str(password_file)]
    monkeypatch.delenv(cli.CLUSTER_ID_ENV, raising=False)
    for argv in (
        ["admin", *auth, "--cluster-id", "shop-prod", "ping"],
        ["admin", *auth, "ping", "--cluster-id", "shop-prod"],
    ):
        assert run(capsys, *argv) == (0, "n1 answers; credentials accepted\n", ""), argv
    code, _, err = run(capsys, "admin", *auth, "ping")
    assert code == 1 and "authentication failed" in err
    monkeypatch.setenv(cli.CLUSTER_ID_ENV, "shop-prod")
    assert run(capsys, "admin", *auth, "ping")[0] == 0
    code, _, err = run(capsys, "admin", *auth, "--cluster-id", "other", "ping")  # the flag wins
    assert code == 1 and "authentication failed" in err
