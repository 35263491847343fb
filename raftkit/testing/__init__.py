"""Tools for testing raftkit and applications built on it: the
deterministic simulator (``sim``, with ``invariants``, ``clock`` and
``scenario``), Hypothesis ``strategies``, the plug-in ``conformance``
suites, in-process and multi-process clusters, ``netproxy`` (a TCP proxy
that partitions real nodes), test certificates, and
``linearizability`` (``check`` a history of client ``Operation``s against
a sequential ``Model``: a ``Result`` with a shrunk counterexample, which
``format_counterexample`` renders; ``default_key`` memoizes model states).

For YOUR state machine: ``sim`` (``SimCluster(state_machine=...)``),
``cluster_test`` (a Hypothesis cluster test from a factory, a command
strategy and a model), ``process_test`` (the same on real node processes
under kills, pauses and partitions, judged by ``process_checks``; each
node is a ``machine_node``) and the ``pytest_plugin`` fixtures. See
docs/testing-your-state-machine.md.

It may import any raftkit package except ``cli``; only ``testing`` itself
and ``cli`` (the demos) may import it, so the library never depends on
test tooling.
"""
