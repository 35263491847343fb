"""`make demo`: three real node processes, a steady workload, a leader killed.

Three raftkit nodes run as separate processes on 127.0.0.1, linked by the
password-encrypted transport. A client writes to a replicated dict and
counter through every node while a live line shows progress; halfway
through, the leader is killed with SIGKILL. The demo shows how long the
cluster took to elect a new leader and to accept writes again, restarts the
killed node and shows its catch-up (snapshot bytes or log entries, rate and
time left, as ``raftkit admin status --watch`` shows them), and ends by
checking that every acknowledged write is present on every node.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from raftkit.cli.watch import bar, progress_items
from raftkit.testing.process_cluster import ProcessCluster


class Progress:
    """A live line on a terminal; elsewhere (a log, CI) a plain line every
    ``every`` seconds, not one long line of carriage returns."""

    def __init__(
        self, out: TextIO, every: float = 2.0,
        columns: Callable[[], int] = lambda: shutil.get_terminal_size().columns,
    ) -> None:
        self.out = out
        self.tty = out.isatty()
        self.columns = columns  # a live line is cut to the width: \r goes back one row only
        self.every = every
        self._last = -every
        self._open = False  # a live line is on screen

    def show(self, line: str) -> None:
        if self.tty:  # erase the rest of the line: a shorter line must not end in the longer one's tail
            self.out.write("\r\x1b[K" + line[: max(10, self.columns() - 1)])
            self._open = True
        elif (now := time.monotonic()) - self._last >= self.every:
            self._last = now
            self.out.write(line.strip() + "\n")
        self.out.flush()

    def say(self, line: str) -> None:
        """A line of its own, below the live one."""
        self.done()
        self.out.write(line + "\n")
        self.out.flush()

    def done(self) -> None:
        if self._open:
            self.out.write("\n")
            self._open = False


def short(address: str | None) -> str:
    return address.rsplit(":", 1)[-1] if address else "-"


def catch_up_line(
    node: str, status: dict[str, Any] | None, leader: dict[str, Any] | None, names: dict[str, str]
) -> str:
    """How far the restarted ``node`` has come: its applied index against
    the leader's commit, then the work on its behalf the two report (the
    snapshot it receives, the one the leader sends it, its log catch-up)."""
    if status is None:
        return f"{names[node]}: starting"
    applied = status.get("applied_index") or 0
    line = f"{names[node]}: applied {applied}"
    if leader is not None:
        commit = leader.get("commit_index") or 0
        line = f"{bar(applied, commit, width=20)}  {line} of {commit} committed"
    line += f", log to {status.get('log_last_index')}"
    mine = {"snapshot_progress": status.get("snapshot_progress")}
    if leader is not None:  # only what the leader does for this node
        mine["snapshot_sends"] = {k: v for k, v in (leader.get("snapshot_sends") or {}).items() if k == node}
        mine["catch_up"] = {k: v for k, v in (leader.get("catch_up") or {}).items() if k == node}
    texts = [text for _, _, text in progress_items(mine)]
    for address, name in sorted(names.items(), key=lambda item: -len(item[0])):
        texts = [t.replace(address, name) for t in texts]
    return line + "".join(f"; {t}" for t in texts)


def follow_catch_up(c: ProcessCluster, node: str, names: dict[str, str], out: TextIO, timeout: float) -> bool:
    """Show ``node`` catching up until it applied the leader's commit (the
    workload has stopped): a live line on a terminal, a plain line a second
    elsewhere. False if it did not within ``timeout`` seconds."""
    progress = Progress(out, every=1.0)
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < timeout:
        lead = c.leader()
        leader = c.status(lead) if lead else None
        status = c.status(node)
        progress.show(f" t={elapsed:5.1f}s  {catch_up_line(node, status, leader, names)}")
        if status and leader and status.get("applied_index", 0) >= leader.get("commit_index", 1):
            progress.say(f">>> {names[node]} caught up {elapsed:.2f}s after its restart: "
                         f"applied {status.get('applied_index')}")
            return True
        time.sleep(0.2)  # the next sample (bounded by timeout); nothing here waits on it
    progress.say(f">>> {names[node]} has not caught up after {timeout:.0f}s")
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m raftkit.cli.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the workload (default 20)")
    ap.add_argument("--batch", type=int, default=200, help="asynchronous writes per request (default 200)")
    args = ap.parse_args(argv)

    print("starting 3 node processes (encrypted transport, password 'demo')...")
    started = time.monotonic()
    with ProcessCluster(3, password="demo") as c:
        names = {a: f"node{i + 1}" for i, a in enumerate(c.addresses)}
        lead = c.wait_leader(30)
        took = time.monotonic() - started
        print(f"leader elected: {names[lead]} ({lead}), {took:.2f}s after the first start")

        acked_keys: dict[str, int] = {}
        acked_incrs = 0
        failed = 0
        killed: str | None = None
        kill_at = args.seconds / 2
        t0 = time.monotonic()
        failover: dict[str, float] = {}
        batch_no = 0
        progress = Progress(sys.stdout)
        while (elapsed := time.monotonic() - t0) < args.seconds:
            if killed is None and elapsed >= kill_at:
                lead = c.leader() or lead
                killed = lead
                c.nodes[killed].kill()
                failover["killed"] = time.monotonic()
                progress.say(f">>> SIGKILL {names[killed]} (the leader) at t={elapsed:.1f}s")
            live = [a for a in c.addresses if c.nodes[a].alive]
            target = live[batch_no % len(live)]
            batch_no += 1
            r = c.nodes[target].request("load", count=args.batch, prefix=f"b{batch_no}-", timeout=5)
            if r.get("ok"):
                for key in r["acked"]:
                    acked_keys[key] = int(key.rsplit("-", 1)[1])
                failed += r["failed"]
            inc = c.nodes[target].request("incr", by=1, timeout=5)
            if inc.get("ok"):
                acked_incrs += 1
            else:
                failed += 1
            if killed is not None and "leader" not in failover:
                new = c.leader()
                if new and new != killed:
                    failover["leader"] = time.monotonic()
                    progress.say(
                        f">>> new leader {names[new]} elected "
                        f"{failover['leader'] - failover['killed']:.2f}s after the kill"
                    )
            if "leader" in failover and "writes" not in failover and r.get("ok") and r["acked"]:
                failover["writes"] = time.monotonic()
                gap = failover["writes"] - failover["killed"]
                progress.say(f">>> writes acknowledged again {gap:.2f}s after the kill")
            # A rate over the first moments says nothing (it once read 433,838,504/s).
            rate = f"{len(acked_keys) / elapsed:,.0f}/s" if elapsed >= 0.5 else "-"
            progress.show(
                f" t={elapsed:5.1f}s  acked writes {len(acked_keys):>7}  ({rate})  "
                f"counter {acked_incrs:>4}  failed {failed:>4}  via {names[target]}"
            )
        progress.done()

        if killed is not None:
            print(f"restarting {names[killed]} (in-memory: it comes back empty and catches up)...")
            c.start(killed)
            follow_catch_up(c, killed, names, sys.stdout, 60)

        print("waiting for every node to hold every acknowledged write...")

        def all_have_everything() -> bool:
            for a in c.addresses:
                state = c.dump(a)
                if state is None or state["counter"] < acked_incrs:
                    return False
                data = state["data"]
                if any(data.get(k) != v for k, v in acked_keys.items()):
                    return False
            return True

        c.wait_for(all_have_everything, 60, "convergence")
        states = [c.dump(a) for a in c.addresses]
        same = all(s == states[0] for s in states)
        for a, s in zip(c.addresses, states, strict=True):
            held = "no answer" if s is None else f"{len(s['data'])} keys, counter {s['counter']}"
            print(f"  {names[a]}: {held}")
        ok = same and all_have_everything()
        verdict = "OK" if ok else "MISMATCH"
        print(
            f"\n{verdict}: {len(acked_keys)} acknowledged writes and {acked_incrs} acknowledged increments "
            f"are on all 3 nodes; the nodes' states are {'identical' if same else 'DIFFERENT'}"
        )
    print("all node processes stopped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
