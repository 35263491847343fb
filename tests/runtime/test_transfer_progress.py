"""Progress of a snapshot being received: the rate and ETA arithmetic with
an injected clock, the periodic log line, ``raftkit admin status``'s line,
and a real catch-up over TCP on 127.0.0.1 sampled while it runs."""

from __future__ import annotations

import logging
import queue
import socket
import threading
from typing import Any

import pytest

from raftkit import NodeBuilder
from raftkit.cli.commands import format_status
from raftkit.core.types import Message, MessageType, SnapshotMeta
from raftkit.runtime.node import Node
from raftkit.runtime.transfer_progress import TransferProgress, progress_text
from raftkit.testing.cluster import fast_config, wait_until
from raftkit.testing.kv import KeyValueStateMachine, set_command

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


# -- a real catch-up over TCP ---------------------------------------------------------------


def free_addresses(n: int) -> list[str]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    return addresses


def test_a_follower_catching_up_a_snapshot_over_tcp_reports_its_progress(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The lagging node starts only after the others compacted a ~3 MiB
    state away. Its progress reports go through a lockstep: after each chunk
    the loop thread waits until this thread has sampled status(), so every
    chunk is seen without depending on how fast 127.0.0.1 is."""
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
    progress = lagging._transfer.progress
    progress.log_every = 0.0  # a line per report here; the interval itself is unit-tested above
    report = progress.update
    arrived: queue.Queue[int | None] = queue.Queue()
    sampled = threading.Event()

    def lockstep(message: Message, received: int | None) -> None:  # the lagging node's loop thread
        report(message, received)
        if received is None:
            return
        sampled.clear()
        arrived.put(received)
        sampled.wait(10.0)  # never forever: a failing test must not hang the loop

    progress.update = lockstep  # type: ignore[method-assign]  # read by Node.start
    samples: list[dict[str, Any]] = []
    try:
        for n in nodes[:2]:
            n.start()
        wait_until(lambda: any(n.is_leader for n in nodes[:2]), timeout=10.0, what="a leader")
        leader = next(n for n in nodes[:2] if n.is_leader)
        for i in range(48):
            leader.propose(set_command(f"k{i}", "v" * (64 << 10)), timeout=10.0)
        wait_until(lambda: leader.status()["log_first_index"] > 40, timeout=10.0, what="compaction")
        lagging.start()
        total: int | None = None
        while total is None or not samples or samples[-1]["bytes"] < total:
            received = arrived.get(timeout=10.0)
            s = lagging.status()["snapshot_progress"]  # from this thread, while the loop waits
            sampled.set()
            assert s is not None and s["bytes"] == received
            samples.append(s)
            total = s["total"]
            assert total is not None and total > 2 * MIB
        sampled.set()
        wait_until(lambda: lagging.status()["applied_index"] >= 48, timeout=10.0, what="the catch-up")
        wait_until(lambda: lagging.status()["snapshot_progress"] is None, timeout=10.0, what="the end")
    finally:
        sampled.set()
        for n in nodes:
            n.stop()
    seen = [s["bytes"] for s in samples]
    assert seen[0] == 0 and seen == sorted(seen) and len(set(seen)) > 10  # rising, chunk by chunk
    assert seen[-1] == samples[-1]["total"]  # reached the declared total
    assert {s["index"] for s in samples} == {samples[0]["index"]} and samples[0]["from"] == leader.id
    lines = [r.getMessage() for r in caplog.records if "receiving snapshot" in r.getMessage()]
    assert lines and lines[-1].startswith(f"{lagging.id}: receiving snapshot {samples[0]['index']} from ")
    assert "(100 %)" in lines[-1]
    print("status:", samples[len(samples) // 2])
    print("log:", lines[len(lines) // 2])
