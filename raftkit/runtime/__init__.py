"""The node runtime: ``Node`` drives the sans-I/O core (``raftkit.core``)
with a clock, a transport, a log store, a snapshotter and a state machine,
and turns its output into effects: messages sent, entries persisted and
applied, futures resolved.

Its modules each hold one part of that work (the command queue, pending
commands, applying entries, read barriers, membership operations, the
snapshot pipeline and its compaction policy, snapshot transfer, storage
retries, lost-state markers, status, metrics, the event loop,
``NodeConfig``). They are told what they need through narrow interfaces
(constructor arguments and callables, or a Protocol in their own module)
and never import ``Node`` back.

May import: ``raftkit.errors``, ``raftkit.core`` and the plug-in packages
(``storage``, ``transports``, ``serializers``, ``state_machines``). Never
``syncobj``, ``batteries``, ``admin``, ``cli`` or ``testing``.
"""

from raftkit.runtime.config import NodeConfig
from raftkit.runtime.node import Node

__all__ = ["Node", "NodeConfig"]
