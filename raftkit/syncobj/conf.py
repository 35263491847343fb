"""SyncObjConf: PySyncObj's configuration object, mapped onto raftkit.

PySyncObj programs build ``SyncObjConf(password=..., autoTick=False, ...)``
with camelCase names; this class accepts the same names (so switching is a
change of imports) and translates them into a ``NodeConfig`` plus builder
options. Every name falls in one of four groups, listed by ``options()``:

* mapped: changes raftkit's behaviour the way it changed PySyncObj's;
* transport: handed to the default TCP transport when it supports it;
* accepted: kept for compatibility but without effect (yet);
* unsupported: accepted, with a warning, because silently ignoring them
  would mislead (PySyncObj's dump hooks ``deserializer``,
  ``serializeChecker``).

Memory or disk is one setting, as in PySyncObj: ``journalFile`` (or
raftkit's ``dataDir``) names a *directory* where the node keeps its Raft
log (``<dir>/log``, LMDB) and its snapshots (``<dir>/snapshots``);
``fullDumpFile`` alone does the same (raftkit never keeps snapshots on disk
without the log, which would forget the node's term and vote). Without
them, everything lives in memory.

``NodeConfig``'s own snake_case field names are accepted too and win over
their camelCase counterpart (``SyncObjConf(command_timeout=5)``).
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raftkit.runtime.config import NodeConfig
from raftkit.serializers import get_serializer
from raftkit.serializers.base import Serializer

__all__ = ["HAS_CRYPTO", "SyncObjConf", "_RAFT_STATE"]


@dataclass(frozen=True)
class _Option:
    default: Any
    group: str  # mapped | transport | accepted | unsupported
    doc: str


_DUMP_HOOKS = (
    "not supported: raftkit writes snapshots through the state machine (write_snapshot / restore_from) "
    "and the configured serializer"
)

_OPTIONS: dict[str, _Option] = {
    # -- mapped ------------------------------------------------------------------
    "password": _Option(None, "mapped", "encrypt and authenticate links (EncryptedTcpTransport)"),
    "autoTick": _Option(
        True, "mapped", "False: drive the node with doTick()/on_tick(), or run it in your loop with astart()"
    ),
    "autoTickPeriod": _Option(0.05, "mapped", "NodeConfig.tick_interval"),
    "raftMinTimeout": _Option(0.4, "mapped", "NodeConfig.election_timeout_min"),
    "raftMaxTimeout": _Option(
        1.4, "mapped", "NodeConfig.election_timeout_max"
    ),
    "appendEntriesPeriod": _Option(0.1, "mapped", "NodeConfig.heartbeat_interval"),
    "commandsQueueSize": _Option(100_000, "mapped", "NodeConfig.commands_queue_size"),
    "logCompactionMinEntries": _Option(
        None, "mapped",
        "NodeConfig.log_compaction_min_entries; unset, raftkit's default applies (100,000 entries, or 64 MiB "
        "of log, or 300 s): PySyncObj's 5,000 made a node at 10,000 calls/s snapshot twice a second",
    ),
    "logCompactionMinTime": _Option(
        300, "mapped", "NodeConfig.log_compaction_min_time: snapshot after this age if entries are new"
    ),
    "dataDir": _Option(None, "mapped", "NodeConfig.data_dir: keep the log and snapshots in this directory"),
    "journalFile": _Option(
        None, "mapped", "NodeConfig.data_dir (a directory: <dir>/log, <dir>/snapshots) unless dataDir is set"
    ),
    "fullDumpFile": _Option(
        None, "mapped", "NodeConfig.data_dir when neither dataDir nor journalFile is set (log kept there too)"
    ),
    "flushJournal": _Option(
        None, "mapped", "False: NodeConfig.durability='no-sync' (unsafe on power loss); default fsyncs"
    ),
    "useFork": _Option(True, "mapped", "False: NodeConfig.snapshot_mode='thread' instead of forking"),
    "commandsWaitLeader": _Option(
        True, "mapped", "False: a call made while no leader is known fails at once (MISSING_LEADER)"
    ),
    "bindAddress": _Option(None, "mapped", "listen here instead of on the node's own address"),
    "onReady": _Option(None, "mapped", "NodeConfig.on_ready: called once the node first knows a leader"),
    "onStateChanged": _Option(
        None, "mapped", "onStateChanged(old, new) with PySyncObj's states: 0 follower, 1 candidate, 2 leader"
    ),
    "serializer": _Option(
        None, "mapped", "a raftkit Serializer or its name ('msgpack' default, 'json', 'pickle')"
    ),
    # -- given to the transport when it accepts them -------------------------------------
    "connectionRetryTime": _Option(5.0, "transport", "longest wait between reconnections (backoff_max)"),
    "connectionTimeout": _Option(3.5, "transport", "idle_timeout, for transports that take it"),
    "sendBufferSize": _Option(2**16, "transport", "send_buffer_size, for transports that take it"),
    "recvBufferSize": _Option(2**16, "transport", "recv_buffer_size, for transports that take it"),
    # -- accepted for compatibility, no effect ---------------------------------------------
    "logCompactionSplit": _Option(False, "accepted", "not used"),
    "logCompactionBatchSize": _Option(2**16, "accepted", "NodeConfig.snapshot_chunk_size sizes chunks"),
    "appendEntriesUseBatch": _Option(True, "accepted", "raftkit always batches"),
    "appendEntriesBatchSizeBytes": _Option(2**16, "accepted", "NodeConfig.max_bytes_per_msg sizes batches"),
    "dnsCacheTime": _Option(600.0, "accepted", "not used"),
    "dnsFailCacheTime": _Option(30.0, "accepted", "not used"),
    "bindRetryTime": _Option(1.0, "transport", "delay step between attempts to bind (bind_retry_delay)"),
    "maxBindRetries": _Option(None, "transport", "attempts to bind the port after the first (bind_retries)"),
    "pollerType": _Option("auto", "accepted", "not used: raftkit runs on asyncio"),
    "dynamicMembershipChange": _Option(
        False, "mapped",
        "membership changes are always available; False (PySyncObj's static membership) also sets "
        "NodeConfig.members_from_start: a node restarted on a new address with its data takes the members it "
        "is started with",
    ),
    "leaderFallbackTimeout": _Option(
        None, "mapped",
        "NodeConfig.leader_fallback_timeout: a leader that hears from no majority for this long steps down; "
        "unset, one election timeout (PySyncObj's default was 30 s); can be changed on a running node",
    ),
    "onCodeVersionChanged": _Option(None, "mapped", "called (old, new) when a node applies a version switch"),
    "preferredAddrType": _Option(
        None, "transport", "'ipv4' or 'ipv6': the family to dial when a name has both (prefer_family)"
    ),
    # -- accepted with a warning -------------------------------------------------------------
    "deserializer": _Option(None, "unsupported", _DUMP_HOOKS),
    "serializeChecker": _Option(None, "unsupported", _DUMP_HOOKS),
}

_NODE_FIELDS = {f.name for f in dataclasses.fields(NodeConfig)}
_VALID = frozenset(_OPTIONS) | _NODE_FIELDS

# PySyncObj's socket knobs, as the keyword a transport would take. The TCP
# transports take backoff_max; connectionTimeout (PySyncObj's dead-link
# timeout, not a connect timeout) and the buffer sizes have no counterpart
# there yet and are dropped by the builder.
_TRANSPORT_NAMES = {
    "connectionRetryTime": "backoff_max",
    "connectionTimeout": "idle_timeout",
    "bindRetryTime": "bind_retry_delay",
    "maxBindRetries": "bind_retries",
    "preferredAddrType": "prefer_family",
    "sendBufferSize": "send_buffer_size",
    "recvBufferSize": "recv_buffer_size",
}

HAS_CRYPTO = True  # PySyncObj's flag: raftkit always has ``cryptography`` (a dependency)


class _RAFT_STATE:  # noqa: N801 - PySyncObj's name, as its users import it
    """PySyncObj's state numbers (``getStatus()["state"]``, ``onStateChanged``)."""

    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2


# PySyncObj's _RAFT_STATE values, by raftkit role name.
_PYSYNCOBJ_STATE = {"follower": 0, "pre-candidate": 1, "candidate": 1, "leader": 2}


def pysyncobj_state(role: str) -> int:
    """A raftkit role name as PySyncObj's state number (0, 1 or 2)."""
    return _PYSYNCOBJ_STATE[role]


class SyncObjConf:
    """Settings of a ``SyncObj``, under PySyncObj's names (see the module
    docstring). Unknown names raise TypeError listing the valid ones;
    attributes can also be set after construction, as in PySyncObj."""

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - _VALID)
        if unknown:
            raise TypeError(
                f"SyncObjConf got unknown option(s) {', '.join(unknown)}; valid options are: "
                f"{', '.join(sorted(_OPTIONS))}, or NodeConfig fields: {', '.join(sorted(_NODE_FIELDS))}"
            )
        for name, option in _OPTIONS.items():
            object.__setattr__(self, name, option.default)
        object.__setattr__(self, "_node_overrides", {})
        for name, value in kwargs.items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _NODE_FIELDS:
            self._node_overrides[name] = value
            return
        option = _OPTIONS.get(name)
        if option is None:
            raise AttributeError(
                f"SyncObjConf has no option {name!r}; valid options are: {', '.join(sorted(_VALID))}"
            )
        if option.group == "unsupported" and value is not None:
            warnings.warn(
                f"SyncObjConf.{name} is {option.doc}; it is ignored",
                UserWarning,
                stacklevel=3,
            )
        if name == "serializer":
            _check_serializer(value)
        watchers = self.__dict__.get("_watchers", [])
        watchers[:] = [w for w in watchers if w() is not None]  # objects gone since
        for watcher in watchers:
            changed = watcher()
            if changed is not None:
                changed(name, value)  # first: a value the running node refuses is not kept either
        object.__setattr__(self, name, value)

    def watch(self, changed: Callable[[str, Any], None]) -> None:
        """Call ``changed(name, value)`` whenever an option is set from now
        on: a running SyncObj applies the ones it can change live
        (``leaderFallbackTimeout``), as PySyncObj reads its conf live. A
        bound method is held weakly: a conf shared by many objects does not
        keep them alive."""
        ref = weakref.WeakMethod(changed) if inspect.ismethod(changed) else (lambda: changed)
        self.__dict__.setdefault("_watchers", []).append(ref)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not set as attributes: NodeConfig fields.
        if name in _NODE_FIELDS:
            overrides = self.__dict__.get("_node_overrides", {})
            if name in overrides:
                return overrides[name]
            return getattr(NodeConfig, name, None)
        raise AttributeError(f"SyncObjConf has no option {name!r}")

    def __repr__(self) -> str:
        changed = {n: getattr(self, n) for n, o in _OPTIONS.items() if getattr(self, n) != o.default}
        changed.update(self._node_overrides)
        return f"SyncObjConf({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    @staticmethod
    def options() -> dict[str, tuple[Any, str, str]]:
        """Every camelCase option: ``name -> (default, group, what it does)``."""
        return {name: (o.default, o.group, o.doc) for name, o in _OPTIONS.items()}

    # -- translation ---------------------------------------------------------------

    def node_config(self) -> NodeConfig:
        """The NodeConfig these settings describe (raises ValueError when
        they are inconsistent, as PySyncObj's ``validate`` would)."""
        fields: dict[str, Any] = {
            "tick_interval": self.autoTickPeriod,
            "election_timeout_min": self.raftMinTimeout,
            "election_timeout_max": self.raftMaxTimeout,
            "heartbeat_interval": self.appendEntriesPeriod,
            "commands_queue_size": self.commandsQueueSize,
            "log_compaction_min_time": self.logCompactionMinTime,
            "data_dir": self.data_directory(),
            "durability": "no-sync" if self.flushJournal is False else "sync",
            "snapshot_mode": "auto" if self.useFork else "thread",
            "on_ready": self.onReady,
            "on_state_changed": _pysyncobj_callback(self.onStateChanged),
            "members_from_start": not self.dynamicMembershipChange,
            "leader_fallback_timeout": self.leaderFallbackTimeout,
        }
        if self.logCompactionMinEntries is not None:
            fields["log_compaction_min_entries"] = self.logCompactionMinEntries
        fields.update(self._node_overrides)
        return NodeConfig(**fields)

    def data_directory(self) -> str | None:
        """Where the node keeps its state (None: in memory): ``dataDir``,
        else ``journalFile``, else ``fullDumpFile``, each taken as a
        directory path."""
        for value in (self.dataDir, self.journalFile, self.fullDumpFile):
            if value is not None:
                return str(value)
        return None

    def validate(self) -> None:
        """Raise ValueError if the settings cannot work together."""
        self.node_config()
        self.resolved_serializer()

    def resolved_serializer(self) -> Serializer:
        """The serializer instance for commands and snapshots."""
        value = self.serializer
        if value is None:
            return get_serializer("msgpack")
        if isinstance(value, str):
            return get_serializer(value)
        checked: Serializer = value  # checked when set
        return checked

    def transport_hints(self) -> dict[str, Any]:
        """Settings the default transport may take, in snake_case; those
        still at PySyncObj's default are left out."""
        return {
            snake: getattr(self, camel)
            for camel, snake in _TRANSPORT_NAMES.items()
            if getattr(self, camel) != _OPTIONS[camel].default
        }


def _check_serializer(value: Any) -> None:
    if value is None or isinstance(value, (str, Serializer)):
        if isinstance(value, str):
            get_serializer(value)  # ValueError naming the built-in ones
        return
    if callable(value):
        raise TypeError(
            "SyncObjConf.serializer takes a raftkit Serializer or its name ('msgpack', 'json', "
            "'pickle'); PySyncObj's serializer(fileName, data) dump hook is "
            f"{_DUMP_HOOKS}"
        )
    raise TypeError(f"SyncObjConf.serializer must be a Serializer or a name, got {type(value).__name__}")


def _pysyncobj_callback(fn: Callable[[int, int], Any] | None) -> Callable[[str, str], None] | None:
    """Translate the node's (old role, new role) names into PySyncObj's
    numbers, skipping changes that PySyncObj would not see (pre-candidate
    to candidate)."""
    if fn is None:
        return None

    def on_state_changed(old: str, new: str) -> None:
        a, b = _PYSYNCOBJ_STATE[old], _PYSYNCOBJ_STATE[new]
        if a != b:
            fn(a, b)

    return on_state_changed
