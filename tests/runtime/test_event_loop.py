"""The node's loop is uvloop's when uvloop is installed, asyncio's otherwise,
unless RAFTKIT_EVENT_LOOP names one."""

from __future__ import annotations

import asyncio
import builtins
import sys
import types

import pytest

from raftkit.runtime.loop import new_event_loop


def test_falls_back_to_asyncio_without_uvloop(monkeypatch) -> None:
    monkeypatch.delenv("RAFTKIT_EVENT_LOOP", raising=False)
    real_import = builtins.__import__

    def no_uvloop(name, *args, **kwargs):
        if name == "uvloop":
            raise ImportError("not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    loop = new_event_loop()
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()


def test_uses_uvloop_when_installed(monkeypatch) -> None:
    monkeypatch.delenv("RAFTKIT_EVENT_LOOP", raising=False)
    made = []

    def fake_new_event_loop() -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        made.append(loop)
        return loop

    monkeypatch.setitem(sys.modules, "uvloop", types.SimpleNamespace(new_event_loop=fake_new_event_loop))
    loop = new_event_loop()
    try:
        assert made == [loop]
    finally:
        loop.close()


def test_the_environment_can_force_asyncio_or_demand_uvloop(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", types.SimpleNamespace(new_event_loop=lambda: 1 / 0))
    monkeypatch.setenv("RAFTKIT_EVENT_LOOP", "asyncio")
    loop = new_event_loop()
    loop.close()
    assert type(loop).__module__.startswith("asyncio")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # not installed
    monkeypatch.setenv("RAFTKIT_EVENT_LOOP", "uvloop")
    with pytest.raises(RuntimeError, match=r"uvloop is not installed: pip install 'pyraftkit\[fast\]'"):
        new_event_loop()
    monkeypatch.setenv("RAFTKIT_EVENT_LOOP", "fast")
    with pytest.raises(ValueError, match="must be 'auto', 'asyncio' or 'uvloop'"):
        new_event_loop()


def test_a_cluster_replicates_on_uvloop(monkeypatch) -> None:
    """Three nodes over TCP on uvloop's loop (whose transports are not
    asyncio classes: an isinstance check once broke every connection)."""
    pytest.importorskip("uvloop")
    from raftkit import SyncObj, SyncObjConf, replicated
    from raftkit.testing.cluster import wait_until
    from raftkit.testing.process_cluster import free_ports

    monkeypatch.setenv("RAFTKIT_EVENT_LOOP", "uvloop")

    class Counter(SyncObj):
        def __init__(self, address: str, partners: list[str]) -> None:
            super().__init__(address, partners, SyncObjConf(raftMinTimeout=0.2, raftMaxTimeout=0.4))
            self.n = 0

        @replicated
        def add(self, k: int) -> int:
            self.n += k
            return self.n

    addresses = [f"127.0.0.1:{p}" for p in free_ports(3)]
    nodes = [Counter(a, [b for b in addresses if b != a]) for a in addresses]
    try:
        wait_until(lambda: all(o._getLeader() for o in nodes), timeout=10.0, what="a leader")
        assert type(nodes[0].get_node()._loop).__module__.startswith("uvloop")
        assert [nodes[i % 3].add(1, sync=True, timeout=5) for i in range(6)] == [1, 2, 3, 4, 5, 6]
        wait_until(lambda: all(o.n == 6 for o in nodes), timeout=5.0, what="every node to apply")
    finally:
        for o in nodes:
            o.destroy()
