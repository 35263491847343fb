"""A write load against a ProcessCluster and the final check that every
acknowledged write survived, shared by the real-process tests."""

from __future__ import annotations

import random
import threading
from typing import Any

from raftkit.testing.process_cluster import ProcessCluster


class Writer(threading.Thread):
    """Issues batches of asynchronous writes against live nodes until
    stopped, remembering every key a node acknowledged."""

    def __init__(self, cluster: ProcessCluster, seed: int) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.seed = seed
        self.acked: set[str] = set()
        self.batches = 0
        self.halt = threading.Event()

    def run(self) -> None:
        rng = random.Random(self.seed)
        while not self.halt.is_set():
            alive = [a for a, n in list(self.cluster.nodes.items()) if n.alive]
            if not alive:
                self.halt.wait(0.01)
                continue
            node = self.cluster.nodes.get(rng.choice(alive))
            if node is None:
                continue
            answer = node.request("load", count=40, prefix=f"w{self.seed}-{self.batches}-", op_timeout=3.0)
            self.batches += 1
            if answer.get("ok"):
                self.acked.update(answer["acked"])

    def stop(self) -> None:
        self.halt.set()
        self.join(30)


def check_converged(cluster: ProcessCluster, acked: set[str], timeout: float = 60) -> dict[str, Any]:
    """Every node holds the same data, and every acknowledged key."""

    def same() -> dict[str, Any] | None:
        dumps = [cluster.dump(a) for a in cluster.addresses]
        if any(d is None for d in dumps) or any(d != dumps[0] for d in dumps):
            return None
        return dumps[0]

    state = cluster.wait_for(same, timeout, "every node to converge")
    lost = acked - set(state["data"])
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {sorted(lost)[:5]}"
    return state


