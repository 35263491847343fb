"""``syncobj_admin``: PySyncObj's admin tool, against raftkit's admin endpoint.

PySyncObj users script ``syncobj_admin -conn host:port -pass P -status``
(or its Python form ``executeAdminCommand([...])``). The same flags and
output work here; ``-conn`` names a raftkit admin endpoint: the one a
``SyncObj`` serves on its own Raft port when it has a password (PySyncObj's
arrangement), one started with ``serve_admin(address)``, or ``raftkit node
--admin``. The endpoint always authenticates: without ``-pass`` (or with a
wrong one) nothing is done and the answer says why.

Output, as PySyncObj prints it: ``-status`` gives ``key: value`` lines,
sorted; the others ``SUCCESS ADD host:port`` or ``FAIL ADD host:port``
(and ``REMOVE``, ``SET_VERSION n``, ``TRANSFER [host:port]``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from raftkit.admin.client import AdminClient
from raftkit.admin.protocol import AdminError, AdminRequestError
from raftkit.syncobj.nodes import pysyncobj_address, split_address

__all__ = ["executeAdminCommand", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncobj_admin", description="PySyncObj's admin tool, for raftkit")
    parser.add_argument("-conn", action="store", dest="connection", help="address to connect")
    parser.add_argument("-pass", action="store", dest="password", help="cluster's password")
    parser.add_argument("-status", action="store_true", help="send command 'status'")
    parser.add_argument("-add", action="store", dest="add", help="send command 'add'")
    parser.add_argument("-remove", action="store", dest="remove", help="send command 'remove'")
    parser.add_argument(
        "-set_version", action="store", dest="version", type=int, help="set cluster code version"
    )
    parser.add_argument(
        "-transfer",
        action="store",
        dest="transfer",
        nargs="?",
        const="",
        default=None,
        help="transfer leadership to the given node (or the most up-to-date one if omitted)",
    )
    parser.add_argument(
        "-timeout",
        action="store",
        dest="timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the node (raftkit's addition)",
    )
    return parser


def _valid(address: str | None) -> bool:
    try:
        split_address(address or "")
    except ValueError:
        return False
    return True


def executeAdminCommand(args: list[str]) -> str:  # noqa: N802 - PySyncObj's name
    """Run one admin command given as PySyncObj's command-line flags and
    return what ``syncobj_admin`` prints (an error is returned as its text,
    as PySyncObj does)."""
    return _run(args)[0]


def _run(args: list[str]) -> tuple[str, bool]:
    """The text to print, and whether the command did what it was asked."""
    data = _parser().parse_args(args)
    if not _valid(data.connection):
        return "invalid address to connect", False
    op: str
    call: dict[str, Any]
    if data.status:
        shown, op, call = [], "syncobj-status", {}
    elif data.add:
        if not _valid(data.add):
            return "invalid address to command add", False
        address = pysyncobj_address(data.add)
        shown, op, call = ["ADD", data.add], "syncobj-add", {"id": address, "address": address}
    elif data.remove:
        if not _valid(data.remove):
            return "invalid address to command remove", False
        shown, op, call = ["REMOVE", data.remove], "remove", {"id": pysyncobj_address(data.remove)}
    elif data.version is not None:
        shown, op, call = ["SET_VERSION", str(data.version)], "set-version", {"version": data.version}
    elif data.transfer is not None:
        to = pysyncobj_address(data.transfer) if data.transfer else None
        shown, op, call = (
            ["TRANSFER", data.transfer] if data.transfer else ["TRANSFER"],
            "transfer",
            {"to": to},
        )
    else:
        return "invalid command", False
    call["timeout"] = data.timeout
    try:
        with AdminClient(pysyncobj_address(data.connection), password=data.password) as admin:
            try:
                result = admin.call(op, call, timeout=data.timeout + 5.0)
            except AdminRequestError as exc:
                if not op.startswith("syncobj-") or "unknown" not in str(exc).lower():
                    raise
                # A plain raftkit node (raftkit node, no SyncObj): its own operation.
                result = admin.call(op.removeprefix("syncobj-"), call, timeout=data.timeout + 5.0)
    except AdminRequestError as exc:
        if op == "syncobj-status":
            return str(exc), False
        return " ".join(["FAIL", *shown]), False
    except AdminError as exc:
        return str(exc), False
    if op == "syncobj-status":
        return "\n".join(f"{k}: {v}" for k, v in sorted(result.items())), True
    return " ".join(["SUCCESS", *shown]), True


def main(argv: list[str] | None = None) -> int:
    """The ``syncobj_admin`` console script."""
    text, ok = _run(sys.argv[1:] if argv is None else argv)
    sys.stdout.write(f"{text}{os.linesep}")
    return 0 if ok else 1  # PySyncObj's exits 0 either way; scripts want to know


if __name__ == "__main__":
    sys.exit(main())
