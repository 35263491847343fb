"""Hostile peers on a real TCP cluster (127.0.0.1): snapshots are validated
before anything is stored (only the current leader of the current term,
within ``max_snapshot_bytes``), and a SNAPSHOT message without its stream
is refused without harm. The attacker is a raw socket speaking raftkit's
own frames."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator

import pytest

from raftkit import NodeBuilder
from raftkit.core.bounds import CEILING, MAX_TERM
from raftkit.core.membership import encode_change
from raftkit.core.types import ConfState, Entry, Message, MessageType, SnapshotMeta
from raftkit.runtime.config import NodeConfig
from raftkit.runtime.membership_ops import MembershipError
from raftkit.runtime.node import Node
from raftkit.serializers import wire
from raftkit.testing.cluster import LocalCluster, fast_config, wait_until
from raftkit.testing.kv import KeyValueStateMachine, set_command
from raftkit.transports.framing import FrameKind, batch_parts, encode_frame, encode_hello

pytest.importorskip("raftkit.transports.tcp")


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture
def nodes() -> Iterator[dict[str, Node]]:
    ids = ["n1", "n2", "n3"]
    peers = {i: f"127.0.0.1:{p}" for i, p in zip(ids, free_ports(3), strict=True)}
    built: dict[str, Node] = {}
    try:
        for i in ids:
            config = fast_config(max_snapshot_bytes=1 << 20)
            builder = NodeBuilder(i, peers[i]).peers(peers).config(config)
            built[i] = builder.state_machine(KeyValueStateMachine()).build()
            built[i].start()
        yield built
    finally:
        for node in built.values():
            node.stop()


def leader_of(nodes: dict[str, Node]) -> str:
    def agreed() -> str | None:
        leaders = {n.status().get("leader") for n in nodes.values()}
        return leaders.pop() if len(leaders) == 1 else None

    wait_until(lambda: agreed() is not None, timeout=10, what="a leader every node knows")
    leader = agreed()
    assert leader is not None
    return leader


def write(nodes: dict[str, Node], key: str, value: str) -> None:
    """Commit on the leader, then wait (bounded) until every node applied it:
    the tests then read a follower's state machine directly."""
    leader = nodes[leader_of(nodes)]
    leader.submit(set_command(key, value), timeout=5).result(timeout=10)
    index = leader.status()["applied_index"]
    deadline = time.monotonic() + 10
    while any(n.status()["applied_index"] < index for n in nodes.values()):
        assert time.monotonic() < deadline, "a follower did not apply the write within 10 s"
        time.sleep(0.01)


def address(node: Node) -> tuple[str, int]:
    host, port = node.peers[node.id].rsplit(":", 1)
    return host, int(port)


class Attacker:
    """A raw connection to ``node`` that names itself ``src`` in HELLO."""

    def __init__(self, node: Node, src: str) -> None:
        self.sock = socket.create_connection(address(node), timeout=5)
        self.dst = node.id
        self.sock.sendall(encode_frame(FrameKind.HELLO, [encode_hello(src, node.id)]))

    def stream(self, message: Message, size: int, chunk: int = 256 * 1024) -> bytes | None:
        """Send a whole snapshot stream; the node's SNAPSHOT_ACK byte, or
        None if the node closed the connection instead."""
        try:
            self.sock.sendall(encode_frame(FrameKind.SNAPSHOT_BEGIN, [wire.encode_message(message)]))
            sent = 0
            while sent < size:
                piece = b"\xab" * min(chunk, size - sent)
                self.sock.sendall(encode_frame(FrameKind.SNAPSHOT_CHUNK, [piece]))
                sent += len(piece)
            self.sock.sendall(encode_frame(FrameKind.SNAPSHOT_END))
        except OSError:
            return None
        return self.read_ack()

    def read_ack(self) -> bytes | None:
        data = b""
        deadline = time.monotonic() + 5
        while len(data) < 10 and time.monotonic() < deadline:
            try:
                more = self.sock.recv(10 - len(data))
            except OSError:
                return None
            if not more:
                return None
            data += more
        assert data[8] == FrameKind.SNAPSHOT_ACK, data
        return data[9:10]

    def batch(self, *messages: Message) -> None:
        encoded = [wire.encode_message(m) for m in messages]
        self.sock.sendall(encode_frame(FrameKind.BATCH, batch_parts(encoded)))

    def close(self) -> None:
        self.sock.close()


def snapshot_message(src: str, dst: str, term: int, index: int, voters: list[str]) -> Message:
    meta = SnapshotMeta(index, max(1, term), ConfState(voters=frozenset(voters)))
    return Message(MessageType.SNAPSHOT, src, dst, term=term, snapshot=meta)


def a_follower(nodes: dict[str, Node]) -> Node:
    leader = leader_of(nodes)
    return next(n for i, n in nodes.items() if i != leader)


def test_a_snapshot_stream_from_a_stranger_is_refused_before_anything_is_stored(
    nodes: dict[str, Node],
) -> None:
    write(nodes, "k", "v")
    victim = a_follower(nodes)
    term = victim.status()["term"]
    before = victim.snapshotter.list()
    for i in range(4):  # more than the snapshotter keeps: none may evict the real ones
        evil = Attacker(victim, "evil")
        try:
            ack = evil.stream(snapshot_message("evil", victim.id, term, 10**9 + i, ["evil"]), 64 * 1024)
        finally:
            evil.close()
        assert ack == b"\x00"  # refused, and the sender told so
    assert victim.snapshotter.list() == before
    assert victim.state_machine.data.get("k") == "v"
    write(nodes, "k2", "v2")  # the cluster is unharmed


def test_a_snapshot_stream_in_the_leaders_name_from_an_older_term_is_refused(nodes: dict[str, Node]) -> None:
    write(nodes, "k", "v")
    leader = leader_of(nodes)
    victim = a_follower(nodes)
    term = victim.status()["term"]
    old = snapshot_message(leader, victim.id, term - 1, 10**9, sorted(nodes))
    other = next(i for i in nodes if i not in (leader, victim.id))
    not_leader = snapshot_message(other, victim.id, term, 10**9, sorted(nodes))
    for message in (old, not_leader):
        evil = Attacker(victim, message.src)
        try:
            assert evil.stream(message, 64 * 1024) == b"\x00"
        finally:
            evil.close()
    assert victim.snapshotter.list() == []
    assert victim.status()["applied_index"] >= 2 and victim.status()["error"] is None


def test_a_snapshot_stream_over_max_snapshot_bytes_is_cut_and_nothing_is_kept(nodes: dict[str, Node]) -> None:
    leader = leader_of(nodes)
    victim = a_follower(nodes)
    for i in range(3):  # the victim holds as many snapshots as it keeps: none may be evicted
        write(nodes, "k", f"v{i}")
        wait_until(lambda i=i: victim.state_machine.data.get("k") == f"v{i}", timeout=10, what="applied")
        victim.request_log_compaction().result(timeout=10)
    before = victim.snapshotter.list()
    assert len(before) >= 2
    write(nodes, "k", "v")
    term = victim.status()["term"]
    message = snapshot_message(leader, victim.id, term, 10**9, sorted(nodes))
    # Even the leader's own name and term (plain TCP proves no identity)
    # cannot push more than max_snapshot_bytes (1 MiB here).
    evil = Attacker(victim, leader)
    try:
        ack = evil.stream(message, 3 << 20)
    finally:
        evil.close()
    assert ack is None  # the connection was cut
    # A stream that declares its length (as a leader does) is refused before it starts.
    declared = dataclasses.replace(message, index=3 << 20)
    evil = Attacker(victim, leader)
    try:
        assert evil.stream(declared, 64 * 1024) == b"\x00"
    finally:
        evil.close()
    assert victim.snapshotter.list() == before
    wait_until(lambda: victim.state_machine.data.get("k") == "v", timeout=10, what="v applied")
    write(nodes, "k2", "v2")


def test_a_snapshot_message_without_its_stream_is_refused_without_freezing_the_node(
    nodes: dict[str, Node],
) -> None:
    write(nodes, "k", "v")
    leader = leader_of(nodes)
    for victim in nodes.values():
        term = victim.status()["term"]
        for src, t in ((leader, term), ("evil", term + 5)):
            evil = Attacker(victim, src)
            try:
                evil.batch(snapshot_message(src, victim.id, t, 10**12, sorted(nodes)))
            finally:
                evil.close()
    time.sleep(0.3)  # let the frames land; what follows waits on conditions
    write(nodes, "k2", "v2")
    wait_until(lambda: all(n.state_machine.data.get("k2") == "v2" for n in nodes.values()), timeout=10,
               what="k2 applied everywhere")
    for n in nodes.values():
        assert n.status()["error"] is None


@pytest.mark.parametrize("value", [0, -1])
def test_max_snapshot_bytes_must_be_positive(value: int) -> None:
    with pytest.raises(ValueError, match="max_snapshot_bytes must be a positive number of bytes"):
        NodeConfig(max_snapshot_bytes=value)


class _Quiet:
    """The inbound handler of the attacker's own transport: ignores replies."""

    def __init__(self) -> None:
        self.outcomes: list[bool] = []

    def on_message(self, message: Message) -> None:
        pass

    def on_snapshot(self, message: Message, chunks: object) -> None:
        pass

    def on_snapshot_status(self, peer: str, ok: bool) -> None:
        self.outcomes.append(ok)


def test_the_node_itself_refuses_a_strangers_snapshot_on_a_transport_that_asks_nothing() -> None:
    """The memory transport hands whole streams over without asking the node
    first; the node still stores nothing that is not its leader's."""
    with LocalCluster(3) as cluster:
        for a in cluster.addresses:
            cluster.add_node(a, KeyValueStateMachine(), fast_config(max_snapshot_bytes=1 << 20))
        leader = cluster.wait_leader(timeout=10)
        cluster.nodes[leader].submit(set_command("k", "v"), timeout=5).result(timeout=10)
        victim = cluster.nodes[next(a for a in cluster.addresses if a != leader)]
        # A follower learns a commit it did not propose by the next append or tick.
        wait_until(lambda: victim.state_machine.data.get("k") == "v", timeout=5, what="the victim applied k")
        term = victim.status()["term"]
        evil_handler = _Quiet()
        evil = cluster.transport()
        evil.start("evil", evil_handler)
        evil.update_peers({victim.id: victim.id})
        try:
            cases = [
                (snapshot_message("evil", victim.id, term, 10**9, ["evil"]), 1024),  # a stranger
                (snapshot_message(leader, victim.id, term - 1, 10**9, [leader]), 1024),  # an old term
                (snapshot_message(leader, victim.id, term, 10**9, [leader]), 2 << 20),  # too big
            ]
            for message, size in cases:
                evil.send_snapshot(message, iter([b"\xab" * size]))
            wait_until(lambda: len(evil_handler.outcomes) == len(cases), timeout=5, what="every outcome")
        finally:
            evil.close()
        assert victim.snapshotter.list() == []
        assert victim.state_machine.data.get("k") == "v" and victim.status()["error"] is None


# -- terms, proposals and membership requests from strangers -------------------------------


@pytest.mark.parametrize("term", [2**64 - 1, 2**63, 2**62 + 10])
def test_a_frame_with_an_absurd_term_changes_no_term(nodes: dict[str, Node], term: int) -> None:
    """A stranger's frame changes nothing. Under a member's name (plain TCP),
    a term beyond the ceiling changes nothing either, and one within it but
    too far above raises the terms no further than a frame with ``MAX_TERM``
    would (raftkit.core.bounds: members' terms must be able to converge)."""
    write(nodes, "k", "v")
    leader = leader_of(nodes)
    terms = {i: n.status()["term"] for i, n in nodes.items()}
    for src in ("evil", next(i for i in nodes if i != leader)):  # a stranger, and a member's name
        evil = Attacker(nodes[leader], src)
        try:
            evil.batch(Message(MessageType.APPEND_RESP, src, leader, term=term))
        finally:
            evil.close()
        if src == "evil":
            time.sleep(0.2)
            assert {i: n.status()["term"] for i, n in nodes.items()} == terms
    write(nodes, "k2", "v2")
    after = {i: n.status()["term"] for i, n in nodes.items()}
    if term > CEILING:
        assert after == terms and leader_of(nodes) == leader
    else:
        assert all(t < MAX_TERM + 10 for t in after.values()), after


def test_proposals_and_membership_changes_from_a_stranger_have_no_effect(nodes: dict[str, Node]) -> None:
    write(nodes, "k", "v")
    leader = leader_of(nodes)
    victim = next(i for i in nodes if i != leader)
    term = nodes[leader].status()["term"]
    for dst in (leader, victim):  # the leader, and a follower that would forward them
        pwn = (Entry(0, 0, data=set_command("pwn", 1)),)
        remove, add = encode_change("remove", victim), encode_change("add_learner", "evil", "x:1")
        evil = Attacker(nodes[dst], "evil")
        try:
            evil.batch(
                Message(MessageType.PROPOSE, "evil", dst, term=term, entries=pwn),
                Message(MessageType.CONF_CHANGE, "evil", dst, term=term, context=remove),
                Message(MessageType.CONF_CHANGE, "evil", dst, term=term, context=add),
            )
        finally:
            evil.close()
    write(nodes, "k2", "v2")  # anything the stranger got in would be applied before this
    wait_until(
        lambda: all(n.state_machine.data.get("k2") == "v2" for n in nodes.values()),
        timeout=10,
        what="k2 applied everywhere",
    )
    for n in nodes.values():
        assert "pwn" not in n.state_machine.data
        assert n.members()["voters"] == sorted(nodes) and n.members()["learners"] == []
        assert n.metrics.last_contact(["evil"]) == {"evil": None}  # made-up names are not remembered


def test_join_cluster_over_plain_tcp_is_refused_with_a_clear_error(nodes: dict[str, Node]) -> None:
    peers = dict(next(iter(nodes.values())).peers)
    peers["n4"] = f"127.0.0.1:{free_ports(1)[0]}"
    builder = NodeBuilder("n4", peers["n4"]).peers(peers).config(fast_config(join=True))
    n4 = builder.state_machine(KeyValueStateMachine()).build()
    n4.start()
    try:
        with pytest.raises(MembershipError, match="authenticated transport.*add_member"):
            n4.join_cluster(timeout=5)
    finally:
        n4.stop()


def test_join_cluster_still_works_over_an_authenticated_transport() -> None:
    with LocalCluster(3) as cluster:  # the memory transport is authenticated (one process)
        for a in cluster.addresses:
            cluster.add_node(a, KeyValueStateMachine())
        leader = cluster.wait_leader(timeout=10)
        cluster.nodes[leader].submit(set_command("k", "v"), timeout=5).result(timeout=10)
        builder = NodeBuilder("node4").partners(cluster.addresses).transport(cluster.transport())
        n4 = builder.config(fast_config(join=True)).state_machine(KeyValueStateMachine()).build()
        cluster.nodes["node4"] = n4
        n4.start()
        n4.join_cluster(timeout=20)
        assert "node4" in n4.members()["voters"]
        wait_until(lambda: n4.state_machine.data.get("k") == "v", timeout=10, what="node4 caught up")


def test_a_flood_of_refused_snapshots_is_logged_once_saying_why(caplog: pytest.LogCaptureFixture) -> None:
    with LocalCluster(3) as cluster:
        for a in cluster.addresses:
            cluster.add_node(a, KeyValueStateMachine())
        leader = cluster.wait_leader(timeout=10)
        victim = cluster.nodes[next(a for a in cluster.addresses if a != leader)]
        wait_until(lambda: victim.status()["leader"] == leader, timeout=10, what="the victim to know it")
        term = victim.status()["term"]
        evil_handler = _Quiet()
        evil = cluster.transport()
        evil.start("evil", evil_handler)
        evil.update_peers({victim.id: victim.id})
        caplog.set_level("WARNING", logger="raftkit.runtime.snapshot_admission")
        try:
            for i in range(20):
                message = snapshot_message("evil", victim.id, term, 10**9 + i, ["evil"])
                evil.send_snapshot(message, iter([b"x"]))
            wait_until(lambda: len(evil_handler.outcomes) == 20, timeout=5, what="every outcome")
        finally:
            evil.close()
        lines = [r.getMessage() for r in caplog.records if "refused a snapshot from evil" in r.getMessage()]
        assert len(lines) == 1, lines
        assert f"not from the current leader ({leader} in term {term}" in lines[0]
        assert victim.snapshotter.list() == []
