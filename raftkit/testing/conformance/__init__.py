"""Conformance suites every plug-in implementation must pass.

Subclass a suite in a pytest test module and implement its factory hook; see
each module's docstring. ``state_machine`` (with ``replicated_objects`` for
SyncObj objects and batteries) property-tests an application's own state
machine rather than a plug-in. Importing this package asks pytest to rewrite the
suites' asserts so failures show the compared values.

Part of ``raftkit.testing``: it may import the interfaces it checks
(``storage``, ``transports``, ``serializers``, ``state_machines``,
``syncobj``), ``core`` and ``errors``.
"""

import pytest

pytest.register_assert_rewrite(
    "raftkit.testing.conformance.log_store",
    "raftkit.testing.conformance.replicated_objects",
    "raftkit.testing.conformance.serializer",
    "raftkit.testing.conformance.snapshotter",
    "raftkit.testing.conformance.state_machine",
    "raftkit.testing.conformance.transport",
)
