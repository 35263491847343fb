"""Exceptions shared across raftkit. Each says what went wrong and, where the
caller can act, what to do."""

from __future__ import annotations


class RaftkitError(Exception):
    """Base class of every raftkit error."""


class LogCompactedError(RaftkitError):
    """The requested log index was compacted into a snapshot."""

    def __init__(self, index: int, first_index: int) -> None:
        super().__init__(f"log index {index} is compacted (first available index is {first_index})")
        self.index = index
        self.first_index = first_index


class LogUnavailableError(RaftkitError):
    """The requested log index is beyond the end of the log."""

    def __init__(self, index: int, last_index: int) -> None:
        super().__init__(f"log index {index} is not in the log (last index is {last_index})")
        self.index = index
        self.last_index = last_index


class LogStoreError(RaftkitError):
    """A log store was asked to do something its contract forbids
    (a write that would leave a hole, a compaction past the end, ...)."""


class SnapshotError(RaftkitError):
    """A snapshot is missing, corrupted or cannot be installed."""


class ProposalDroppedError(RaftkitError):
    """A proposal could not be accepted (not leader, transfer in progress,
    a membership change already pending, ...); the message says which."""


class NotLeaderError(ProposalDroppedError):
    """This node is not the leader; ``leader`` names the one it knows, if any."""

    def __init__(self, leader: str | None) -> None:
        hint = f"the leader is {leader}" if leader else "no leader is known yet"
        super().__init__(f"this node is not the leader ({hint})")
        self.leader = leader


class MembershipError(RaftkitError, ValueError):
    """A membership change that cannot be made (the message says why)."""


class CodecError(RaftkitError):
    """Bytes could not be decoded: malformed, truncated, oversized, or of an
    unknown version. Never raised for valid input."""


class SerializationError(RaftkitError):
    """A value cannot be encoded by the configured serializer."""


class TransportError(RaftkitError):
    """A transport failed in a way the caller should know about."""


class NoLeaderError(RaftkitError):
    """No leader was known in time to take the command; the cluster may be
    electing one, or lacks a majority."""


class CommandTimeoutError(RaftkitError, TimeoutError):
    """The command got no outcome within its timeout. It may still be
    applied later: Raft cannot tell a lost command from a slow one."""


class LeadershipLostError(RaftkitError):
    """The command was appended by a leader that lost its leadership before
    the entry committed; another entry took its place in the log."""


class QueueFullError(RaftkitError):
    """The node's commands queue is full: the caller is faster than the
    cluster. Back off and retry (raise ``commands_queue_size`` if bursts are
    expected)."""


class NodeStoppedError(RaftkitError):
    """The node was stopped (or its event loop died) before the command got
    an outcome; the message says which."""
