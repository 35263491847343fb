"""NodeBuilder: compose a Node from plug-ins, refusing combinations that
cannot work or would be unsafe, with a message that says what to change.

Defaults: ``MemoryLogStore``, ``MemorySnapshotter``, ``MsgpackSerializer``
and a ``TcpTransport`` bound to the node's address (an
``EncryptedTcpTransport`` once a password is set). The socket transports
are imported only when the builder needs one, so in-process setups (the
memory transport) never load them.

With ``NodeConfig.data_dir`` set (or ``data_dir(path)``), the node keeps
its state on disk instead: an ``LmdbLogStore`` in ``<data_dir>/log`` and a
``FileSnapshotter`` in ``<data_dir>/snapshots`` (stores given explicitly
win). How snapshots are captured (fork, thread, inline) follows
``NodeConfig.snapshot_mode`` and the state machine's ``fork_safe``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from raftkit.core.types import NodeId
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.node import Node
from raftkit.runtime.pickle_rule import check_pickle_rule, unsafe_serializers
from raftkit.runtime.snapshots import choose_capture
from raftkit.serializers.base import Serializer
from raftkit.serializers.msgpack_serializer import MsgpackSerializer
from raftkit.state_machines.base import StateMachine
from raftkit.storage.log_store import LogStore
from raftkit.storage.memory import MemoryLogStore
from raftkit.storage.memory_snapshotter import MemorySnapshotter
from raftkit.storage.snapshotter import Snapshotter
from raftkit.transports.base import Transport
from raftkit.transports.memory import MemoryTransport, call_now

__all__ = ["BuildError", "NodeBuilder", "TransportFactory", "default_transport_factory"]

TransportFactory = Callable[[NodeId, str], Transport]
"""``factory(node_id, address) -> Transport``: makes a node's default transport."""

_default_factory: ContextVar[TransportFactory | None] = ContextVar("raftkit_default_transport", default=None)

class BuildError(ValueError):
    """The builder was asked for a node that cannot work (or would be unsafe);
    the message says what to change."""


@contextlib.contextmanager
def default_transport_factory(factory: TransportFactory) -> Iterator[None]:
    """Within the block, nodes built without an explicit transport (and
    without a password or TLS) get ``factory(node_id, address)`` instead of
    a TcpTransport. For tests: it lets code written for TCP (a PySyncObj
    program) run unchanged over an in-process network."""
    token = _default_factory.set(factory)
    try:
        yield
    finally:
        _default_factory.reset(token)


class NodeBuilder:
    """Fluent composition of one node::

        node = (
            NodeBuilder("10.0.0.1:4321")
            .partners(["10.0.0.2:4321", "10.0.0.3:4321"])
            .state_machine(my_state_machine)
            .password("s3cret")
            .build()
        )

    Node ids are addresses unless ``peers`` maps ids to addresses. Every
    setter returns the builder; ``build()`` validates everything at once.
    """

    def __init__(self, node_id: NodeId, address: str | None = None) -> None:
        if not isinstance(node_id, str) or not node_id:
            raise BuildError(f"the node id must be a non-empty str, got {node_id!r}")
        self._id = node_id
        self._address = address if address is not None else node_id
        self._peers: dict[NodeId, str] | None = None
        self._config: NodeConfig | None = None
        self._log_store: LogStore | None = None
        self._snapshotter: Snapshotter | None = None
        self._transport: Transport | None = None
        self._password: str | None = None
        self._cluster_id: str | None = None
        self._tls: dict[str, Any] | None = None
        self._bind: str | None = None
        self._transport_options: dict[str, Any] = {}
        self._transport_hints: dict[str, Any] = {}
        self._serializer: Serializer | None = None  # set by serializer(): checked against the state machine's
        self._state_machine: StateMachine | None = None
        self._data_dir: tuple[str | None] | None = None  # set by data_dir(): wins over the config's
        self._built = False

    # -- cluster ------------------------------------------------------------------

    def peers(self, peers: Mapping[NodeId, str] | Iterable[str]) -> NodeBuilder:
        """The whole cluster, this node included: a mapping of node id to
        address, or a list of addresses (each address is then the id)."""
        self._peers = self._collect(peers, whole_cluster=True)
        return self

    def partners(self, partners: Mapping[NodeId, str] | Iterable[str]) -> NodeBuilder:
        """The *other* nodes (PySyncObj's ``otherNodes``); this node is added."""
        others = self._collect(partners, whole_cluster=False)
        self._peers = {self._id: self._address, **others}
        return self

    def _collect(self, peers: Mapping[NodeId, str] | Iterable[str], *, whole_cluster: bool) -> dict[str, str]:
        if isinstance(peers, str):
            raise BuildError(f"give a list of addresses, not one string ({peers!r})")
        items = list(peers.items()) if isinstance(peers, Mapping) else [(p, p) for p in peers]
        result: dict[str, str] = {}
        seen_addresses: dict[str, str] = {}
        for node_id, address in items:
            if not isinstance(node_id, str) or not node_id or not isinstance(address, str) or not address:
                raise BuildError(
                    f"peer ids and addresses must be non-empty str, got {node_id!r}: {address!r}"
                )
            if node_id in result:
                raise BuildError(f"duplicate peer {node_id!r}: each node must be listed once")
            if address in seen_addresses:
                raise BuildError(
                    f"duplicate peer address {address!r} (for {seen_addresses[address]!r} and {node_id!r})"
                )
            if not whole_cluster and (node_id == self._id or address == self._address):
                raise BuildError(
                    f"partners lists this node itself ({node_id!r}); give only the other nodes, "
                    "or use peers() for the whole cluster"
                )
            result[node_id] = address
            seen_addresses[address] = node_id
        if whole_cluster:
            if self._id not in result:
                raise BuildError(
                    f"this node ({self._id!r}) is not in peers {sorted(result)}; peers() takes the "
                    "whole cluster including this node (use partners() for the others only)"
                )
            if result[self._id] != self._address:
                raise BuildError(
                    f"peers gives this node the address {result[self._id]!r} but it was built "
                    f"with {self._address!r}"
                )
        return result

    # -- plug-ins -------------------------------------------------------------------

    def config(self, config: NodeConfig) -> NodeBuilder:
        if not isinstance(config, NodeConfig):
            raise TypeError(f"config must be a NodeConfig, got {type(config).__name__}")
        self._config = config
        return self

    def log_store(self, store: LogStore) -> NodeBuilder:
        if not isinstance(store, LogStore):
            raise TypeError(f"log_store must be a LogStore, got {type(store).__name__}")
        self._log_store = store
        return self

    def snapshotter(self, snapshotter: Snapshotter) -> NodeBuilder:
        if not isinstance(snapshotter, Snapshotter):
            raise TypeError(f"snapshotter must be a Snapshotter, got {type(snapshotter).__name__}")
        self._snapshotter = snapshotter
        return self

    def data_dir(self, path: str | Path | None) -> NodeBuilder:
        """Keep the log and snapshots on disk under ``path`` (``None``: in
        memory). The same as ``NodeConfig(data_dir=...)``; this one wins."""
        self._data_dir = (None if path is None else str(path),)
        return self

    def serializer(self, serializer: Serializer) -> NodeBuilder:
        """The serializer the state machine decodes commands and snapshots
        with. The node never encodes or decodes a command (a
        ``StateMachine`` receives raw bytes), so this sets nothing: it names
        the one the state machine declares (its ``serializer`` attribute),
        and the builder checks it against the transport (pickle needs an
        authenticated link). ``build()`` refuses one the state machine does
        not declare rather than ignore it."""
        if not isinstance(serializer, Serializer):
            raise TypeError(f"serializer must be a Serializer, got {type(serializer).__name__}")
        self._serializer = serializer
        return self

    def state_machine(self, state_machine: StateMachine) -> NodeBuilder:
        if not isinstance(state_machine, StateMachine):
            raise TypeError(f"state_machine must be a StateMachine, got {type(state_machine).__name__}")
        self._state_machine = state_machine
        return self

    # -- transport ------------------------------------------------------------------

    def transport(self, transport: Transport) -> NodeBuilder:
        """Use this transport instead of the default TCP one (e.g. a
        ``MemoryTransport``). It must not be started yet."""
        if not isinstance(transport, Transport):
            raise TypeError(f"transport must be a Transport, got {type(transport).__name__}")
        self._transport = transport
        return self

    def password(self, password: str, *, cluster_id: str | None = None) -> NodeBuilder:
        """Encrypt and authenticate every link with a shared password
        (``EncryptedTcpTransport``). ``cluster_id`` (else the config's
        ``cluster_id``) salts the password's key: give every cluster its own,
        the same on each of its nodes."""
        if not isinstance(password, str) or not password.strip():
            raise BuildError("the password must be a non-empty str")
        if cluster_id is not None and (not isinstance(cluster_id, str) or not cluster_id):
            raise BuildError("the cluster id must be a non-empty str")
        self._password = password
        self._cluster_id = cluster_id
        return self

    def tls(self, **options: Any) -> NodeBuilder:
        """Mutually authenticated TLS links (``TlsTransport``); ``options``
        are passed to its constructor (certificates, CA, ...)."""
        self._tls = dict(options)
        return self

    def bind(self, address: str) -> NodeBuilder:
        """Listen on ``address`` instead of the node's own (PySyncObj's
        ``bindAddress``: e.g. ``0.0.0.0:4321`` behind NAT)."""
        self._bind = address
        return self

    def transport_options(self, **options: Any) -> NodeBuilder:
        """Extra keyword arguments for the default transport's constructor."""
        self._transport_options.update(options)
        return self

    def transport_hints(self, **hints: Any) -> NodeBuilder:
        """Optional settings (``connection_timeout=...``) passed to the
        default transport only if its constructor takes them: PySyncObj's
        socket knobs, which not every transport has."""
        self._transport_hints.update(hints)
        return self

    # -- build ----------------------------------------------------------------------

    @property
    def node_id(self) -> NodeId:
        return self._id

    @property
    def chosen_serializer(self) -> Serializer:
        """The serializer given to ``serializer()``, else the one the state
        machine declares, else msgpack."""
        declared = getattr(self._state_machine, "serializer", None)
        if self._serializer is not None:
            return self._serializer
        return declared if isinstance(declared, Serializer) else MsgpackSerializer()

    def build(self) -> Node:
        """Check the combination and return the (not yet started) node."""
        if self._built:
            raise BuildError("this builder already built a node; plug-ins cannot be shared between nodes")
        if self._state_machine is None:
            raise BuildError("no state machine: call state_machine(...) before build()")
        if self._peers is None:
            raise BuildError(
                "no cluster given: call partners([...]) (the other nodes; [] for a single node) or peers(...)"
            )
        explicit = [
            name
            for name, value in (
                ("transport()", self._transport),
                ("password()", self._password),
                ("tls()", self._tls),
            )
            if value is not None
        ]
        if len(explicit) > 1:
            raise BuildError(f"choose one way to reach the peers, not {' and '.join(explicit)}")
        if self._transport is not None and (self._bind is not None or self._transport_options):
            raise BuildError("bind() and transport_options() configure the default transport; "
                             "configure your own transport object directly instead")
        self._check_security()
        self._check_serializer(self._state_machine)
        config = self._config or NodeConfig()
        if self._data_dir is not None:
            config = dataclasses.replace(config, data_dir=self._data_dir[0])
        transport = self._transport if self._transport is not None else self._default_transport()
        self._check_security(transport)
        opened: list[Any] = []  # stores this builder opened: closed again if the build fails
        try:
            log_store, snapshotter = self._stores(config, opened)
            try:
                capture = choose_capture(
                    config.snapshot_mode, self._state_machine, snapshotter, f"raftkit-snapshot-{self._id}"
                )
            except ValueError as exc:
                raise BuildError(str(exc)) from exc
            node = Node(
                self._id,
                self._peers,
                self._state_machine,
                log_store=log_store,
                snapshotter=snapshotter,
                transport=transport,
                config=config,
                snapshot_capture=capture,
            )
        except BaseException:
            for store in reversed(opened):
                with contextlib.suppress(Exception):
                    store.close()
            raise
        if (
            isinstance(transport, MemoryTransport)
            and transport.network.auto_deliver
            and transport.dispatcher is call_now
        ):
            # Deliveries must run on the receiving node's loop, not inside
            # the sender's send() on another node's thread.
            transport.dispatcher = node.dispatch
        self._built = True
        return node

    def _stores(self, config: NodeConfig, opened: list[Any]) -> tuple[LogStore, Snapshotter]:
        """The log store and snapshotter: the ones given, else on disk under
        ``config.data_dir``, else in memory."""
        log_store, snapshotter = self._log_store, self._snapshotter
        if config.data_dir is None:
            return (
                log_store if log_store is not None else MemoryLogStore(),
                snapshotter if snapshotter is not None else MemorySnapshotter(),
            )
        from raftkit.storage.file_snapshotter import FileSnapshotter
        from raftkit.storage.lmdb_log_store import LmdbLogStore

        root = Path(config.data_dir)
        if root.exists() and not root.is_dir():
            raise BuildError(
                f"data_dir {root} is a file: raftkit keeps a node's state in a directory (a PySyncObj "
                "journal or dump file cannot be read); give a new path"
            )
        if log_store is None:
            # Checked before opening anything: opening would create an empty log.
            snapshots_exist = any((root / "snapshots").glob("snap-*.snap"))
            if snapshots_exist and not (root / "log" / "data.mdb").exists():
                raise BuildError(
                    f"{root / 'snapshots'} holds snapshots but the log store {root / 'log'} is missing: "
                    "without it this node has forgotten its term and vote, and rejoining under the same "
                    "identity could elect a leader that lacks committed entries. Restore the log directory "
                    "from a backup, or move the whole data directory aside and let the node rejoin as a "
                    "new member"
                )
            log_store = LmdbLogStore(root / "log", durability=config.durability)  # type: ignore[arg-type]
            opened.append(log_store)
        if snapshotter is None:
            snapshotter = FileSnapshotter(root / "snapshots", cluster_id=config.cluster_id)
            opened.append(snapshotter)
        return log_store, snapshotter

    def _check_serializer(self, state_machine: StateMachine) -> None:
        """A serializer given to ``serializer()`` must be the one the state
        machine declares: nothing else would use it, and a user who set it
        expects commands to go through it."""
        given = self._serializer
        if given is None:
            return
        declared = getattr(state_machine, "serializer", None)
        machine = type(state_machine).__name__
        if declared is None:
            raise BuildError(
                f"serializer({type(given).__name__}) was given but {machine} declares no serializer: a "
                "StateMachine receives each command as the raw bytes proposed, and the node never encodes "
                "or decodes them, so this setting would change nothing. Encode and decode in your own code "
                f"with that serializer and declare it on the state machine (serializer = "
                f"{type(given).__name__}() as a class attribute: the builder checks it against the "
                "transport), or drop serializer(...)"
            )
        if type(declared) is not type(given):
            raise BuildError(
                f"serializer({type(given).__name__}) but {machine} decodes with its own "
                f"{type(declared).__name__} (its serializer attribute): give that one, "
                "or drop serializer(...)"
            )

    def _check_security(self, transport: Transport | None = None) -> None:
        """Refuse an unsafe serializer (this builder's, or the one the state
        machine declares) on a link anyone could write to (raftkit.runtime.pickle_rule)."""
        sources = (self._serializer, self._state_machine)
        if transport is None:
            # Decided before importing anything: the default transport is
            # plain TCP unless a password or TLS is set.
            if not unsafe_serializers(*sources):
                return
            if self._transport is not None or self._password is not None or self._tls is not None:
                return
            if _default_factory.get() is not None:
                return  # judged on the transport the factory makes
        check_pickle_rule(transport, *sources, error=BuildError)

    def _default_transport(self) -> Transport:
        options = dict(self._transport_options)
        options["bind"] = self._bind if self._bind is not None else self._address
        if self._password is not None:
            cls = _load("raftkit.transports.encrypted", "EncryptedTcpTransport")
            options["password"] = self._password
            if "salt" not in options and "cluster_id" not in options:  # the cluster's id salts the key
                options["cluster_id"] = self._cluster_id or (self._config and self._config.cluster_id)
        elif self._tls is not None:
            cls = _load("raftkit.transports.tls", "TlsTransport")
            options.update(self._tls)
        else:
            factory = _default_factory.get()
            if factory is not None:
                return factory(self._id, self._address)
            cls = _load("raftkit.transports.tcp", "TcpTransport")
        return cls(**options, **_accepted(cls, self._transport_hints, exclude=options))


def _accepted(cls: Callable[..., Any], hints: dict[str, Any], exclude: dict[str, Any]) -> dict[str, Any]:
    """The hints ``cls``'s constructor takes. A constructor that passes
    ``**kwargs`` on to its base class takes what the base takes; one whose
    ``**kwargs`` go nowhere we can see takes everything."""
    if not hints:
        return {}
    names: set[str] = set()
    for klass in inspect.getmro(cls) if inspect.isclass(cls) else (cls,):
        init = klass.__init__ if inspect.isclass(klass) else klass
        if init is object.__init__:
            break
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):
            return {}
        names.update(p.name for p in params.values() if p.kind is not inspect.Parameter.VAR_KEYWORD)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return {k: v for k, v in hints.items() if k in names and k not in exclude}
    return {k: v for k, v in hints.items() if k not in exclude}


def _load(module: str, name: str) -> Callable[..., Transport]:
    try:
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as exc:
        raise BuildError(
            f"{name} is not available ({exc}); pass a transport explicitly with transport(...)"
        ) from exc
