"""Conformance suite for ``LogStore`` implementations.

Every clause of the ``LogStore`` contract has a test here, plus a Hypothesis
test that runs random operation sequences against the store and a simple
reference model. Run it against your own store from a pytest module::

    class TestMyStore(LogStoreConformance):
        def make_store(self, tmp_path):
            return MyStore(tmp_path / "log")

Durable stores should also implement ``reopen_store`` so that the
persistence tests (and reopen steps in the Hypothesis test) run; otherwise
they are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from raftkit.core.types import Entry, EntryKind, HardState
from raftkit.errors import LogCompactedError, LogStoreError, LogUnavailableError
from raftkit.storage.log_store import LogStore


def make_entries(lo: int, hi: int, term: int = 1) -> list[Entry]:
    """Entries ``lo <= i < hi`` of one term, each with a distinct payload."""
    return [Entry(index=i, term=term, data=b"cmd-%d-%d" % (i, term)) for i in range(lo, hi)]


class LogStoreConformance:
    """Base class of the suite: subclass it in a ``Test*`` class."""

    max_examples: ClassVar[int] = 50
    """Examples the model-based Hypothesis test tries; raise it for soak runs."""

    def make_store(self, tmp_path: Path) -> LogStore:
        """Return a fresh, empty store (durable ones keep their files under
        ``tmp_path``, a directory private to the call)."""
        raise NotImplementedError("implement make_store() to return a fresh, empty LogStore")

    def reopen_store(self, store: LogStore, tmp_path: Path) -> LogStore | None:
        """Close ``store`` (made with ``tmp_path``) and return a new store
        opened on the same durable location, as after a restart. ``None``,
        the default, means the store is not durable."""
        return None

    # -- plumbing ----------------------------------------------------------

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LogStore]:
        self._live = self.make_store(tmp_path)
        yield self._live
        self._live.close()

    def _reopen(self, store: LogStore, tmp_path: Path) -> LogStore:
        reopened = self.reopen_store(store, tmp_path)
        if reopened is None:
            pytest.skip("reopen_store() returns None: the store is not durable")
        self._live = reopened
        return reopened

    # -- bounds and reads --------------------------------------------------

    def test_fresh_store_is_empty(self, store: LogStore) -> None:
        assert store.first_index() == 1
        assert store.last_index() == 0
        assert store.term(0) == 0
        assert store.entries(1, 1) == []
        assert store.hard_state() == HardState()

    def test_fresh_store_has_nothing_to_read(self, store: LogStore) -> None:
        with pytest.raises(LogUnavailableError):
            store.term(1)
        with pytest.raises(LogUnavailableError):
            store.entries(1, 2)

    def test_append_then_read(self, store: LogStore) -> None:
        written = make_entries(1, 6)
        store.save(None, written)
        assert store.first_index() == 1
        assert store.last_index() == 5
        assert store.entries(1, 6) == written
        assert store.entries(2, 4) == written[1:3]
        assert store.entries(3, 3) == []
        assert [store.term(i) for i in range(0, 6)] == [0, 1, 1, 1, 1, 1]

    def test_appends_accumulate(self, store: LogStore) -> None:
        store.save(None, make_entries(1, 3, term=1))
        store.save(None, make_entries(3, 5, term=2))
        assert store.entries(1, 5) == make_entries(1, 3, term=1) + make_entries(3, 5, term=2)
        assert [store.term(i) for i in range(1, 5)] == [1, 1, 2, 2]

    def test_entry_fields_round_trip(self, store: LogStore) -> None:
        written = [
            Entry(index=1, term=1, kind=EntryKind.NOOP),
            Entry(index=2, term=1, kind=EntryKind.CONFIG, data=b"\x00\xff conf"),
            Entry(index=3, term=7, kind=EntryKind.NORMAL, data=bytes(range(256)) * 64),
        ]
        store.save(None, written)
        got = store.entries(1, 4)
        assert got == written
        assert [type(e.kind) for e in got] == [EntryKind] * 3
        assert all(type(e.data) is bytes for e in got)

    def test_read_past_end_is_unavailable(self, store: LogStore) -> None:
        store.save(None, make_entries(1, 4))
        with pytest.raises(LogUnavailableError):
            store.term(4)
        with pytest.raises(LogUnavailableError):
            store.entries(2, 5)
        with pytest.raises(LogUnavailableError):
            store.entries(4, 6)

    # -- max_bytes ---------------------------------------------------------

    def test_max_bytes_stops_before_exceeding(self, store: LogStore) -> None:
        written = make_entries(1, 11)  # 10 entries of equal size
        size = written[0].size
        store.save(None, written)
        assert store.entries(1, 11, max_bytes=3 * size) == written[:3]
        assert store.entries(1, 11, max_bytes=4 * size - 1) == written[:3]
        assert store.entries(4, 11, max_bytes=2 * size) == written[3:5]
        assert store.entries(1, 11, max_bytes=100 * size) == written
        assert store.entries(1, 3, max_bytes=100 * size) == written[:2]

    def test_max_bytes_returns_at_least_one_entry(self, store: LogStore) -> None:
        big = Entry(index=1, term=1, data=b"x" * 1000)
        store.save(None, [big, *make_entries(2, 4)])
        assert store.entries(1, 4, max_bytes=0) == [big]
        assert store.entries(1, 4, max_bytes=big.size - 1) == [big]
        assert store.entries(1, 4, max_bytes=big.size) == [big]
        assert store.entries(2, 4, max_bytes=1) == make_entries(2, 3)

    # -- save --------------------------------------------------------------

    def test_save_replaces_conflicting_suffix(self, store: LogStore) -> None:
        store.save(None, make_entries(1, 6, term=1))
        store.save(None, make_entries(3, 5, term=2))
        assert store.last_index() == 4
        assert store.entries(1, 5) == make_entries(1, 3, term=1) + make_entries(3, 5, term=2)
        with pytest.raises(LogUnavailableError):
            store.term(5)

    def test_save_can_replace_from_first_index(self, store: LogStore) -> None:
        store.save(None, make_entries(1, 6, term=1))
        store.compact(2)
        store.save(None, make_entries(3, 4, term=3))
        assert (store.first_index(), store.last_index()) == (3, 3)
        assert store.term(2) == 1
        assert store.entries(3, 4) == make_entries(3, 4, term=3)

    def test_save_rejects_a_hole(self, store: LogStore) -> None:
        store.save(HardState(term=1), make_entries(1, 4))
        with pytest.raises(LogStoreError):
            store.save(HardState(term=2), make_entries(5, 7))
        self._assert_unchanged(store, make_entries(1, 4), HardState(term=1))

    def test_save_rejects_non_contiguous_entries(self, store: LogStore) -> None:
        store.save(HardState(term=1), make_entries(1, 4))
        gappy = make_entries(4, 5) + make_entries(6, 7)
        with pytest.raises(LogStoreError):
            store.save(HardState(term=2), gappy)
        self._assert_unchanged(store, make_entries(1, 4), HardState(term=1))

    def test_save_rejects_compacted_start(self, store: LogStore) -> None:
        store.save(None, make_entries(1, 6))
        store.compact(3)
        with pytest.raises(LogStoreError):
            store.save(None, make_entries(3, 8, term=2))
        assert (store.first_index(), store.last_index()) == (4, 5)
        assert store.entries(4, 6) == make_entries(4, 6)

    def test_hard_state_round_trip(self, store: LogStore) -> None:
        hs = HardState(term=3, vote="n2:9000", commit=2)
        store.save(hs, make_entries(1, 3))
        assert store.hard_state() == hs
        no_vote = HardState(term=4, vote=None, commit=2)
        store.save(no_vote, [])
        assert store.hard_state() == no_vote
        assert store.entries(1, 3) == make_entries(1, 3)

    def test_save_without_hard_state_keeps_it(self, store: LogStore) -> None:
        hs = HardState(term=2, vote="a", commit=1)
        store.save(hs, [])
        store.save(None, make_entries(1, 4))
        assert store.hard_state() == hs
        assert store.last_index() == 3

    def test_empty_save_changes_nothing(self, store: LogStore) -> None:
        store.save(HardState(term=1), make_entries(1, 3))
        store.save(None, [])
        self._assert_unchanged(store, make_entries(1, 3), HardState(term=1))

    # -- compaction --------------------------------------------------------

    def test_compact_keeps_boundary_term(self, store: LogStore) -> None:
        store.save(None, make_entries(1, 4, term=1) + make_entries(4, 7, term=2))
        store.compact(4)
        assert (store.first_index(), store.last_index()) == (5, 6)
        assert store.term(4) == 2
        assert store.entries(5, 7) == make_entries(5, 7, term=2)

    def test_compact_everything_leaves_an_empty_log_without_hole(self, store: LogStore) -> None:
        store.save(None, make_entries(1, 4, term=3))
        store.compact(3)
        assert (store.first_index(), store.last_index()) == (4, 3)
        assert store.term(3) == 3
        store.save(None, make_entries(4, 6, term=3))
        assert store.entries(4, 6) == make_entries(4, 6, term=3)

    def test_compact_at_or_below_boundary_is_noop(self, store: LogStore) -> None:
        store.save(None, make_entries(1, 6))
        store.compact(3)
        store.compact(3)
        store.compact(1)
        store.compact(0)
        assert (store.first_index(), store.last_index()) == (4, 5)
        assert store.term(3) == 1

    def test_compact_past_end_is_rejected(self, store: LogStore) -> None:
        store.save(None, make_entries(1, 4))
        with pytest.raises(LogStoreError):
            store.compact(4)
        self._assert_unchanged(store, make_entries(1, 4), HardState())

    def test_compacted_reads_raise(self, store: LogStore) -> None:
        store.save(None, make_entries(1, 6))
        store.compact(3)
        with pytest.raises(LogCompactedError):
            store.term(2)
        with pytest.raises(LogCompactedError):
            store.entries(3, 5)
        with pytest.raises(LogCompactedError):
            store.entries(1, 2)

    def test_compaction_then_append(self, store: LogStore) -> None:
        store.save(None, make_entries(1, 4))
        store.compact(2)
        store.save(None, make_entries(4, 6, term=2))
        store.compact(4)
        assert (store.first_index(), store.last_index()) == (5, 5)
        assert store.term(4) == 2
        assert store.entries(5, 6) == make_entries(5, 6, term=2)

    # -- reset and truncation ----------------------------------------------

    def test_reset_sets_the_boundary(self, store: LogStore) -> None:
        hs = HardState(term=5, vote="b", commit=3)
        store.save(hs, make_entries(1, 4))
        store.reset(10, 4)
        assert (store.first_index(), store.last_index()) == (11, 10)
        assert store.term(10) == 4
        assert store.hard_state() == hs
        with pytest.raises(LogCompactedError):
            store.entries(3, 4)
        store.save(None, make_entries(11, 13, term=5))
        assert store.entries(11, 13) == make_entries(11, 13, term=5)

    def test_reset_below_the_boundary(self, store: LogStore) -> None:
        store.save(None, make_entries(1, 9))
        store.compact(6)
        store.reset(2, 1)
        assert (store.first_index(), store.last_index()) == (3, 2)
        assert store.term(2) == 1
        store.save(None, make_entries(3, 4, term=2))
        assert store.entries(3, 4) == make_entries(3, 4, term=2)

    def test_truncate_suffix(self, store: LogStore) -> None:
        store.save(None, make_entries(1, 8))
        store.compact(2)
        store.truncate_suffix(9)  # past the end: nothing to drop
        assert store.last_index() == 7
        store.truncate_suffix(5)
        assert (store.first_index(), store.last_index()) == (3, 4)
        assert store.entries(3, 5) == make_entries(3, 5)
        store.truncate_suffix(3)
        assert (store.first_index(), store.last_index()) == (3, 2)
        assert store.term(2) == 1
        store.save(None, make_entries(3, 4, term=2))
        assert store.entries(3, 4) == make_entries(3, 4, term=2)

    def test_truncate_at_boundary_is_rejected(self, store: LogStore) -> None:
        store.save(None, make_entries(1, 5))
        store.compact(2)
        with pytest.raises(LogStoreError):
            store.truncate_suffix(2)
        assert (store.first_index(), store.last_index()) == (3, 4)

    # -- persistence (needs reopen_store) ----------------------------------

    def test_reopen_keeps_entries_and_hard_state(self, store: LogStore, tmp_path: Path) -> None:
        hs = HardState(term=2, vote="n1", commit=3)
        store.save(hs, make_entries(1, 4, term=1) + make_entries(4, 6, term=2))
        store = self._reopen(store, tmp_path)
        self._assert_unchanged(store, make_entries(1, 4, term=1) + make_entries(4, 6, term=2), hs)

    def test_reopen_keeps_suffix_replacement(self, store: LogStore, tmp_path: Path) -> None:
        store.save(None, make_entries(1, 6, term=1))
        store.save(HardState(term=2), make_entries(3, 4, term=2))
        store = self._reopen(store, tmp_path)
        self._assert_unchanged(store, make_entries(1, 3) + make_entries(3, 4, term=2), HardState(term=2))

    def test_reopen_keeps_compaction_boundary(self, store: LogStore, tmp_path: Path) -> None:
        store.save(None, make_entries(1, 4, term=1) + make_entries(4, 6, term=2))
        store.compact(4)
        store = self._reopen(store, tmp_path)
        assert (store.first_index(), store.last_index()) == (5, 5)
        assert store.term(4) == 2
        assert store.entries(5, 6) == make_entries(5, 6, term=2)

    def test_reopen_keeps_reset(self, store: LogStore, tmp_path: Path) -> None:
        store.save(HardState(term=3), make_entries(1, 4))
        store.reset(20, 3)
        store = self._reopen(store, tmp_path)
        assert (store.first_index(), store.last_index()) == (21, 20)
        assert store.term(20) == 3
        assert store.hard_state() == HardState(term=3)

    def test_reopen_keeps_truncation(self, store: LogStore, tmp_path: Path) -> None:
        store.save(None, make_entries(1, 6))
        store.truncate_suffix(3)
        store = self._reopen(store, tmp_path)
        assert (store.first_index(), store.last_index()) == (1, 2)
        assert store.entries(1, 3) == make_entries(1, 3)

    # -- model-based -------------------------------------------------------

    def test_matches_reference_model(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        """Random operation sequences leave the store and a reference model
        observably equal after every step (including reopen steps)."""

        @settings(
            max_examples=self.max_examples,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(data=st.data())
        def run(data: st.DataObject) -> None:
            path = tmp_path_factory.mktemp("log_store")
            store = self.make_store(path)
            try:
                model = _Model()
                for _ in range(data.draw(st.integers(1, 25), label="steps")):
                    store = _random_step(data, store, model, lambda s: self.reopen_store(s, path))
                    _assert_matches(store, model)
            finally:
                store.close()

        run()

    @staticmethod
    def _assert_unchanged(store: LogStore, entries: list[Entry], hs: HardState) -> None:
        assert (store.first_index(), store.last_index()) == (entries[0].index, entries[-1].index)
        assert store.entries(entries[0].index, entries[-1].index + 1) == entries
        assert store.hard_state() == hs


# -- reference model -------------------------------------------------------


@dataclass
class _Model:
    """The contract, written as plainly as possible."""

    boundary: int = 0
    boundary_term: int = 0
    log: list[Entry] = field(default_factory=list)
    hard_state: HardState = field(default_factory=HardState)

    @property
    def last(self) -> int:
        return self.boundary + len(self.log)

    def save(self, hs: HardState | None, entries: list[Entry]) -> None:
        if entries:
            self.log = [e for e in self.log if e.index < entries[0].index] + entries
        if hs is not None:
            self.hard_state = hs

    def compact(self, index: int) -> None:
        if index > self.boundary:
            self.boundary_term = self.log[index - self.boundary - 1].term
            self.log = [e for e in self.log if e.index > index]
            self.boundary = index

    def reset(self, index: int, term: int) -> None:
        self.boundary, self.boundary_term, self.log = index, term, []

    def truncate(self, index: int) -> None:
        self.log = [e for e in self.log if e.index < index]

    def read(self, lo: int, hi: int, max_bytes: int | None) -> list[Entry]:
        wanted = [e for e in self.log if lo <= e.index < hi]
        if max_bytes is None:
            return wanted
        taken: list[Entry] = []
        total = 0
        for e in wanted:
            total += e.size
            if taken and total > max_bytes:
                break
            taken.append(e)
        return taken


_hard_states = st.builds(
    HardState,
    term=st.integers(0, 9),
    vote=st.none() | st.sampled_from(["a", "b", "c"]),
    commit=st.integers(0, 40),
)


def _entry_run(data: st.DataObject, start: int) -> list[Entry]:
    count = data.draw(st.integers(1, 4), label="count")
    return [
        Entry(
            index=start + i,
            term=data.draw(st.integers(1, 6), label="term"),
            kind=data.draw(st.sampled_from(EntryKind), label="kind"),
            data=data.draw(st.binary(max_size=40), label="data"),
        )
        for i in range(count)
    ]


def _random_step(
    data: st.DataObject, store: LogStore, model: _Model, reopen: Callable[[LogStore], LogStore | None]
) -> LogStore:
    """Apply one random operation to both; return the (possibly reopened) store."""
    first, last = model.boundary + 1, model.last
    op = data.draw(
        st.sampled_from(["save", "hard_state", "compact", "reset", "truncate", "read", "bad_save", "reopen"]),
        label="op",
    )
    if op == "save":
        entries = _entry_run(data, data.draw(st.integers(first, last + 1), label="start"))
        hs = data.draw(st.none() | _hard_states, label="hard_state")
        note(f"save({hs}, {[(e.index, e.term) for e in entries]})")
        store.save(hs, entries)
        model.save(hs, entries)
    elif op == "hard_state":
        hs = data.draw(_hard_states, label="hard_state")
        note(f"save({hs}, [])")
        store.save(hs, [])
        model.save(hs, [])
    elif op == "compact":
        index = data.draw(st.integers(max(0, model.boundary - 2), last + 2), label="index")
        note(f"compact({index})")
        if index > last:
            with pytest.raises(LogStoreError):
                store.compact(index)
        else:
            store.compact(index)
            model.compact(index)
    elif op == "reset":
        index = data.draw(st.integers(0, last + 5), label="index")
        term = data.draw(st.integers(0, 6), label="term")
        note(f"reset({index}, {term})")
        store.reset(index, term)
        model.reset(index, term)
    elif op == "truncate":
        index = data.draw(st.integers(max(0, model.boundary - 1), last + 2), label="index")
        note(f"truncate_suffix({index})")
        if index <= model.boundary:
            with pytest.raises(LogStoreError):
                store.truncate_suffix(index)
        else:
            store.truncate_suffix(index)
            model.truncate(index)
    elif op == "read":
        _check_random_read(data, store, model)
    elif op == "bad_save":
        starts = [last + 2, last + 3] + ([first - 1] if first > 1 else [])
        entries = _entry_run(data, data.draw(st.sampled_from(starts), label="start"))
        note(f"bad save starting at {entries[0].index}")
        with pytest.raises(LogStoreError):
            store.save(data.draw(_hard_states, label="hard_state"), entries)
    else:
        note("reopen")
        store = reopen(store) or store
    return store


def _check_random_read(data: st.DataObject, store: LogStore, model: _Model) -> None:
    first, last = model.boundary + 1, model.last
    if bool(model.log) and data.draw(st.booleans(), label="in range"):
        lo = data.draw(st.integers(first, last), label="lo")
        hi = data.draw(st.integers(lo + 1, last + 1), label="hi")
    else:  # probe the edges, where errors are expected
        lo = data.draw(st.integers(max(0, first - 2), last + 2), label="lo")
        hi = data.draw(st.integers(lo + 1, last + 3), label="hi")
    max_bytes = data.draw(st.none() | st.integers(0, 150), label="max_bytes")
    note(f"entries({lo}, {hi}, {max_bytes})")
    expected_errors: list[type[Exception]] = []
    if lo < first:
        expected_errors.append(LogCompactedError)
    if hi > last + 1:
        expected_errors.append(LogUnavailableError)
    if expected_errors:
        # When both apply the contract does not say which wins.
        with pytest.raises(tuple(expected_errors)):
            store.entries(lo, hi, max_bytes)
    else:
        assert store.entries(lo, hi, max_bytes) == model.read(lo, hi, max_bytes)


def _assert_matches(store: LogStore, model: _Model) -> None:
    first, last = model.boundary + 1, model.last
    assert (store.first_index(), store.last_index()) == (first, last)
    assert store.hard_state() == model.hard_state
    assert store.term(model.boundary) == model.boundary_term
    assert [store.term(i) for i in range(first, last + 1)] == [e.term for e in model.log]
    assert store.entries(first, last + 1) == model.log
    if model.boundary > 0:
        with pytest.raises(LogCompactedError):
            store.term(model.boundary - 1)
    with pytest.raises(LogUnavailableError):
        store.term(last + 1)
