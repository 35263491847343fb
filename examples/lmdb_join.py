"""A large on-disk state, and a new node that joins and catches up by snapshot.

Three nodes on 127.0.0.1 (TCP, one process), each with its state in LMDB
(``LmdbDictStateMachine``), an ``LmdbLogStore`` and a ``FileSnapshotter``
in a directory of its own:

1. the cluster loads ``--mb`` MiB of state (1 MiB entries of 16 values of
   64 KiB) and every node snapshots and compacts its log, so the log no
   longer holds what a new node would need;
2. a fourth, empty node starts and is added with ``add_member`` (a learner
   first, then a voter): the leader streams its LMDB state to it as a
   snapshot, which it streams into a fresh LMDB environment; progress
   (``status()["snapshot_progress"]``) is printed while it arrives, and
   when the promotion came, how much the node had applied by then;
3. a write through the new node, then the new node's state is compared
   with the leader's: the same items, the same digest.

Run it (from the repository root, with raftkit installed)::

    python examples/lmdb_join.py              # 8 MiB: a few seconds
    python examples/lmdb_join.py --mb 200     # 200 MiB: ~20 s on 2 cores, ~2.5 GiB of temp disk

It cleans up its temporary directory and exits 1 if the new node's state
differs from the leader's or it did not catch up by snapshot.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import random
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from raftkit import Node, NodeBuilder, NodeConfig
from raftkit.batteries import LmdbDictStateMachine
from raftkit.storage import FileSnapshotter, LmdbLogStore

MIB = 1 << 20


class TimedDict(LmdbDictStateMachine):
    """An LMDB dict that records how long restoring a snapshot took."""

    restore_seconds: float | None = None

    def restore_from(self, chunks: Iterable[bytes]) -> None:
        started = time.monotonic()
        super().restore_from(chunks)
        self.restore_seconds = time.monotonic() - started


def free_addresses(n: int) -> list[str]:
    """``n`` loopback addresses whose ports were free a moment ago."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()


def build(address: str, partners: list[str], data: Path, sm: TimedDict, *, join: bool = False) -> Node:
    directory = data / address.replace(":", "_")
    config = NodeConfig(
        join=join,  # the new node: not a member yet, it waits for a leader to add it
        # Snapshot only when this program asks, and keep no log behind the
        # snapshot: the new node then needs the snapshot, not log entries.
        log_compaction_min_entries=10**12,
        log_compaction_min_bytes=1 << 60,
        log_compaction_min_time=None,
        log_compaction_keep=0,
        command_timeout=120.0,
        state_marker_dir=str(data / "markers"),  # restart markers stay in this run's directory
    )
    return (
        NodeBuilder(address)
        .partners(partners)
        .config(config)
        .log_store(LmdbLogStore(directory / "log"))
        .snapshotter(FileSnapshotter(directory / "snapshots"))
        .state_machine(sm)
        .build()
    )


def digest(sm: LmdbDictStateMachine) -> str:
    """A hash of every raw (key, value) pair, in key order."""
    h = hashlib.blake2b(digest_size=16)
    for key, value in sm.raw_items():
        h.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value)
    return h.hexdigest()


def load(node: Node, mb: int) -> None:
    """Propose ``mb`` entries of 1 MiB through ``node``, 8 in flight at a time."""
    rng = random.Random(7)
    window: deque[concurrent.futures.Future[Any]] = deque()
    for batch in range(mb):
        values = {f"k{batch:06d}-{i:02d}": rng.randbytes(64 * 1024) for i in range(16)}
        fut = node.submit(LmdbDictStateMachine.update_command(values), timeout=120)
        assert fut is not None  # (None only when an on_done callback is given)
        window.append(fut)
        if len(window) >= 8:
            window.popleft().result(180)
        if (batch + 1) % max(1, mb // 4) == 0:
            print(f"loaded {batch + 1}/{mb} MiB", flush=True)
    for fut in window:
        fut.result(180)


def leader_of(nodes: list[Node], timeout: float) -> Node:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in nodes:
            if node.is_leader:
                return node
        time.sleep(0.02)
    raise SystemExit(f"no leader within {timeout:.0f} s")


def join_with_progress(leader: Node, newcomer: Node, new_sm: TimedDict, timeout: float) -> None:
    """``leader.add_member(newcomer)``, then wait until the newcomer has
    applied everything the leader had committed, printing the snapshot's
    progress meanwhile. (The promotion to voter may come before the state
    has arrived: the leader judges "caught up" by log entries, and a few
    large entries are close.)"""
    target = leader.status()["commit_index"]
    started = time.monotonic()
    deadline = started + timeout
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        added = pool.submit(leader.add_member, newcomer.id, timeout=timeout)
        promoted: list[str] = []  # said when add_member returns, printed by this thread
        added.add_done_callback(lambda _: promoted.append(
            f"voter after {time.monotonic() - started:.1f} s, having applied {new_sm.applied_index} of {target}"
        ))
        printed = 0.0
        while not (added.done() and new_sm.applied_index >= target):
            if promoted:
                print(promoted.pop(), "entries", flush=True)
            if time.monotonic() > deadline:
                raise SystemExit(f"the newcomer applied {new_sm.applied_index} of {target} in {timeout:.0f} s")
            p = newcomer.status()["snapshot_progress"]
            if p is not None and time.monotonic() - printed >= 1.0:  # one line a second
                printed = time.monotonic()
                total = f" of {p['total'] / MIB:.1f}" if p["total"] else ""
                print(f"receiving snapshot {p['index']}: {p['bytes'] / MIB:.1f}{total} MiB", flush=True)
            concurrent.futures.wait([added], timeout=0.2)
        added.result(timeout=1)  # raises the add's failure, if any
        if promoted:
            print(promoted.pop(), "entries", flush=True)


def main(mb: int, tmp: Path) -> int:
    addresses = free_addresses(4)
    cluster, new_address = addresses[:3], addresses[3]
    machines = {a: TimedDict(tmp / a.replace(":", "_") / "state", map_size=(2 * mb + 16) * MIB) for a in addresses}
    nodes: list[Node] = []
    try:
        nodes = [build(a, [p for p in cluster if p != a], tmp, machines[a]) for a in cluster]
        for node in nodes:
            node.start()
        leader = leader_of(nodes, timeout=20)
        print("leader:", leader.id, flush=True)

        started = time.monotonic()
        load(leader, mb)
        print(f"loaded {mb} MiB in {time.monotonic() - started:.1f} s", flush=True)
        started = time.monotonic()
        for fut in [node.request_log_compaction() for node in nodes]:
            fut.result(timeout=60 + mb)
        print(f"snapshot and compaction on every node: {time.monotonic() - started:.1f} s", flush=True)

        newcomer = build(new_address, cluster, tmp, machines[new_address], join=True)
        nodes.append(newcomer)
        newcomer.start()
        started = time.monotonic()
        join_with_progress(leader, newcomer, machines[new_address], timeout=60 + mb)
        print(f"added and caught up in {time.monotonic() - started:.1f} s", flush=True)

        # A write through the new node (forwarded to the leader) that every
        # node applies last: after it, the leader's and the newcomer's state compare.
        newcomer.propose(LmdbDictStateMachine.set_command("joined", new_address), timeout=30)
        leader.read_barrier().result(timeout=30)
        new_sm, leader_sm = machines[new_address], machines[leader.id]
        print("voters:", len(leader.members()["voters"]), flush=True)
        restored = new_sm.restore_seconds
        print("caught up by snapshot:", "no" if restored is None else f"restored in {restored:.2f} s", flush=True)
        print(f"leader   {leader.id}: {len(leader_sm)} items, digest {digest(leader_sm)}", flush=True)
        print(f"newcomer {new_address}: {len(new_sm)} items, digest {digest(new_sm)}", flush=True)
        same = len(new_sm) == len(leader_sm) == 16 * mb + 1 and digest(new_sm) == digest(leader_sm)
        print("states equal:", same, flush=True)
        return 0 if same and restored is not None else 1
    finally:
        for node in nodes:
            node.stop()
        for sm in machines.values():
            sm.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--mb", type=int, default=8, help="MiB of state to load before the join (default 8)")
    args = parser.parse_args()
    if args.mb < 1:
        parser.error("--mb must be at least 1")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="raftkit-lmdb-join-") as tmp:
        code = main(args.mb, Path(tmp))
    print(f"stopped after {time.monotonic() - began:.1f} s", flush=True)
    sys.exit(code)
