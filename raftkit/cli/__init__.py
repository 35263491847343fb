"""Command-line tools: the ``raftkit`` command (``admin``, ``kv``, ``node``)
and the two demos (``python -m raftkit.cli.demo``, ``python -m
raftkit.cli.sim_demo``).

This is the top of the dependency order: it may import any raftkit
package, including ``raftkit.testing`` (the demos run a ``ProcessCluster``
and a ``SimCluster``). No library package imports it (the old-path shims
in ``raftkit._moved`` name the demos only as strings). The admin *client* it uses
lives in ``raftkit.admin``, so scripts can use it without the CLI.
"""

from raftkit.cli.commands import (  # the constants: raftkit.cli was cli.py up to 0.1
    ADMIN_ENV,
    CLUSTER_ID_ENV,
    PASSWORD_ENV,
    build_parser,
    format_members,
    format_status,
    main,
)

__all__ = [
    "ADMIN_ENV",
    "CLUSTER_ID_ENV",
    "PASSWORD_ENV",
    "build_parser",
    "format_members",
    "format_status",
    "main",
]
