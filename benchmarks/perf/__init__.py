"""raftkit vs PySyncObj performance report (``make bench``, ``make bench-quick``).

Three scripts, run from the repository root:

* ``python -m benchmarks.perf.worker``: one node process (raftkit or
  PySyncObj, the same code), either open-loop (asynchronous calls at a fixed
  rate) or closed-loop (N threads each calling ``set(..., sync=True)``); it
  prints one JSON line with what it measured.
* ``python -m benchmarks.perf.driver``: starts the node processes for each
  point of the matrix, reads their CPU from ``/proc``, repeats each point and
  writes ``benchmarks/results/<timestamp>-<name>.json``.
* ``python -m benchmarks.perf.report FILE.json``: tables (median and spread
  of the repetitions, raftkit/PySyncObj ratios) and one PNG per workload.

See docs/benchmarks.md for what every number means.
"""
