"""CPU per command of settling a packed entry's outcomes on the node that
proposed it: ``PendingCommands.resolve`` one by one against
``resolve_entry`` (one clock read and one index cleanup per entry).

    .venv/bin/python -m benchmarks.micro_resolve

Prints µs per command for registering 256 commands alone (the baseline every
variant pays) and for registering plus settling them each way.
"""

from __future__ import annotations

import timeit

from raftkit.runtime.futures import CallbackOutcome
from raftkit.runtime.pending import PendingCommands

PER_ENTRY = 256  # NodeConfig.commands_per_entry's default
OUTCOMES: list[tuple[object, BaseException | None]] = [(None, None)] * PER_ENTRY


def registered() -> tuple[PendingCommands, list[int]]:
    table = PendingCommands()
    seqs = []
    for _ in range(PER_ENTRY):
        seq, _ = table.register(1e9, CallbackOutcome(lambda result, error: None))
        table.mark_proposed(seq, 5, 1)
        seqs.append(seq)
    return table, seqs


def one_by_one() -> None:
    table, seqs = registered()
    for seq, (result, error) in zip(seqs, OUTCOMES, strict=True):
        table.resolve(seq, result, error)


def per_entry() -> None:
    table, seqs = registered()
    table.resolve_entry(seqs, OUTCOMES)


def main() -> None:
    for name, fn in (("register only", registered), ("resolve one by one", one_by_one),
                     ("resolve_entry", per_entry)):
        best = min(timeit.repeat(fn, number=200, repeat=5)) / 200 / PER_ENTRY
        print(f"{name:20} {best * 1e6:.2f} µs per command")


if __name__ == "__main__":
    main()
