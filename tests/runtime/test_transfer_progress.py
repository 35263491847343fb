"""Progress of a snapshot being received: the rate and ETA arithmetic with
an injected clock, the periodic log line, ``raftkit admin status``'s line,
and a real catch-up over TCP on 127.0.0.1 sampled while it runs."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from raftkit import NodeBuilder
from raftkit.cli.commands import format_status
from raftkit.core.types import Message, MessageType, SnapshotMeta
from raftkit.runtime.catch_up import CatchUpProgress, catch_up_text
from raftkit.runtime.node import Node
from raftkit.runtime.transfer_progress import SendProgress, TransferProgress, progress_text
from raftkit.testing.cluster import fast_config, wait_until
from raftkit.testing.kv import KeyValueStateMachine, set_command
from raftkit.testing.process_cluster import free_ports

MIB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def snapshot_message(index: int = 1234, total: int = 200 * MIB, src: str = "n1") -> Message:
    meta = SnapshotMeta(index=index, term=3)
    return Message(type=MessageType.SNAPSHOT, src=src, dst="n2", index=total, snapshot=meta)


def test_rate_and_eta_follow_the_injected_clock() -> None:
    clock = Clock()
    p = TransferProgress("n2", clock=clock)
    assert p.status() is None
    m = snapshot_message()
    p.update(m, 0)
    assert p.status() == {
        "index": 1234, "from": "n1", "bytes": 0, "total": 200 * MIB,
        "rate_bytes_per_s": 0.0, "eta_s": None, "started_s_ago": 0.0,
    }
    clock.now += 4.0
    p.update(m, 50 * MIB)
    s = p.status()
    assert s is not None
    assert s["bytes"] == 50 * MIB and s["started_s_ago"] == 4.0
    assert s["rate_bytes_per_s"] == 12.5 * MIB
    assert s["eta_s"] == 12.0  # 150 MiB left at 12.5 MiB/s
    clock.now += 1.0  # a stalled stream: read later, the rate falls and the ETA grows
    s = p.status()
    assert s is not None and s["rate_bytes_per_s"] == 10 * MIB and s["eta_s"] == 15.0
    p.update(m, None)
    assert p.status() is None


def test_an_unknown_total_gives_no_eta_and_a_newer_stream_replaces_the_old() -> None:
    clock = Clock()
    p = TransferProgress("n2", clock=clock)
    old = snapshot_message(index=10, total=0)
    p.update(old, 0)
    clock.now += 2.0
    p.update(old, 4 * MIB)
    s = p.status()
    assert s is not None and s["total"] is None and s["eta_s"] is None and s["rate_bytes_per_s"] == 2 * MIB
    new = snapshot_message(index=20, total=8 * MIB, src="n3")
    p.update(new, 0)
    p.update(old, None)  # the old stream's end does not clear the new one
    s = p.status()
    assert s is not None and s["index"] == 20 and s["from"] == "n3" and s["started_s_ago"] == 0.0


def test_the_log_line_comes_every_few_seconds_not_per_chunk(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="raftkit.runtime.node")
    clock = Clock()
    p = TransferProgress("n2", clock=clock, log_every=5.0)
    m = snapshot_message()
    p.update(m, 0)
    for step in range(1, 41):  # 10 s of chunks every 0.25 s, 1.3 MiB each
        clock.now += 0.25
        p.update(m, step * 1_363_149)
    lines = [r.getMessage() for r in caplog.records if "receiving snapshot" in r.getMessage()]
    assert len(lines) == 2, lines  # at 5 s and at 10 s
    assert lines[0] == (
        "n2: receiving snapshot 1234 from n1: 26.0 MiB of 200.0 MiB (13 %), 5.2 MiB/s, about 34 s left"
    )


def test_admin_status_shows_the_progress_line() -> None:
    progress = {"index": 7, "from": "n1", "bytes": 3 * MIB, "total": None, "rate_bytes_per_s": MIB,
                "eta_s": None, "started_s_ago": 3.0}
    text = format_status({"id": "n2", "role": "follower", "snapshot_progress": progress})
    line = next(x for x in text.splitlines() if x.startswith("snapshot transfer"))
    assert line.endswith(progress_text(progress))
    assert "3.0 MiB, 1.0 MiB/s, time left unknown" in line
    assert "snapshot transfer" not in format_status({"id": "n2", "snapshot_progress": None})


def test_admin_status_shows_snapshots_sent_and_log_catch_ups_on_the_leader() -> None:
    send = {"index": 7, "to": "n3", "state": "sending", "bytes": MIB, "total": 2 * MIB,
            "rate_bytes_per_s": MIB, "eta_s": 1.0, "started_s_ago": 1.0}
    behind = {"peer": "n2", "match": 10, "leader_last_index": 510, "entries_behind": 500, "entries_done": 10,
              "rate_entries_per_s": 10.0, "eta_s": None, "started_s_ago": 1.0}
    text = format_status(
        {"id": "n1", "role": "leader", "snapshot_sends": {"n3": send}, "catch_up": {"n2": behind}}
    )
    rows = {line.split("  ")[0]: line for line in text.splitlines()}
    assert rows["snapshot send"].endswith(progress_text(send))
    assert rows["snapshot send"].endswith(
        "sending snapshot 7 to n3: 1.0 MiB of 2.0 MiB (50 %), 1.0 MiB/s, about 1 s left"
    )
    assert rows["log catch-up"].endswith(catch_up_text(behind))
    assert "time left unknown" in rows["log catch-up"]
    quiet = format_status({"id": "n1", "snapshot_sends": {}, "catch_up": {}})
    assert "snapshot send" not in quiet and "log catch-up" not in quiet


def test_a_stream_being_sent_is_counted_as_the_transport_pulls_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="raftkit.runtime.node")
    clock = Clock()
    p = SendProgress("n1", clock=clock, log_every=5.0)
    assert p.status() == {}
    chunks = p.counted("n3", 1234, 4 * MIB, (b"x" * MIB for _ in range(4)))
    s = p.status()["n3"]
    assert s["state"] == "waiting" and s["bytes"] == 0 and s["eta_s"] is None  # queued, nothing pulled
    assert progress_text(s).endswith("waiting for the connection")
    clock.now += 3.0  # the time queued is not the stream's
    seen = []
    for _ in range(4):
        next(chunks)
        clock.now += 2.0
        seen.append(p.status()["n3"])
    assert [s["bytes"] for s in seen] == [MIB, 2 * MIB, 3 * MIB, 4 * MIB]
    assert [s["eta_s"] for s in seen] == [6.0, 4.0, 2.0, 0.0] and seen[0]["rate_bytes_per_s"] == MIB / 2
    assert all(s["state"] == "sending" and s["to"] == "n3" for s in seen)
    with pytest.raises(StopIteration):
        next(chunks)
    s = p.status()["n3"]
    assert s["state"] == "sent" and progress_text(s) == (
        "sending snapshot 1234 to n3: 4.0 MiB of 4.0 MiB (100 %), 0.5 MiB/s, all sent: "
        "waiting for the receiver to acknowledge"
    )
    clock.now += 2.0  # the acknowledgement comes
    p.finished("n3", True)
    assert p.status() == {}
    assert [r.getMessage() for r in caplog.records] == [
        "n1: sending snapshot 1234 to n3: 4.0 MiB of 4.0 MiB (100 %), 0.7 MiB/s, about 0 s left",
        "n1: snapshot 1234 delivered to n3: 4.0 MiB in 10.0 s, 0.4 MiB/s",
    ]
    p.counted("n3", 1235, 4, iter([b"abcd"]))
    p.finished("n3", False)  # failed: the node says so (SnapshotTransfer.sent)
    assert p.status() == {} and len(caplog.records) == 2


def test_an_abandoned_send_closes_its_source_and_a_newer_one_replaces_it() -> None:
    closed = []

    def source() -> Iterator[bytes]:
        try:
            yield from (b"x" * 10 for _ in range(5))
        finally:
            closed.append(True)

    p = SendProgress("n1", clock=Clock())
    old = p.counted("n3", 10, 50, source())
    next(old)
    new = p.counted("n3", 20, None, iter([b"abc"]))  # unknown size: the total is what was sent
    old.close()
    assert closed == [True]
    assert p.status()["n3"]["index"] == 20
    assert list(new) == [b"abc"] and p.status()["n3"]["total"] == 3


def leader_status(last: int, **matches: int) -> dict[str, Any]:
    peers = {p: {"match": m, "next": m + 1, "state": "replicate", "active": True} for p, m in matches.items()}
    return {"role": "leader", "log_last_index": last, "peers": peers}


def test_log_catch_up_counts_entries_behind_the_leaders_last_index(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="raftkit.runtime.node")
    clock = Clock()
    c = CatchUpProgress("n1", clock=clock, log_every=3.0, min_entries=100)
    c.observe(leader_status(5000, n2=4990, n3=1000))
    assert set(c.status()) == {"n3"}  # n2's ten entries in flight are no catch-up
    views = []
    for t in range(1, 5):  # n3 takes 1000 entries/s while 200/s are added
        clock.now += 1.0
        c.observe(leader_status(5000 + 200 * t, n2=5000 + 200 * t, n3=1000 + 1000 * t))
        views.append(c.status()["n3"])
    assert [v["entries_behind"] for v in views] == [3200, 2400, 1600, 800]
    assert {v["rate_entries_per_s"] for v in views} == {1000.0}
    assert [v["eta_s"] for v in views] == [4.0, 3.0, 2.0, 1.0]  # the gap closes at 800/s
    assert catch_up_text(views[-1]) == (
        "n3 catching up the log: 800 entries behind (match 5000 of 5800), 1000 entries/s, about 1 s left"
    )
    clock.now += 1.0
    c.observe(leader_status(6000, n2=6000, n3=5950))
    assert c.status() == {}  # caught up
    c.observe(leader_status(9000, n3=10))
    c.observe({**leader_status(9000, n3=10), "role": "follower"})
    assert c.status() == {}  # only a leader knows both ends
    assert [r.getMessage() for r in caplog.records] == [
        "n1: n3 catching up the log: 1600 entries behind (match 4000 of 5600), 1000 entries/s, about 2 s left"
    ]


def test_a_peer_being_sent_a_snapshot_or_down_is_not_a_log_catch_up() -> None:
    c = CatchUpProgress("n1", clock=Clock())
    status = leader_status(5000, n2=0, n3=0)
    status["peers"]["n3"]["state"] = "snapshot"
    status["peers"]["n2"]["active"] = False
    c.observe(status)
    assert c.status() == {}
    status["peers"]["n2"]["active"] = True
    c.observe(status)
    status["peers"]["n2"]["active"] = False  # answering late for a moment does not end it
    c.observe(status)
    assert set(c.status()) == {"n2"}


# -- a real catch-up over TCP ---------------------------------------------------------------


def compact_all(node: Node) -> None:
    """Snapshot the whole log now: no newer snapshot is taken while a lagging
    node catches up (nothing new is applied), so it gets exactly this one."""
    wait_until(lambda: node.status()["snapshot"].get("in_progress") is None, 10.0, what="an idle snapshotter")
    meta = node.request_log_compaction().result(timeout=10.0)
    status = node.status()
    assert meta is not None and meta.index == status["log_last_index"] == status["snapshot_index"]


def free_addresses(n: int) -> list[str]:
    return [f"127.0.0.1:{port}" for port in free_ports(n)]


def test_a_snapshot_catch_up_over_tcp_reports_progress_on_both_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The lagging node starts only after the others compacted a ~3 MiB
    state away. Both ends report through a lockstep: after each chunk the
    sender's (or receiver's) loop thread waits until this thread has sampled
    both nodes' status(), so every chunk is seen without depending on how
    fast 127.0.0.1 is. Each end's progress clock is this test's: it moves
    50 ms per chunk, so the rate is steady and the ETA must fall to 0 (on
    127.0.0.1 the real one reads 0 s throughout)."""
    pytest.importorskip("raftkit.transports.tcp")
    from raftkit.transports.tcp import TcpTransport

    caplog.set_level(logging.INFO, logger="raftkit.runtime.node")
    addresses = free_addresses(3)
    config = fast_config(log_compaction_min_entries=10, log_compaction_keep=0, snapshot_chunk_size=64 << 10)

    def build(a: str) -> Node:
        transport = TcpTransport(a, snapshot_chunk_bytes=64 << 10)  # ~48 frames of the ~3 MiB stream
        return (
            NodeBuilder(a).partners([p for p in addresses if p != a]).transport(transport)
            .config(config).state_machine(KeyValueStateMachine()).build()
        )

    nodes = [build(a) for a in addresses]
    lagging = nodes[2]
    # (side, bytes so far, the event the reporting loop thread waits on)
    arrived: queue.Queue[tuple[str, int, threading.Event]] = queue.Queue()

    clocks = {"receiver": Clock(), "sender": Clock()}

    sampling = threading.Event()
    sampling.set()  # cleared once the first stream was followed: a later one (a newer snapshot) runs free

    def pause(side: str, done: int) -> None:  # on a node's loop thread
        if not sampling.is_set():
            return
        clocks[side].now += 0.05
        sampled = threading.Event()
        arrived.put((side, done, sampled))
        sampled.wait(10.0)  # never forever: a failing test must not hang the loop

    progress = lagging._transfer.progress
    progress.log_every = 0.0  # a line per report here; the interval itself is unit-tested above
    progress._clock = clocks["receiver"]
    report = progress.update

    def receiving(message: Message, received: int | None) -> None:
        report(message, received)
        if received is not None:
            pause("receiver", received)

    progress.update = receiving  # type: ignore[method-assign]  # read by Node.start

    def stepped_sends(node: Node) -> None:
        sends = node._transfer.sends
        sends.log_every = 0.0
        sends._clock = clocks["sender"]
        counted = sends.counted

        def stepping(peer: str, index: int, total: int | None, chunks: Iterable[bytes]) -> Iterator[bytes]:
            inner = counted(peer, index, total, chunks)
            done = 0
            try:
                for chunk in inner:  # counted before it is handed over, as the transport pulls it
                    done += len(chunk)
                    pause("sender", done)
                    yield chunk
            finally:
                inner.close()

        sends.counted = stepping  # type: ignore[method-assign]

    for n in nodes[:2]:
        stepped_sends(n)
    receiver: list[dict[str, Any]] = []
    sender: list[dict[str, Any]] = []
    try:
        for n in nodes[:2]:
            n.start()
        wait_until(lambda: any(n.is_leader for n in nodes[:2]), timeout=10.0, what="a leader")
        leader = next(n for n in nodes[:2] if n.is_leader)
        for i in range(48):
            leader.propose(set_command(f"k{i}", "v" * (64 << 10)), timeout=10.0)
        compact_all(leader)
        lagging.start()
        for _ in range(10_000):  # bounded: ~100 reports are expected
            if receiver and receiver[-1]["bytes"] == receiver[-1]["total"] and sender and \
                    sender[-1]["bytes"] == sender[-1]["total"]:
                break
            side, done, sampled = arrived.get(timeout=10.0)
            try:
                if side == "receiver":  # sampled from this thread while that loop waits
                    s = lagging.status()["snapshot_progress"]
                    assert s is not None and s["bytes"] == done
                    receiver.append(s)
                else:
                    s = leader.status()["snapshot_sends"].get(lagging.id)
                    assert s is not None and s["bytes"] == done and s["state"] == "sending"
                    sender.append(s)
            finally:
                sampled.set()
        sampling.clear()
        while not arrived.empty():
            arrived.get_nowait()[2].set()
        wait_until(lambda: lagging.status()["applied_index"] >= 48, timeout=10.0, what="the catch-up")
        wait_until(lambda: lagging.status()["snapshot_progress"] is None, timeout=10.0, what="the end")
        wait_until(lambda: leader.status()["snapshot_sends"] == {}, timeout=10.0, what="the sender's end")
    finally:
        sampling.clear()
        while not arrived.empty():
            arrived.get_nowait()[2].set()
        for n in nodes:
            n.stop()
    for samples, name in ((receiver, "receiver"), (sender, "sender")):
        seen = [s["bytes"] for s in samples]
        assert seen == sorted(seen) and len(set(seen)) > 10, (name, seen)  # rising, chunk by chunk
        total = samples[-1]["total"]
        assert total is not None and total > 2 * MIB and seen[-1] == total, name  # up to the total
        assert {s["total"] for s in samples} == {total}
        assert {s["index"] for s in samples} == {samples[0]["index"]}
        assert all(s["rate_bytes_per_s"] > 0 for s in samples if s["bytes"] > 0), name
        etas = [s["eta_s"] for s in samples if s["eta_s"] is not None]
        assert etas[0] > 1.0 and etas == sorted(etas, reverse=True) and etas[-1] == 0.0, (name, etas)
    assert receiver[0]["bytes"] == 0 and receiver[0]["from"] == leader.id
    assert sender[0]["to"] == lagging.id and sender[-1]["index"] == receiver[-1]["index"]
    assert sender[-1]["total"] == receiver[-1]["total"]  # the size sent is the size declared
    # (a newer snapshot may follow the one sampled, when the leader compacted again meanwhile)
    messages = [r.getMessage() for r in caplog.records]
    lines = [m for m in messages if f"{lagging.id}: receiving snapshot {receiver[0]['index']} from " in m]
    assert lines and "(100 %)" in lines[-1]
    sent = [m for m in messages if f"{leader.id}: sending snapshot {sender[0]['index']} to {lagging.id}" in m]
    assert sent and "(100 %)" in sent[-1]
    assert any(f"{leader.id}: snapshot {sender[0]['index']} delivered to {lagging.id}: 3.0 MiB in " in m
               for m in messages), messages
    print("receiver status:", receiver[len(receiver) // 2])
    print("sender status:", sender[len(sender) // 2])
    print("log:", lines[len(lines) // 2])
    print("log:", sent[len(sent) // 2])


def test_a_follower_catching_up_the_log_over_tcp_is_followed_by_its_leader() -> None:
    """The third node starts after 3000 entries were committed without it
    (no compaction: it catches up from the log, 50 entries a message). Each
    append it takes waits until this thread has sampled the leader's
    status(); the leader's catch-up clock is this test's, 0.1 s a sample, so
    the figures can be checked against it."""
    pytest.importorskip("raftkit.transports.tcp")
    from raftkit.transports.tcp import TcpTransport

    addresses = free_addresses(3)
    # Election timers of a second or two, not fast_config's 0.15-0.3 s: a new
    # leader mid-run (a loaded machine, three loops and this thread on one
    # GIL) would end the old leader's report and the samples with it.
    # No overload refusals: 3,000 commands submitted at once, committed 50
    # per message, are a backlog by max_queue_delay's rule on a slow machine.
    config = fast_config(max_entries_per_msg=50, max_inflight_msgs=2, commands_per_entry=1,
                         election_timeout_min=1.0, election_timeout_max=2.0, max_queue_delay=None)

    def build(a: str) -> Node:
        return (
            NodeBuilder(a).partners([p for p in addresses if p != a]).transport(TcpTransport(a))
            .config(config).state_machine(KeyValueStateMachine()).build()
        )

    nodes = [build(a) for a in addresses]
    lagging = nodes[2]
    clock = Clock()
    arrived: queue.Queue[threading.Event] = queue.Queue()
    handle = lagging._on_message

    def stepped(message: Message) -> None:  # the lagging node's loop thread
        handle(message)
        if message.type is MessageType.APPEND and message.entries:
            sampled = threading.Event()
            arrived.put(sampled)
            sampled.wait(10.0)  # never forever: a failing test must not hang the loop

    lagging._on_message = stepped  # type: ignore[method-assign]  # read by Node.start
    samples: list[dict[str, Any]] = []
    try:
        for n in nodes[:2]:
            n.start()
        leader = wait_until(lambda: next((n for n in nodes[:2] if n.is_leader), None), 10.0, what="a leader")
        leader._transfer.catch_up._clock = clock
        leader._transfer.catch_up.min_entries = 1  # followed to the end (100 by default)
        futures = [leader.submit(set_command(f"k{i}", i)) for i in range(3000)]
        for f in futures:
            f.result(timeout=20.0)
        target = leader.status()["log_last_index"]
        lagging.start()
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:  # ~60 appends are expected
            try:
                sampled = arrived.get(timeout=0.05)
            except queue.Empty:  # no append waits: done once the leader no longer reports it
                if samples and lagging.id not in leader.status()["catch_up"]:
                    break
                continue
            clock.now += 0.1
            s = leader.status()["catch_up"].get(lagging.id)  # while the follower waits
            sampled.set()
            if s is not None:
                samples.append(s)
        assert leader.is_leader, "a new leader was elected during the catch-up: the samples end with its term"
        assert samples and lagging.id not in leader.status()["catch_up"], "the catch-up did not end"
        wait_until(lambda: lagging.status()["applied_index"] >= target, timeout=20.0, what="the catch-up")
    finally:
        while not arrived.empty():
            arrived.get_nowait().set()
        for n in nodes:
            n.stop()
    behind = [s["entries_behind"] for s in samples]
    done = [s["entries_done"] for s in samples]
    assert len(samples) > 10 and behind == sorted(behind, reverse=True) and done == sorted(done), behind
    assert behind[0] > 2500 and behind[-1] < 200 and min(s["leader_last_index"] for s in samples) >= target
    assert all(s["rate_entries_per_s"] > 0 for s in samples if s["entries_done"] > 0)
    etas = [s["eta_s"] for s in samples if s["eta_s"] is not None]
    # The leader's match does not rise append by append: the follower steps
    # the appends that arrive together before one Ready (one reply), so the
    # figures move in jumps and the first ETA may already be short. What
    # holds: an ETA is known, it falls, and it is under a second at the end.
    assert etas and etas[-1] < 1.0 and etas[-1] <= etas[0], etas
    print("catch-up:", samples[len(samples) // 2])
