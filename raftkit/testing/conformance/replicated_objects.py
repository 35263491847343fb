"""``StateMachineConformance`` for replicated objects: a ``SyncObj``
subclass with ``@replicated`` methods, or ``SyncObjConsumer`` batteries.

A ``SyncObj`` runs an object state machine
(``raftkit.syncobj.object_machine``): each log entry is a call ``(target,
method name, args, kwargs)`` encoded with the SyncObj's serializer, target
-1 being the object and ``i`` its ``i``-th consumer. These adapters make
that state machine without starting a node, so the suite's commands are
method calls: ``("set", ("k", 1), {})``, or ``(0, "set", ("k", 1), {})``
to name the target::

    from hypothesis import strategies as st

    from raftkit.batteries import ReplDict
    from raftkit.testing.conformance.replicated_objects import ConsumerConformance

    class TestReplDict(ConsumerConformance):
        def make_consumers(self, tmp_path):
            return [ReplDict()]

        def commands(self):
            keys = st.sampled_from(["a", "b"])
            return st.one_of(
                st.tuples(st.just("set"), st.tuples(keys, st.integers()), st.just({})),
                st.tuples(st.just("pop"), st.tuples(keys), st.just({})),
            )

For your own ``SyncObj`` subclass use ``SyncObjConformance`` and return it
from ``make_syncobj``, built so that its node never starts:
``SyncObjConf(autoTick=False)`` and, to open no socket,
``transport=MemoryTransport(MemoryNetwork())``. The suite applies calls
to the very state machine that object's node would run (``_rk_sm``).

``standalone_object_machine(consumers)`` is the state machine
``SyncObj(..., consumers=consumers)`` would run, without a SyncObj or a
node, for tests of your own.

The suite reads the outcome of a call the way a ``sync=True`` caller sees
it: the method's return value, or the exception it raised.

The same calls through ``cluster_test`` (raftkit.testing.cluster_test), in
a faulty simulated cluster: ``consumer_cluster_test(make_consumers,
calls, model=...)``. ``call_command(call)`` is the command bytes a SyncObj
logs for a call, and ``CallStateMachine(consumers)`` the state machine it
applies them to, outcomes read as a ``sync=True`` caller sees them.
"""

from __future__ import annotations

import unittest
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from raftkit.serializers import MsgpackSerializer, Serializer, get_serializer
from raftkit.state_machines.base import StateMachine
from raftkit.syncobj.consumer import SyncObjConsumer

# Private on purpose: the machine and the outcome wrapper are SyncObj's own,
# and testing them as they are is the point (raftkit.testing may import them).
from raftkit.syncobj.decorator import _Raised
from raftkit.syncobj.facade import SyncObj
from raftkit.syncobj.object_machine import _ObjectStateMachine
from raftkit.testing.conformance.state_machine import StateMachineConformance

__all__ = [
    "CallStateMachine",
    "ConsumerConformance",
    "SyncObjConformance",
    "call_command",
    "consumer_cluster_test",
    "object_machine_of",
    "standalone_object_machine",
]


class _Host:
    """What the object state machine needs of its SyncObj when there is
    none: the consumers, an empty state of its own, no node."""

    def __init__(self, consumers: list[SyncObjConsumer]) -> None:
        self._rk_consumers = consumers
        self._rk_address = "standalone"

    def _serialize(self) -> dict[str, Any]:
        return {}

    def _deserialize(self, data: Any) -> None:
        if data != {}:
            raise ValueError(f"a standalone object machine has no state of its own, got {data!r}")

    def _rk_code_version_changed(self, old: int, new: int) -> None:
        """No ``onCodeVersionChanged`` hook without a SyncObjConf."""

    def _rk_node_for_call(self) -> Any:
        raise RuntimeError("a standalone object machine has no node: apply encoded calls to it instead")


def standalone_object_machine(consumers: Sequence[Any], serializer: Serializer | None = None) -> StateMachine:
    """The state machine ``SyncObj(..., consumers=consumers)`` would run,
    without a node. Consumers are attached to it (one owner each, as in a
    SyncObj); PySyncObj-style wrappers (``ReplLockManager``) hand over their
    ``_consumer()``. Calls are ``serializer.dumps((index, name, args, kwargs))``
    (msgpack by default); a call that raised comes back wrapped, as for a node."""
    attached: list[SyncObjConsumer] = []
    for consumer in consumers:
        if not isinstance(consumer, SyncObjConsumer) and callable(getattr(consumer, "_consumer", None)):
            consumer = consumer._consumer()  # as SyncObj.__init__ does
        if not isinstance(consumer, SyncObjConsumer):
            raise TypeError(f"consumers must be SyncObjConsumer instances, got {type(consumer).__name__}")
        attached.append(consumer)
    host = _Host(attached)
    for i, consumer in enumerate(attached):
        consumer._rk_attach(host, i)  # type: ignore[arg-type]
    return _ObjectStateMachine(host, serializer or MsgpackSerializer())  # type: ignore[arg-type]


def object_machine_of(obj: SyncObj) -> StateMachine:
    """The state machine ``obj``'s node applies entries to."""
    sm: StateMachine | None = obj.__dict__.get("_rk_sm")
    if sm is None:
        raise TypeError(f"{type(obj).__name__} has no object state machine: did its __init__ finish?")
    return sm


class _ObjectMachineSuite(StateMachineConformance):
    """Commands are calls ``(name, args, kwargs)`` on the default target,
    or ``(target, name, args, kwargs)``."""

    _default_target = -1

    def _call(self, command: Any) -> tuple[Any, str, tuple[Any, ...], dict[str, Any]]:
        if not isinstance(command, (tuple, list)) or len(command) not in (3, 4):
            raise TypeError(f"a call is (name, args, kwargs) or (target, name, args, kwargs): {command!r}")
        target, name, args, kwargs = command if len(command) == 4 else (self._default_target, *command)
        return target, name, tuple(args), dict(kwargs)  # the form SyncObj._rk_submit encodes

    def encode_command(self, sm: StateMachine, command: Any) -> bytes:
        return self.serializer_for(sm).dumps(self._call(command))

    def serialized_command(self, command: Any) -> Any:
        return self._call(command)

    def apply_command(self, sm: StateMachine, command: Any, index: int) -> Any:
        # apply_entry, as the node calls it: durable consumers (LmdbDict) see
        # their entry's index (current_entry_index).
        result = sm.apply_entry(index, self.encode_command(sm, command))
        if isinstance(result, _Raised):
            raise result.exception
        return result

    def state_of(self, sm: StateMachine) -> Any:
        """The decoded snapshot: its bytes may differ for equal states (a
        set's encoding follows the process's hash seed)."""
        return self.serializer_for(sm).loads(sm.snapshot())

    def describe_command(self, command: Any) -> str:
        try:
            target, name, args, kwargs = self._call(command)
        except TypeError:
            return super().describe_command(command)
        shown = [super(_ObjectMachineSuite, self).describe_command(a) for a in args]
        shown += [f"{k}={super(_ObjectMachineSuite, self).describe_command(v)}" for k, v in kwargs.items()]
        where = "" if target == self._default_target else f"[{target}]"
        return f"{where}.{name}({', '.join(shown)})"


class SyncObjConformance(_ObjectMachineSuite):
    """The suite for a ``SyncObj`` subclass: implement ``make_syncobj``
    and ``commands`` (calls of its ``@replicated`` methods). Its own
    serializer (``SyncObjConf.serializer``) is used unless ``serializer``
    is set."""

    def make_syncobj(self, tmp_path: Path) -> SyncObj:
        """A fresh object whose node does not run: build it with
        ``SyncObjConf(autoTick=False)`` (and a ``MemoryTransport``)."""
        raise NotImplementedError("implement make_syncobj(tmp_path) to return a SyncObj that is not started")

    def make_state_machine(self, tmp_path: Path) -> StateMachine:
        obj = self.make_syncobj(tmp_path)
        node = obj.__dict__.get("_rk_node")
        if node is not None and node.started:
            obj.destroy()
            raise RuntimeError(
                f"make_syncobj returned a running {type(obj).__name__}: its node would apply entries too. "
                "Build it with SyncObjConf(autoTick=False) so that it never starts"
            )
        return object_machine_of(obj)

    def close_state_machine(self, sm: StateMachine) -> None:
        sm._owner.destroy()  # type: ignore[attr-defined]


class ConsumerConformance(_ObjectMachineSuite):
    """The suite for ``SyncObjConsumer`` objects (batteries): implement
    ``make_consumers`` and ``commands``; a 3-tuple command calls consumer 0.
    ``serializer`` (default msgpack) encodes the calls and snapshots."""

    _default_target = 0

    def make_consumers(self, tmp_path: Path) -> Sequence[Any]:
        """Fresh consumers (or PySyncObj-style wrappers with ``_consumer()``)."""
        raise NotImplementedError("implement make_consumers(tmp_path) to return fresh consumers")

    def make_state_machine(self, tmp_path: Path) -> StateMachine:
        chosen = self.serializer
        serializer = get_serializer(chosen) if isinstance(chosen, str) else chosen
        return standalone_object_machine(self.make_consumers(tmp_path), serializer)

    def close_state_machine(self, sm: StateMachine) -> None:
        for consumer in sm._owner._rk_consumers:  # type: ignore[attr-defined]
            consumer._destroy()  # as SyncObj.destroy(): threads stop, files close


# -- the same calls in a simulated cluster -------------------------------------------------


def _normalized(call: Any, target: int) -> list[Any]:
    """The call as the SyncObj facade encodes it: ``[target, name, [args], {kwargs}]``."""
    if not isinstance(call, (tuple, list)) or len(call) not in (3, 4):
        raise TypeError(f"a call is (name, args, kwargs) or (target, name, args, kwargs): {call!r}")
    where, name, args, kwargs = call if len(call) == 4 else (target, *call)
    return [where, name, list(args), dict(kwargs)]


def call_command(call: Any, serializer: Serializer | None = None, *, target: int = 0) -> bytes:
    """The log entry a SyncObj writes for a call: ``(name, args, kwargs)``
    on consumer ``target`` (-1: the SyncObj itself), or ``(target, name,
    args, kwargs)``, encoded with ``serializer`` (msgpack by default)::

        call_command(("set", ("k", 1), {}))  # ReplDict.set("k", 1), consumer 0
    """
    return (serializer or MsgpackSerializer()).dumps(_normalized(call, target))


class CallStateMachine(StateMachine):
    """``standalone_object_machine(consumers, serializer)``, with each
    call's outcome as a ``sync=True`` caller sees it: the method's return
    value, or the exception it raised, raised (the object machine returns
    it wrapped). ``consumers`` are the live consumers, for reads and digests."""

    def __init__(self, consumers: Sequence[Any], serializer: Serializer | None = None) -> None:
        self.serializer = serializer or MsgpackSerializer()
        self.machine = standalone_object_machine(consumers, self.serializer)
        self.consumers: list[SyncObjConsumer] = list(self.machine._owner._rk_consumers)  # type: ignore[attr-defined]

    def apply_entry(self, index: int, command: bytes) -> Any:
        result = self.machine.apply_entry(index, command)
        if isinstance(result, _Raised):
            raise result.exception
        return result

    def apply(self, command: bytes) -> Any:
        result = self.machine.apply(command)
        if isinstance(result, _Raised):
            raise result.exception
        return result

    def snapshot(self) -> bytes:
        return self.machine.snapshot()

    def restore(self, data: bytes) -> None:
        self.machine.restore(data)

    def close(self) -> None:
        """Destroy the consumers, as ``SyncObj.destroy()`` does (threads stop, files close)."""
        for consumer in self.consumers:
            consumer._destroy()


class _CallModel:
    """A model of calls as a model of command bytes: ``step`` gets the call
    decoded, ``(name, args, kwargs)`` on the default target, else
    ``(target, name, args, kwargs)``."""

    def __init__(self, model: Any, serializer: Serializer, target: int) -> None:
        self.model, self.serializer, self.target = model, serializer, target
        if callable(getattr(model, "read", None)):
            self.read = model.read  # for query=

    def init(self) -> Any:
        return self.model.init()

    def step(self, state: Any, command: bytes) -> Any:
        where, name, args, kwargs = self.serializer.loads(command)
        call = (name, args, kwargs) if where == self.target else (where, name, args, kwargs)
        return self.model.step(state, call)


def consumer_cluster_test(
    make_consumers: Callable[[], Sequence[Any]],
    calls: st.SearchStrategy[Any],
    *,
    model: Any = None,
    serializer: Serializer | None = None,
    target: int = 0,
    close: Callable[[CallStateMachine], None] | None = None,
    **options: Any,
) -> type[unittest.TestCase]:
    """``cluster_test`` for consumers (batteries): every node runs
    ``CallStateMachine(make_consumers())`` and the commands are ``calls``
    (``(name, args, kwargs)`` on consumer ``target``, or ``(target, name,
    args, kwargs)``) encoded by ``call_command``. A ``model`` steps through
    the calls (``step(state, call)``, the call as the serializer decodes it:
    a 3-tuple on ``target``). ``close(sm)`` ends each instance (default:
    ``sm.close()``, which destroys the consumers); ``digest``,
    ``state_equal`` and ``query`` receive the ``CallStateMachine``, whose
    ``consumers`` hold the state. Other options go to ``cluster_test``::

        TestDictCluster = consumer_cluster_test(
            lambda: [ReplDict()], st.tuples(st.just("set"), st.tuples(keys, values), st.just({})),
            model=DictModel(), max_examples=10)
    """
    from raftkit.testing.cluster_test import cluster_test  # it imports nothing of this module

    chosen = serializer or MsgpackSerializer()

    def factory() -> CallStateMachine:
        return CallStateMachine(make_consumers(), chosen)

    factory.__name__ = "CallStateMachine"
    commands = calls.map(lambda c: call_command(c, chosen, target=target))
    wrapped = None if model is None else _CallModel(model, chosen, target)
    return cluster_test(
        factory, commands, model=wrapped, close=close or CallStateMachine.close, **options
    )
