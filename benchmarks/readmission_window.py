"""How long is a restarted in-memory node without a vote?

From a node's start without state to its readmission (``status()
["readmitted_after_s"]``), one more crash halts an in-memory cluster. Three
in-memory nodes on one in-process network (``LocalCluster``: no TCP, so no
reconnect backoff), each round writes ``--writes`` commands, stops a
follower and starts it again empty; the table gives the median and the
worst window over ``--rounds`` rounds::

    .venv/bin/python benchmarks/readmission_window.py
    .venv/bin/python benchmarks/readmission_window.py --rounds 20 --writes 2000

Over TCP the window also holds the leader's redial of the restarted
process (the transport's reconnect backoff); ``--tcp`` measures that with
real processes (``raftkit.testing.process_cluster``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from raftkit.state_machines.kv import KvStateMachine
from raftkit.testing.cluster import LocalCluster


def wait(predicate, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.002)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def in_process(rounds: int, writes: int) -> list[float]:
    windows = []
    with LocalCluster(3, seed=None) as cluster:
        for address in cluster.addresses:
            cluster.add_node(address, KvStateMachine())
        for r in range(rounds):
            leader = cluster.wait_leader(10)
            node = cluster.nodes[leader]
            for i in range(writes):
                node.propose(KvStateMachine.set_command(f"r{r}-{i}", i), timeout=10)
            victim = cluster.followers()[r % 2]
            cluster.stop(victim)
            fresh = cluster.add_node(victim, KvStateMachine())
            windows.append(wait(lambda: fresh.status()["readmitted_after_s"], 30, "readmission"))  # noqa: B023
    return windows


def over_tcp(rounds: int, writes: int) -> list[float]:
    from raftkit.testing.process_cluster import ProcessCluster

    windows = []
    with ProcessCluster(3, node_args=["--fast"]) as cluster:
        for r in range(rounds):
            leader = cluster.wait_leader(30)
            cluster.nodes[leader].request("load", count=writes, prefix=f"r{r}-", op_timeout=30)
            victim = [a for a in cluster.addresses if a != leader][r % 2]
            cluster.restart(victim)

            def readmitted() -> float | None:
                s = cluster.status(victim) or {}  # noqa: B023
                return s.get("readmitted_after_s")

            windows.append(cluster.wait_for(readmitted, 60, "readmission"))
            time.sleep(0.3)
    return windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--writes", type=int, default=300, help="commands written before each restart")
    ap.add_argument("--tcp", action="store_true", help="real processes over TCP instead of in-process")
    args = ap.parse_args()
    # Restart markers of these throw-away clusters stay in a folder of their own.
    os.environ.setdefault("RAFTKIT_STATE_MARKER_DIR", tempfile.mkdtemp(prefix="raftkit-markers-"))
    windows = (over_tcp if args.tcp else in_process)(args.rounds, args.writes)
    where = "3 processes over TCP (--fast)" if args.tcp else "3 in-process nodes (memory network)"
    print(f"readmission window, {where}, {args.writes} writes before each restart, {len(windows)} restarts:")
    print(f"  median {statistics.median(windows) * 1000:.1f} ms   max {max(windows) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
