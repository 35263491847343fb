"""The pickle rule on every construction path: a node whose peer bytes would
be decoded by pickle (the builder's serializer, or the one its state machine
declares) is refused over a transport that is not authenticated, whether it
is made by NodeBuilder, by SyncObj or by calling Node(...) directly."""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest

from raftkit import BuildError, MsgpackSerializer, NodeBuilder, PickleSerializer, SyncObj, SyncObjConf
from raftkit.core.types import Message, NodeId
from raftkit.runtime.node import Node
from raftkit.state_machines.base import StateMachine
from raftkit.storage.memory import MemoryLogStore
from raftkit.storage.memory_snapshotter import MemorySnapshotter
from raftkit.transports.base import InboundHandler, Transport
from raftkit.transports.memory import MemoryNetwork, MemoryTransport

REFUSAL = (
    "over plain TCP would let anyone who can reach the port run code: "
    "set a password or TLS, or use the msgpack serializer"
)


class PlainTransport(Transport):
    """A transport that, like plain TCP, cannot tell who sent a frame."""

    authenticated = False

    def start(self, node_id: NodeId, handler: InboundHandler) -> None:
        pass

    def send(self, messages: Sequence[Message]) -> None:
        pass

    def send_snapshot(self, message: Message, chunks: Iterable[bytes]) -> None:
        pass

    def update_peers(self, peers: Mapping[NodeId, str]) -> None:
        pass

    def close(self) -> None:
        pass


class DictMachine(StateMachine):
    """Decodes commands and snapshots with its declared serializer."""

    serializer: Any = PickleSerializer()

    def __init__(self) -> None:
        self.d: dict[Any, Any] = {}

    def apply(self, command: bytes) -> Any:
        k, v = self.serializer.loads(command)
        self.d[k] = v

    def snapshot(self) -> bytes:
        return self.serializer.dumps(self.d)

    def restore(self, data: bytes) -> None:
        self.d = self.serializer.loads(data)


class PickleModuleMachine(DictMachine):
    serializer = pickle


class MsgpackMachine(DictMachine):
    serializer = MsgpackSerializer()


class NotASerializerMachine(DictMachine):
    serializer = "pickle, but only in the docs"  # not a serializer object: not judged


def _free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _node(state_machine: StateMachine, transport: Transport, node_id: str = "a") -> Node:
    return Node(
        node_id,
        {node_id: node_id},
        state_machine,
        log_store=MemoryLogStore(),
        snapshotter=MemorySnapshotter(),
        transport=transport,
    )


# -- NodeBuilder ----------------------------------------------------------------------------


def test_builder_refuses_a_state_machine_that_unpickles_over_an_unauthenticated_transport() -> None:
    b = NodeBuilder("a").partners([]).state_machine(DictMachine()).transport(PlainTransport())
    with pytest.raises(BuildError, match=REFUSAL) as info:
        b.build()
    assert "the state machine DictMachine" in str(info.value)
    assert "PlainTransport is not authenticated" in str(info.value)


def test_builder_refuses_it_over_the_default_plain_tcp_before_binding() -> None:
    address = _free_address()
    with pytest.raises(BuildError, match=REFUSAL):
        NodeBuilder(address).partners([]).state_machine(DictMachine()).build()
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:  # nothing was left bound to the node's address
        s.bind((host, int(port)))


def test_builder_refuses_a_state_machine_naming_the_pickle_module() -> None:
    with pytest.raises(BuildError, match=r"the pickle module, the serializer of the state machine"):
        NodeBuilder("a").partners([]).state_machine(PickleModuleMachine()).transport(PlainTransport()).build()


def test_builder_accepts_safe_or_undeclared_serializers_over_anything() -> None:
    for machine in (MsgpackMachine(), NotASerializerMachine()):
        node = NodeBuilder("a").partners([]).state_machine(machine).transport(PlainTransport()).build()
        assert node.state_machine is machine


def test_builder_accepts_an_unpickling_state_machine_over_an_authenticated_link() -> None:
    transport = MemoryTransport(MemoryNetwork())
    node = NodeBuilder("a").partners([]).state_machine(DictMachine()).transport(transport).build()
    assert node.transport.authenticated


# -- Node(...) built by hand ----------------------------------------------------------------------


@pytest.mark.parametrize("machine", [DictMachine, PickleModuleMachine])
def test_node_built_by_hand_refuses_unpickling_over_an_unauthenticated_transport(machine: type) -> None:
    with pytest.raises(ValueError, match=REFUSAL) as info:
        _node(machine(), PlainTransport())
    assert f"the state machine {machine.__name__}" in str(info.value)


def test_node_built_by_hand_refuses_unpickling_over_a_real_tcp_transport() -> None:
    from raftkit.transports.tcp import TcpTransport

    address = _free_address()
    with pytest.raises(ValueError, match=r"the transport TcpTransport is not authenticated"):
        _node(DictMachine(), TcpTransport(address), node_id=address)


def test_node_built_by_hand_accepts_safe_serializers_and_authenticated_links() -> None:
    assert _node(MsgpackMachine(), PlainTransport()).id == "a"
    assert _node(DictMachine(), MemoryTransport(MemoryNetwork())).id == "a"


# -- SyncObj --------------------------------------------------------------------------------------


def test_syncobj_with_pickle_over_an_explicit_unauthenticated_transport_is_refused() -> None:
    with pytest.raises(BuildError, match=REFUSAL):
        SyncObj("a", [], SyncObjConf(serializer="pickle", autoTick=False), transport=PlainTransport())


def test_syncobj_with_pickle_over_an_authenticated_transport_builds() -> None:
    obj = SyncObj(
        "a", [], SyncObjConf(serializer="pickle", autoTick=False), transport=MemoryTransport(MemoryNetwork())
    )
    obj.destroy()
