"""PySyncObj's API on raftkit: ``SyncObj``, ``@replicated`` /
``@replicated_sync``, ``SyncObjConsumer``, ``SyncObjConf``, ``FAIL_REASON``
and the call outcomes, and code versions (``@replicated(ver=N)``), so
PySyncObj code switches by changing its imports.

A ``SyncObj`` is a ``Node`` (``raftkit.runtime``) built by ``NodeBuilder``
around an object state machine that dispatches log entries to the
decorated methods of the object and its consumers.

May import: ``raftkit.errors``, ``raftkit.builder``, ``raftkit.runtime``,
``raftkit.admin`` (a SyncObj can serve the admin endpoint), ``raftkit.core``
and the plug-in packages. Never ``batteries``, ``cli`` or ``testing``.
"""

from raftkit.syncobj.conf import SyncObjConf
from raftkit.syncobj.consumer import SyncObjConsumer
from raftkit.syncobj.decorator import replicated, replicated_sync
from raftkit.syncobj.facade import SyncObj
from raftkit.syncobj.outcomes import FAIL_REASON, CallError, FailReason, SyncObjException, fail_reason
from raftkit.syncobj.versions import CodeVersionError, UnsupportedCodeVersionError

__all__ = [
    "FAIL_REASON",
    "CallError",
    "CodeVersionError",
    "FailReason",
    "SyncObj",
    "SyncObjConf",
    "SyncObjConsumer",
    "SyncObjException",
    "UnsupportedCodeVersionError",
    "fail_reason",
    "replicated",
    "replicated_sync",
]
