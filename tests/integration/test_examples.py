"""Every program in examples/ runs in the test suite.

The examples run here as their users run them (``python examples/x.py``, a
subprocess of this interpreter) and must exit 0 and print what they
promise. Each runs with a temporary directory of its own as ``TMPDIR`` and
no ``RAFTKIT_STATE_MARKER_DIR``, so anything it leaves behind (temp dirs,
restart markers) shows up, and is a failure.

``test_every_example_is_run_by_some_test`` keeps it that way: a new file in
examples/ fails it until a test here runs it or ELSEWHERE names the test
file that does.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# Examples run by another test file (which must mention the example's name).
ELSEWHERE = {
    "counter.py": "tests/integration/test_seed_examples.py",  # one process per node, stdin-driven
    "lock.py": "tests/integration/test_seed_examples.py",
    "batteries.py": "tests/integration/test_seed_examples.py",
    "typed_usage.py": "tests/test_typing.py",  # type-checked there
    "bank/bank.py": "tests/testing/test_bank_tutorial.py",  # the tutorial's modules and tests
    "bank/buggy.py": "tests/testing/test_bank_tutorial.py",
    "bank/test_bank.py": "tests/testing/test_bank_tutorial.py",
}


def run_example(name: str, *args: str, tmp_path: Path, timeout: float = 120) -> list[str]:
    """Run ``examples/<name>``; its stdout lines, once it exited 0 and left
    nothing in its TMPDIR."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RAFTKIT_STATE_MARKER_DIR"}
    env["TMPDIR"] = str(tmp)
    # A session of its own: if it hangs, its whole process group (it and the
    # node processes it started) is killed, by that group's id.
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=30)
        pytest.fail(f"{name} did not finish in {timeout:.0f} s\nstdout:\n{stdout}\nstderr:\n{stderr}")
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert sorted(p.name for p in tmp.iterdir()) == [], "left behind in its TMPDIR"
    lines = done.stdout.splitlines()
    assert lines and re.fullmatch(r"stopped after \d+\.\d s", lines[-1]), done.stdout
    return lines


# -- custom_state_machine.py -------------------------------------------------------------------


def test_custom_state_machine_writes_reads_back_on_every_node_and_stops(tmp_path: Path) -> None:
    lines = run_example("custom_state_machine.py", tmp_path=tmp_path)
    assert lines[:3] == ["apples: 3", "apples: 5", "refused: n must be an int, got 'many'"], lines
    reads = [line for line in lines if " reads " in line]
    assert len(reads) == 3 and all(line.endswith("reads {'apples': 5}") for line in reads), lines
    assert len({line.split()[0] for line in reads}) == 3, lines  # three different nodes


def test_custom_state_machine_restores_what_it_snapshots() -> None:
    path = EXAMPLES / "custom_state_machine.py"
    spec = importlib.util.spec_from_file_location("custom_state_machine", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    a = module.Tally()
    a.apply(module.Tally.add("b", 2))
    a.apply(module.Tally.add("a", 1))
    b = module.Tally()
    b.restore(a.snapshot())
    assert b.counts == a.counts and b.snapshot() == a.snapshot()


# -- asyncio_service.py -------------------------------------------------------------------------


def test_asyncio_service_each_seat_goes_to_exactly_one_client_and_every_node_agrees(tmp_path: Path) -> None:
    lines = run_example("asyncio_service.py", tmp_path=tmp_path)
    outcomes = [re.fullmatch(r"(\w+) -> (A\d): (booked|refused \(\2 already belongs to (\w+)\))", line)
                for line in lines if " -> " in line]
    assert len(outcomes) == 6 and all(outcomes), lines
    winners: dict[str, str] = {}
    for m in outcomes:
        assert m is not None
        if m[3] == "booked":
            assert m[2] not in winners, lines  # one winner per seat
            winners[m[2]] = m[1]
    assert sorted(winners) == ["A1", "A2", "A3"], lines
    for m in outcomes:
        assert m is not None
        if m[3] != "booked":
            assert m[4] == winners[m[2]] != m[1], lines  # refused, naming the actual winner
    assert "booked: 3 of 6 requests" in lines, lines
    reads = [line.split(" reads ", 1) for line in lines if " reads " in line]
    assert len(reads) == 3 and len({node for node, _ in reads}) == 3, lines
    assert all(view == str(dict(sorted(winners.items()))) for _, view in reads), lines


# -- lmdb_join.py -------------------------------------------------------------------------------


def test_lmdb_join_the_new_node_catches_up_by_snapshot_to_the_leaders_exact_state(tmp_path: Path) -> None:
    lines = run_example("lmdb_join.py", "--mb", "8", tmp_path=tmp_path)
    assert "loaded 8 MiB" in " ".join(lines), lines
    states = {}
    for line in lines:
        m = re.fullmatch(r"(leader|newcomer) +(\S+): (\d+) items, digest ([0-9a-f]{32})", line)
        if m:
            states[m[1]] = (m[2], int(m[3]), m[4])
    assert set(states) == {"leader", "newcomer"}, lines
    assert states["leader"][0] != states["newcomer"][0], lines
    assert states["leader"][1:] == states["newcomer"][1:] == (8 * 16 + 1, states["leader"][2]), lines
    assert any(re.fullmatch(r"caught up by snapshot: restored in \d+\.\d+ s", line) for line in lines), lines
    assert "voters: 4" in lines and "states equal: True" in lines, lines


def test_lmdb_join_refuses_a_size_below_one_mib() -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / "lmdb_join.py"), "--mb", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--mb must be at least 1" in done.stderr, done.stderr


# -- cli_cluster.py -----------------------------------------------------------------------------


def test_cli_cluster_grows_and_shrinks_and_stops_every_process_it_started(tmp_path: Path) -> None:
    lines = run_example("cli_cluster.py", tmp_path=tmp_path)
    text = "\n".join(lines)
    assert "all steps gave the expected answers" in lines, text
    assert "added n4 (127.0.0.1:" in text and "removed n1" in text, text
    # The last members table: n1 removed, n4 a voter.
    header = max(i for i, line in enumerate(lines) if line.split() == ["id", "role", "address"])
    rows = [line.split()[:2] for line in lines[header + 1 : header + 4]]
    assert rows == [["n2", "voter"], ["n3", "voter"], ["n4", "voter"]], text
    stopped = next(line for line in lines if line.startswith("stopped: "))
    pids = [int(p) for p in re.findall(r"pid (\d+)", stopped)]
    assert len(pids) == 4, stopped
    for pid in pids:  # the example waited for them: none is left running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# -- the guard ------------------------------------------------------------------------------------

RUN_HERE: dict[str, Callable[..., None]] = {
    "custom_state_machine.py": test_custom_state_machine_writes_reads_back_on_every_node_and_stops,
    "asyncio_service.py": test_asyncio_service_each_seat_goes_to_exactly_one_client_and_every_node_agrees,
    "lmdb_join.py": test_lmdb_join_the_new_node_catches_up_by_snapshot_to_the_leaders_exact_state,
    "cli_cluster.py": test_cli_cluster_grows_and_shrinks_and_stops_every_process_it_started,
}


def test_every_example_is_run_by_some_test() -> None:
    files = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.py"))
    unknown = [f for f in files if f not in RUN_HERE and f not in ELSEWHERE]
    assert not unknown, (
        f"examples with no test: {unknown}; run them in {Path(__file__).name} (RUN_HERE) "
        "or name the test file that does in ELSEWHERE"
    )
    assert not set(RUN_HERE) & set(ELSEWHERE)
    for name in RUN_HERE:
        assert (EXAMPLES / name).is_file(), f"RUN_HERE names {name}, which is not in examples/"
    for name, test_file in ELSEWHERE.items():
        if not (EXAMPLES / name).exists():
            continue  # (typed_usage.py arrives with its own test file)
        path = ROOT / test_file
        assert path.is_file(), f"{name} is said to be run by {test_file}, which does not exist"
        assert Path(name).stem in path.read_text(), f"{test_file} does not mention {name}"
