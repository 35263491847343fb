"""NodeBuilder composition and refusals; SyncObjConf's PySyncObj names."""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest

from raftkit import (
    BuildError,
    JsonSerializer,
    NodeBuilder,
    NodeConfig,
    PickleSerializer,
    Serializer,
    SyncObj,
    SyncObjConf,
    replicated,
)
from raftkit.builder import _accepted
from raftkit.core.types import Message, NodeId
from raftkit.storage.memory import MemoryLogStore
from raftkit.storage.memory_snapshotter import MemorySnapshotter
from raftkit.testing.cluster import LocalCluster, fast_conf, wait_until
from raftkit.testing.kv import KeyValueStateMachine, set_command
from raftkit.transports.base import InboundHandler, Transport
from raftkit.transports.memory import MemoryNetwork, MemoryTransport

PICKLE_REFUSAL = (
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


def builder(node_id: str = "a", serializer: Serializer | None = None) -> NodeBuilder:
    """A builder for a key-value node; with ``serializer``, its state
    machine declares that serializer and the builder is given it."""
    if serializer is None:
        return NodeBuilder(node_id).state_machine(KeyValueStateMachine())
    sm = KeyValueStateMachine()
    sm.serializer = serializer  # declared: the builder's serializer() must name the one it uses
    return NodeBuilder(node_id).state_machine(sm).serializer(serializer)


# -- security ---------------------------------------------------------------------------


def test_pickle_is_refused_over_an_unauthenticated_transport() -> None:
    b = builder(serializer=PickleSerializer()).partners(["b", "c"]).transport(PlainTransport())
    with pytest.raises(BuildError, match=PICKLE_REFUSAL):
        b.build()


def test_pickle_is_refused_over_the_default_plain_tcp() -> None:
    with pytest.raises(BuildError, match=PICKLE_REFUSAL):
        builder("127.0.0.1:4321", PickleSerializer()).partners([]).build()
    with pytest.raises(BuildError, match=PICKLE_REFUSAL):
        SyncObj("127.0.0.1:4321", ["127.0.0.1:4322"], SyncObjConf(serializer="pickle"))


def test_pickle_is_allowed_over_an_authenticated_link() -> None:
    node = builder(serializer=PickleSerializer()).partners(["b"]).transport(
        MemoryTransport(MemoryNetwork())
    ).build()
    assert node.transport.authenticated
    if importlib.util.find_spec("raftkit.transports.encrypted") is not None:
        node = builder("127.0.0.1:0", PickleSerializer()).partners([]).password("pw").build()
        assert type(node.transport).__name__ == "EncryptedTcpTransport" and node.transport.authenticated


def test_safe_serializers_go_over_anything() -> None:
    node = builder(serializer=JsonSerializer()).partners([]).transport(PlainTransport()).build()
    assert node.peers == {"a": "a"}


@pytest.mark.skipif(importlib.util.find_spec("raftkit.transports.tcp") is None, reason="no TCP transport")
def test_a_serializer_the_state_machine_does_not_declare_is_refused() -> None:
    """serializer() changes nothing a plain StateMachine sees (it gets raw
    bytes), so giving one it does not use is a mistake, not a no-op."""
    b = builder().partners([]).serializer(JsonSerializer()).transport(PlainTransport())
    with pytest.raises(BuildError, match=r"KeyValueStateMachine declares no serializer.*raw bytes"):
        b.build()
    sm = KeyValueStateMachine()
    sm.serializer = JsonSerializer()
    b = NodeBuilder("a").state_machine(sm).partners([]).serializer(PickleSerializer())
    with pytest.raises(BuildError, match=r"serializer\(PickleSerializer\) but KeyValueStateMachine decodes "
                       r"with its own JsonSerializer"):
        b.transport(MemoryTransport(MemoryNetwork())).build()


def test_without_serializer_the_builder_takes_the_state_machines() -> None:
    sm = KeyValueStateMachine()
    sm.serializer = JsonSerializer()
    b = NodeBuilder("a").state_machine(sm).partners([])
    assert isinstance(b.chosen_serializer, JsonSerializer)
    b.transport(PlainTransport()).build()


@pytest.mark.skipif(importlib.util.find_spec("raftkit.transports.tcp") is None, reason="no TCP transport")
def test_the_default_transport_is_tcp_bound_to_the_nodes_address() -> None:
    node = builder("127.0.0.1:0").partners(["127.0.0.1:1"]).build()
    assert type(node.transport).__name__ == "TcpTransport"
    assert not node.transport.authenticated
    # PySyncObj's socket knobs reach it where it has a counterpart, and only there.
    node = builder("127.0.0.1:0").partners([]).transport_hints(backoff_max=1.5, idle_timeout=3.0).build()
    assert node.transport.options.backoff_max == 1.5


# -- impossible combinations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: builder().peers(["b", "c"]), r"this node \('a'\) is not in peers"),
        (lambda: builder().peers({"a": "x", "b": "y"}), "gives this node the address 'x'"),
        (lambda: builder().partners(["b", "b"]), "duplicate peer 'b'"),
        (lambda: builder().peers({"a": "a", "b": "h:1", "c": "h:1"}), "duplicate peer address 'h:1'"),
        (lambda: builder().partners(["a", "b"]), "partners lists this node itself"),
        (lambda: builder().partners("b"), "not one string"),
        (lambda: NodeBuilder(""), "non-empty str"),
        (lambda: builder().password(""), "non-empty"),
    ],
)
def test_bad_clusters_are_refused_when_given(make: Any, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        make()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: NodeBuilder("a").partners([]), "no state machine"),
        (lambda: builder(), "no cluster given"),
        (
            lambda: builder().partners([]).transport(PlainTransport()).password("pw"),
            r"choose one way to reach the peers, not transport\(\) and password\(\)",
        ),
        (lambda: builder().partners([]).password("pw").tls(cafile="x"), r"not password\(\) and tls\(\)"),
        (lambda: builder().partners([]).transport(PlainTransport()).bind("0.0.0.0:1"), "default transport"),
    ],
)
def test_incomplete_or_contradictory_builds_are_refused(make: Any, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        make().build()


def test_wrong_plug_in_types_are_refused() -> None:
    with pytest.raises(TypeError, match="must be a Serializer"):
        builder().serializer("msgpack")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a NodeConfig"):
        builder().config({})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a StateMachine"):
        NodeBuilder("a").state_machine(object())  # type: ignore[arg-type]


def test_a_builder_builds_once_and_uses_the_given_plug_ins() -> None:
    store, snaps, config = MemoryLogStore(), MemorySnapshotter(), NodeConfig(commands_queue_size=5)
    b = (
        builder()
        .peers({"a": "a", "b": "b"})
        .log_store(store)
        .snapshotter(snaps)
        .config(config)
        .transport(PlainTransport())
    )
    node = b.build()
    assert (node.log_store, node.snapshotter, node.config) == (store, snaps, config)
    with pytest.raises(BuildError, match="already built"):
        b.build()


def test_transport_hints_go_only_where_they_are_accepted() -> None:
    class Takes:
        def __init__(self, bind: str, connection_timeout: float = 1.0) -> None: ...

    class TakesAll:
        def __init__(self, bind: str, **kw: Any) -> None: ...

    hints = {"connection_timeout": 2.0, "send_buffer_size": 10}
    assert _accepted(Takes, hints, exclude={}) == {"connection_timeout": 2.0}
    assert _accepted(TakesAll, hints, exclude={"send_buffer_size": 1}) == {"connection_timeout": 2.0}


def test_a_built_node_replicates_a_custom_state_machine() -> None:
    with LocalCluster(3) as cluster:
        nodes = [cluster.add_node(a, KeyValueStateMachine()) for a in cluster.addresses]
        cluster.wait_leader()
        assert nodes[1].propose(set_command("k", 1)) is None  # previous value
        assert nodes[2].propose(set_command("k", 2)) == 1
        wait_until(lambda: all(n.state_machine.data == {"k": 2} for n in nodes), what="k=2 everywhere")


# -- SyncObjConf ----------------------------------------------------------------------------


def test_unknown_options_list_the_valid_ones() -> None:
    listing = r"unknown option\(s\) raftMinTimout; valid options are: .*raftMinTimeout"
    with pytest.raises(TypeError, match=listing):
        SyncObjConf(raftMinTimout=1)
    conf = SyncObjConf()
    with pytest.raises(AttributeError, match="no option 'pasword'"):
        conf.pasword = "x"


def test_camel_case_options_map_onto_node_config() -> None:
    conf = SyncObjConf(
        autoTickPeriod=0.02,
        raftMinTimeout=0.5,
        raftMaxTimeout=1.0,
        appendEntriesPeriod=0.05,
        commandsQueueSize=7,
        logCompactionMinEntries=50,
        logCompactionMinTime=10,  # accepted, no effect
        dynamicMembershipChange=True,  # accepted, no effect
        connectionRetryTime=2.0,
    )
    c = conf.node_config()
    assert (c.tick_interval, c.election_timeout_min, c.election_timeout_max) == (0.02, 0.5, 1.0)
    assert (c.heartbeat_interval, c.commands_queue_size, c.log_compaction_min_entries) == (0.05, 7, 50)
    assert conf.transport_hints() == {"backoff_max": 2.0}
    conf.commandsQueueSize = 9  # PySyncObj style: set after construction
    conf.command_timeout = 3.0  # NodeConfig's own names work too, and win
    assert conf.node_config().commands_queue_size == 9 and conf.node_config().command_timeout == 3.0
    assert SyncObjConf(raftMinTimeout=0.5, election_timeout_min=0.3).node_config().election_timeout_min == 0.3
    assert "commandsQueueSize=9" in repr(conf)


def test_inconsistent_settings_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="heartbeat_interval"):
        SyncObj("a", [], SyncObjConf(appendEntriesPeriod=1.0), transport=PlainTransport())


def test_durable_state_options_map_to_a_data_directory_and_dump_hooks_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mapped now: no warning
        assert SyncObjConf(journalFile="j").node_config().data_dir == "j"
        assert SyncObjConf(fullDumpFile="d").node_config().data_dir == "d"
        assert SyncObjConf(dataDir="x", journalFile="j").node_config().data_dir == "x"
        assert SyncObjConf(fullDumpFile=None, logCompactionMinTime=5).node_config().data_dir is None
    with pytest.warns(UserWarning, match="deserializer is not supported: raftkit writes snapshots"):
        SyncObjConf(deserializer=lambda name: None)


def test_serializer_option_takes_raftkit_serializers_not_dump_hooks() -> None:
    assert isinstance(SyncObjConf(serializer="json").resolved_serializer(), JsonSerializer)
    with pytest.raises(ValueError, match="unknown serializer 'yaml'"):
        SyncObjConf(serializer="yaml")
    with pytest.raises(TypeError, match="dump hook"):
        SyncObjConf(serializer=lambda file_name, data: None)


class Flag(SyncObj):
    @replicated
    def set(self, value: bool) -> None:
        self.value = value


def test_on_ready_and_on_state_changed_use_pysyncobjs_values() -> None:
    changes: list[tuple[int, int]] = []
    ready: list[bool] = []
    conf = fast_conf(
        onStateChanged=lambda old, new: changes.append((old, new)), onReady=lambda: ready.append(True)
    )
    obj = Flag("solo", [], conf, transport=MemoryTransport(MemoryNetwork()))
    try:
        obj.set(True, sync=True)
        assert obj.value is True and ready == [True]
        # Roles as PySyncObj's numbers (0 follower, 1 candidate, 2 leader), never a non-change.
        assert changes[0][0] == 0 and changes[-1][1] == 2
        assert all({o, n} <= {0, 1, 2} and o != n for o, n in changes)
    finally:
        obj.destroy()


def test_pysyncobj_bind_and_address_family_options_reach_the_tcp_transport() -> None:
    conf = SyncObjConf(maxBindRetries=2, bindRetryTime=0.5, preferredAddrType="ipv6")
    assert conf.transport_hints() == {"bind_retry_delay": 0.5, "bind_retries": 2, "prefer_family": "ipv6"}
    node = builder("127.0.0.1:0").partners([]).transport_hints(**conf.transport_hints()).build()
    options = node.transport.options
    assert (options.bind_retries, options.bind_retry_delay, options.prefer_family) == (2, 0.5, "ipv6")
