"""Log catch-up figures when a peer's match falls back within one
leadership: a follower restarted without its log (in-memory) or with a lost
state is replicated from the start (Progress.maybe_decrease_to,
Recovery's pr.match = 0), and its catch-up begins again."""

from __future__ import annotations

from typing import Any

from raftkit.runtime.catch_up import CatchUpProgress, catch_up_text


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def leader_status(last: int, match: int) -> dict[str, Any]:
    return {"role": "leader", "log_last_index": last,
            "peers": {"n2": {"match": match, "next": match + 1, "state": "replicate", "active": True}}}


def test_a_peer_whose_match_falls_back_starts_its_catch_up_again() -> None:
    clock = Clock()
    progress = CatchUpProgress("n1", clock=clock)
    progress.observe(leader_status(5000, 1000))
    clock.now += 10
    progress.observe(leader_status(5000, 3000))  # 200 entries/s
    clock.now += 1
    progress.observe(leader_status(5000, 0))  # it restarted without its log
    clock.now += 2
    progress.observe(leader_status(5000, 400))
    view = progress.status()["n2"]
    assert view["entries_done"] == 400 and view["rate_entries_per_s"] == 200.0, view
    assert view["eta_s"] == 23.0 and view["started_s_ago"] == 2.0, view
    assert "-" not in catch_up_text(view)
