"""The ``raftkit`` command line.

::

    raftkit admin --node HOST:PORT [auth] [--json] [--timeout S] COMMAND [ARGS]
    raftkit kv    --admin HOST:PORT [auth] [--json] [--timeout S] set|get|delete|incr ...
    raftkit node  --id ID --address HOST:PORT --admin HOST:PORT [--peers ID=HOST:PORT,...] [--join HOST:PORT]
                  [auth] [--data-dir DIR]

``auth`` is the cluster password (``--password-file FILE``, or the
``RAFTKIT_PASSWORD`` environment variable) or a TLS client certificate
(``--tls-cert``, ``--tls-key``, ``--tls-ca``). Exit codes: 0 success, 1 the
operation failed (the reason on stderr, starting with ``error:``), 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import shlex
import stat
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from raftkit.cli.watch import printable

__all__ = ["format_members", "format_status", "main"]

PASSWORD_ENV = "RAFTKIT_PASSWORD"
ADMIN_ENV = "RAFTKIT_ADMIN"
CLUSTER_ID_ENV = "RAFTKIT_CLUSTER_ID"

ADMIN_EPILOG = """\
commands:
  status [--watch]              the node's role, term, leader, log and its view of every peer;
                                --watch refreshes it with progress bars for snapshot transfers
                                and log catch-ups ([--interval S] [--count N] [--until-done])
  members                       voters and learners with their addresses
  add ID [ADDRESS] [--learner]  add a member (a learner does not vote until promoted)
  remove ID                     remove a member
  promote ID                    make a learner a voter (once it has caught up)
  transfer [ID]                 hand leadership to ID (or to the most up-to-date follower)
  snapshot                      snapshot the state and compact the log now
  set-version VERSION           switch a SyncObj cluster to code version VERSION
                                (its @replicated(ver=N) methods; `raftkit node` has none)
  ping                          check the endpoint and the credentials

The password comes from --password-file or the RAFTKIT_PASSWORD environment
variable; give the cluster's --cluster-id (or RAFTKIT_CLUSTER_ID) if its nodes
were started with one; --node defaults to RAFTKIT_ADMIN. Exit status: 0 success, 1 the
operation failed, 2 bad arguments.
"""

KV_EPILOG = """\
commands:
  set KEY VALUE [--json-value]  store VALUE (a string, or JSON with --json-value)
  get KEY [--linearizable]      print the value (exit 1 if the key is absent);
                                --linearizable reads only after a ReadIndex round
  delete KEY                    remove the key
  incr KEY [--by N]             add N (default 1) to an integer value and print it
"""

NODE_EPILOG = """\
Example, three nodes on one machine (password in a file readable only by you):

  raftkit node --id n1 --address 127.0.0.1:5001 --admin 127.0.0.1:6001 \\
      --peers n1=127.0.0.1:5001,n2=127.0.0.1:5002,n3=127.0.0.1:5003 \\
      --password-file pw --cluster-id shop-prod
  (and n2, n3 likewise; the cluster id, the same on every node, salts the
  password's key so that no precomputed guess list fits every cluster, and
  every command that talks to the cluster gives it too, or RAFTKIT_CLUSTER_ID)
  raftkit admin --node 127.0.0.1:6001 --password-file pw --cluster-id shop-prod status
  raftkit kv --admin 127.0.0.1:6002 --password-file pw --cluster-id shop-prod set greeting hello

A fourth node joins a running cluster through any member's admin endpoint:

  raftkit node --id n4 --address 127.0.0.1:5004 --admin 127.0.0.1:6004 \\
      --join 127.0.0.1:6001 --password-file pw --cluster-id shop-prod
"""


class _Usage(Exception):
    """Bad arguments found after parsing: exit 2 with this message."""


# -- parsers ----------------------------------------------------------------------------------


def _auth_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("authentication")
    group.add_argument("--password-file", metavar="FILE", help="read the cluster password from FILE")
    group.add_argument(
        "--password", metavar="PASSWORD", help=argparse.SUPPRESS  # for tests; visible in `ps`
    )
    group.add_argument(
        # No default= here: the parsers' SUPPRESS default keeps an id given
        # before the operation from being reset by the operation's parser;
        # main() applies the environment's afterwards.
        "--cluster-id", metavar="ID",
        help=f"the cluster's id, the same on every node: salts the password's key "
        f"(default: ${CLUSTER_ID_ENV})",
    )
    group.add_argument("--tls-cert", metavar="PEM", help="TLS certificate signed by the cluster CA")
    group.add_argument("--tls-key", metavar="PEM", help="its private key (if not in --tls-cert)")
    group.add_argument("--tls-ca", metavar="PEM", help="the cluster CA certificate")


def _client_options(parser: argparse.ArgumentParser, endpoint: str) -> None:
    """Options of ``admin`` and ``kv``, accepted before or after the command."""
    parser.add_argument(
        endpoint, "--node" if endpoint == "--admin" else "--admin", dest="endpoint", metavar="HOST:PORT",
        help=f"the node's admin endpoint (default: ${ADMIN_ENV})",
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON result")
    parser.add_argument(
        "--timeout", type=_positive_float, metavar="S",
        help="the operation's deadline on the node, in seconds (the node's default otherwise)",
    )
    _auth_options(parser)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


MIN_WATCH_INTERVAL = 0.01  # each refresh is a status request to the node: no busy loop


def _watch_interval(text: str) -> float:
    value = _positive_float(text)
    if value < MIN_WATCH_INTERVAL:
        raise argparse.ArgumentTypeError(
            f"{text!r} is too short: refresh at most every {MIN_WATCH_INTERVAL:g} s"
        )
    return value


def _address(text: str) -> str:
    from raftkit.transports.netutil import parse_address

    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _version() -> str:
    """``raftkit.__version__`` (the CLI may not import the package's top: tests/test_layers.py)."""
    try:
        return importlib.metadata.version("pyraftkit")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftkit",
        description="Operate raftkit clusters: admin commands, a KV client, a standalone node.",
    )
    parser.add_argument("--version", action="version", version=f"raftkit {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="{admin,kv,node}", required=True)

    # Options given after the subcommand must not reset those given before it.
    admin_common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _client_options(admin_common, "--node")
    admin = sub.add_parser(
        "admin", parents=[admin_common], help="query and change a running cluster",
        description="Query and change a running cluster through a node's admin endpoint.",
        epilog=ADMIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ops = admin.add_subparsers(dest="op", metavar="COMMAND", required=True)
    p = ops.add_parser("status", parents=[admin_common], help="the node's view of the cluster")
    p.add_argument("--watch", action="store_true",
                   help="refresh every --interval seconds, with a bar for each snapshot transfer and log "
                   "catch-up (one plain line per refresh when the output is not a terminal)")
    p.add_argument("--interval", type=_watch_interval, default=1.0, metavar="S",
                   help=f"seconds between refreshes with --watch (default 1, min {MIN_WATCH_INTERVAL:g})")
    p.add_argument("--count", type=int, metavar="N", help="with --watch: stop after N refreshes")
    p.add_argument("--until-done", action="store_true",
                   help="with --watch: stop at the first refresh with nothing in progress")
    ops.add_parser("members", parents=[admin_common], help="voters and learners")
    p = ops.add_parser("add", parents=[admin_common], help="add a member")
    p.add_argument("id", metavar="ID")
    p.add_argument("address", metavar="ADDRESS", nargs="?", type=_address, help="its Raft address, HOST:PORT")
    p.add_argument("--learner", action="store_true", help="add it as a non-voting learner")
    for name, text in (("remove", "remove a member"), ("promote", "make a learner a voter")):
        ops.add_parser(name, parents=[admin_common], help=text).add_argument("id", metavar="ID")
    p = ops.add_parser("transfer", parents=[admin_common], help="hand leadership over")
    p.add_argument("to", metavar="ID", nargs="?")
    ops.add_parser("snapshot", parents=[admin_common], help="snapshot and compact the log now")
    p = ops.add_parser("set-version", parents=[admin_common], help="switch a SyncObj cluster's code version")
    p.add_argument("version", metavar="VERSION", type=int)
    ops.add_parser("ping", parents=[admin_common], help="check the endpoint and the credentials")

    kv_common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _client_options(kv_common, "--admin")
    kv = sub.add_parser(
        "kv", parents=[kv_common], help="read and write a `raftkit node` key-value store",
        description="Read and write the key-value store of `raftkit node` processes.",
        epilog=KV_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kops = kv.add_subparsers(dest="op", metavar="COMMAND", required=True)
    p = kops.add_parser("set", parents=[kv_common], help="store a value")
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", metavar="VALUE")
    p.add_argument("--json-value", action="store_true", help="VALUE is JSON (a number, list, object...)")
    p = kops.add_parser("get", parents=[kv_common], help="print a value")
    p.add_argument("key", metavar="KEY")
    p.add_argument("--linearizable", action="store_true", help="confirm with the leader before reading")
    kops.add_parser("delete", parents=[kv_common], help="remove a key").add_argument("key", metavar="KEY")
    p = kops.add_parser("incr", parents=[kv_common], help="increment an integer")
    p.add_argument("key", metavar="KEY")
    p.add_argument("--by", type=int, default=1, metavar="N")

    node = sub.add_parser(
        "node", help="run a standalone node serving a replicated key-value store",
        description="Run a standalone raftkit node serving a replicated key-value store, with an "
        "authenticated admin endpoint. Stops cleanly on SIGTERM or Ctrl-C.",
        epilog=NODE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    node.add_argument("--id", required=True, help="this node's id")
    node.add_argument("--address", required=True, type=_address, metavar="HOST:PORT",
                      help="where this node listens for Raft peers")
    node.add_argument("--admin", required=True, type=_address, metavar="HOST:PORT",
                      help="where it serves the admin endpoint (and the KV operations)")
    node.add_argument("--peers", metavar="ID=HOST:PORT,...",
                      help="the cluster's voters (this node may be listed or not)")
    node.add_argument("--join", type=_address, metavar="HOST:PORT",
                      help="join a running cluster through this member's admin endpoint "
                      "(added as a learner, then promoted)")
    node.add_argument("--data-dir", metavar="DIR", help="keep the log and snapshots in DIR (default: memory)")
    node.add_argument("--initial-cluster-state", choices=["auto", "new", "existing"], default="auto",
                      help="an empty node: 'auto' (its restart marker decides), 'new' (start a new, empty "
                      "cluster even after a total wipe), 'existing' (only a leader readmits it); see "
                      "docs/operations.md, 'Bootstrapping a cluster'")
    node.add_argument("--election-timeout", metavar="MIN:MAX",
                      help="election timeout range in seconds (default 0.4:0.8)")
    node.add_argument("--verbose", "-v", action="store_true", help="log the runtime's INFO messages")
    _auth_options(node)
    return parser


# -- credentials ------------------------------------------------------------------------------


def _password(ns: argparse.Namespace) -> str | None:
    path = getattr(ns, "password_file", None)
    given = getattr(ns, "password", None)
    if path and given:
        raise _Usage("give --password-file or --password, not both")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                _warn_if_shared(path, os.fstat(f.fileno()))
                password = f.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise _Usage(f"cannot read --password-file {path}: {exc}") from None
        if not password:
            raise _Usage(f"--password-file {path} is empty")
        return password
    if given is not None:
        print(
            "warning: --password shows the password to every user of this machine (ps); "
            f"use --password-file or {PASSWORD_ENV}",
            file=sys.stderr,
        )
        if not given:
            raise _Usage("--password must not be empty")
        return str(given)
    return os.environ.get(PASSWORD_ENV) or None


def _warn_if_shared(path: str, st: os.stat_result) -> None:
    """Warn when other users may read the password file (ssh refuses such a
    private key). Only a warning: secrets mounted by an orchestrator are
    often 0644 inside a container no one else uses."""
    mode = stat.S_IMODE(st.st_mode)
    if os.name == "posix" and stat.S_ISREG(st.st_mode) and mode & 0o077:
        print(
            f"warning: --password-file {path} is open to other users (mode {mode:04o}); "
            f"make it readable only by you: chmod 600 {shlex.quote(path)}",
            file=sys.stderr,
        )


def _tls(ns: argparse.Namespace) -> tuple[str, str | None, str] | None:
    cert, key, ca = (getattr(ns, name, None) for name in ("tls_cert", "tls_key", "tls_ca"))
    if not (cert or key or ca):
        return None
    if not cert or not ca:
        raise _Usage("TLS needs --tls-cert and --tls-ca (and --tls-key unless the key is in --tls-cert)")
    return cert, key, ca


# -- output -----------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "nan"
    if isinstance(value, (list, tuple, set)):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return printable(value)  # a node's strings must not act on the terminal (raftkit.cli.watch)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines


_STATUS_ROWS = [
    ("node", "id"),
    ("role", "role"),
    ("term", "term"),
    ("leader", "leader"),
    ("commit", "commit_index"),
    ("applied", "applied_index"),
    ("log first", "log_first_index"),
    ("log last", "log_last_index"),
]
_STATUS_SKIP = {key for _, key in _STATUS_ROWS} | {
    "members", "learners", "voters", "addresses", "peers", "snapshot", "error", "recovery", "last_contact",
}


def format_status(status: dict[str, Any]) -> str:
    """A node's ``status()`` as a readable table: the node's own state,
    then one row per peer. Keys it does not know are shown as they are."""
    if not isinstance(status, dict):
        return _cell(status)
    rows = [(label, _cell(status.get(key))) for label, key in _STATUS_ROWS]
    snapshot = status.get("snapshot")
    if isinstance(snapshot, dict):
        rows.append(("snapshot index", _cell(snapshot.get("index"))))
        if snapshot.get("in_progress") is not None:
            rows.append(("snapshot running", _cell(snapshot.get("in_progress"))))
    elif snapshot is not None:
        rows.append(("snapshot index", _cell(snapshot)))
    progress = status.get("snapshot_progress")
    from raftkit.cli.watch import safe_text, status_entries
    from raftkit.runtime.catch_up import catch_up_text
    from raftkit.runtime.transfer_progress import progress_text

    if isinstance(progress, dict):  # a snapshot being received from the leader
        rows.append(("snapshot transfer", safe_text(progress_text, progress)))
    for send in status_entries(status.get("snapshot_sends")):  # snapshots this leader sends
        if isinstance(send, dict):
            rows.append(("snapshot send", safe_text(progress_text, send)))
    for behind in status_entries(status.get("catch_up")):  # peers far behind in the log
        if isinstance(behind, dict):
            rows.append(("log catch-up", safe_text(catch_up_text, behind)))
    voters = status.get("voters", status.get("members"))
    rows.append(("voters", _cell(voters)))
    if "learners" in status:
        rows.append(("learners", _cell(status.get("learners"))))
    rows.append(("error", _cell(status.get("error"))))
    labels = {label for label, _ in rows}
    for key in sorted(status):
        value, label = status[key], key.replace("_", " ")
        if key in _STATUS_SKIP or label in labels or value is None or isinstance(value, (dict, list)):
            continue
        rows.append((label, _cell(value)))
    width = max(len(label) for label, _ in rows)
    lines = [f"{label.ljust(width)}  {value}" for label, value in rows]

    peers = {p: dict(v) if isinstance(v, dict) else {} for p, v in (status.get("peers") or {}).items()}
    contact = status.get("last_contact")
    if isinstance(contact, dict):  # every other member, on any role (a follower has no progress rows)
        for peer, seconds in contact.items():
            peers.setdefault(peer, {}).setdefault("last_contact", seconds)
    # A follower hears from its leader only: the other followers' figures grow
    # forever and mean nothing, so show the leader's alone. Without a leader
    # (an election) every voter may talk, so every figure counts.
    leader, me = status.get("leader"), status.get("id")
    heard_only = leader if status.get("role") != "leader" and leader not in (None, me) else None
    if peers:
        addresses = status.get("addresses") if isinstance(status.get("addresses"), dict) else {}
        learners = set(status.get("learners") or [])
        known = ["match", "next", "state", "active", "last_contact"]
        extra = sorted({k for p in peers.values() for k in p} - set(known))
        columns = [k for k in known if any(k in p for p in peers.values())] + extra
        header = ["peer"] + (["address"] if addresses else []) + (["role"] if "learners" in status else [])
        header += [c.replace("_", " ") for c in columns]
        rows_p, unwatched = [], []
        for peer in sorted(peers):
            info = peers[peer]
            row = [str(peer)]
            if addresses:
                row.append(_cell(addresses.get(peer)))
            if "learners" in status:
                row.append("learner" if peer in learners else "voter")
            for c in columns:
                row.append(_contact_cell(info.get(c)) if c == "last_contact" else _cell(info.get(c)))
                if c == "last_contact" and heard_only is not None and peer != heard_only:
                    row[-1] = "-"
                    unwatched.append(str(peer))
            rows_p.append(row)
        lines += ["", *_table(header, rows_p)]
        if unwatched:
            lines.append(
                f"last contact: a follower hears only from its leader ({heard_only}); "
                f"'-' for {', '.join(unwatched)} (see the leader's status for them)"
            )
    return "\n".join(lines)


def _contact_cell(value: Any) -> str:
    if value is None:
        return "never"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.2f}s ago"
    return _cell(value)


def format_members(members: dict[str, Any]) -> str:
    if not isinstance(members, dict):
        return _cell(members)
    addresses = members.get("addresses") or {}
    rows = [[str(v), "voter", _cell(addresses.get(v))] for v in members.get("voters") or []]
    rows += [[str(v), "learner", _cell(addresses.get(v))] for v in members.get("learners") or []]
    return "\n".join(_table(["id", "role", "address"], rows))


# -- commands ---------------------------------------------------------------------------------


def _client(ns: argparse.Namespace) -> Any:
    from raftkit.admin import AdminClient

    endpoint = getattr(ns, "endpoint", None) or os.environ.get(ADMIN_ENV)
    flag = "--node" if ns.command == "admin" else "--admin"
    if not endpoint:
        raise _Usage(f"which node? give {flag} HOST:PORT (its admin endpoint) or set {ADMIN_ENV}")
    try:
        _address(endpoint)
    except argparse.ArgumentTypeError as exc:
        raise _Usage(f"{flag}: {exc}") from None
    password, tls = _password(ns), _tls(ns)
    if password is None and tls is None:
        raise _Usage(
            f"admin endpoints need authentication: give --password-file FILE, set {PASSWORD_ENV}, "
            "or give --tls-cert/--tls-key/--tls-ca"
        )
    context = None
    if tls is not None:
        from raftkit.transports.tls import client_context

        try:
            context = client_context(*tls)
        except (OSError, ValueError) as exc:
            raise _Usage(f"cannot load the TLS files: {exc}") from None
    cluster_id = getattr(ns, "cluster_id", None) if password is not None else None
    return AdminClient(endpoint, password=password, ssl_context=context, cluster_id=cluster_id)


def _admin(ns: argparse.Namespace, out: Callable[[str], None]) -> int:
    timeout = getattr(ns, "timeout", None)
    op = ns.op
    args: dict[str, Any] = {}
    if op == "add":
        args = {"id": ns.id, "address": ns.address, "learner": ns.learner}
    elif op in ("remove", "promote"):
        args = {"id": ns.id}
    elif op == "transfer":
        args = {"to": ns.to}
    elif op == "set-version":
        args = {"version": ns.version}
    if op == "status" and (ns.watch or ns.count is not None or ns.until_done):
        return _watch(ns, timeout)
    with _client(ns) as client:
        result = client.call(op, args, timeout=timeout)
    if getattr(ns, "json", False):
        out(json.dumps(result, indent=2, sort_keys=True))
        return 0
    if op == "status":
        out(format_status(result))
    elif op == "members":
        out(format_members(result))
    elif op == "add":
        where = f" ({ns.address})" if ns.address else ""
        out(f"added {ns.id}{where} as a {'learner' if ns.learner else 'voter'}")
    elif op == "remove":
        out(f"removed {ns.id}")
    elif op == "promote":
        out(f"promoted {ns.id} to voter")
    elif op == "transfer":
        leader = result.get("leader") if isinstance(result, dict) else result
        out(f"the leader is now {leader}")
    elif op == "snapshot":
        if isinstance(result, dict):
            out(f"snapshot taken at index {result.get('index')} (term {result.get('term')})")
        else:
            out("no snapshot taken: nothing new to compact")
    elif op == "ping":
        node_id = result.get("id") if isinstance(result, dict) else result
        out(f"{node_id} answers; credentials accepted")
    else:
        out(_cell(result) if not isinstance(result, dict) else
            ", ".join(f"{k}={_cell(v)}" for k, v in sorted(result.items())) or "done")
    return 0


def _watch(ns: argparse.Namespace, timeout: float | None) -> int:
    from raftkit.admin.client import AdminConnectionError
    from raftkit.cli.watch import watch

    if not ns.watch:
        raise _Usage("--count and --until-done go with --watch")
    if ns.count is not None and ns.count < 1:
        raise _Usage("--count must be at least 1")
    if getattr(ns, "json", False):
        raise _Usage("--watch shows a live view; use --json without --watch for the raw status")
    with _client(ns) as client:

        def fetch() -> dict[str, Any]:
            result = client.call("status", {}, timeout=timeout)
            return result if isinstance(result, dict) else {"id": _cell(result)}

        return watch(
            fetch, sys.stdout, tty=sys.stdout.isatty(), interval=ns.interval, count=ns.count,
            until_done=ns.until_done, transient=(AdminConnectionError, OSError),
        )


def _kv(ns: argparse.Namespace, out: Callable[[str], None]) -> int:
    timeout = getattr(ns, "timeout", None)
    op = ns.op
    args: dict[str, Any] = {"key": ns.key}
    if op == "set":
        value: Any = ns.value
        if ns.json_value:
            try:
                value = json.loads(ns.value)
            except ValueError as exc:
                raise _Usage(f"--json-value: VALUE is not JSON: {exc}") from None
        args["value"] = value
    elif op == "get":
        args["linearizable"] = ns.linearizable
    elif op == "incr":
        args["by"] = ns.by
    with _client(ns) as client:
        result = client.call(f"kv-{op}", args, timeout=timeout)
    if getattr(ns, "json", False):
        out(json.dumps(result, indent=2, sort_keys=True))
        if op == "get" and not result.get("found"):
            return 1
        return 0
    if op == "set":
        out("OK")
    elif op == "get":
        if not result.get("found"):
            print(f"error: key {ns.key!r} not found", file=sys.stderr)
            return 1
        value = result.get("value")
        out(value if isinstance(value, str) else json.dumps(value))
    elif op == "delete":
        out("deleted" if result.get("deleted") else "not found (nothing deleted)")
    elif op == "incr":
        out(str(result.get("value")))
    return 0


def _node(ns: argparse.Namespace) -> int:
    from raftkit.cli.kvnode import KvNodeOptions, run_node

    peers: dict[str, str] = {}
    for item in (ns.peers or "").split(","):
        item = item.strip()
        if not item:
            continue
        node_id, sep, address = item.partition("=")
        if not sep or not node_id or not address:
            raise _Usage(f"--peers: {item!r} is not ID=HOST:PORT")
        try:
            _address(address)
        except argparse.ArgumentTypeError as exc:
            raise _Usage(f"--peers: {exc}") from None
        if node_id in peers:
            raise _Usage(f"--peers lists {node_id!r} twice")
        peers[node_id] = address
    if not peers and not ns.join:
        raise _Usage("give --peers (the cluster's voters) or --join (a member's admin endpoint)")
    password, tls = _password(ns), _tls(ns)
    if password is None and tls is None:
        raise _Usage(
            "an admin endpoint must be authenticated: give --password-file FILE (or set "
            f"{PASSWORD_ENV}) or --tls-cert/--tls-key/--tls-ca; the same credentials secure the "
            "links between the nodes"
        )
    if password is not None and tls is not None:
        raise _Usage("give a password or TLS files, not both")
    election = None
    if ns.election_timeout:
        low, sep, high = ns.election_timeout.partition(":")
        try:
            election = (float(low), float(high))
        except ValueError:
            raise _Usage(f"--election-timeout {ns.election_timeout!r}: expected MIN:MAX in seconds") from None
        if not sep or not 0 < election[0] < election[1]:
            raise _Usage("--election-timeout: need 0 < MIN < MAX")
    opts = KvNodeOptions(
        node_id=ns.id, address=ns.address, admin=ns.admin, peers=peers, join=ns.join,
        password=password, cluster_id=ns.cluster_id, tls=tls, data_dir=ns.data_dir,
        election_timeout=election, verbose=ns.verbose, initial_cluster_state=ns.initial_cluster_state,
    )
    return run_node(opts)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``raftkit`` console script; returns the exit code."""
    parser = build_parser()
    ns = parser.parse_args(argv)  # exits 2 on bad arguments
    if getattr(ns, "cluster_id", None) is None:
        ns.cluster_id = os.environ.get(CLUSTER_ID_ENV) or None

    def usage(message: str) -> NoReturn:
        sub = {"admin": "admin", "kv": "kv", "node": "node"}.get(ns.command, "")
        parser.exit(2, f"{parser.prog} {sub}: error: {message}\n")

    def out(text: str) -> None:
        print(text, flush=True)

    from raftkit.errors import RaftkitError

    try:
        if ns.command == "admin":
            return _admin(ns, out)
        if ns.command == "kv":
            return _kv(ns, out)
        return _node(ns)
    except _Usage as exc:
        usage(str(exc))
    except BrokenPipeError:  # `raftkit admin status | head -1`: the reader left; not an error to report
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except RaftkitError as exc:
        return _fail(str(exc))
    except ValueError as exc:  # bad node options found while building (BuildError is one)
        return _fail(str(exc))
    except OSError as exc:  # a port in use, an unreadable file
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # python -m raftkit.cli.commands; python -m raftkit.cli runs __main__.py
    sys.exit(main())
