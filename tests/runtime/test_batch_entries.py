"""Commands packed several to a log entry (``EntryKind.BATCH``, issue 13):
the envelope refuses malformed bytes, a leader and a forwarding follower
both pack what waits, every command gets its own outcome, and the format
survives a restart from disk, a snapshot, a follower catching up and a log
written one command per entry (the format raftkit 0.1 wrote)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkit import NodeBuilder
from raftkit.core.types import Entry, EntryKind, proposable
from raftkit.errors import CodecError
from raftkit.runtime.commands import BATCH_ENTRY_BYTES, batch_entries, unwrap_batch, wrap_batch
from raftkit.runtime.node import Node
from raftkit.runtime.pending import PendingCommands
from raftkit.serializers.wire import decode_entry, encode_entry
from raftkit.testing.cluster import LocalCluster, fast_config, wait_until
from raftkit.testing.kv import KeyValueStateMachine, set_command
from raftkit.transports.memory import MemoryNetwork, MemoryTransport

# -- the envelope --------------------------------------------------------------------------


def test_a_batch_envelope_round_trips() -> None:
    data = wrap_batch(b"origin", [3, 4, 9], [b"a", b"", b"\x00" * 10])
    assert unwrap_batch(data) == (b"origin", [3, 4, 9], [b"a", b"", b"\x00" * 10])


@pytest.mark.parametrize(
    "fields",
    [
        (b"o", [1, 2], [b"a"]),  # counts differ
        ("o", [1], [b"a"]),  # origin not bytes
        (b"o", [1.5], [b"a"]),  # seq not an int
        (b"o", [1], ["a"]),  # command not bytes
        (b"o", 1, b"a"),  # the single-command envelope
        (b"o", [1]),  # too few fields
    ],
)
def test_a_malformed_batch_envelope_is_a_codec_error(fields: tuple[Any, ...]) -> None:
    with pytest.raises(CodecError, match="malformed batch entry"):
        unwrap_batch(msgpack.packb(fields, use_bin_type=True))


@pytest.mark.parametrize("data", [b"", b"\xc1", msgpack.packb((b"o", [1], [b"a"])) + b"x"])
def test_undecodable_batch_bytes_are_a_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        unwrap_batch(data)


def test_batches_are_cut_by_count_and_by_bytes_in_order() -> None:
    items = [(i, b"x") for i in range(10)]
    groups = batch_entries(items, per_entry=4)
    assert [seqs for seqs, _ in groups] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    big = BATCH_ENTRY_BYTES // 2 + 1
    huge = b"d" * (2 * BATCH_ENTRY_BYTES)
    groups = batch_entries([(1, b"a" * big), (2, b"b" * big), (3, b"c"), (4, huge)], 100)
    assert [seqs for seqs, _ in groups] == [[1], [2, 3], [4]]  # a command bigger than the cap goes alone


def _cut_one_by_one(batch: list[tuple[int, bytes]], per_entry: int) -> list[tuple[list[int], list[bytes]]]:
    """The rule ``batch_entries`` keeps, command by command: an entry takes
    commands while it has fewer than ``per_entry`` and the next one keeps
    its bytes within ``BATCH_ENTRY_BYTES``; the first always goes in."""
    groups: list[tuple[list[int], list[bytes]]] = []
    for seq, command in batch:
        if groups:
            seqs, commands = groups[-1]
            if len(commands) < per_entry and sum(map(len, commands)) + len(command) <= BATCH_ENTRY_BYTES:
                seqs.append(seq)
                commands.append(command)
                continue
        groups.append(([seq], [command]))
    return groups


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(
        st.one_of(st.integers(0, 64), st.integers(0, BATCH_ENTRY_BYTES + 2),
                  st.sampled_from([BATCH_ENTRY_BYTES // 2, BATCH_ENTRY_BYTES, BATCH_ENTRY_BYTES + 1])),
        max_size=40,
    ),
    per_entry=st.integers(1, 12),
)
def test_batch_entries_cuts_where_the_command_by_command_rule_does(sizes: list[int], per_entry: int) -> None:
    batch = [(seq, b"c" * size) for seq, size in enumerate(sizes, start=100)]
    assert batch_entries(batch, per_entry) == _cut_one_by_one(batch, per_entry)


def test_a_batch_entry_is_a_stored_and_sent_kind_that_older_readers_refuse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from raftkit.serializers import wire

    e = Entry(7, 2, EntryKind.BATCH, wrap_batch(b"o", [1], [b"a"]))
    assert decode_entry(encode_entry(e)) == e
    # raftkit 0.1's decoder knew kinds 0-2 only: it refuses the record (the
    # message or the log is rejected whole) instead of skipping the commands.
    monkeypatch.setattr(wire, "_ENTRY_KINDS", {k.value: k for k in EntryKind if k is not EntryKind.BATCH})
    with pytest.raises(CodecError, match="unknown entry kind int 3"):
        decode_entry(encode_entry(e))


def test_a_forwarded_entry_keeps_batch_or_becomes_a_command() -> None:
    assert proposable(Entry(5, 1, EntryKind.BATCH, b"d")) == Entry(0, 0, EntryKind.BATCH, b"d")
    for kind in (EntryKind.NORMAL, EntryKind.CONFIG, EntryKind.NOOP):
        # A follower cannot forward a membership change or a no-op.
        assert proposable(Entry(5, 1, kind, b"d")) == Entry(0, 0, EntryKind.NORMAL, b"d")


def test_replacing_a_batch_entry_fails_each_of_its_commands() -> None:
    from raftkit.errors import LeadershipLostError

    pending = PendingCommands()
    futures = {}
    for _ in range(3):
        seq, fut = pending.register(deadline=1e18)
        pending.mark_proposed([seq], index=10, term=1)
        futures[seq] = fut
    pending.entry_overwritten(Entry(10, 2, EntryKind.NORMAL, b"someone else's"))
    for fut in futures.values():
        with pytest.raises(LeadershipLostError):
            fut.result(0)
    assert len(pending) == 0


# -- nodes --------------------------------------------------------------------------------


def held_loop(node: Node) -> threading.Event:
    """Park ``node``'s loop until the returned event is set, so commands
    submitted meanwhile are all waiting when it next drains its queue."""
    gate, parked = threading.Event(), threading.Event()

    def park() -> None:
        parked.set()
        gate.wait(10.0)

    node._require_loop().call_soon_threadsafe(park)
    assert parked.wait(5.0)
    return gate


def submit_held(node: Node, commands: Sequence[bytes]) -> list[Any]:
    gate = held_loop(node)
    try:
        futures = [node.submit(c) for c in commands]
    finally:
        gate.set()
    return [f.result(10.0) for f in futures]


def log_kinds(node: Node) -> list[EntryKind]:
    def read() -> list[EntryKind]:
        log = node.raw.raft.log
        return [e.kind for e in log.entries(log.first_index(), log.last_index() + 1)]

    return node.call_in_loop(read)


def wait_applied(nodes: Sequence[Node], index: int) -> None:
    wait_until(lambda: all(n.status()["applied_index"] >= index for n in nodes), timeout=10.0,
               what=f"every node to apply entry {index}")


@pytest.mark.parametrize("via", ["leader", "follower"])
def test_commands_waiting_together_share_entries_and_each_gets_its_outcome(via: str) -> None:
    with LocalCluster(3) as cluster:
        kvs = {a: KeyValueStateMachine() for a in cluster.addresses}
        config = fast_config(commands_per_entry=50)
        nodes = {a: cluster.add_node(a, kvs[a], config) for a in cluster.addresses}
        leader = cluster.wait_leader(5.0)
        node = nodes[leader] if via == "leader" else nodes[cluster.followers()[0]]
        node.propose(set_command("k0", "first"))
        results = submit_held(node, [set_command(f"k{i % 7}", i) for i in range(120)])
        # apply returns the previous value: each command saw exactly its predecessors.
        assert results[:7] == [None if i else "first" for i in range(7)]
        assert results[7:] == list(range(113))
        last = node.status()["commit_index"]
        wait_applied(list(nodes.values()), last)
        assert all(kv.data == kvs[leader].data for kv in kvs.values())
        assert kvs[leader].data == {f"k{i % 7}": i for i in range(113, 120)}
        kinds = log_kinds(nodes[leader])
        assert kinds.count(EntryKind.BATCH) == 3  # 120 commands, 50 per entry
        assert log_kinds(node) == kinds


def test_one_command_per_entry_keeps_the_format_older_releases_read() -> None:
    with LocalCluster(1) as cluster:
        config = fast_config(commands_per_entry=1)
        node = cluster.add_node(cluster.addresses[0], KeyValueStateMachine(), config)
        cluster.wait_leader(5.0)
        submit_held(node, [set_command("k", i) for i in range(20)])
        assert EntryKind.BATCH not in log_kinds(node)
        assert log_kinds(node).count(EntryKind.NORMAL) == 20


def test_commands_per_entry_must_be_positive() -> None:
    with pytest.raises(ValueError, match="commands_per_entry must be at least 1"):
        fast_config(commands_per_entry=0)


# -- on disk ------------------------------------------------------------------------------


@pytest.fixture
def solo_nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


def solo(started: list[Node], kv: KeyValueStateMachine, data_dir: Path, **config: Any) -> Node:
    node = (
        NodeBuilder("solo")
        .partners([])
        .transport(MemoryTransport(MemoryNetwork(auto_deliver=True)))
        .config(fast_config(data_dir=str(data_dir), **config))
        .state_machine(kv)
        .build()
    )
    started.append(node)
    node.start()
    assert node.wait_ready(5)
    return node


@pytest.mark.parametrize("first_per_entry", [1, 256])
def test_a_log_written_in_either_format_is_replayed_after_a_restart(
    solo_nodes: list[Node], tmp_path: Path, first_per_entry: int
) -> None:
    """Written one command per entry (as raftkit 0.1 did) or packed, then
    restarted with packing on: the log replays to the same state, and new
    packed entries follow the old ones."""
    node = solo(solo_nodes, KeyValueStateMachine(), tmp_path, commands_per_entry=first_per_entry)
    submit_held(node, [set_command(f"a{i % 5}", i) for i in range(40)])
    before = log_kinds(node)
    assert (EntryKind.BATCH in before) == (first_per_entry > 1)
    node.stop()

    kv = KeyValueStateMachine()
    node = solo(solo_nodes, kv, tmp_path)
    wait_until(lambda: kv.data.get("a4") == 39, timeout=5.0, what="the log to be replayed")
    assert kv.data == {f"a{i}": 35 + i for i in range(5)}
    submit_held(node, [set_command("b", i) for i in range(30)])
    assert log_kinds(node)[: len(before)] == before
    assert log_kinds(node)[-1] is EntryKind.BATCH
    assert kv.data["b"] == 29


def test_packed_entries_survive_a_snapshot_and_a_follower_catching_up() -> None:
    """A follower that was down while packed entries were written and
    compacted away catches up from the snapshot and the packed tail."""
    config = fast_config(log_compaction_min_entries=5, log_compaction_keep=1, snapshot_mode="inline")
    with LocalCluster(3) as cluster:
        kvs = {a: KeyValueStateMachine() for a in cluster.addresses}
        nodes = {a: cluster.add_node(a, kvs[a], config) for a in cluster.addresses}
        leader = cluster.wait_leader(5.0)
        late = cluster.followers()[0]
        cluster.stop(late)
        for round_ in range(6):
            submit_held(nodes[leader], [set_command(f"k{i}", round_ * 100 + i) for i in range(60)])
        wait_until(lambda: nodes[leader].status()["snapshot_index"] > 0, timeout=10.0,
                   what="the leader to take a snapshot")
        assert EntryKind.BATCH in log_kinds(nodes[leader])
        kvs[late] = KeyValueStateMachine()
        nodes[late] = cluster.add_node(late, kvs[late], config)
        submit_held(nodes[leader], [set_command(f"k{i}", 1000 + i) for i in range(60)])
        wait_applied(list(nodes.values()), nodes[leader].status()["commit_index"])
        assert kvs[late].data == kvs[leader].data == {f"k{i}": 1000 + i for i in range(60)}


# -- durable state machines ---------------------------------------------------------------


class OwnIndexKV(KeyValueStateMachine):
    """Keeps its own applied index (as an LMDB state machine does) but has
    no ``apply_entries``: it cannot apply a packed entry atomically."""

    def __init__(self) -> None:
        super().__init__()
        self.mark = 0

    @property
    def applied_index(self) -> int:
        return self.mark

    def apply_entry(self, index: int, command: bytes) -> Any:
        if index <= self.mark:
            return None
        result = self.apply(command)
        self.mark = index
        return result


def test_a_state_machine_without_atomic_batches_gets_one_command_per_entry() -> None:
    with LocalCluster(1) as cluster:
        kv = OwnIndexKV()
        node = cluster.add_node(cluster.addresses[0], kv)
        cluster.wait_leader(5.0)
        assert submit_held(node, [set_command("k", i) for i in range(30)]) == [None, *range(29)]
        assert EntryKind.BATCH not in log_kinds(node)
        assert kv.data == {"k": 29}


def test_a_packed_entry_reaching_such_a_state_machine_stops_it_with_the_reason() -> None:
    """A leader configured otherwise sends one anyway: the follower stops
    applying at that entry (it would otherwise skip commands after a
    restart) and says why."""
    with LocalCluster(2) as cluster:
        first, second = cluster.addresses
        kv = OwnIndexKV()
        leader = cluster.add_node(first, KeyValueStateMachine())
        patient = fast_config(election_timeout_min=5.0, election_timeout_max=9.0, heartbeat_interval=0.05)
        follower = cluster.add_node(second, kv, patient)
        assert cluster.wait_leader(10.0) == first
        submit_held(leader, [set_command("k", i) for i in range(10)])
        wait_until(lambda: follower.status()["storage_error"], timeout=5.0, what="the follower to stop")
        assert "apply_entries" in follower.status()["storage_error"]
        assert "k" not in kv.data


def test_a_syncobj_batch_stopped_part_way_never_runs_a_call_twice() -> None:
    """The cluster switches to a code version this process lacks in the
    middle of a packed entry: the calls before the switch ran once, the
    node retries the entry (it stops again) without running them again."""
    from raftkit.batteries import ReplCounter
    from raftkit.syncobj.versions import UnsupportedCodeVersionError
    from raftkit.testing.conformance.replicated_objects import call_command, standalone_object_machine

    counter = ReplCounter()
    sm = standalone_object_machine([counter])
    inc = call_command(("inc", (), {}))
    switch = call_command(("set_code_version", (99,), {}), target=-2)
    batch = [inc, inc, switch, inc]
    for _ in range(3):  # the first try and two retries
        with pytest.raises(UnsupportedCodeVersionError):
            sm.apply_entries(5, batch)
        assert counter.get() == 2
        assert sm.applied_index < 5
    outcomes = sm.apply_entries(4, [inc])  # another entry is not taken for the stopped one
    assert counter.get() == 3 and outcomes == [(3, None)]


def test_a_call_logged_as_tuples_by_an_earlier_release_still_applies() -> None:
    """Calls are now logged as msgpack arrays (no type markers to decode);
    the tuple form raftkit 0.1 wrote replays the same way."""
    from raftkit.batteries import ReplCounter
    from raftkit.serializers import MsgpackSerializer
    from raftkit.testing.conformance.replicated_objects import call_command, standalone_object_machine

    counter = ReplCounter()
    sm = standalone_object_machine([counter])
    earlier = MsgpackSerializer().dumps((0, "add", (5,), {}))
    assert call_command(("add", (5,), {})) != earlier
    assert sm.apply_entry(1, earlier) == 5
    assert sm.apply_entry(2, call_command(("add", (5,), {}))) == 10
    assert counter.get() == 10


# -- durable SyncObj consumers (review) ---------------------------------------------------


def test_a_batch_never_skips_calls_of_a_durable_consumer(tmp_path: Path) -> None:
    """Each call of a packed entry runs under the entry's index
    (``current_entry_index``): an LmdbDict consumer hands it to its LMDB
    state machine's ``apply_entry``, which would take the second call of
    the same entry for one it already holds. Such an object machine packs
    one call per entry, and a packed entry reaching it stops it before any
    call runs (never a silent skip)."""
    from raftkit.batteries import LmdbDict
    from raftkit.testing.conformance.replicated_objects import call_command, standalone_object_machine

    d = LmdbDict(tmp_path / "db", durability="no-sync", map_size=1 << 20)
    try:
        sm = standalone_object_machine([d])
        assert sm.takes_batches is False  # type: ignore[attr-defined]
        calls = [call_command(("set", (k, v), {})) for k, v in [("a", 1), ("b", 2), ("c", 3)]]
        with pytest.raises(TypeError, match="commands_per_entry=1"):
            sm.apply_entries(5, calls)
        assert sm.applied_index < 5
        assert dict(d.items()) == {}
        assert sm.apply_entries(6, calls[:1]) == [(None, None)]  # a lone call is fine
        assert dict(d.items()) == {"a": 1}
    finally:
        d.close()


def test_syncobj_calls_on_an_lmdb_dict_that_share_an_entry_all_apply(tmp_path: Path) -> None:
    """End to end: calls queued together on a SyncObj node are packed into
    one entry; every set must reach the LmdbDict on every node."""
    from raftkit import SyncObj
    from raftkit.batteries import LmdbDict
    from raftkit.testing.cluster import fast_conf

    dicts: dict[str, LmdbDict] = {}

    def make(address: str, partners: list[str], transport: Any) -> SyncObj:
        path = tmp_path / address.replace(":", "_")
        dicts[address] = LmdbDict(path, durability="no-sync", map_size=1 << 22)
        return SyncObj(address, partners, fast_conf(), consumers=[dicts[address]], transport=transport)

    with LocalCluster(3) as cluster:
        cluster.add_syncobjs(make)
        leader = cluster.wait_leader(5.0)
        d = dicts[leader]
        gate = held_loop(cluster.objs[leader].get_node())
        try:
            for i in range(20):
                d.set(f"k{i}", i)  # queued; applied later
        finally:
            gate.set()
        d.set("last", True, sync=True)
        expected = {**{f"k{i}": i for i in range(20)}, "last": True}
        # Wait for the expected state everywhere; with calls lost, check what there is.
        with contextlib.suppress(AssertionError):
            wait_until(lambda: all(dict(x.items()) == expected for x in dicts.values()), timeout=5.0)
        for x in dicts.values():
            assert dict(x.items()) == expected


def test_a_snapshot_of_a_batch_stopped_part_way_holds_no_call_of_that_entry() -> None:
    """A node stops part way through a packed entry (a code version it
    lacks): the calls before the switch ran, and ``applied`` is still the
    entry before. A snapshot taken meanwhile (forceLogCompaction, or the
    age trigger) is labelled with that earlier index, so it must not hold
    effects of the stopped entry: a follower installing it would apply
    them again."""
    from raftkit import SyncObj, replicated
    from raftkit.syncobj.object_machine import _SET_CODE_VERSION, _SYSTEM
    from raftkit.testing.cluster import fast_conf
    from raftkit.testing.conformance.replicated_objects import object_machine_of

    class Counter(SyncObj):
        def __init__(self, address: str, partners: list[str], transport: Any) -> None:
            super().__init__(address, partners, fast_conf(), transport=transport)
            self.value = 0

        @replicated
        def inc(self) -> int:
            self.value += 1
            return self.value

    with LocalCluster(1) as cluster:
        (obj,) = cluster.add_syncobjs(Counter)
        cluster.wait_leader(5.0)
        obj.inc(sync=True)
        node = obj.get_node()
        before = node.status()["applied_index"]
        serializer = obj._rk_serializer
        inc = serializer.dumps([-1, "inc", [], {}])
        switch = serializer.dumps([_SYSTEM, _SET_CODE_VERSION, [99], {}])  # as a newer node logs it
        gate = held_loop(node)
        try:
            for command in (inc, inc, switch, inc):
                node.submit(command, timeout=30.0)
        finally:
            gate.set()
        wait_until(lambda: node.status()["error"] or node.status()["storage_error"], timeout=5.0,
                   what="the node to stop at the code version")
        assert obj.value == 3  # the two calls before the switch ran
        stopped_at = before + 1
        assert node.status()["applied_index"] == before
        with contextlib.suppress(Exception):  # refused while the entry is stopped part way
            obj.force_log_compaction().result(10.0)
        meta = node.snapshots.snapshotter.latest()
        if meta is not None:
            assert meta.index < stopped_at
            with node.snapshots.snapshotter.open(meta.index) as src:
                data = src.read()
            fresh = Counter("fresh", [], MemoryTransport(MemoryNetwork()))
            try:
                object_machine_of(fresh).restore(data)
                assert fresh.value == 1, f"snapshot at {meta.index} holds calls of entry {stopped_at}"
            finally:
                fresh.destroy()


def test_commands_a_follower_forwards_fit_in_the_transports_frames() -> None:
    """A follower forwards what waits in PROPOSE messages of at most
    ``max_entries_per_msg`` entries: with commands packed up to 256 to an
    entry, that count alone no longer bounds a message's size, and one
    message larger than the transport's frame is dropped whole (every
    command in it times out). Here 1000 small commands, 64 to a message
    unpacked, made one ~200 KB message over a 64 KiB frame."""
    import socket

    pytest.importorskip("raftkit.transports.tcp")
    from raftkit.transports.tcp import TcpTransport

    sockets = [socket.socket() for _ in range(3)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    config = fast_config(max_entries_per_msg=64, max_bytes_per_msg=64 << 10)
    nodes = [
        NodeBuilder(a)
        .partners([p for p in addresses if p != a])
        .transport(TcpTransport(a, max_frame_bytes=64 << 10))
        .config(config)
        .state_machine(KeyValueStateMachine())
        .build()
        for a in addresses
    ]
    try:
        for n in nodes:
            n.start()
        wait_until(lambda: any(n.raw.raft.role.name == "LEADER" for n in nodes), timeout=10.0,
                   what="a leader")
        follower = next(n for n in nodes if n.raw.raft.role.name != "LEADER")
        follower.propose(set_command("first", 0), timeout=10.0)
        gate = held_loop(follower)
        try:
            futures = [follower.submit(set_command(f"k{i}", "v" * 150), timeout=10.0) for i in range(1000)]
        finally:
            gate.set()
        outcomes = []
        for f in futures:
            try:
                f.result(20.0)
                outcomes.append("ok")
            except Exception as exc:  # noqa: BLE001 - counted below
                outcomes.append(type(exc).__name__)
        assert outcomes.count("ok") == 1000, {o: outcomes.count(o) for o in set(outcomes)}
        assert follower.transport.stats.messages_dropped == 0
    finally:
        for n in nodes:
            n.stop()


class MiscountingKV(KeyValueStateMachine):
    """An ``apply_entries`` that returns one outcome too few (a bug)."""

    def apply_entries(self, index: int, commands: Sequence[bytes]) -> list[tuple[Any, BaseException | None]]:
        return super().apply_entries(index, commands)[:-1]


def test_a_miscounted_batch_fails_its_commands_at_once_instead_of_leaving_them_to_time_out() -> None:
    with LocalCluster(1) as cluster:
        node = cluster.add_node(cluster.addresses[0], MiscountingKV())
        cluster.wait_leader(5.0)
        gate = held_loop(node)
        try:
            futures = [node.submit(set_command("k", i), timeout=30.0) for i in range(5)]
        finally:
            gate.set()
        for f in futures:
            with pytest.raises(ValueError, match="outcomes for"):
                f.result(5.0)


# -- what a leader takes from others ------------------------------------------------------------


def repacking_queue(per_entry: int) -> Any:
    from raftkit.runtime.commands import CommandQueue
    from raftkit.runtime.config import NodeConfig

    return CommandQueue(None, NodeConfig(), PendingCommands(), b"me", wake_soon=lambda: None,  # type: ignore[arg-type]
                        per_entry=lambda: per_entry)


def propose_of(*entries: Entry) -> Any:
    from raftkit.core.types import Message, MessageType

    return Message(type=MessageType.PROPOSE, src="f", dst="l", term=1, entries=entries)


def test_a_leader_cuts_forwarded_batches_to_its_own_commands_per_entry() -> None:
    from raftkit.runtime.commands import unwrap

    five = Entry(0, 0, EntryKind.BATCH, wrap_batch(b"o", [1, 2, 3, 4, 5], [b"a", b"b", b"c", b"d", b"e"]))
    single = Entry(0, 0, EntryKind.NORMAL, b"whatever")
    cut = repacking_queue(2).repack(propose_of(single, five)).entries
    assert cut[0] == single
    assert [unwrap_batch(e.data) for e in cut[1:]] == [
        (b"o", [1, 2], [b"a", b"b"]), (b"o", [3, 4], [b"c", b"d"]), (b"o", [5], [b"e"])]
    ones = repacking_queue(1).repack(propose_of(five)).entries
    assert {e.kind for e in ones} == {EntryKind.NORMAL}  # the format raftkit 0.1 reads
    letters = [b"a", b"b", b"c", b"d", b"e"]
    assert [unwrap(e.data) for e in ones] == [(b"o", i + 1, c) for i, c in enumerate(letters)]
    fits = propose_of(five)
    assert repacking_queue(5).repack(fits) is fits  # nothing to do: the same message


def test_a_leader_drops_empty_or_undecodable_batches_from_others(caplog: pytest.LogCaptureFixture) -> None:
    empty = Entry(0, 0, EntryKind.BATCH, wrap_batch(b"o", [], []))
    junk = Entry(0, 0, EntryKind.BATCH, b"\xc1")
    good = Entry(0, 0, EntryKind.BATCH, wrap_batch(b"o", [1], [b"a"]))
    assert repacking_queue(256).repack(propose_of(empty, junk, good)).entries == (good,)
    assert "dropped a packed command entry from f" in caplog.text


def test_a_leader_packing_one_per_entry_keeps_the_old_format_whatever_followers_send() -> None:
    """The rolling-upgrade rule: a leader run with commands_per_entry=1 writes
    no packed entry, even for commands a packing follower forwards."""
    with LocalCluster(3) as cluster:
        kvs = {a: KeyValueStateMachine() for a in cluster.addresses}
        leader_address = cluster.addresses[0]
        nodes = {}
        for a in cluster.addresses:
            patient = fast_config(election_timeout_min=5.0, election_timeout_max=9.0, heartbeat_interval=0.05)
            config = fast_config(commands_per_entry=1) if a == leader_address else patient
            nodes[a] = cluster.add_node(a, kvs[a], config)
        assert cluster.wait_leader(10.0) == leader_address
        follower = nodes[cluster.addresses[1]]
        assert submit_held(follower, [set_command("k", i) for i in range(40)]) == [None, *range(39)]
        assert EntryKind.BATCH not in log_kinds(nodes[leader_address])
        wait_applied(list(nodes.values()), nodes[leader_address].status()["commit_index"])
        assert all(kv.data == {"k": 39} for kv in kvs.values())


# -- randomized: what the test saw, against a model ----------------------------------------------

bursts = st.lists(
    st.tuples(st.integers(0, 2), st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 99)), min_size=1,
                                          max_size=40)),
    min_size=1, max_size=6,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(per_entry=st.integers(1, 9), bursts=bursts)
def test_every_command_of_every_burst_gets_its_own_outcome(per_entry: int, bursts: list[Any]) -> None:
    with LocalCluster(3) as cluster:
        kvs = {a: KeyValueStateMachine() for a in cluster.addresses}
        config = fast_config(commands_per_entry=per_entry)
        nodes = [cluster.add_node(a, kvs[a], config) for a in cluster.addresses]
        cluster.wait_leader(10.0)
        model: dict[str, int] = {}
        for at, writes in bursts:
            expected = []
            for key, value in writes:
                expected.append(model.get(key))
                model[key] = value
            assert submit_held(nodes[at], [set_command(k, v) for k, v in writes]) == expected
        wait_until(lambda: all(kv.data == model for kv in kvs.values()), timeout=10.0,
                   what="every replica to equal the model")


def test_slow_commands_get_small_entries_so_the_apply_budget_holds() -> None:
    """A packed entry is applied whole, the budget checked between entries:
    a node whose commands take 2 ms packs at most apply_budget / 2 ms = 10."""
    import time

    class Slow(KeyValueStateMachine):
        def apply(self, command: bytes) -> Any:
            deadline = time.perf_counter() + 0.002
            while time.perf_counter() < deadline:
                pass
            return super().apply(command)

    with LocalCluster(1) as cluster:
        node = cluster.add_node(cluster.addresses[0], Slow(), fast_config(apply_budget=0.02))
        cluster.wait_leader(5.0)
        for i in range(3):
            node.propose(set_command("warm", i))  # the node learns how long one takes
        assert submit_held(node, [set_command("k", i) for i in range(200)]) == [None, *range(199)]

        def sizes() -> list[int]:
            log = node.raw.raft.log
            entries = log.entries(log.first_index(), log.last_index() + 1)
            return [len(unwrap_batch(e.data)[2]) for e in entries if e.kind is EntryKind.BATCH]

        packed = node.call_in_loop(sizes)
        assert packed and max(packed) <= 10, packed


def test_a_propose_from_a_non_member_is_not_unpacked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core drops it unread; the node must not decode (and re-cut) its
    packed entries first, which would be work any outsider could make it do."""
    from raftkit.runtime.commands import CommandQueue

    unpacked: list[str] = []
    original = CommandQueue.repack
    monkeypatch.setattr(CommandQueue, "repack", lambda self, m: unpacked.append(m.src) or original(self, m))
    with LocalCluster(3) as cluster:
        nodes = {a: cluster.add_node(a, KeyValueStateMachine()) for a in cluster.addresses}
        leader = nodes[cluster.wait_leader(5.0)]
        before = leader.status()["log_last_index"]
        from raftkit.core.types import Message, MessageType

        term = leader.status()["term"]
        many = Entry(0, 0, EntryKind.BATCH, wrap_batch(b"x", list(range(300)), [b"c"] * 300))
        outsider = Message(MessageType.PROPOSE, "outsider", leader.id, term=term, entries=(many,))
        junk = (Entry(0, 0, EntryKind.BATCH, b"\xc1"),)
        member = Message(MessageType.PROPOSE, cluster.followers()[0], leader.id, term=term, entries=junk)
        leader.call_in_loop(lambda: (leader._on_message(outsider), leader._on_message(member)))
        assert unpacked == [member.src]  # the member's was read (its junk dropped), the outsider's not
        assert leader.call_in_loop(lambda: leader.raw.raft.log.last_index()) == before


def test_an_undecodable_packed_entry_in_the_log_is_skipped_alike_and_the_node_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only a leader that did not check could append one: every node skips
    it the same way (with an error logged) and applies what follows."""
    with LocalCluster(3) as cluster:
        kvs = {a: KeyValueStateMachine() for a in cluster.addresses}
        nodes = {a: cluster.add_node(a, kvs[a]) for a in cluster.addresses}
        leader = nodes[cluster.wait_leader(5.0)]
        leader.call_in_loop(lambda: leader.raw.propose_batch([b"\xc1"], EntryKind.BATCH))
        assert leader.propose(set_command("after", 1)) is None
        wait_applied(list(nodes.values()), leader.status()["commit_index"])
        assert all(kv.data == {"after": 1} for kv in kvs.values())
        assert all(n.status()["error"] is None for n in nodes.values())
        assert "skipping undecodable entry" in caplog.text
