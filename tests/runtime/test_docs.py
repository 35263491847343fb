"""The examples on every page of the docs (and the bank tutorial,
examples/bank/README.md) run, in order, one namespace per page, and print
what their comments say (over an in-memory network instead of TCP, in a
temporary working directory).

Only ```python blocks run; ```py marks an illustration that does not. A
block whose first line is ``# name.py`` is also written to ``name.py`` in
the working directory, so later blocks can import it as the page says."""

from __future__ import annotations

import contextlib
import io
import linecache
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from raftkit.builder import default_transport_factory
from raftkit.transports.memory import MemoryNetwork, MemoryTransport

DOCS = Path(__file__).parents[2] / "docs"

# Every page of the site runs, and the bank tutorial. Some pages have a
# minimum number of runnable blocks: a guard against a broken fence
# silently skipping examples.
MIN_BLOCKS = {
    "api.md": 8,
    "tutorial.md": 8,
    "batteries.md": 8,
    "migration.md": 2,
    "testing-your-state-machine.md": 5,
    "state-machine.md": 2,
    "index.md": 1,
    "plugins.md": 7,
    "metrics.md": 4,
    "operations.md": 1,
    "storage.md": 4,
    "transports.md": 3,
    "testing.md": 4,
    "../examples/bank/README.md": 10,  # the bank tutorial
}
# pages with runnable blocks that promise no output (they define test
# classes, or print what varies from run to run)
SILENT = {"transports.md"}


def tls_files(*nodes: str) -> Callable[[Path], None]:
    """The files the mutual TLS examples read, as transports.md's openssl
    commands make them: ca.pem, and a certificate and key per node."""

    def make(directory: Path) -> None:
        from raftkit.testing.certs import make_ca, make_cert

        _, ca, ca_key = make_ca(directory, "ca")
        for node in nodes:
            make_cert(directory, node, ca, ca_key)

    return make


# page -> what its examples expect to find in the working directory
SETUP: dict[str, Callable[[Path], None]] = {
    "transports.md": tls_files("a", "b"),
    "plugins.md": tls_files("n1", "n2", "n3"),
}
PAGES = sorted({p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")} | set(MIN_BLOCKS))


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def expected_prints(code: str) -> list[str]:
    """What ``print(...)  # output`` lines promise to print."""
    pattern = re.compile(r"^\s*print\(.*\)\s*#\s*(.+)$", flags=re.MULTILINE)
    return [m.group(1).strip() for m in pattern.finditer(code)]


@pytest.mark.parametrize("page", PAGES)
def test_doc_examples_run_and_print_what_they_promise(
    page: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    doc = DOCS / page
    monkeypatch.syspath_prepend(str(doc.parent))  # the page's folder: its modules import
    monkeypatch.syspath_prepend(str(tmp_path))  # the modules its blocks define
    monkeypatch.chdir(tmp_path)  # files the examples write land here
    blocks = python_blocks(doc.read_text())
    assert len(blocks) >= MIN_BLOCKS.get(page, 0)
    if page in SETUP:
        SETUP[page](tmp_path)
    modules = [m.group(1) for code in blocks if (m := re.match(r"# (\w+)\.py\n", code))]
    network = MemoryNetwork(auto_deliver=True)
    namespace: dict[str, object] = {"__name__": f"docs_{doc.stem}"}
    out = io.StringIO()
    memory = default_transport_factory(lambda node_id, address: MemoryTransport(network))
    with memory, contextlib.redirect_stdout(out), contextlib.ExitStack() as cleanup:
        for name in modules:  # imported from tmp_path: not to be found by a later page
            cleanup.callback(sys.modules.pop, name, None)
        for number, code in enumerate(blocks, 1):
            # Each block gets a file name of its own, with its lines in
            # linecache: tracebacks show the block, and inspect.getsource
            # (Hypothesis describes lambdas with it) reads Python, not the
            # page's Markdown, which Python 3.12's tokenizer refuses.
            name = f"<{page} block {number}>"
            linecache.cache[name] = (len(code), None, code.splitlines(keepends=True), name)
            module = re.match(r"# (\w+)\.py\n", code)
            if module:
                (tmp_path / f"{module.group(1)}.py").write_text(code)
            exec(compile(code, name, "exec"), namespace)  # our own docs
    printed = out.getvalue().splitlines()
    expected = [line for code in blocks for line in expected_prints(code)]
    if page in MIN_BLOCKS and page not in SILENT:
        assert expected, "the examples promise some output"
    remaining = iter(printed)
    for line in expected:
        assert any(line == got.strip() for got in remaining), f"{line!r} not printed (in order): {printed}"


@pytest.mark.parametrize("page", PAGES)
def test_every_fence_is_one_the_runner_knows(page: str) -> None:
    """A misspelt fence (```Python, ``` python, ```python3) would hide its
    example from the runner above: only these info strings are allowed."""
    known = {"", "python", "py", "sh", "text", "toml", "yaml", "json", "ini"}
    fences = re.findall(r"^[ \t]*```(.*)$", (DOCS / page).read_text(), flags=re.MULTILINE)
    unknown = sorted(set(fences) - known)  # exact: the runner matches "```python" and a newline
    assert not unknown, f"{page}: fences {unknown}; runnable examples use ```python"
