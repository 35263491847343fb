"""A write load against a ProcessCluster and the final check that every
acknowledged write survived, shared by the real-process tests."""

from __future__ import annotations

import random
import threading
import time
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
        self.failed = 0  # calls that got an error (each one is reported, never silently retried)
        self.avoid: set[str] = set()  # nodes being restarted on purpose
        self.busy: str | None = None  # the node the current batch went to
        self.choosing = threading.Lock()  # held while a node is picked and marked busy
        self.errors: list[str] = []  # the first few, to say why calls failed
        self.batches = 0
        self.halt = threading.Event()

    def run(self) -> None:
        rng = random.Random(self.seed)
        while not self.halt.is_set():
            with self.choosing:
                alive = [a for a, n in list(self.cluster.nodes.items()) if n.alive and a not in self.avoid]
                node = self.cluster.nodes.get(rng.choice(alive)) if alive else None
                self.busy = None if node is None else node.address
            if node is None:
                self.halt.wait(0.01)
                continue
            answer = node.request("load", count=40, prefix=f"w{self.seed}-{self.batches}-", op_timeout=3.0)
            self.busy = None
            self.batches += 1
            if answer.get("ok"):
                self.acked.update(answer["acked"])
                self.failed += answer["failed"]
                if answer["failed"] and len(self.errors) < 5:
                    self.errors.append(f"{node.address}: {answer.get('errors')}")
            else:
                self.failed += 40
                if len(self.errors) < 5:
                    self.errors.append(f"{node.address}: {answer.get('error')}")

    def avoid_node(self, address: str) -> None:
        """Stop sending to ``address`` and wait for its batch in flight."""
        with self.choosing:
            self.avoid.add(address)
        for _ in range(3000):  # 30 s at most
            if self.busy != address:
                return
            time.sleep(0.01)
        raise TimeoutError(f"the batch sent to {address} did not finish")

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


