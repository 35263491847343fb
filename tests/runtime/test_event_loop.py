"""The node's loop is uvloop's when uvloop is installed, asyncio's otherwise."""

from __future__ import annotations

import asyncio
import builtins
import sys
import types

from raftkit.runtime.loop import new_event_loop


def test_falls_back_to_asyncio_without_uvloop(monkeypatch) -> None:
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
