"""PySyncObj's API on raftkit: ``SyncObj``, ``@replicated`` /
``@replicated_sync``, ``SyncObjConsumer``, ``SyncObjConf``, ``FAIL_REASON``
and the call outcomes, and code versions (``@replicated(ver=N)``), so
PySyncObj code switches by changing its imports.

A ``SyncObj`` drives a ``Node`` (``raftkit.runtime``) built by
``NodeBuilder`` around an object state machine that dispatches log entries
to the decorated methods of the object and its consumers:

* ``decorator``: ``@replicated`` / ``@replicated_sync`` and how a call
  reaches the node and reports its outcome;
* ``consumer``: ``SyncObjConsumer`` and the state a consumer replicates;
* ``object_machine``: the state machine that applies calls, and its
  snapshot framing;
* ``facade``: ``SyncObj`` itself; ``node_operations``: its membership,
  status and admin methods;
* ``conf``: ``SyncObjConf`` mapped onto ``NodeConfig``; ``outcomes``:
  ``FAIL_REASON`` and the errors; ``versions``: code versions.

May import: ``raftkit.errors``, ``raftkit.builder``, ``raftkit.runtime``,
``raftkit.admin`` (a SyncObj can serve the admin endpoint), ``raftkit.core``
and the plug-in packages. Never ``batteries``, ``cli`` or ``testing``.
"""

from raftkit.syncobj.admin_command import executeAdminCommand
from raftkit.syncobj.conf import _RAFT_STATE, HAS_CRYPTO, SyncObjConf
from raftkit.syncobj.consumer import SyncObjConsumer
from raftkit.syncobj.decorator import replicated, replicated_sync
from raftkit.syncobj.facade import SyncObj
from raftkit.syncobj.nodes import TCPNode
from raftkit.syncobj.object_machine import current_entry_index
from raftkit.syncobj.outcomes import FAIL_REASON, CallError, FailReason, SyncObjException, fail_reason
from raftkit.syncobj.versions import CodeVersionError, UnsupportedCodeVersionError

__all__ = [
    "FAIL_REASON",
    "HAS_CRYPTO",
    "_RAFT_STATE",
    "CallError",
    "CodeVersionError",
    "FailReason",
    "SyncObj",
    "SyncObjConf",
    "SyncObjConsumer",
    "SyncObjException",
    "TCPNode",
    "UnsupportedCodeVersionError",
    "current_entry_index",
    "executeAdminCommand",
    "fail_reason",
    "replicated",
    "replicated_sync",
]
