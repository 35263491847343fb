"""Replay every scenario transcript in tests/scenarios/ and compare its output.

To accept new or changed output, run ``RAFTKIT_REWRITE=1 pytest tests/test_scenarios.py``
and review the diff of the .txt files (see docs/testing.md, "Scenario transcripts").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkit.testing.scenario import ScenarioError, ScenarioRunner, check_scenario, parse, render

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.txt"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    check_scenario(path)


def test_scenarios_exist() -> None:
    assert SCENARIOS, "no transcripts found in tests/scenarios/"


def test_render_round_trips_a_transcript() -> None:
    text = "# a comment\ncluster n=1\n----\nok\n\n\n# two blank lines above\nstatus\n----\nn1 x\n\n# tail\n"
    blocks, trailer = parse(text)
    assert [b.command for b in blocks] == ["cluster n=1", "status"]
    assert render(blocks, [b.expected or [] for b in blocks], trailer) == text


def test_draft_block_without_separator_gets_output() -> None:
    blocks, trailer = parse("cluster n=1\ncampaign n1\n")
    assert [b.expected for b in blocks] == [None, None]
    assert render(blocks, [["ok"], ["a"]], trailer) == "cluster n=1\n----\nok\n\ncampaign n1\n----\na\n"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["campaign n1"], "the first command must be `cluster`"),
        (["cluster n=3", "frobnicate n1"], "unknown command 'frobnicate'"),
        (["cluster n=3", "campaign n9"], "unknown node 'n9'"),
        (["cluster n=3", "tick count=x"], "count='x' is not an integer"),
        (["cluster n=3", "deliver sideways"], "expected nothing or the word 'all'"),
        (["cluster n=3", "deliver type=VOTES"], "unknown message type 'VOTES'"),
        (["cluster n=3 prevote=maybe"], "prevote='maybe' is not a boolean"),
        (["cluster n=3", "run rounds=2 colour=red"], "unknown option(s): colour"),
    ],
)
def test_transcript_errors_name_file_and_line(lines: list[str], message: str) -> None:
    runner = ScenarioRunner("demo.txt")
    with pytest.raises(ScenarioError) as info:
        for lineno, line in enumerate(lines, start=1):
            runner.execute(line, lineno)
    assert str(info.value).startswith(f"demo.txt:{len(lines)}: ")
    assert message in str(info.value)


def test_rewrite_cannot_bless_a_violation(tmp_path: Path) -> None:
    path = tmp_path / "lost.txt"
    path.write_text("cluster n=3 seed=1\ncampaign n1\ndeliver all\ntick n1\ndeliver all\ncrash n3\ncheck\n")
    with pytest.raises(AssertionError, match="broke a Raft invariant"):
        check_scenario(path, rewrite=True)
    assert "INVARIANT VIOLATION: n3 did not converge" in path.read_text()  # written, for review
