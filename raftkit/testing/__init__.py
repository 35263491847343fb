"""Tools for testing raftkit and applications built on it: the
deterministic simulator (``sim``, with ``invariants``, ``clock`` and
``scenario``), Hypothesis ``strategies``, the plug-in ``conformance``
suites, in-process and multi-process clusters, ``netproxy`` (a TCP proxy
that partitions real nodes), test certificates, and
``linearizability`` (``check`` a history of client ``Operation``s against
a sequential ``Model``: a ``Result`` with a shrunk counterexample, which
``format_counterexample`` renders; ``default_key`` memoizes model states).

It may import any raftkit package except ``cli``; only ``testing`` itself
and ``cli`` (the demos) may import it, so the library never depends on
test tooling.
"""
