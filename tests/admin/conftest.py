"""Fixtures for the admin endpoint tests: a fake node that records what it
is asked, a running ``AdminServer`` in front of it, and TLS material.

Test modules here have no package, so helpers are handed out as fixtures.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from raftkit.admin import AdminServer
from raftkit.admin.protocol import derive_cluster_key
from raftkit.errors import RaftkitError
from raftkit.testing.certs import make_ca, make_cert

PASSWORD = "correct horse battery staple"


class FakeNode:
    """The node API the admin server calls, recording every call. Set
    ``fail[op] = exc`` to make an operation raise; ``gate[op]`` (an Event)
    makes it wait until set."""

    def __init__(self) -> None:
        self.id = "n1"
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail: dict[str, BaseException] = {}
        self.gate: dict[str, threading.Event] = {}
        self.voters = ["n1", "n2", "n3"]
        self.learners: list[str] = []
        self.addresses = {"n1": "127.0.0.1:5001", "n2": "127.0.0.1:5002", "n3": "127.0.0.1:5003"}
        self.leader = "n1"

    def _record(self, op: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((op, args, kwargs))
        gate = self.gate.get(op)
        if gate is not None:
            gate.wait(10)
        if op in self.fail:
            raise self.fail[op]

    def status(self) -> dict[str, Any]:
        self._record("status")
        return {
            "id": self.id,
            "role": "leader",
            "term": 7,
            "leader": self.leader,
            "commit_index": 120,
            "applied_index": 119,
            "log_first_index": 101,
            "log_last_index": 121,
            "members": list(self.voters),
            "learners": list(self.learners),
            "addresses": dict(self.addresses),
            "peers": {
                "n2": {
                    "match": 121,
                    "next": 122,
                    "state": "replicate",
                    "active": True,
                    "last_contact": 0.042,
                },
                "n3": {"match": 90, "next": 91, "state": "probe", "active": False, "last_contact": 12.5},
            },
            "snapshot": {"mode": "thread", "index": 100, "in_progress": None},
            "error": None,
            "running": True,
            "some_future_key": frozenset({"b", "a"}),
        }

    def members(self) -> dict[str, Any]:
        self._record("members")
        return {
            "voters": list(self.voters),
            "learners": list(self.learners),
            "addresses": dict(self.addresses),
        }

    def add_member(
        self, node_id: str, address: str | None = None, *, learner: bool = False, timeout: float = 30.0
    ) -> None:
        self._record("add_member", node_id, address, learner=learner, timeout=timeout)
        (self.learners if learner else self.voters).append(node_id)
        if address:
            self.addresses[node_id] = address

    def remove_member(self, node_id: str, *, timeout: float = 30.0) -> None:
        self._record("remove_member", node_id, timeout=timeout)
        if node_id not in self.voters + self.learners:
            members = ", ".join(sorted(self.voters + self.learners))
            raise RaftkitError(
                f"{node_id} is not a member of this cluster (members: {members}); nothing changed"
            )

    def promote_member(self, node_id: str, *, timeout: float = 60.0) -> None:
        self._record("promote_member", node_id, timeout=timeout)

    def transfer_leadership(self, to: str | None = None, *, timeout: float = 10.0) -> str:
        self._record("transfer_leadership", to, timeout=timeout)
        self.leader = to or "n2"
        return self.leader

    def request_log_compaction(self) -> concurrent.futures.Future[Any]:
        self._record("request_log_compaction")
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        done.set_result(SimpleNamespace(index=120, term=7))
        return done

    def mutating_calls(self) -> list[str]:
        return [op for op, _, _ in self.calls if op not in ("status", "members")]


@pytest.fixture(scope="session")
def admin_password() -> str:
    return PASSWORD


@pytest.fixture(scope="session")
def admin_key() -> bytes:
    """The cluster key for ``PASSWORD`` (scrypt once per session)."""
    return derive_cluster_key(PASSWORD)


@pytest.fixture
def fake_node() -> FakeNode:
    return FakeNode()


@pytest.fixture
def serve(admin_key: bytes) -> Iterator[Callable[..., AdminServer]]:
    """``serve(node, **options)``: a started AdminServer on a free port of
    127.0.0.1 (the cluster password unless ``ssl_context`` is given without
    ``key``); all are stopped after the test."""
    servers: list[AdminServer] = []

    def make(node: Any, **options: Any) -> AdminServer:
        if "ssl_context" not in options and "password" not in options:
            options.setdefault("key", admin_key)
        server = AdminServer(node, "127.0.0.1:0", **options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


# -- TLS material ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]
    rogue: tuple[Path, Path]  # a client certificate from another CA


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    directory = tmp_path_factory.mktemp("admin-tls")
    ca_path, ca, ca_key = make_ca(directory, "ca")
    _, rogue_ca, rogue_ca_key = make_ca(directory, "rogue-ca")

    def node(name: str, issuer: Any, issuer_key: Any) -> tuple[Path, Path]:
        return make_cert(directory, name, issuer, issuer_key)

    return TlsFiles(
        ca=ca_path,
        server=node("server", ca, ca_key),
        client=node("client", ca, ca_key),
        rogue=node("rogue", rogue_ca, rogue_ca_key),
    )
