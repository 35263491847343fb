"""``raftkit admin status --watch`` against a hostile or garbled status
answer: cluster-supplied strings (node ids, addresses, error texts) reach
the terminal without their control characters, and a field of the wrong
type costs its own line, not the whole watch."""

from __future__ import annotations

import io
from typing import Any

from raftkit.cli.watch import render_frame, render_line, watch

ESC = "\x1b"
COLUMNS = 60


def hostile_status() -> dict[str, Any]:
    evil = f"n9{ESC}]0;pwned\x07{ESC}[2J\r\nfake line\x9b31m"
    return {
        "id": evil, "role": "leader", "term": 7, "leader": evil, "commit_index": 1, "applied_index": 1,
        "snapshot_progress": {"index": 3, "from": evil, "bytes": 10, "total": 100, "rate_bytes_per_s": 1.0,
                              "eta_s": 5.0, "started_s_ago": 1.0},
        "snapshot_sends": {evil: {"index": 3, "to": evil, "state": "sending", "bytes": 5, "total": 10,
                                  "rate_bytes_per_s": 1.0, "eta_s": 5.0, "started_s_ago": 1.0}},
        "catch_up": {evil: {"peer": evil, "match": 1, "leader_last_index": 500, "entries_behind": 499,
                            "entries_done": 1, "rate_entries_per_s": 1.0, "eta_s": 4.0,
                            "started_s_ago": 1.0}},
    }


def _clean(text: str) -> bool:
    return all(ch.isprintable() for ch in text)


def test_cluster_supplied_strings_reach_the_terminal_without_control_characters() -> None:
    status = hostile_status()
    assert _clean(render_line(status))
    frame = render_frame(status)
    assert len(frame) == 4  # a head line and one per piece of work: no line smuggled in
    assert all(_clean(line) for line in frame)
    assert "n9" in frame[0] and "fake line" in frame[0]  # shown, escaped, not dropped


def test_an_error_text_from_the_endpoint_is_shown_without_control_characters() -> None:
    def fetch() -> dict[str, Any]:
        raise OSError(f"refused{ESC}[2J{ESC}]52;c;ZXZpbA==\x07\nmore")

    for tty in (True, False):
        out = io.StringIO()
        assert watch(fetch, out, tty=tty, count=2, sleep=lambda s: None) == 0
        lines = out.getvalue().split("\n")
        text = "".join(lines)
        if tty:  # the redraw's own cursor codes, and nothing else
            text = text.replace(f"{ESC}[1F{ESC}[J", "")
        assert _clean(text), repr(out.getvalue())
        assert len([line for line in lines if line]) == 2


def test_a_garbled_progress_entry_does_not_end_the_watch() -> None:
    garbled: list[dict[str, Any]] = [
        {"snapshot_progress": {"index": 3, "from": "n1", "bytes": "lots", "total": 100}},
        {"snapshot_progress": {"index": 3, "from": "n1", "bytes": 5, "total": "x", "eta_s": "soon"}},
        {"snapshot_sends": {"n2": {"to": "n2", "bytes": [1], "total": {}, "rate_bytes_per_s": "fast"}}},
        {"snapshot_sends": ["not", "a", "dict"]},
        {"catch_up": {"n2": {"peer": "n2", "entries_done": "1", "entries_behind": None, "eta_s": "x",
                             "rate_entries_per_s": "y"}}},
        {"catch_up": 5},
    ]
    for extra in garbled:
        status = {"id": "n1", "role": "leader", **extra}
        render_line(status)
        render_frame(status)
        out = io.StringIO()
        assert watch(lambda: status, out, tty=True, count=1) == 0  # noqa: B023 - called at once


def test_admin_status_shows_hostile_and_garbled_progress_safely() -> None:
    from raftkit.cli.commands import format_status

    status = hostile_status()
    status["error"] = f"disk{ESC}[2Jfull"
    text = format_status(status)
    assert all(_clean(line) for line in text.splitlines()), repr(text)
    assert "fake line" in text
    garbled = {"id": "n1", "role": "leader", "snapshot_progress": {"from": "n2", "bytes": "lots", "total": 3},
               "snapshot_sends": {"n3": {"to": "n3", "bytes": 1, "eta_s": "soon"}},
               "catch_up": {"n4": {"peer": "n4", "eta_s": "x", "rate_entries_per_s": "y"}}}
    assert "unreadable progress entry" in format_status(garbled)


def test_a_frame_line_wider_than_the_terminal_is_cut_so_the_redraw_goes_back_far_enough() -> None:
    # The redraw moves the cursor up one line per frame line: a line that
    # wraps takes two rows, and the old frame's top would stay on screen.
    mib = 1024 * 1024
    send = {"index": 50, "to": "n3", "state": "sending", "bytes": mib, "total": 4 * mib,
            "rate_bytes_per_s": float(mib), "eta_s": 3.0, "started_s_ago": 1.0}
    status = {"id": "n1", "role": "leader", "term": 7, "leader": "n1", "commit_index": 120,
              "applied_index": 119, "snapshot_sends": {"n3": send}}
    out = io.StringIO()
    watch(lambda: status, out, tty=True, count=2, sleep=lambda s: None, columns=lambda: COLUMNS)
    text = out.getvalue().replace(f"{ESC}[2F{ESC}[J", "")
    lines = [line for line in text.split("\n") if line]
    assert len(lines) == 4
    assert all(len(line) < COLUMNS for line in lines), [len(line) for line in lines]
