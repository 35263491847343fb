"""``CallError``: the int-like ``err`` of PySyncObj callbacks, made the
cheap way (``call_error``) on hot paths and the class's way elsewhere."""

from __future__ import annotations

import copy
import pickle

from raftkit import FAIL_REASON, CallError, QueueFullError, SyncObjException
from raftkit.syncobj.outcomes import call_error


def test_call_error_makes_what_the_class_makes() -> None:
    refused = QueueFullError("full")
    made, fast = CallError(refused, compat=True), call_error(refused, FAIL_REASON.QUEUE_FULL, True)
    for err in (made, fast):
        assert type(err) is CallError and err == FAIL_REASON.QUEUE_FULL and int(err) == 1 and err
        assert err.reason is FAIL_REASON.QUEUE_FULL
        assert isinstance(err.exception, SyncObjException) and err.exception is err.exception
    assert repr(made) == repr(fast) and vars(made).keys() == vars(fast).keys()


def test_a_subclass_of_call_error_is_made_as_itself() -> None:
    class Annotated(CallError):
        pass

    err = Annotated(ValueError("raised"))
    assert type(err) is Annotated and err == FAIL_REASON.METHOD_RAISED
    assert isinstance(err.exception, ValueError)


def test_a_copied_or_pickled_call_error_keeps_its_reason() -> None:
    """int's own reduction rebuilt it from the value alone: a QUEUE_FULL
    became METHOD_RAISED."""
    err = call_error(QueueFullError("full"), FAIL_REASON.QUEUE_FULL, True)
    for twin in (copy.copy(err), copy.deepcopy(err), pickle.loads(pickle.dumps(err))):
        assert type(twin) is CallError and twin == FAIL_REASON.QUEUE_FULL
        assert twin.reason is FAIL_REASON.QUEUE_FULL
        assert isinstance(twin.exception, QueueFullError) and "full" in str(twin.exception)
