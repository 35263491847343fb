"""The bank of the tutorial (examples/bank: bank.py, buggy.py and the user's
test_bank.py) is what these tests run the toolkit on: its folder goes on
``sys.path``, which the conformance suite's child processes inherit, so they
import the same modules."""

from __future__ import annotations

import sys
from pathlib import Path

BANK_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bank"
if str(BANK_EXAMPLE) not in sys.path:
    sys.path.insert(0, str(BANK_EXAMPLE))
