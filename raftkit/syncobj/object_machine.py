"""The state machine under a SyncObj: it runs each committed replicated
call on the SyncObj or one of its consumers, holds the cluster's code
version, and snapshots and restores the whole object (its own state and
its consumers', streaming durable consumers' state machines in a framed
container). ``current_entry_index()`` tells a running call its log index."""

from __future__ import annotations

import contextvars
import logging
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from raftkit.errors import CodecError
from raftkit.serializers.base import Serializer
from raftkit.state_machines.base import SnapshotWriter, StateMachine
from raftkit.syncobj.decorator import _Raised, _replicated_methods, _supported_version
from raftkit.syncobj.versions import (
    CodeVersionError,
    UnsupportedCodeVersionError,
    check_version,
    select_version,
)

if TYPE_CHECKING:  # only named in annotations: facade.py imports this module
    from raftkit.syncobj.facade import SyncObj

__all__ = ["current_entry_index"]

log = logging.getLogger(__name__)

_ENTRY_INDEX: contextvars.ContextVar[int | None] = contextvars.ContextVar("raftkit_entry_index", default=None)
_CONTAINER_MAGIC = b"RKSYNCOBJ\x01"
_U32 = struct.Struct(">I")


def current_entry_index() -> int | None:
    """The log index of the entry whose replicated call is running (None
    outside one): a durable consumer hands it to its own state machine's
    ``apply_entry`` so the call is applied exactly once across restarts."""
    return _ENTRY_INDEX.get()


_SYSTEM = -2  # the target of raftkit's own logged commands (set_code_version)
_SET_CODE_VERSION = "set_code_version"


class _ObjectStateMachine(StateMachine):
    """Runs logged calls on the SyncObj and its consumers; snapshots them.

    It also holds the cluster's code version (replicated state: changed by
    logged ``set_code_version`` entries, carried in snapshots) and refuses
    to apply anything once that version is beyond this process's code."""

    def __init__(self, owner: SyncObj, serializer: Serializer) -> None:
        self._owner = owner
        self._serializer = serializer
        self.serializer = serializer  # declared: the node checks it against the transport
        self.code_version = 0
        # (class, name, code version) -> the implementation to run: resolved
        # once, not per applied call. Only names the class defines are kept,
        # so commands from the log cannot grow it.
        self._dispatch: dict[tuple[type, str, int], Any] = {}
        # name -> function, for calls on the SyncObj itself at the current
        # code version (the common case, one dict lookup): cleared wherever
        # code_version changes, filled from _dispatch's verdicts only.
        # Cleared, never replaced: apply_entries holds it across an entry.
        self._owner_funcs: dict[str, Any] = {}
        self.supported = _supported_version([type(owner), *(type(c) for c in owner._rk_consumers)])
        self.version_error: str | None = None  # set once this process cannot follow the cluster
        self._applied_mark = 0
        # A batch entry stopped part way: its index and the outcomes of the calls already run.
        self._partial: tuple[int, list[tuple[Any, BaseException | None]]] | None = None

    def _target(self, index: Any) -> Any:
        if index == -1:
            return self._owner
        consumers = self._owner._rk_consumers
        if not isinstance(index, int) or not 0 <= index < len(consumers):
            raise LookupError(f"command for consumer #{index!r}, but there are {len(consumers)} consumers")
        return consumers[index]

    # The base declares a plain attribute; mypy >= 2 reports the override on the
    # def line, older versions on the decorator's.
    @property  # type: ignore[override, unused-ignore]
    def fork_safe(self) -> bool:  # type: ignore[override, unused-ignore]
        """A fork child must not touch a consumer's files (an LMDB environment)."""
        return all(getattr(c, "fork_safe", True) for c in self._owner._rk_consumers)

    @property
    def applied_index(self) -> int:
        """The last entry ``apply_entry`` finished. Reporting it is what lets
        this state machine stop the node's applying: an ``apply_entry`` that
        raises without advancing it is "not applied", so the node keeps the
        entry and retries it (``raftkit.runtime.applier``) instead of moving on.
        It is 0 at start-up, as the state lives in memory."""
        return self._applied_mark

    def apply_entry(self, index: int, command: bytes) -> Any:
        token = _ENTRY_INDEX.set(index)
        try:
            result = self.apply(command)
        finally:
            _ENTRY_INDEX.reset(token)
        self._applied_mark = index
        return result

    def apply_entries(self, index: int, commands: Sequence[bytes]) -> list[tuple[Any, BaseException | None]]:
        """A batch entry: each call's outcome as ``apply_entry`` gives it. If
        this process must stop (a code version it lacks) the exception
        propagates with ``applied_index`` below ``index`` and the node
        retries the entry: the calls already run are remembered, not run twice."""
        if len(commands) > 1 and not self.takes_batches:
            # Before any call runs: applied_index stays below index, the node stops here and says why.
            raise TypeError(
                f"entry {index} carries {len(commands)} calls but a consumer keeps a durable state machine "
                "that records one log index per call (current_entry_index): the calls after the first "
                "would be skipped; set commands_per_entry=1 on every node"
            )
        partial = self._partial
        outcomes = partial[1] if partial is not None and partial[0] == index else []
        token = _ENTRY_INDEX.set(index)
        try:
            rest = commands[len(outcomes):]
            if rest:
                # ``apply`` per command, its code version check once: only a
                # restored snapshot raises the version, never a call of the entry.
                self._check_runnable()
                # _call's fast path inlined: a Python call less per command on every node.
                loads, funcs, owner = self._serializer.loads, self._owner_funcs, self._owner
                slow, append = self._call_slow, outcomes.append
                for command in rest:
                    try:
                        decoded = loads(command)
                        if type(decoded) is list and len(decoded) == 4:
                            index_, name, args, kwargs = decoded
                            if (index_ == -1 and type(name) is str and type(args) is list
                                    and type(kwargs) is dict and (func := funcs.get(name)) is not None):
                                append((func(owner, *args, **kwargs), None))
                                continue
                        append((slow(decoded), None))
                    except UnsupportedCodeVersionError:
                        raise
                    except Exception as exc:  # the call's outcome, the same on every node
                        log.debug("replicated call raised %r", exc)
                        append((_Raised(exc), None))
        except BaseException:
            self._partial = (index, outcomes)
            raise
        finally:
            _ENTRY_INDEX.reset(token)
        self._partial = None
        self._applied_mark = index
        return outcomes

    @property
    def takes_batches(self) -> bool:
        """Whether an entry may carry several calls: not when a consumer
        keeps a durable state machine of its own (LmdbDict), whose
        ``apply_entry(current_entry_index(), ...)`` records one log index
        per call and so would take a second call of the same entry for one
        it already holds. The node then packs one call per entry. (Asked
        per entry: without consumers it costs one check.)"""
        if not self._owner._rk_consumers:
            return True
        return not any(
            type(sm).applied_index is not StateMachine.applied_index for sm in self._durable().values()
        )

    def apply(self, command: bytes) -> Any:
        self._check_runnable()
        try:
            return self._call(command)
        except UnsupportedCodeVersionError:
            raise  # not an outcome: this replica must stop here rather than diverge
        except Exception as exc:  # the call's outcome, the same on every node
            log.debug("replicated call raised %r", exc)
            return _Raised(exc)

    def _call(self, command: bytes) -> Any:
        decoded = self._serializer.loads(command)
        if type(decoded) is list and len(decoded) == 4:
            index, name, args, kwargs = decoded
            if index == -1 and type(name) is str and type(args) is list and type(kwargs) is dict:
                func = self._owner_funcs.get(name)
                if func is not None:
                    return func(self._owner, *args, **kwargs)
        return self._call_slow(decoded)

    def _call_slow(self, decoded: Any) -> Any:
        """``_call`` for everything but a known method of the SyncObj itself:
        consumers, raftkit's own commands, a method not yet resolved at this
        code version, and malformed commands."""
        if not isinstance(decoded, (list, tuple)) or len(decoded) != 4:
            raise CodecError("malformed replicated call: expected (target, method, args, kwargs)")
        index, name, args, kwargs = decoded
        if index == -1:
            target = self._owner  # the SyncObj itself: the common case, without _target
        elif index == _SYSTEM:
            return self._system(name, args)
        else:
            target = self._target(index)
        key = (type(target), name, self.code_version) if isinstance(name, str) else None
        method = self._dispatch.get(key) if key is not None else None
        if method is not None:
            return method.func(target, *args, **kwargs)
        impls = _replicated_methods(type(target)).get(name) if key is not None else None
        if not impls:
            raise LookupError(f"{type(target).__name__} has no replicated method {name!r}")
        method = select_version(impls, self.code_version)
        if method is not None:
            self._dispatch[key] = method  # type: ignore[index]
            if index == -1:
                self._owner_funcs[name] = method.func
        if method is None:  # every definition is newer than the cluster: the same verdict on every node
            raise LookupError(
                f"{type(target).__name__}.{name} has no implementation for code version {self.code_version} "
                f"(it is defined for ver {', '.join(map(str, impls))}); switch the cluster with "
                f"set_code_version({min(impls)}) once every node runs that code"
            )
        return method.func(target, *args, **kwargs)

    # -- code versions ---------------------------------------------------------------------

    def _system(self, name: Any, args: Any) -> Any:
        if name != _SET_CODE_VERSION or not isinstance(args, (list, tuple)) or len(args) != 1:
            raise LookupError(f"unknown raftkit command {name!r}")
        version = check_version(args[0], "code version")
        if version > self.supported:
            raise self._unsupported(version)  # nothing changed: the node keeps this entry and retries it
        old = self.code_version
        if version < old:  # two racing switches: the later, lower one loses, on every node alike
            raise CodeVersionError(
                f"the cluster already runs code version {old}; it cannot go back to {version}"
            )
        if version != old:
            self.code_version = version
            self._owner_funcs.clear()  # resolved for the old version
            log.info("%s: cluster code version %d -> %d", self._owner._rk_address, old, version)
            self._owner._rk_code_version_changed(old, version)
        return version

    def _unsupported(self, version: int) -> UnsupportedCodeVersionError:
        """The error that stops this replica (the node shows it in
        status()["error"]); logged once, not at every retry."""
        exc = UnsupportedCodeVersionError(version, self.supported)
        if self.version_error is None:
            self.version_error = str(exc)
            log.error("%s: %s", self._owner._rk_address, exc)
        return exc

    def _check_runnable(self) -> None:
        if self.code_version > self.supported:  # a snapshot brought the newer version
            raise self._unsupported(self.code_version)

    def _restore_version(self, state: dict[str, Any]) -> None:
        """Take the snapshot's code version. A version beyond this code is
        accepted (the state itself is right) but nothing more is applied."""
        self._partial = None  # the restored state replaces the calls a stopped entry had run
        self.code_version = check_version(state.get("code_version", 0), "the snapshot's code version")
        self._owner_funcs.clear()  # resolved for the version before the snapshot
        if self.code_version > self.supported:
            self._unsupported(self.code_version)

    # -- snapshots ---------------------------------------------------------------------------

    def _check_whole(self) -> None:
        """A snapshot is labelled with the last entry applied whole: while a
        batch entry is stopped part way, the state also holds the calls of
        that entry already run, which whoever installs the snapshot would run
        again. No snapshot until the entry is finished."""
        if self._partial is not None:
            index, done = self._partial
            raise CodeVersionError(
                f"no snapshot while entry {index} is stopped part way ({len(done)} of its calls ran): "
                "this process must be upgraded to apply the rest"
            )

    def snapshot(self) -> bytes:
        return self._serializer.dumps(self._state())

    def _state(self) -> dict[str, Any]:
        """What a snapshot without durable consumers encodes."""
        self._check_whole()
        owner = self._owner
        return {
            "self": owner._serialize(),
            "consumers": [c._serialize() for c in owner._rk_consumers],
            "code_version": self.code_version,
        }

    def restore(self, data: bytes) -> None:
        state = self._serializer.loads(data)
        self._check_count(state)
        self._owner._deserialize(state["self"])
        for consumer, part in zip(self._owner._rk_consumers, state["consumers"], strict=True):
            consumer._deserialize(part)
        self._restore_version(state)

    def _check_count(self, state: Any) -> None:
        consumers = self._owner._rk_consumers
        if not isinstance(state, dict) or len(state.get("consumers", ())) != len(consumers):
            raise ValueError(
                "snapshot does not match this object: it was taken with "
                f"{len(state.get('consumers', ())) if isinstance(state, dict) else '?'} consumers, "
                f"this one has {len(consumers)}"
            )

    def _durable(self) -> dict[int, StateMachine]:
        found = {i: c._rk_state_machine() for i, c in enumerate(self._owner._rk_consumers)}
        return {i: sm for i, sm in found.items() if sm is not None}

    def write_snapshot(self, out: SnapshotWriter) -> None:
        """With durable consumers: every view is fixed first (their read
        transactions opened, the rest serialized), then written: magic |
        u32 length | the in-memory parts | each durable consumer's stream
        as u32-length-prefixed chunks ending with a zero length."""
        self._check_whole()
        durable = self._durable()
        if not durable:
            dump_to = getattr(self._serializer, "dump_to", None)
            if getattr(out, "frozen_state", False) and dump_to is not None:
                # Nothing can change the state while we write (a forked child's
                # copy): stream it instead of building every byte first.
                dump_to(self._state(), out.write)
            else:
                out.write(self.snapshot())
            return
        views = {i: sm.open_snapshot() if hasattr(sm, "open_snapshot") else sm.snapshot()
                 for i, sm in durable.items()}
        try:
            owner = self._owner
            state = {
                "self": owner._serialize(),
                "consumers": [
                    None if i in durable else c._serialize() for i, c in enumerate(owner._rk_consumers)
                ],
                "applied": {i: getattr(v, "applied_index", 0) for i, v in views.items()},
                "code_version": self.code_version,
            }
            head = self._serializer.dumps(state)
            out.write(_CONTAINER_MAGIC + _U32.pack(len(head)) + head)
            framed = _Framed(out)
            for i in sorted(views):
                view = views[i]
                if isinstance(view, bytes):
                    framed.write(view)
                else:
                    view.write_to(framed)
                framed.end()
        finally:
            for view in views.values():
                if not isinstance(view, bytes):
                    view.close()

    def restore_from(self, chunks: Iterable[bytes]) -> None:
        reader = _ChunkReader(chunks)
        magic = reader.read(len(_CONTAINER_MAGIC), allow_short=True)
        if magic != _CONTAINER_MAGIC:
            self.restore(magic + reader.rest())  # a snapshot without durable consumers
            return
        state = self._serializer.loads(reader.read(_U32.unpack(reader.read(4))[0]))
        self._check_count(state)
        durable = self._durable()
        for i in sorted(durable):
            sm = durable[i]
            segment = reader.segment()
            held, taken = sm.applied_index, state["applied"].get(i, 0)
            if taken and held >= taken:
                for _ in segment:  # this consumer already holds as much: keep it, skip the bytes
                    pass
                continue
            sm.restore_from(segment)
            for _ in segment:
                pass
        self._owner._deserialize(state["self"])
        for i, (consumer, part) in enumerate(zip(self._owner._rk_consumers, state["consumers"], strict=True)):
            if i not in durable:
                consumer._deserialize(part)
        self._restore_version(state)


# -- the snapshot container's framing (write_snapshot / restore_from) ----------------------


class _Framed:
    """``out`` as seen by one durable consumer: length-prefixed chunks."""

    def __init__(self, out: SnapshotWriter) -> None:
        self._out = out

    def write(self, data: bytes) -> None:
        if data:
            self._out.write(_U32.pack(len(data)) + bytes(data))

    def end(self) -> None:
        self._out.write(_U32.pack(0))


class _ChunkReader:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = b""

    def read(self, n: int, allow_short: bool = False) -> bytes:
        while len(self._buf) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                if allow_short:
                    break
                raise CodecError("the SyncObj snapshot is truncated")
            self._buf += bytes(chunk)
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def rest(self) -> bytes:
        return self._buf + b"".join(bytes(c) for c in self._chunks)

    def segment(self) -> Iterator[bytes]:
        while True:
            (n,) = _U32.unpack(self.read(4))
            if n == 0:
                return
            yield self.read(n)
