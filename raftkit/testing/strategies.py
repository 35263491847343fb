"""Hypothesis strategies for raftkit's data types.

They cover the full range the wire codec accepts (any unicode node id,
indexes and terms up to the 2**63 decoders accept, every message type with any field values),
which is what codec and store tests want. Tests of protocol behaviour usually
pass narrower ``ids``, ``indexes`` or ``terms``.
"""

from __future__ import annotations

from hypothesis import strategies as st

from raftkit.core.bounds import CEILING
from raftkit.core.types import ConfState, Entry, EntryKind, HardState, Message, MessageType, SnapshotMeta

U64_MAX = 2**64 - 1
"""The largest index or term the wire codec can carry."""


def node_ids() -> st.SearchStrategy[str]:
    """Any node id the codec accepts (valid unicode, possibly empty)."""
    return st.text(max_size=24)


def counters() -> st.SearchStrategy[int]:
    """A term, an index or a commit: any value the codec carries and
    decoders accept (0 to ``raftkit.core.bounds.CEILING``, 2**63)."""
    return st.integers(0, CEILING)


def entries(
    indexes: st.SearchStrategy[int] | None = None, terms: st.SearchStrategy[int] | None = None
) -> st.SearchStrategy[Entry]:
    """Single log entries of any kind with arbitrary payloads."""
    return st.builds(
        Entry,
        index=indexes if indexes is not None else counters(),
        term=terms if terms is not None else counters(),
        kind=st.sampled_from(EntryKind),
        data=st.binary(max_size=64),
    )


def hard_states(ids: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[HardState]:
    """Hard states, with or without a vote."""
    return st.builds(
        HardState,
        term=counters(),
        vote=st.none() | (ids if ids is not None else node_ids()),
        commit=counters(),
    )


def conf_states(ids: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[ConfState]:
    """Memberships, joint or not (the sets may overlap: the codec does not judge)."""
    ids = ids if ids is not None else node_ids()
    members = st.frozensets(ids, max_size=5)
    addresses = st.dictionaries(ids, st.text(max_size=30), max_size=5).map(lambda d: tuple(sorted(d.items())))
    return st.builds(
        ConfState, voters=members, learners=members, voters_outgoing=members, addresses=addresses
    )


def snapshot_metas(ids: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[SnapshotMeta]:
    """Snapshot metadata with any membership."""
    return st.builds(SnapshotMeta, index=counters(), term=counters(), conf=conf_states(ids))


def messages(ids: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Message]:
    """Messages of every type with any field values."""
    ids = ids if ids is not None else node_ids()
    return st.builds(
        Message,
        type=st.sampled_from(MessageType),
        src=ids,
        dst=ids,
        term=counters(),
        log_term=counters(),
        index=counters(),
        entries=st.lists(entries(), max_size=4).map(tuple),
        commit=counters(),
        reject=st.booleans(),
        reject_hint=counters(),
        context=st.binary(max_size=32),
        snapshot=st.none() | snapshot_metas(ids),
        recovering=st.booleans(),
    )
