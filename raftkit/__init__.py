"""raftkit: replicated services on Raft.

The replicated-object API (PySyncObj's, so switching is a change of
imports)::

    from raftkit import SyncObj, SyncObjConf, replicated

and the parts it is made of: ``NodeBuilder`` composes a ``Node`` from a
``StateMachine``, a log store, a snapshotter, a transport and a serializer.

Packages, lowest layer first (``docs/architecture.md`` has the picture):
``core`` (the sans-I/O protocol), the plug-ins ``serializers``,
``storage``, ``state_machines``, ``transports``; ``runtime`` (the node);
``builder``; ``admin``; ``syncobj`` (PySyncObj's API); ``batteries``;
``cli`` and ``testing``. Which package may import which is a rule
``tests/test_layers.py`` checks.
"""

import importlib.metadata
import logging
import sys

from raftkit._moved import MOVED_MODULES as MOVED_MODULES  # old path -> new path, public for tools
from raftkit._moved import install
from raftkit.builder import BuildError, NodeBuilder
from raftkit.errors import (
    CommandTimeoutError,
    LeadershipLostError,
    NodeStoppedError,
    NoLeaderError,
    NotLeaderError,
    QueueFullError,
    RaftkitError,
    SerializationError,
)
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.node import Node
from raftkit.serializers import JsonSerializer, MsgpackSerializer, PickleSerializer, Serializer
from raftkit.state_machines.base import StateMachine
from raftkit.syncobj.conf import _RAFT_STATE, HAS_CRYPTO, SyncObjConf
from raftkit.syncobj.consumer import SyncObjConsumer
from raftkit.syncobj.decorator import replicated, replicated_sync
from raftkit.syncobj.facade import SyncObj
from raftkit.syncobj.outcomes import FAIL_REASON, CallError, FailReason, SyncObjException, fail_reason

__all__ = [
    "__version__",
    "FAIL_REASON",
    "HAS_CRYPTO",
    "_RAFT_STATE",
    "BuildError",
    "CallError",
    "CommandTimeoutError",
    "FailReason",
    "JsonSerializer",
    "LeadershipLostError",
    "MsgpackSerializer",
    "Node",
    "NodeBuilder",
    "NodeConfig",
    "NodeStoppedError",
    "NoLeaderError",
    "NotLeaderError",
    "PickleSerializer",
    "QueueFullError",
    "RaftkitError",
    "SerializationError",
    "Serializer",
    "StateMachine",
    "SyncObj",
    "SyncObjConf",
    "SyncObjConsumer",
    "SyncObjException",
    "fail_reason",
    "replicated",
    "replicated_sync",
]


try:
    __version__ = importlib.metadata.version("pyraftkit")  # the distribution (raftkit is taken on PyPI)
except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

# A library logs; the application decides where that goes (no "No handlers" warning without one).
logging.getLogger("raftkit").addHandler(logging.NullHandler())

# Old module paths (raftkit.node, raftkit.replicated, ...) keep working, with a
# DeprecationWarning that names the new path: see raftkit._moved.
__getattr__ = install(sys.modules[__name__])
