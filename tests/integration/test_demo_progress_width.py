"""The demo's live line on a terminal narrower than the line: it is cut to
the width, since ``\\r`` returns only to the start of the last row of a
wrapped line and every refresh would leave a row behind."""

from __future__ import annotations

import io


def test_the_live_line_is_cut_to_the_terminal_width() -> None:
    from raftkit.cli.demo import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    p = Progress(tty, columns=lambda: 40)
    p.show("x" * 100)
    p.show("short")
    assert tty.getvalue() == "\r\x1b[K" + "x" * 39 + "\r\x1b[Kshort"
