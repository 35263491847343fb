"""``RaftState``: what ``Raft``'s mixins (election, replication, reads,
membership changes, transfer, recovery) may use of the ``Raft`` they are
part of, for type checkers only.

Each mixin's base class is ``RaftState`` for type checkers and ``object``
at run time (``if TYPE_CHECKING`` in its module; nothing imports this
module at run time). So a mixin's ``self`` knows the state ``Raft.__init__``
sets up and the methods the other mixins define, with their types, and
``Raft`` is checked against the same declarations: an attribute assigned a
value of another type, or a method whose signature drifts, is reported.
(``self: Raft`` on each method, as before, is a self-type mypy rejects,
since ``Raft`` is a subclass of the mixin.) The methods are abstract here
so that ``Raft`` must define every one. Add a member when a mixin starts
using one.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections import OrderedDict

    from raftkit.core.log import RaftLog
    from raftkit.core.progress import Progress
    from raftkit.core.quorum import VoteResult
    from raftkit.core.raft import RaftConfig
    from raftkit.core.reads import ReadRequest
    from raftkit.core.types import (
        ConfState,
        Entry,
        Message,
        MessageType,
        NodeId,
        ReadState,
        Role,
        SnapshotMeta,
    )

__all__ = ["RaftState"]


class RaftState:
    # -- state (set up in Raft.__init__) ------------------------------------------------
    cfg: RaftConfig
    id: NodeId
    log: RaftLog
    term: int
    vote: NodeId | None
    snapshot: SnapshotMeta | None
    conf: ConfState
    startup_conf: ConfState
    _known_voters_cache: tuple[tuple[object, ...], frozenset[NodeId]] | None
    role: Role
    lead: NodeId | None
    progress: dict[NodeId, Progress]
    votes: dict[NodeId, bool]
    appends_due: bool
    read_states: list[ReadState]
    election_elapsed: int
    lead_transferee: NodeId | None
    pending_conf_index: int
    reads: OrderedDict[bytes, ReadRequest]
    reads_waiting_for_commit: list[ReadRequest]
    recovering: bool
    bootstrapping: bool
    probe_replies: dict[NodeId, Message]
    recovering_peers: dict[NodeId, int]
    rejoin_markers: dict[NodeId, tuple[bytes, int]]
    quorum_lost: str | None
    total_wipe: bool
    probe_elapsed: int
    bootstrap_wait: int
    held_proposals: list[Entry]
    handover: tuple[int, NodeId] | None
    timeout_now_term: int
    restart_guard: bool
    won_by_transfer: bool
    forced_conf: bool
    superseded_confs: frozenset[tuple[int, int]]
    request_seq: int

    @property
    @abstractmethod
    def promotable(self) -> bool: ...

    # -- Raft ---------------------------------------------------------------------------
    @abstractmethod
    def send(self, msg: Message) -> None: ...
    @abstractmethod
    def _reply(self, m: Message, type: MessageType, **kw: object) -> None: ...  # noqa: A002 - Raft's name
    @abstractmethod
    def _next_seq(self) -> int: ...
    @abstractmethod
    def _peers(self) -> list[NodeId]: ...
    @abstractmethod
    def _new_progress(self, node: NodeId, last: int) -> Progress: ...
    @abstractmethod
    def _propose(self, entries: list[Entry]) -> int: ...
    @abstractmethod
    def become_follower(self, term: int, lead: NodeId | None) -> None: ...
    @abstractmethod
    def become_pre_candidate(self) -> None: ...
    @abstractmethod
    def become_candidate(self) -> None: ...
    @abstractmethod
    def become_leader(self) -> None: ...

    # -- election -----------------------------------------------------------------------
    @abstractmethod
    def _campaign(self, pre: bool, transfer: bool) -> None: ...
    @abstractmethod
    def _record_vote(self, node: NodeId, granted: bool) -> VoteResult: ...
    @abstractmethod
    def _commit_hint(self, m: Message) -> dict[str, int]: ...
    @abstractmethod
    def _has_unapplied_conf(self) -> bool: ...

    # -- replication --------------------------------------------------------------------
    @abstractmethod
    def _append_entries(self, entries: list[Entry]) -> None: ...
    @abstractmethod
    def _append_stamped(self, stamped: list[Entry]) -> None: ...
    @abstractmethod
    def _bcast_append(self) -> None: ...
    @abstractmethod
    def _bcast_heartbeat(self, context: bytes = ...) -> None: ...
    @abstractmethod
    def _maybe_commit(self) -> bool: ...
    @abstractmethod
    def _restore(self, snap: SnapshotMeta) -> bool: ...
    @abstractmethod
    def _send_append(self, to: NodeId, send_if_empty: bool = ..., commit_notice: bool = ...) -> bool: ...
    @abstractmethod
    def send_owed_commits(self) -> None: ...
    @abstractmethod
    def note_forwarded(self, origin: NodeId) -> None: ...
    @abstractmethod
    def _send_snapshot(self, to: NodeId, pr: Progress) -> bool: ...

    # -- membership changes -------------------------------------------------------------
    @abstractmethod
    def _apply_conf(self, conf: ConfState) -> None: ...
    @abstractmethod
    def _check_transition(self, conf: ConfState) -> None: ...
    @abstractmethod
    def _unapplied_confs(self) -> list[ConfState]: ...
    @abstractmethod
    def _unapplied_entries(self) -> list[Entry]: ...
    @abstractmethod
    def propose_conf_change(self, conf: ConfState) -> int: ...
    @abstractmethod
    def request_conf_change(self, request: bytes) -> int | None: ...

    # -- reads --------------------------------------------------------------------------
    @abstractmethod
    def _ack_read(self, context: bytes, node: NodeId) -> None: ...
    @abstractmethod
    def _handle_read_index(self, requester: NodeId, context: bytes) -> None: ...
    @abstractmethod
    def _release_reads_waiting_for_commit(self) -> None: ...
    @abstractmethod
    def _start_read(self, req: ReadRequest) -> None: ...

    # -- transfer -----------------------------------------------------------------------
    @abstractmethod
    def transfer_leadership(self, to: NodeId) -> None: ...
    @abstractmethod
    def _send_timeout_now(self, to: NodeId) -> None: ...
    @abstractmethod
    def _release_held_proposals(self) -> None: ...
    @abstractmethod
    def _hand_over_after_removal(self) -> None: ...
    @abstractmethod
    def _handed_over_to_leader(self) -> bool: ...

    # -- recovery -----------------------------------------------------------------------
    @abstractmethod
    def _awaiting_bootstrap(self) -> bool: ...
    @abstractmethod
    def _bootstrap_majority(self) -> bool: ...
    @abstractmethod
    def _check_quorum_lost(self) -> None: ...
    @abstractmethod
    def _fresh(self) -> bool: ...
    @abstractmethod
    def _fresh_voters(self) -> dict[NodeId, bool] | None: ...
    @abstractmethod
    def _handle_rejoin(self, node: NodeId, incarnation: bytes) -> None: ...
    @abstractmethod
    def _maybe_bootstrap(self) -> None: ...
    @abstractmethod
    def _total_wipe(self) -> list[NodeId] | None: ...
