"""Switching from PySyncObj is a change of imports: every public name of
PySyncObj's batteries exists here, and the README's calls work."""

from __future__ import annotations

import inspect
import re

import pytest

import raftkit.batteries as ours

pysyncobj_batteries = pytest.importorskip("pysyncobj.batteries")  # installed with the bench extra

CLASSES = ["ReplCounter", "ReplList", "ReplDict", "ReplSet", "ReplQueue", "ReplPriorityQueue"]
CLASSES += ["ReplLockManager"]


@pytest.mark.parametrize("name", CLASSES)
def test_every_public_method_of_pysyncobjs_battery_exists(name: str) -> None:
    theirs = getattr(pysyncobj_batteries, name)
    mine = getattr(ours, name)
    dunders = ("__getitem__", "__setitem__", "__len__", "__contains__")
    public = {
        m
        for m, v in vars(theirs).items()
        # (PySyncObj also keeps versioned copies, "add_v0": internal)
        if callable(v) and (not m.startswith("_") or m in dunders) and not re.search(r"_v\d+$", m)
    }
    assert public, name
    missing = sorted(m for m in public if not hasattr(mine, m))
    assert not missing, f"{name} lacks {missing}"


@pytest.mark.parametrize("name", CLASSES)
def test_constructors_take_pysyncobjs_arguments(name: str) -> None:
    theirs = inspect.signature(getattr(pysyncobj_batteries, name).__init__).parameters
    mine = inspect.signature(getattr(ours, name).__init__).parameters
    assert [p for p in theirs if p != "self"] == [p for p in mine if p != "self" and p != "read"]
