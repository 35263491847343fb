"""raftkit: replicated services on Raft.

The replicated-object API (PySyncObj's, so switching is a change of
imports)::

    from raftkit import SyncObj, SyncObjConf, replicated

and the parts it is made of: ``NodeBuilder`` composes a ``Node`` from a
``StateMachine``, a log store, a snapshotter, a transport and a serializer.
"""

from raftkit.builder import BuildError, NodeBuilder
from raftkit.config import NodeConfig
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
from raftkit.node import Node
from raftkit.outcomes import FAIL_REASON, CallError, FailReason, SyncObjException, fail_reason
from raftkit.replicated import SyncObj, SyncObjConsumer, replicated, replicated_sync
from raftkit.serializers import JsonSerializer, MsgpackSerializer, PickleSerializer, Serializer
from raftkit.state_machine import StateMachine
from raftkit.syncobj_conf import SyncObjConf

__all__ = [
    "FAIL_REASON",
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
