"""Plain data the Raft core consumes and produces.

Everything here is an immutable value (or a small mutable record owned by the
core) with no behaviour beyond sizing and validation, so drivers, stores,
codecs and tests can all share it without pulling in the protocol logic.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NodeId = str
"""A node's identity. Drivers usually use the ``host:port`` address."""

ENTRY_OVERHEAD = 16
"""Bytes charged per entry on top of its payload when sizing batches."""


class EntryKind(enum.IntEnum):
    NORMAL = 0  # an application command
    NOOP = 1  # the empty entry a new leader appends to commit its term
    CONFIG = 2  # a membership configuration (payload: encoded ConfState)
    BATCH = 3  # several commands of one proposer in one entry (raftkit.runtime.commands)


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""

    @property
    def size(self) -> int:
        return len(self.data) + ENTRY_OVERHEAD


def proposable(e: Entry) -> Entry:
    """An entry a proposer sent (a PROPOSE), as the leader appends it: a
    command or a batch of commands, never a membership change or a no-op."""
    kind = EntryKind.BATCH if e.kind is EntryKind.BATCH else EntryKind.NORMAL
    return Entry(0, 0, kind, e.data)


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on stable storage before any message of the same Ready
    leaves the node: the current term, the vote cast in it, the commit index."""

    term: int = 0
    vote: NodeId | None = None
    commit: int = 0


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state a driver may want to observe; never persisted."""

    leader: NodeId | None
    role: Role


@dataclass(frozen=True, slots=True)
class ConfState:
    """A cluster membership.

    ``voters_outgoing`` is non-empty only inside a joint configuration
    (Raft dissertation §4.3): decisions then need a majority of ``voters``
    *and* a majority of ``voters_outgoing``. Learners receive the log but
    never vote and never count towards a quorum.
    """

    voters: frozenset[NodeId] = frozenset()
    learners: frozenset[NodeId] = frozenset()
    voters_outgoing: frozenset[NodeId] = frozenset()
    # Where members listen, as sorted (id, address) pairs, so a node that
    # joins later or restores a snapshot can reach members added since it
    # was configured. Empty for ids that are themselves addresses.
    addresses: tuple[tuple[NodeId, str], ...] = ()

    @property
    def joint(self) -> bool:
        return bool(self.voters_outgoing)

    @property
    def members(self) -> frozenset[NodeId]:
        return self.voters | self.voters_outgoing | self.learners

    @property
    def all_voters(self) -> frozenset[NodeId]:
        return self.voters | self.voters_outgoing

    @property
    def address_book(self) -> dict[NodeId, str]:
        return dict(self.addresses)


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Identifies a snapshot: the last log index/term it covers and the
    membership in force at that index. The snapshot's bytes travel outside
    the core (the driver streams them); the core only tracks this."""

    index: int
    term: int
    conf: ConfState = field(default_factory=ConfState)


class MessageType(enum.IntEnum):
    APPEND = 1
    APPEND_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    PRE_VOTE = 5
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    TIMEOUT_NOW = 10
    READ_INDEX = 11  # follower -> leader: please confirm a read
    READ_INDEX_RESP = 12
    TRANSFER_LEADER = 13  # follower -> leader: hand leadership to the node named in ``context``
    PROPOSE = 14  # follower -> leader: append these commands (proposal forwarding)
    PROBE = 15  # a recovering node asks a member how much state it holds
    PROBE_RESP = 16
    REJOIN = 17  # recovering node -> leader: I restarted empty, let me count again
    CONF_CHANGE = 18  # any node -> leader: please make this membership change (``context``: JSON op)


COMMIT_NOTICE = b"commit"
"""An APPEND's ``context``: no reply wanted if it matches (see ``Message``)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft RPC. Field meaning depends on ``type`` (as in etcd-raft):

    APPEND: ``index``/``log_term`` locate the entry preceding ``entries``.
    APPEND_RESP: ``index`` is the follower's last matching index on success;
        on reject, ``index`` echoes the probed index and ``reject_hint`` /
        ``log_term`` tell the leader where to look next.
    VOTE / PRE_VOTE: ``index``/``log_term`` are the candidate's last entry;
        a PRE_VOTE carries the term the sender *would* campaign in.
    HEARTBEAT: ``commit`` is min(leader commit, follower match); ``context``
        carries the ReadIndex round being confirmed, if any.
    SNAPSHOT: ``snapshot`` is the metadata; the bytes travel beside it.
        ``index`` is their length in bytes, when the sending driver knows
        it (0 otherwise), so a receiver can refuse an oversized stream
        before it starts; the core leaves it 0.
    READ_INDEX / READ_INDEX_RESP: ``context`` identifies the read; the
        response's ``index`` is the index the read must wait for.
    PROPOSE: ``entries`` are commands (index and term 0) a follower forwards
        to its leader; a leader that cannot take them drops them.
    PROBE / PROBE_RESP: ``context`` is the prober's incarnation, echoed back;
        a response's ``commit`` is the responder's term and ``index`` its last
        log index. ``recovering`` says whether the sender is recovering. A
        response's ``reject_hint`` is 1 when the responder never held state
        (term 0, no entry, and its driver found no restart marker:
        ``RaftConfig.fresh``), else 0 (what older versions send: "may have").
    REJOIN: ``context`` is the recovering sender's incarnation.
    CONF_CHANGE: ``context`` is the requested change (see core.membership).

    ``recovering`` on an APPEND_RESP / HEARTBEAT_RESP marks a node that
    restarted without its state: leaders never count it toward a quorum.

    Request numbers, in fields these types leave unused (so peers of
    earlier releases, which ignore them, still interoperate): an APPEND /
    HEARTBEAT / SNAPSHOT carries the leader's request number in
    ``reject_hint`` (it grows for the life of the leader's process), and the
    APPEND_RESP / HEARTBEAT_RESP echoes it in ``commit`` (0: none, as from
    earlier releases, or in a reply telling a stale leader our term). A
    leader that learns a node lost its state drops every reply to a request
    sent before it knew (see ``Raft._accept_reply``). A recovering
    APPEND_RESP / HEARTBEAT_RESP carries the sender's incarnation in
    ``context`` (a recovering node confirms no read, so its HEARTBEAT_RESP
    does not echo the read's context).

    An APPEND without entries whose ``context`` is ``COMMIT_NOTICE`` only
    brings a follower in steady replication the new commit index; the
    leader already sent it every entry up to ``index``. A follower that
    accepts it sends no reply: the reply would repeat its answer to those
    earlier appends (a rejection is still sent). Earlier releases ignore
    the field and reply.
    """

    type: MessageType
    src: NodeId
    dst: NodeId
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    snapshot: SnapshotMeta | None = None
    recovering: bool = False

    @property
    def size(self) -> int:
        return 64 + sum(e.size for e in self.entries) + len(self.context)


@dataclass(frozen=True, slots=True)
class ReadState:
    """A confirmed ReadIndex request: once the state machine has applied
    ``index``, a read tagged ``context`` sees every write acknowledged before
    the request was made (linearizable)."""

    index: int
    context: bytes


@dataclass(slots=True)
class Ready:
    """Everything the driver must do, in this order (see docs/architecture.md):

    1. persist ``snapshot`` (if any), then ``entries`` and ``hard_state``
       in one atomic write — the entries replace any stored suffix starting
       at ``entries[0].index``;
    2. only then send ``messages`` (a driver may send a leader's APPENDs
       while it writes their entries, when the hard state brings no new term
       or vote and the commit index is below the entries: Raft dissertation
       §10.2.1, ``raftkit.runtime.log_writes.send_ahead``);
    3. apply ``committed_entries`` to the state machine, in order (and restore
       the state machine from ``snapshot`` first if one was received); those
       below ``entries[0].index`` are stored already and may be applied
       before step 1 (``raftkit.runtime.log_writes.stored_committed``);
    4. hand ``read_states`` to waiting readers once applied;
    5. call ``advance()``.
    """

    hard_state: HardState | None = None
    soft_state: SoftState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: SnapshotMeta | None = None
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)

    @property
    def must_sync(self) -> bool:
        """True when durable storage must be fsynced before sending."""
        return bool(self.entries) or self.hard_state is not None or self.snapshot is not None

    def is_empty(self) -> bool:
        return not (
            self.hard_state
            or self.soft_state
            or self.entries
            or self.snapshot
            or self.messages
            or self.committed_entries
            or self.read_states
        )
