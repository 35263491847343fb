"""An asyncio service on raftkit: three SyncObj nodes running inside one
asyncio loop (no threads of their own), on 127.0.0.1, driven by coroutines.

    python examples/asyncio_service.py

Each node is built with ``SyncObjConf(autoTick=False)`` and started with
``await node.astart()``, so it runs in the caller's loop; replicated methods
are awaited with ``.aio()`` and reads made linearizable with
``await node.aread_barrier()``. Client coroutines race to book the same
seats through different nodes: each seat goes to exactly one of them, the
others get the method's own exception back. Every node then reads the
same bookings. The program exits 1 if anything disagrees.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
import time

from raftkit import SyncObj, SyncObjConf, replicated


class SeatTaken(Exception):
    """Raised (on every node alike) when a seat is booked twice."""


class Venue(SyncObj):
    """Seat -> holder. ``book`` is deterministic: it depends on the state
    and its arguments only, and leaves the state unchanged when it raises."""

    def __init__(self, address: str, partners: list[str], conf: SyncObjConf) -> None:
        super().__init__(address, partners, conf)
        self.seats: dict[str, str] = {}

    @replicated
    def book(self, seat: str, who: str) -> int:
        if seat in self.seats:
            raise SeatTaken(f"{seat} already belongs to {self.seats[seat]}")
        self.seats[seat] = who
        return len(self.seats)


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


async def client(venue: Venue, who: str, seat: str) -> tuple[str, str, str]:
    """One booking attempt through ``venue``'s node: (who, seat, outcome)."""
    try:
        await venue.book.aio(seat, who, timeout=10)
        return who, seat, "booked"
    except SeatTaken as exc:  # the method's exception, unchanged, as its outcome
        return who, seat, f"refused ({exc})"


async def main(marker_dir: str) -> int:
    addresses = free_addresses(3)
    # autoTick=False: the node runs in this loop once astart() is awaited.
    # state_marker_dir: the nodes' restart markers stay in this run's temp dir.
    venues = [
        Venue(a, [p for p in addresses if p != a], SyncObjConf(autoTick=False, state_marker_dir=marker_dir))
        for a in addresses
    ]
    try:
        for venue in venues:
            await venue.astart()
        if not all(await asyncio.gather(*(v.await_ready(timeout=20) for v in venues))):
            print("no leader elected within 20 s", file=sys.stderr)
            return 1
        print("leader:", venues[0].get_leader(), flush=True)

        # Six clients, two per seat, each through a different node, all at once.
        requests = [("ann", "A1"), ("bob", "A1"), ("cy", "A2"), ("dee", "A2"), ("eve", "A3"), ("fay", "A3")]
        results = await asyncio.gather(
            *(client(venues[i % 3], who, seat) for i, (who, seat) in enumerate(requests))
        )
        for who, seat, outcome in results:
            print(f"{who} -> {seat}: {outcome}", flush=True)
        booked = sorted(seat for _, seat, outcome in results if outcome == "booked")
        print(f"booked: {len(booked)} of {len(requests)} requests", flush=True)

        # A linearizable read on every node: it sees every booking acknowledged above.
        views = []
        for address, venue in zip(addresses, venues, strict=True):
            await venue.aread_barrier(timeout=10)
            views.append(dict(sorted(venue.seats.items())))
            print(address, "reads", views[-1], flush=True)
        winners = {seat: who for who, seat, outcome in results if outcome == "booked"}
        if booked != ["A1", "A2", "A3"] or any(view != winners for view in views):
            print("the nodes disagree with the outcomes", file=sys.stderr)
            return 1
        return 0
    finally:
        for venue in venues:
            await venue.astop()


if __name__ == "__main__":
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="raftkit-asyncio-") as tmp:
        code = asyncio.run(main(tmp))
    print(f"stopped after {time.monotonic() - started:.1f} s", flush=True)
    sys.exit(code)
