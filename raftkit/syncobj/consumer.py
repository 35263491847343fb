"""``SyncObjConsumer``, the base of objects whose replicated state lives in
another SyncObj's log (the batteries: counters, dicts, locks), and the
helpers that copy an object's replicated attributes in and out of a
snapshot (also used by ``SyncObj`` for its own state)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from raftkit.state_machines.base import StateMachine
from raftkit.syncobj.versions import discard_strays

if TYPE_CHECKING:  # only named in annotations: facade.py imports this module
    from raftkit.syncobj.facade import SyncObj

__all__ = ["SyncObjConsumer"]

_INTERNAL = "_rk_"  # attributes with this prefix are raftkit's, never replicated state


# -- replicated state ------------------------------------------------------------------


def _public_state(obj: Any, exclude: Iterable[str] = ()) -> dict[str, Any]:
    skip = set(exclude)
    return {k: v for k, v in vars(obj).items() if not k.startswith(_INTERNAL) and k not in skip}


def _replace_state(obj: Any, data: dict[str, Any], exclude: Iterable[str] = ()) -> None:
    """Make ``obj``'s replicated attributes exactly ``data``."""
    if not isinstance(data, dict):
        raise TypeError(f"{type(obj).__name__} state must be a dict, got {type(data).__name__}")
    skip = set(exclude)
    bad = [k for k in data if not isinstance(k, str) or k.startswith(_INTERNAL) or k in skip]
    if bad:
        raise ValueError(f"{type(obj).__name__} state names attributes that are not replicable: {bad!r}")
    for name in list(_public_state(obj, exclude)):
        if name not in data:
            delattr(obj, name)
    for name, value in data.items():
        setattr(obj, name, value)


class ConsumerWrapper(Protocol):
    """An object that hands ``SyncObj(consumers=[...])`` the consumer it
    wraps, as PySyncObj's ``ReplLockManager`` does (its lock table)."""

    def _consumer(self) -> SyncObjConsumer: ...


class SyncObjConsumer:
    """Base of objects that keep replicated state inside another SyncObj's
    log (PySyncObj's batteries: counters, dicts, locks). Mark mutating
    methods with ``@replicated`` and pass instances as
    ``SyncObj(..., consumers=[...])``. Override ``_serialize`` /
    ``_deserialize`` when the state is not simply the instance's attributes."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        discard_strays(cls)

    def __init__(self) -> None:
        self._rk_owner: SyncObj | None = None
        self._rk_index = -1
        self._syncObj: SyncObj | None = None  # noqa: N815 - PySyncObj's attribute

    def _rk_attach(self, owner: SyncObj, index: int) -> None:
        if self.__dict__.get("_rk_owner") is not None:
            raise ValueError(f"{type(self).__name__} is already attached to another SyncObj")
        self.__dict__["_rk_owner"] = owner
        self.__dict__["_rk_index"] = index
        self.__dict__["_syncObj"] = owner

    def _rk_call_owner(self) -> tuple[SyncObj, int]:
        """Where its replicated calls go (``raftkit.syncobj.decorator.CallOwner``)."""
        owner = self.__dict__.get("_rk_owner")
        if owner is None:
            raise RuntimeError(
                f"{type(self).__name__} is not attached to a SyncObj: pass it in "
                "SyncObj(..., consumers=[...]) before calling its replicated methods"
            )
        return owner, self.__dict__["_rk_index"]

    def _serialize(self) -> Any:
        """This consumer's part of a snapshot: by default its attributes."""
        return _public_state(self, exclude=("_syncObj",))

    def _deserialize(self, data: Any) -> None:
        """Replace the state with one made by ``_serialize`` on some node."""
        _replace_state(self, data, exclude=("_syncObj",))

    def _rk_state_machine(self) -> StateMachine | None:
        """A consumer whose state is a (durable) StateMachine of its own
        returns it: SyncObj then streams its snapshot (``write_snapshot`` /
        ``restore_from``) instead of ``_serialize``/``_deserialize``, and its
        replicated methods see their entry's index (``current_entry_index``)."""
        return None

    def _destroy(self) -> None:
        """Called once the owning SyncObj is destroyed (after its node
        stopped), as in PySyncObj: stop helper threads, release resources."""
