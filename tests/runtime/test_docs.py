"""The examples in docs/api.md run, in order, in one namespace, and print
what their comments say (over an in-memory network instead of TCP)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from raftkit.builder import default_transport_factory
from raftkit.transports.memory import MemoryNetwork, MemoryTransport

DOC = Path(__file__).parents[2] / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def expected_prints(code: str) -> list[str]:
    """What ``print(...)  # output`` lines promise to print."""
    pattern = re.compile(r"^\s*print\(.*\)\s*#\s*(.+)$", flags=re.MULTILINE)
    return [m.group(1).strip() for m in pattern.finditer(code)]


def test_api_examples_run_and_print_what_they_promise() -> None:
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 8
    network = MemoryNetwork(auto_deliver=True)
    namespace: dict[str, object] = {"__name__": "docs_api"}
    out = io.StringIO()
    memory = default_transport_factory(lambda node_id, address: MemoryTransport(network))
    with memory, contextlib.redirect_stdout(out):
        for code in blocks:
            exec(compile(code, str(DOC), "exec"), namespace)  # our own docs
    printed = out.getvalue().splitlines()
    expected = [line for code in blocks for line in expected_prints(code)]
    assert expected, "the examples promise some output"
    remaining = iter(printed)
    for line in expected:
        assert any(line == got.strip() for got in remaining), f"{line!r} not printed (in order): {printed}"
