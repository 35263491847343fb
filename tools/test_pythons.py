"""``make test-pythons``: the test suite on every supported Python.

Each interpreter named in PYTHONS (default python3.10 ... python3.13, found
on PATH; with pyenv, ``PYENV_VERSION=3.10.13:3.11.7:3.12.1:3.13.0``) gets a
venv of its own (``.venv-<name>``) with the ``test`` extra, runs the suite,
and the summary line of each run is printed at the end. Exits 1 if any run
failed or any interpreter is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = "python3.10 python3.11 python3.12 python3.13"


def run_one(python: str) -> tuple[bool, str]:
    if shutil.which(python) is None or subprocess.run([python, "-c", "pass"], capture_output=True).returncode:
        return False, "not found on PATH"
    venv = ROOT / f".venv-{python}"
    bin_ = venv / "bin"
    if not (bin_ / "python").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(bin_ / "pip"), "install", "--quiet", "-e", ".[test]"], cwd=ROOT)
    if install.returncode:
        return False, "installing the test extra failed"
    started = time.monotonic()
    tests = subprocess.run(
        [str(bin_ / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True,
    )
    lines = [line for line in tests.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else tests.stderr.strip()[-200:]
    if tests.returncode:
        failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
        summary += "".join(f"\n      {line}" for line in failed[:20])
    return tests.returncode == 0, f"{summary}  [{time.monotonic() - started:.0f} s]"


def main() -> int:
    pythons = os.environ.get("PYTHONS", DEFAULT).split()
    results = []
    for python in pythons:
        print(f"== {python}", flush=True)
        ok, summary = run_one(python)
        results.append((python, ok, summary))
        print(f"   {summary}", flush=True)
    print("\nsummary:")
    for python, ok, summary in results:
        print(f"  {'ok  ' if ok else 'FAIL'} {python}: {summary}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
