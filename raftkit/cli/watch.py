"""``raftkit admin status --watch``: a node's status refreshed every second,
with a bar for each long piece of work (a snapshot received or sent, a
peer catching up the log; raftkit.runtime.transfer_progress and
raftkit.runtime.catch_up).

On a terminal the frame is redrawn in place; elsewhere (a pipe, a log, CI)
each refresh prints one plain line, with no escape codes or carriage returns.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from typing import Any, TextIO

from raftkit.runtime.catch_up import catch_up_text
from raftkit.runtime.transfer_progress import progress_text

__all__ = [
    "bar", "busy", "printable", "progress_items", "render_frame", "render_line", "safe_text",
    "status_entries", "watch",
]

BAR_WIDTH = 30


def printable(text: object) -> str:
    """``text`` with every character a terminal could act on (escape
    sequences, carriage returns, line breaks, bidi overrides) written as its
    escape: node ids, addresses and error texts come from the cluster or the
    endpoint and must not move the cursor, retitle or clear the terminal."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def _number(value: object) -> float | None:
    """A count from a status answer: None unless a finite int or float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def bar(done: float, total: float | None, width: int = BAR_WIDTH) -> str:
    """``[#########.....................]  30 %``; an unknown total: ``[?...]``."""
    done_n, total_n = _number(done), _number(total)
    if done_n is None or not total_n or total_n <= 0:
        return "[" + "?" * width + "]    ?"
    fraction = min(1.0, max(0.0, done_n / total_n))
    filled = int(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {int(fraction * 100):3d} %"


def safe_text(describe: Callable[[dict[str, Any]], str], p: dict[str, Any]) -> str:
    """``describe(p)`` made safe for a terminal; a field of the wrong type
    (a garbled or hostile answer) costs this line, not the watch."""
    try:
        return printable(describe(p))
    except (TypeError, ValueError, ArithmeticError):
        return "unreadable progress entry: " + printable(p)


def status_entries(field: object) -> list[Any]:
    """The values of a per-peer status field, in peer order (none unless a dict)."""
    if not isinstance(field, dict):
        return []
    return [field[k] for k in sorted(field, key=str)]


def progress_items(status: dict[str, Any]) -> list[tuple[float, float | None, str]]:
    """Each long piece of work in ``status``: (done, total, its line)."""
    items: list[tuple[float, float | None, str]] = []
    receiving = status.get("snapshot_progress")
    if isinstance(receiving, dict):
        items.append((_number(receiving.get("bytes")) or 0, _number(receiving.get("total")),
                      safe_text(progress_text, receiving)))
    for send in status_entries(status.get("snapshot_sends")):
        if isinstance(send, dict):
            done, total = _number(send.get("bytes")) or 0, _number(send.get("total"))
            items.append((done, total, safe_text(progress_text, send)))
    for c in status_entries(status.get("catch_up")):
        if isinstance(c, dict):  # the share done of what was behind when it began (and came since)
            done = _number(c.get("entries_done")) or 0
            items.append((done, done + (_number(c.get("entries_behind")) or 0), safe_text(catch_up_text, c)))
    return items


def busy(status: dict[str, Any]) -> bool:
    """Whether any long piece of work is in progress."""
    return bool(progress_items(status))


def _head(status: dict[str, Any]) -> str:
    leader = status.get("leader") or "-"
    return printable(
        f"{status.get('id')} {status.get('role')} term {status.get('term')} leader {leader} "
        f"commit {status.get('commit_index')} applied {status.get('applied_index')}"
    )


def render_line(status: dict[str, Any], now: float | None = None) -> str:
    """One plain line for a pipe or a log: the time, the node, then each piece of work."""
    stamp = time.strftime("%H:%M:%S", time.localtime(now))
    parts = [text for _, _, text in progress_items(status)] or ["nothing in progress"]
    return f"{stamp} {_head(status)} | " + "; ".join(parts)


def render_frame(status: dict[str, Any], width: int = BAR_WIDTH) -> list[str]:
    """The lines of a terminal frame: the node, then a bar and a line for each piece of work."""
    lines = [_head(status)]
    items = progress_items(status)
    for done, total, text in items:
        lines.append(f"  {bar(done, total, width)}  {text}")
    if not items:
        lines.append("  nothing in progress")
    return lines


def watch(
    fetch: Callable[[], dict[str, Any]],
    out: TextIO,
    *,
    tty: bool,
    interval: float = 1.0,
    count: int | None = None,
    until_done: bool = False,
    transient: tuple[type[Exception], ...] = (OSError,),
    sleep: Callable[[float], None] = time.sleep,
    columns: Callable[[], int] = lambda: shutil.get_terminal_size().columns,
) -> int:
    """Show ``fetch()`` every ``interval`` seconds, ``count`` times (None:
    until interrupted) or, with ``until_done``, until nothing is in progress.
    A fetch failing with a ``transient`` error (a lost connection: a node
    restarting is worth watching) is shown and retried; others end the watch.
    On a terminal each line is cut to its width (``columns()``): a line that
    wrapped would take two rows, and the redraw, one row up per line, would
    leave the old frame's top on screen. Returns the exit code: 0, or 130 on
    Ctrl-C."""
    drawn = 0  # lines of the last terminal frame, redrawn in place
    shown = 0
    try:
        while count is None or shown < count:
            error = None
            try:
                status = fetch()
            except transient as exc:
                status, error = {}, printable(exc)
            shown += 1
            if tty:
                lines = [f"error: {error}"] if error is not None else render_frame(status)
                width = max(10, columns() - 1)  # the last column can wrap the cursor on some terminals
                lines = [line[:width] for line in lines]
                if drawn:
                    out.write(f"\x1b[{drawn}F\x1b[J")  # back to the frame's first line, clear below
                out.write("\n".join(lines) + "\n")
                drawn = len(lines)
            else:
                stamp = time.strftime("%H:%M:%S")
                out.write(f"{stamp} error: {error}\n" if error is not None else render_line(status) + "\n")
            out.flush()
            if until_done and error is None and not busy(status):
                break
            if count is None or shown < count:
                sleep(interval)
    except KeyboardInterrupt:
        out.write("\n" if tty else "")
        out.flush()
        return 130
    return 0
