"""Bounds on the terms and indexes a node takes from its peers.

The wire codec can carry integers up to 2**64 - 1, but a node that adopts
such a term can never campaign again (term + 1 no longer encodes), so one
forged frame would stop a cluster for good. Real terms and indexes grow by
one per election or entry: 2**62 is out of reach for any real cluster (a
million elections a second for 146,000 years). So:

* no term, index or commit above ``CEILING`` (2**63) is ever accepted (the
  wire decoder refuses it as a ``CodecError``, the core's ``step`` too), and
  a node never campaigns past it;
* an index above ``MAX_INDEX`` (2**62) is refused;
* a message term above ``MAX_TERM`` (2**62) is taken only one step at a
  time (at most the node's own term + 1), so a forger on an unauthenticated
  link cannot jump a cluster's terms to the ceiling: it would need 2**62
  messages, while elections go on (each adds one). A node that refuses a
  *member's* message only for that reason raises its own term by one, or
  to ``MAX_TERM`` if below it (``Raft.step``): forged frames may have left
  members' terms far apart, and they would otherwise refuse each other for
  good; this way they converge by one per message, while a forger gains
  nothing it could not with frames in range (``MAX_TERM`` in one frame,
  then one term per frame).
"""

from __future__ import annotations

from raftkit.core.types import Message
from raftkit.errors import CodecError

MAX_TERM = 2**62
"""Largest term a peer may announce in one jump (beyond it, one step at a time)."""

MAX_INDEX = 2**62
"""Largest log index a node accepts."""

CEILING = 2**63
"""No term, index or commit above this is ever accepted or reached; far
below the codec's 2**64 - 1."""


class OutOfBoundsError(CodecError):
    """A peer's message carries a term or index beyond the bounds; it was
    refused and changed nothing."""


def check_message(m: Message, term: int) -> None:
    """Raise ``OutOfBoundsError`` if ``m`` is beyond the bounds for a node
    whose current term is ``term``."""
    reason = message_out_of_bounds(m, term)
    if reason is not None:
        raise OutOfBoundsError(f"{m.type.name} from {m.src!r} refused: {reason}")


def message_out_of_bounds(m: Message, term: int) -> str | None:
    """Why ``m`` is beyond the bounds (None if it is not)."""
    if _term_too_far(m, term):
        return f"term {m.term} is beyond {MAX_TERM} and more than one above this node's term {term}"
    return _fields_out_of_bounds(m)


def only_term_too_far(m: Message, term: int) -> bool:
    """``m`` is beyond the bounds only because its term is above ``MAX_TERM``
    and more than one above ``term`` (every field within ``CEILING``)."""
    return _term_too_far(m, term) and _fields_out_of_bounds(m) is None


def _term_too_far(m: Message, term: int) -> bool:
    return m.term > MAX_TERM and m.term > term + 1


def _fields_out_of_bounds(m: Message) -> str | None:
    for name, value in (("term", m.term), ("log_term", m.log_term), ("commit", m.commit)):
        if value > CEILING:
            return f"{name} {value} exceeds {CEILING}"
    for name, value in (("index", m.index), ("reject_hint", m.reject_hint)):
        if value > MAX_INDEX:
            return f"{name} {value} exceeds {MAX_INDEX}"
    for e in m.entries:
        if e.index > MAX_INDEX or e.term > CEILING:
            return f"entry {e.index} (term {e.term}) exceeds the bounds ({MAX_INDEX}, term {CEILING})"
    snap = m.snapshot
    if snap is not None and (snap.index > MAX_INDEX or snap.term > CEILING):
        return f"snapshot {snap.index} (term {snap.term}) exceeds the bounds ({MAX_INDEX}, term {CEILING})"
    return None
