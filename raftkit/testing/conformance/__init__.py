"""Conformance suites every plug-in implementation must pass.

Subclass a suite in a pytest test module and implement its factory hook; see
each module's docstring. Importing this package asks pytest to rewrite the
suites' asserts so failures show the compared values.

Part of ``raftkit.testing``: it may import the interfaces it checks
(``storage``, ``transports``, ``serializers``), ``core`` and ``errors``.
"""

import pytest

pytest.register_assert_rewrite(
    "raftkit.testing.conformance.log_store",
    "raftkit.testing.conformance.serializer",
    "raftkit.testing.conformance.snapshotter",
    "raftkit.testing.conformance.transport",
)
