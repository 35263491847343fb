"""The bank tutorial (examples/bank/README.md) tells the truth:

* each buggy bank of examples/bank/buggy.py is reported by the
  ``StateMachineConformance`` check meant for it, with the shrunk command
  sequence and the command that went wrong in the message;
* that report is the one the tutorial quotes (its first line and the
  sequence: the rest holds dates, hash-seed-dependent values and paths);
* the code the tutorial shows is the code of the example's files;
* the example's own tests (examples/bank/test_bank.py: the suite, a
  cluster_test with a model and a SimCluster scenario) pass on the correct
  bank.

The example's folder is on ``sys.path`` (conftest.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import buggy
import pytest
import test_bank  # the example's tests: its Test* classes are not collected here
from bank import Bank

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bank"
README = EXAMPLE / "README.md"

PREFIX = {
    "test_deterministic_in_process": "determinism (in-process): ",
    "test_deterministic_across_processes": "determinism (across processes): ",
    "test_snapshot_round_trip": "snapshot round trip (snapshot taken after command #",
    "test_failed_command_leaves_state_unchanged": "failing command: ",
    "test_commands_and_results_survive_serializer": "serializer (JsonSerializer): ",
}


class BuggyBankSuite(test_bank.TestBankConformance):
    """The example's suite (derandomized: the tutorial's reports are
    reproducible) over ``machine``."""

    machine: ClassVar[type[Bank]] = Bank

    def make_state_machine(self, tmp_path: Path) -> Bank:
        return self.machine()


def _suite(machine: type[Bank]) -> type[BuggyBankSuite]:
    suite = type(f"{machine.__name__}Suite", (BuggyBankSuite,), {"machine": machine})
    globals()[suite.__name__] = suite  # importable by name in the child processes
    return suite


SUITES = {machine: _suite(machine) for machine in buggy.BUGS}


def quoted_reports() -> dict[str, list[str]]:
    """BANK name -> the toolkit's message as the tutorial quotes it (the
    ``E   `` lines of the pytest output, up to Hypothesis's own lines)."""
    reports = {}
    for block in re.findall(r"```text\n(.*?)```", README.read_text(), flags=re.DOTALL):
        bank = re.search(r"^\$ BANK=(\w+) ", block, flags=re.MULTILINE)
        lines = [line[4:] for line in block.splitlines() if line.startswith("E   ")]
        if bank is None or not lines:
            continue
        first = next(i for i, line in enumerate(lines) if line.startswith("AssertionError: "))
        end = next((i for i, line in enumerate(lines) if line.startswith("Failing test case")), len(lines))
        message = lines[first:end]
        message[0] = message[0].removeprefix("AssertionError: ")
        reports[bank.group(1)] = message
    return reports


def stable_part(message: list[str]) -> list[str]:
    """The first line (the check and what went wrong) and the shrunk command
    sequence; the values after it may hold today's date, a hash-seed-dependent
    order or the name of whichever child process disagreed first."""
    end = next(i for i, line in enumerate(message) if i > 1 and not line.startswith("  #"))
    return message[:end]


@pytest.mark.parametrize("machine", list(buggy.BUGS), ids=lambda m: m.__name__)
def test_each_planted_bug_is_reported_by_its_check_as_the_tutorial_quotes(
    machine: type[Bank], tmp_path_factory: pytest.TempPathFactory
) -> None:
    check = buggy.BUGS[machine]
    with pytest.raises(AssertionError) as info:
        getattr(SUITES[machine](), check)(tmp_path_factory)
    message = str(info.value)
    print(f"--- {machine.__name__} / {check}:\n{message}")
    lines = message.splitlines()
    assert lines[0].startswith(PREFIX[check]), message
    assert re.fullmatch(r"commands \(\d+, as shrunk by Hypothesis\):", lines[1]), message
    assert lines[2].startswith("  #0 b'{"), message  # the sequence itself
    assert "<-- here" in message, message  # and which command went wrong
    if "the states differ" in lines[0] or "changed the state" in lines[0]:  # two long snapshots
        pointer = [line for line in lines if line.startswith("first difference at character ")]
        assert len(pointer) == 1 and "  vs  " in pointer[0], message
        a, b = pointer[0].split(": ", 1)[1].split("  vs  ")
        assert a != b, message
    quoted = quoted_reports().get(machine.__name__)
    assert quoted is not None, f"README.md quotes no report for BANK={machine.__name__}"
    assert stable_part(quoted) == stable_part(lines), f"README.md quotes another report:\n{message}"


def test_the_tutorial_quotes_a_report_for_each_bug_and_the_command_that_gives_it() -> None:
    reports = quoted_reports()
    assert sorted(reports) == sorted(m.__name__ for m in buggy.BUGS)
    text = README.read_text()
    for machine, check in buggy.BUGS.items():
        command = re.search(rf"^\$ BANK={machine.__name__} python -m pytest (.*)$", text, flags=re.MULTILINE)
        assert command is not None, machine
        keyword = re.search(r"-k (\w+)", command.group(1))
        assert keyword is not None and keyword.group(1) in check, (machine, command.group(0))


def test_the_code_the_tutorial_shows_is_the_examples_code() -> None:
    """Each ```py block of README.md (an excerpt, not run) and each ```python
    block that defines a class (run by tests/runtime/test_docs.py with the
    page's other blocks) stands word for word in bank.py, buggy.py or
    test_bank.py."""
    sources = "\n".join((EXAMPLE / name).read_text() for name in ("bank.py", "buggy.py", "test_bank.py"))
    text = README.read_text()
    excerpts = re.findall(r"```py\n(.*?)```", text, flags=re.DOTALL)
    classes = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL) if b.startswith("class ")]
    assert len(excerpts) >= 4 and len(classes) == len(buggy.BUGS)
    for block in excerpts + classes:
        assert block in sources, f"README.md shows code that is not in the example's files:\n{block}"


def test_the_examples_own_tests_pass_on_the_correct_bank() -> None:
    env = {k: v for k, v in os.environ.items() if k != "BANK"}
    result = subprocess.run(  # noqa: S603 - our own interpreter and example
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "test_bank.py")],
        cwd=EXAMPLE.parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b7 passed\b", result.stdout), result.stdout
