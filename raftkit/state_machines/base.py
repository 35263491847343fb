"""The StateMachine interface: the application state Raft replicates."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class SnapshotWriter(Protocol):
    """Where a snapshot is streamed to (a ``SnapshotSink``, a file...).

    A writer with a true ``frozen_state`` attribute (the fork snapshotter's,
    in the forked child) promises that nothing changes the state while
    ``write_snapshot`` runs, so it may encode straight from its live
    structures in pieces; any other writer gets a view that must be fixed
    before the first ``write`` (``raftkit.storage.capture``)."""

    def write(self, data: bytes, /) -> object: ...  # a file's write (returning a count) fits


class StateMachine(ABC):
    """The application whose state every replica rebuilds from the log.

    Contract:

    * ``apply`` must be deterministic: given the same state and the same
      command, every replica must reach the same new state and produce the
      same outcome. No clocks, randomness, environment or I/O whose result
      can differ between nodes inside ``apply`` (beware iterating over a set
      of ``str``: its order depends on the per-process hash seed); such
      values must be decided by the proposer and put into the command.
    * The outcome of a command is its return value *or the exception it
      raises*; both are part of the replicated behaviour. A command that
      raises must raise on every replica and leave the state as every
      replica leaves it (ideally unchanged), so the node keeps applying the
      log instead of stopping. The node hands the outcome to the proposer:
      a ``sync=True`` call re-raises the exception, a callback receives it.
    * ``snapshot()`` captures the whole state as bytes and ``restore(data)``
      replaces the whole state with it: ``restore(snapshot())`` on a fresh
      instance must give a state machine that behaves identically from then
      on. The driver calls them only between applies.
    """

    @abstractmethod
    def apply(self, command: bytes) -> Any:
        """Apply one committed command; the return value goes to the proposer."""

    def apply_batch(self, commands: Sequence[bytes]) -> list[Any]:
        """Apply committed commands in order and return one outcome each.

        Override when a batch can be applied faster as a whole (one database
        transaction). The default applies one by one; an ``Exception`` raised
        by a command becomes that command's outcome (the instance is placed in
        the result list) and the batch continues, so one failing command never
        leaves the rest of the batch half-applied.
        """
        results: list[Any] = []
        for command in commands:
            try:
                results.append(self.apply(command))
            except Exception as exc:  # an outcome like any other, not a failure of the node
                results.append(exc)
        return results

    @abstractmethod
    def snapshot(self) -> bytes:
        """The whole state as bytes (deterministic encoding preferred)."""

    @abstractmethod
    def restore(self, data: bytes) -> None:
        """Replace the whole state with one produced by ``snapshot()``."""

    # -- streaming and durable state machines -------------------------------------
    #
    # The node only uses the methods below; their defaults fall back on the
    # in-memory ``snapshot``/``restore`` pair, so a small state machine needs
    # nothing more. A state machine whose state lives on disk (LMDB) overrides
    # them to stream a consistent view without holding it in memory, and to
    # report what it has already applied across restarts.

    def apply_entry(self, index: int, command: bytes) -> Any:
        """Apply the command of log entry ``index``. Durable state machines
        override this to record ``index`` in the same transaction as the
        change, so each entry is applied exactly once across crashes."""
        return self.apply(command)

    def apply_entries(self, index: int, commands: Sequence[bytes]) -> list[tuple[Any, BaseException | None]]:
        """Apply the commands of log entry ``index``, which carries several
        (under load the node packs many commands into one entry), in order;
        one ``(result, None)`` or ``(None, exception)`` per command.

        The default calls ``apply_entry`` for each and turns an ``Exception``
        into that command's outcome. A durable state machine (one that
        reports ``applied_index``) must override it to apply them all and
        record ``index`` in one transaction, or raise having applied none:
        until it does, its node packs one command per entry.
        """
        outcomes: list[tuple[Any, BaseException | None]] = []
        for command in commands:
            try:
                outcomes.append((self.apply_entry(index, command), None))
            except Exception as exc:  # an outcome like any other, not a failure of the node
                outcomes.append((None, exc))
        return outcomes

    @property
    def applied_index(self) -> int:
        """The last log index whose effect this state machine holds on its
        own (0 for in-memory state machines, which start empty)."""
        return 0

    def write_snapshot(self, out: SnapshotWriter) -> None:
        """Stream the whole state to ``out``. Called between applies, on the
        node's loop (or in a forked child for fork-safe state machines)."""
        out.write(self.snapshot())

    def restore_from(self, chunks: Iterable[bytes]) -> None:
        """Replace the whole state with a snapshot streamed in ``chunks``."""
        self.restore(b"".join(chunks))

    fork_safe: bool = True
    """Whether ``write_snapshot`` may run in a forked child (the fork
    snapshotter's copy-on-write image). False for state machines holding
    LMDB environments, sockets or locks."""

    serializer: Any = None
    """The ``raftkit.Serializer`` this state machine decodes commands and
    snapshots with, if it uses one itself. Declare it: those bytes come from
    peers, so the node refuses an unsafe one (pickle) over a transport that
    is not authenticated (``raftkit.runtime.pickle_rule``), however it is built."""
