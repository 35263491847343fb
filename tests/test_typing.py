"""The public API's types, as a user's type checker sees them.

``examples/typed_usage.py`` must pass ``mypy --strict`` (its
``assert_type`` calls pin what mypy infers) and must run; a misuse of the
same API must be reported line by line; and a copy of raftkit whose
``@replicated`` returns ``Any`` must fail both checks, which shows they
depend on the decorator's types rather than pass by accident.

mypy runs as a subprocess of this interpreter with a cache in tmp_path.
``--follow-imports=silent`` makes it use raftkit's annotations without
reporting raftkit's own errors: what a user of the installed package sees.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "typed_usage.py"

# Each line tagged "# E: code" must get a mypy error with that code; no other line may.
MISUSE = textwrap.dedent(
    """\
    from __future__ import annotations

    import concurrent.futures

    from raftkit import SyncObj, replicated, replicated_sync
    from raftkit.batteries import ReplCounter


    class Tally(SyncObj):
        @replicated
        def add(self, name: str, by: int = 1) -> int:
            return by

        @replicated_sync
        def get_value(self, name: str) -> int:
            return 0


    async def misuse(t: Tally, counter: ReplCounter) -> None:
        t.add("apples", bogus=3)  # E: call-overload
        t.add(3)  # E: call-overload
        text: str = t.get_value("apples", sync=True)  # E: assignment
        plain: int = t.add("apples")  # E: assignment
        later: str = await t.add.aio("apples", 2)  # E: assignment
        fut: concurrent.futures.Future[str] = t.add.submit("apples")  # E: assignment
        t.add.submit("apples", "two")  # E: call-overload
        label: str = counter.get()  # E: assignment
        counter.add("one")  # E: call-overload
        fine: int = t.add("apples", sync=True)
        also: int = t.get_value("apples")
    """
)

_ERROR = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+): error: (?P<message>.*)\[(?P<code>[a-z-]+)\]$")


def run_mypy(
    target: pathlib.Path, cwd: pathlib.Path, cache: pathlib.Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
            "--no-color-output", "--no-error-summary", "--hide-error-context",
            "--cache-dir", str(cache), str(target),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def errors_by_line(output: str, target: pathlib.Path) -> dict[int, set[str]]:
    """Line -> error codes mypy reported for ``target``."""
    found: dict[int, set[str]] = {}
    for line in output.splitlines():
        match = _ERROR.match(line)
        if match and pathlib.Path(match["file"]).name == target.name:
            found.setdefault(int(match["line"]), set()).add(match["code"])
    return found


def expected_errors(source: str) -> dict[int, set[str]]:
    return {
        number: {m.group(1)}
        for number, text in enumerate(source.splitlines(), start=1)
        if (m := re.search(r"# E: ([a-z-]+)$", text))
    }


def test_typed_example_passes_mypy_strict(tmp_path: pathlib.Path) -> None:
    result = run_mypy(EXAMPLE.relative_to(REPO), REPO, tmp_path / "cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_pysyncobj_readme_examples_type_check() -> None:
    """Their code is PySyncObj's, unannotated, so not --strict; but the
    library's annotations must accept it (``consumers=[ReplLockManager(...)]``
    was refused: the parameter took only SyncObjConsumer)."""
    examples = [f"examples/{name}" for name in ("counter.py", "lock.py", "batteries.py")]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-color-output", *examples],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_typed_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "apples=3 pears=5 reset=True plums=11 counter=42 hits=3"


def test_misuse_is_reported_on_each_line(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "misuse.py"
    target.write_text(MISUSE)
    result = run_mypy(target, REPO, tmp_path / "cache")
    assert result.returncode == 1, result.stdout + result.stderr
    assert errors_by_line(result.stdout, target) == expected_errors(MISUSE), result.stdout


def _raftkit_with_untyped_replicated(root: pathlib.Path) -> pathlib.Path:
    """A copy of the raftkit package whose ``replicated`` and
    ``replicated_sync`` overloads all return ``Any``."""
    copy = root / "raftkit"
    shutil.copytree(REPO / "raftkit", copy, ignore=shutil.ignore_patterns("__pycache__"))
    decorator = copy / "syncobj" / "decorator.py"
    text = decorator.read_text()
    start = text.index("@overload\ndef replicated(")
    end = text.index("\n_AnyMethod = ")
    region, count = re.subn(r"\) -> [^\n]*: \.\.\.\n", ") -> Any: ...\n", text[start:end])
    assert count == 8, "the decorator's overloads changed shape: update this mutation"
    decorator.write_text(text[:start] + region + text[end:])
    return root


def test_checks_fail_when_replicated_loses_its_types(tmp_path: pathlib.Path) -> None:
    # mypy finds the package in its working directory before the installed one.
    root = _raftkit_with_untyped_replicated(tmp_path / "untyped")
    shutil.copy(EXAMPLE, root / EXAMPLE.name)
    (root / "misuse.py").write_text(MISUSE)
    probe = run_mypy(root / "misuse.py", root, tmp_path / "cache")
    example = run_mypy(root / EXAMPLE.name, root, tmp_path / "cache")
    assert example.returncode == 1, example.stdout  # its assert_type calls see Any
    assert "assert-type" in example.stdout, example.stdout
    reported = errors_by_line(probe.stdout, root / "misuse.py")
    missed = {n for n, codes in expected_errors(MISUSE).items() if not codes <= reported.get(n, set())}
    assert missed, "every misuse is still reported with an untyped @replicated: the test proves nothing"
