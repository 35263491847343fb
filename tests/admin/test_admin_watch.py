"""``raftkit admin status --watch``: the bar and frame formatters, the
refresh loop (plain lines off a terminal, a frame redrawn in place on one,
bounded by --count or --until-done, Ctrl-C), and the command against an
admin endpoint in front of a fake node whose snapshot send advances."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raftkit.cli import commands as cli
from raftkit.cli.watch import bar, busy, render_frame, render_line, watch

MIB = 1024 * 1024


def sending(done: int, total: int = 4 * MIB, state: str = "sending") -> dict[str, Any]:
    return {"index": 50, "to": "n3", "state": state, "bytes": done, "total": total,
            "rate_bytes_per_s": float(MIB), "eta_s": (total - done) / MIB, "started_s_ago": done / MIB}


def node_status(**extra: Any) -> dict[str, Any]:
    return {"id": "n1", "role": "leader", "term": 7, "leader": "n1", "commit_index": 120,
            "applied_index": 119, "snapshot_progress": None, "snapshot_sends": {}, "catch_up": {}, **extra}


def test_the_bar_fills_with_the_share_done() -> None:
    assert bar(0, 100, width=10) == "[..........]   0 %"
    assert bar(45, 100, width=10) == "[####......]  45 %"
    assert bar(100, 100, width=10) == "[##########] 100 %"
    assert bar(150, 100, width=10) == "[##########] 100 %"  # never past the end
    assert bar(5, None, width=4) == "[????]    ?"  # no declared total


def test_a_frame_has_a_bar_per_piece_of_work() -> None:
    catch_up = {"peer": "n2", "match": 4000, "leader_last_index": 5600, "entries_behind": 1600,
                "entries_done": 3000, "rate_entries_per_s": 1000.0, "eta_s": 2.0, "started_s_ago": 3.0}
    receiving = {"index": 9, "from": "n1", "bytes": MIB, "total": None, "rate_bytes_per_s": float(MIB),
                 "eta_s": None, "started_s_ago": 1.0}
    status = node_status(snapshot_sends={"n3": sending(MIB)}, catch_up={"n2": catch_up},
                         snapshot_progress=receiving)
    assert render_frame(status, width=10) == [
        "n1 leader term 7 leader n1 commit 120 applied 119",
        "  [??????????]    ?  receiving snapshot 9 from n1: 1.0 MiB, 1.0 MiB/s, time left unknown",
        "  [##........]  25 %  sending snapshot 50 to n3: 1.0 MiB of 4.0 MiB (25 %), 1.0 MiB/s, "
        "about 3 s left",
        "  [######....]  65 %  n2 catching up the log: 1600 entries behind (match 4000 of 5600), "
        "1000 entries/s, about 2 s left",
    ]
    assert busy(status) and not busy(node_status())
    assert render_frame(node_status(), width=10)[1:] == ["  nothing in progress"]


def test_a_plain_line_names_the_time_the_node_and_the_work() -> None:
    line = render_line(node_status(snapshot_sends={"n3": sending(2 * MIB)}))
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d n1 leader term 7 leader n1 commit 120 applied 119 \| "
        r"sending snapshot 50 to n3: 2\.0 MiB of 4\.0 MiB \(50 %\), 1\.0 MiB/s, about 2 s left", line
    ), line
    assert render_line(node_status()).endswith("| nothing in progress")


def statuses(*sends: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    for s in sends:
        yield node_status(snapshot_sends={} if s is None else {"n3": s})


def test_off_a_terminal_each_refresh_is_one_plain_line_and_count_bounds_it() -> None:
    out, naps = io.StringIO(), []
    feed = statuses(sending(0), sending(MIB), sending(2 * MIB), sending(3 * MIB), sending(4 * MIB))
    code = watch(lambda: next(feed), out, tty=False, interval=1.0, count=3, sleep=naps.append)
    text = out.getvalue()
    assert code == 0 and naps == [1.0, 1.0]  # no nap after the last refresh
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert [re.search(r"(\d+) %", x).group(1) for x in lines] == ["0", "25", "50"]  # type: ignore[union-attr]


def test_until_done_stops_once_nothing_is_in_progress() -> None:
    out = io.StringIO()
    feed = statuses(sending(3 * MIB), sending(4 * MIB, state="sent"), None, sending(0))
    assert watch(lambda: next(feed), out, tty=False, until_done=True, count=10, sleep=lambda s: None) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "waiting for the receiver to acknowledge" in lines[1]
    assert lines[2].endswith("| nothing in progress")


def test_on_a_terminal_the_frame_is_redrawn_in_place() -> None:
    out = io.StringIO()
    feed = statuses(sending(MIB), sending(2 * MIB))
    watch(lambda: next(feed), out, tty=True, count=2, sleep=lambda s: None)
    first, second = out.getvalue().split("\x1b[2F\x1b[J")  # two lines up, clear below
    assert "[#######" in first and " 25 %" in first and " 50 %" in second


def test_a_lost_connection_is_shown_and_retried_and_ctrl_c_exits_130() -> None:
    out = io.StringIO()
    calls = iter([OSError("connection refused"), node_status(), KeyboardInterrupt()])

    def fetch() -> dict[str, Any]:
        item = next(calls)
        if isinstance(item, BaseException):
            raise item
        return item

    assert watch(fetch, out, tty=False, sleep=lambda s: None) == 130
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("error: connection refused") and lines[1].endswith("nothing in progress")


def test_other_errors_end_the_watch() -> None:
    def fetch() -> dict[str, Any]:
        raise PermissionError("refused")

    with pytest.raises(PermissionError):
        watch(fetch, io.StringIO(), tty=False, transient=(ConnectionError,), sleep=lambda s: None)


# -- the command ----------------------------------------------------------------------------


@pytest.fixture
def admin(serve: Any, fake_node: Any, password_file: Path) -> tuple[list[str], Any]:
    server = serve(fake_node)
    return ["admin", "--node", server.address, "--password-file", str(password_file)], fake_node


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_watch_prints_plain_lines_off_a_terminal(
    capsys: pytest.CaptureFixture[str], admin: tuple[list[str], Any]
) -> None:
    argv, node = admin
    plain = node.status
    steps = iter([sending(MIB), sending(3 * MIB), sending(4 * MIB, state="sent"), None])

    def status() -> dict[str, Any]:
        s = next(steps, None)
        return {**plain(), "snapshot_sends": {} if s is None else {"n3": s}}

    node.status = status
    code, out, err = run(
        capsys, *argv, "status", "--watch", "--interval", "0.01", "--until-done", "--count", "10"
    )
    assert (code, err) == (0, "")
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    assert len(lines) == 4, out
    assert "sending snapshot 50 to n3: 1.0 MiB of 4.0 MiB (25 %)" in lines[0]
    assert "(75 %)" in lines[1] and "all sent" in lines[2] and lines[3].endswith("| nothing in progress")


def test_watch_with_count(capsys: pytest.CaptureFixture[str], admin: tuple[list[str], Any]) -> None:
    argv, _ = admin
    code, out, err = run(capsys, *argv, "status", "--watch", "--interval", "0.01", "--count", "2")
    assert (code, err) == (0, "") and len(out.splitlines()) == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--count", "2"], "--count and --until-done go with --watch"),
        (["--watch", "--count", "0"], "--count must be at least 1"),
        (["--watch", "--json"], "use --json without --watch"),
    ],
)
def test_watch_options_are_checked(
    capsys: pytest.CaptureFixture[str], admin: tuple[list[str], Any], extra: list[str], message: str
) -> None:
    argv, _ = admin
    code, out, err = run(capsys, *argv, "status", *extra)
    assert code == 2 and message in err


# -- a real catch-up --------------------------------------------------------------------------


def test_watch_follows_a_real_snapshot_catch_up(
    capsys: pytest.CaptureFixture[str], serve: Any, password_file: Path
) -> None:
    """Three in-process nodes over TCP on 127.0.0.1; the third starts after
    the others compacted a ~3 MiB state away. Its loop is slowed to ~25
    chunks a second (a throttle: it waits on nothing) so that refreshes every
    0.2 s land during the stream; ``--watch --until-done`` on it, through its
    admin endpoint, ends once the snapshot is in. The leader is watched
    beside it, straight from status()."""
    import threading
    import time

    from raftkit import NodeBuilder
    from raftkit.core.types import Message
    from raftkit.runtime.node import Node
    from raftkit.testing.cluster import fast_config, wait_until
    from raftkit.testing.kv import KeyValueStateMachine, set_command
    from raftkit.testing.process_cluster import free_ports
    from raftkit.transports.tcp import TcpTransport

    addresses = [f"127.0.0.1:{port}" for port in free_ports(3)]
    config = fast_config(log_compaction_min_entries=10, log_compaction_keep=0, snapshot_chunk_size=64 << 10)
    nodes: list[Node] = [
        NodeBuilder(a).partners([p for p in addresses if p != a])
        .transport(TcpTransport(a, snapshot_chunk_bytes=64 << 10))
        .config(config).state_machine(KeyValueStateMachine()).build()
        for a in addresses
    ]
    lagging = nodes[2]

    def compact_all(node: Node) -> None:  # the whole log: no newer snapshot comes during the catch-up
        wait_until(lambda: node.status()["snapshot"].get("in_progress") is None, 10.0, what="idle")
        meta = node.request_log_compaction().result(timeout=10.0)
        assert meta is not None and meta.index == node.status()["log_last_index"]

    report = lagging._transfer.progress.update

    def slowed(message: Message, received: int | None) -> None:  # the lagging node's loop thread
        report(message, received)
        if received is not None:
            time.sleep(0.04)

    lagging._transfer.progress.update = slowed  # type: ignore[method-assign]
    leader_view = io.StringIO()
    try:
        for n in nodes[:2]:
            n.start()
        leader = wait_until(lambda: next((n for n in nodes[:2] if n.is_leader), None), 10.0, what="a leader")
        for i in range(48):
            leader.propose(set_command(f"k{i}", "v" * (64 << 10)), timeout=10.0)
        compact_all(leader)
        server = serve(lagging)
        lagging.start()
        wait_until(lambda: lagging.status()["snapshot_progress"], timeout=10.0, what="the stream")
        beside = threading.Thread(
            target=watch, args=(leader.status, leader_view),
            kwargs={"tty": False, "interval": 0.2, "count": 40, "until_done": True}, daemon=True,
        )
        beside.start()
        code, out, err = run(
            capsys, "admin", "--node", server.address, "--password-file", str(password_file),
            "status", "--watch", "--interval", "0.2", "--until-done", "--count", "100",
        )
        beside.join(15.0)
        wait_until(lambda: lagging.status()["applied_index"] >= 48, timeout=10.0, what="the catch-up")
    finally:
        for n in nodes:
            n.stop()
    assert (code, err) == (0, "")
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    assert len(lines) >= 4 and lines[-1].endswith("| nothing in progress"), out
    receiving = [x for x in lines if "receiving snapshot" in x]
    assert len(receiving) >= 3 and receiving == lines[:-1], out
    shares = [int(re.search(r"\((\d+) %\)", x).group(1)) for x in receiving]  # type: ignore[union-attr]
    assert shares == sorted(shares) and shares[-1] > shares[0], shares
    sent = leader_view.getvalue().splitlines()
    assert any("sending snapshot" in x and lagging.id in x for x in sent), sent
    print("\n".join(lines))
    print("\n".join(sent))
