"""The examples in the docs (and the bank tutorial, examples/bank/README.md)
run, in order, one namespace per page, and print what their comments say
(over an in-memory network instead of TCP).

Only ```python blocks run; ```py marks an illustration that does not."""

from __future__ import annotations

import contextlib
import io
import linecache
import re
from pathlib import Path

import pytest

from raftkit.builder import default_transport_factory
from raftkit.transports.memory import MemoryNetwork, MemoryTransport

DOCS = Path(__file__).parents[2] / "docs"

# page -> how many runnable blocks it has at least (a guard against a
# broken fence silently skipping examples)
PAGES = {
    "api.md": 8,
    "tutorial.md": 8,
    "batteries.md": 8,
    "migration.md": 2,
    "testing-your-state-machine.md": 5,
    "state-machine.md": 2,
    "../examples/bank/README.md": 10,  # the bank tutorial
}


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def expected_prints(code: str) -> list[str]:
    """What ``print(...)  # output`` lines promise to print."""
    pattern = re.compile(r"^\s*print\(.*\)\s*#\s*(.+)$", flags=re.MULTILINE)
    return [m.group(1).strip() for m in pattern.finditer(code)]


@pytest.mark.parametrize("page", sorted(PAGES))
def test_doc_examples_run_and_print_what_they_promise(page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = DOCS / page
    monkeypatch.syspath_prepend(str(doc.parent))  # run from the page's folder: its modules import
    blocks = python_blocks(doc.read_text())
    assert len(blocks) >= PAGES[page]
    network = MemoryNetwork(auto_deliver=True)
    namespace: dict[str, object] = {"__name__": f"docs_{doc.stem}"}
    out = io.StringIO()
    memory = default_transport_factory(lambda node_id, address: MemoryTransport(network))
    with memory, contextlib.redirect_stdout(out):
        for number, code in enumerate(blocks, 1):
            # Each block gets a file name of its own, with its lines in
            # linecache: tracebacks show the block, and inspect.getsource
            # (Hypothesis describes lambdas with it) reads Python, not the
            # page's Markdown, which Python 3.12's tokenizer refuses.
            name = f"<{page} block {number}>"
            linecache.cache[name] = (len(code), None, code.splitlines(keepends=True), name)
            exec(compile(code, name, "exec"), namespace)  # our own docs
    printed = out.getvalue().splitlines()
    expected = [line for code in blocks for line in expected_prints(code)]
    assert expected, "the examples promise some output"
    remaining = iter(printed)
    for line in expected:
        assert any(line == got.strip() for got in remaining), f"{line!r} not printed (in order): {printed}"
