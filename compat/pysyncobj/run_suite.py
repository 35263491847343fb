"""Run PySyncObj's own test suite against raftkit, its imports changed.

``upstream_test_syncobj.py`` is PySyncObj's ``test_syncobj.py`` as
published (bakwc/PySyncObj, commit 2ec056d, tag v0.3.14; MIT, see
``LICENSE-PySyncObj.txt``), byte for byte. This script writes a copy whose
import lines, and nothing else, name raftkit instead of pysyncobj:

- the public API (``SyncObj``, ``SyncObjConf``, ``replicated``, the
  batteries, ``executeAdminCommand``, ``TCPNode``...) comes from raftkit;
- the PySyncObj internals with no raftkit counterpart (its journal class,
  its pickle shim, its DNS resolver, ``_COMMAND_TYPE`` and the
  ``_SyncObj__`` private attributes) come from ``pysyncobj_stubs.py``.

It runs that copy with pytest in a scratch directory (the suite writes dump
and journal files into its working directory), prints one line per test and
the total, writes them as JSON (``--json``), and exits 0 when at least
``--need`` tests passed (issue 14's bar: 32 of 42).

    .venv/bin/python compat/pysyncobj/run_suite.py [-k EXPR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent

BATTERIES = (
    "from {package} import ReplCounter, ReplList, ReplDict, ReplSet, ReplLockManager, ReplQueue, "
    "ReplPriorityQueue\n"
)

# Each upstream import line and what it becomes; a line that is not found
# exactly once stops the run (a different upstream file needs a look).
IMPORTS = {
    "import pysyncobj.pickle as pickle\n": "import pysyncobj_stubs as pickle\n",
    "import pysyncobj.dns_resolver as dns_resolver\n": "import pysyncobj_stubs as dns_resolver\n",
    (
        "from pysyncobj import SyncObj, SyncObjConf, replicated, FAIL_REASON, _COMMAND_TYPE, \\\n"
        "    createJournal, HAS_CRYPTO, replicated_sync, SyncObjException, SyncObjConsumer, _RAFT_STATE\n"
    ): (
        "from raftkit import SyncObj, SyncObjConf, replicated, FAIL_REASON, \\\n"
        "    HAS_CRYPTO, replicated_sync, SyncObjException, SyncObjConsumer, _RAFT_STATE\n"
        "from pysyncobj_stubs import _COMMAND_TYPE, createJournal\n"
    ),
    "from pysyncobj.syncobj_admin import executeAdminCommand\n": (
        "from raftkit.syncobj import executeAdminCommand\n"
    ),
    BATTERIES.format(package="pysyncobj.batteries"): BATTERIES.format(package="raftkit.batteries"),
    "from pysyncobj.node import TCPNode\n": "from raftkit.syncobj import TCPNode\n",
}


def rewrite(source: str) -> str:
    for old, new in IMPORTS.items():
        found = source.count(old)
        if found != 1:
            raise SystemExit(f"run_suite: expected the import {old.strip()!r} once, found it {found} times")
        source = source.replace(old, new)
    left = [line for line in source.splitlines() if re.match(r"\s*(from|import)\s+pysyncobj\b", line)]
    if left:
        raise SystemExit(f"run_suite: imports of pysyncobj left: {left}")
    return source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default=None, help="pytest -k expression (a subset of the tests)")
    parser.add_argument("--json", default=None, help="write the per-test results here")
    parser.add_argument("--need", type=int, default=32, help="passes needed for exit status 0")
    parser.add_argument(
        "--timeout", type=int, default=180, help="seconds per test before it counts as failed"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory and print its path")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pysyncobj-suite-"))
    try:
        test_file = work / "test_syncobj.py"
        test_file.write_text(rewrite((HERE / "upstream_test_syncobj.py").read_text()))
        shutil.copy(HERE / "pysyncobj_stubs.py", work / "pysyncobj_stubs.py")
        report = work / "report.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            f"--timeout={args.timeout}",
            f"--junitxml={report}",
            "-o",
            "junit_family=xunit1",
            "-W",
            "ignore::pytest.PytestCollectionWarning",
            "--rootdir",
            str(work),
            str(test_file),
        ]
        if args.k:
            command += ["-k", args.k]
        env = dict(os.environ, PYTHONPATH=str(work) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        # The suite's addresses are the same every run (its ports are seeded)
        # and it deletes its dump files, not raftkit's restart markers: a
        # marker left in the shared default folder by an earlier run makes a
        # node that starts empty take it for a wiped member (no leader, ever).
        env["RAFTKIT_STATE_MARKER_DIR"] = str(work / "state-markers")
        subprocess.run(command, cwd=work, env=env, check=False)
        results = outcomes(report)
    finally:
        if args.keep:
            print(f"scratch directory: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    passed = sum(1 for r in results if r["outcome"] == "passed")
    print()
    for r in results:
        print(f"{r['outcome']:8} {r['name']:36} {r['seconds']:7.1f}s  {r['message']}")
    print(f"\nPySyncObj's test_syncobj.py on raftkit: {passed} of {len(results)} passed (need {args.need})")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"passed": passed, "total": len(results), "tests": results}, indent=1)
        )
    return 0 if passed >= args.need else 1


def outcomes(report: Path) -> list[dict[str, object]]:
    if not report.exists():
        return []
    out = []
    for case in ET.parse(report).getroot().iter("testcase"):
        problem = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        outcome = "passed" if problem is None else {"failure": "failed"}.get(problem.tag, problem.tag)
        message = (
            ""
            if problem is None
            else (problem.get("message") or "").splitlines()[0][:120]
            if (problem.get("message"))
            else ""
        )
        out.append(
            {
                "name": case.get("name", "?"),
                "outcome": outcome,
                "seconds": float(case.get("time", 0.0)),
                "message": message,
            }
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
