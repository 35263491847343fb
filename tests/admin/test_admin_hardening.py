"""The admin endpoint against hostile clients: no empty credentials, no
verifier for a stranger, its own salt per cluster, and strangers that
connect and stall never lock the operator out."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Any

import pytest

from raftkit.admin import AdminClient, AdminServer
from raftkit.admin.protocol import (
    HEADER_LEN,
    AdminAuthError,
    Kind,
    client_proof,
    encode_frame,
    parse_header,
    split_body,
)
from raftkit.transports.encrypted import NONCE_BYTES, derive_cluster_key


@pytest.mark.parametrize(
    "credentials",
    [{"password": ""}, {"password": "   "}, {"key": b""}, {"key": b"short"}, {"key": bytes(32)}],
)
def test_empty_or_malformed_credentials_are_refused_at_construction(fake_node: Any, credentials: Any) -> None:
    with pytest.raises(ValueError, match="empty|derive_cluster_key"):
        AdminServer(fake_node, "127.0.0.1:0", **credentials)
    with pytest.raises(ValueError, match="empty|derive_cluster_key"):
        AdminClient("127.0.0.1:1", **credentials)


def _challenge(address: str, nonce: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(encode_frame(Kind.AUTH_NONCE, nonce))
        header = sock.recv(HEADER_LEN, socket.MSG_WAITALL)
        return sock.recv(parse_header(header), socket.MSG_WAITALL)


def test_a_stranger_gets_nothing_that_checks_a_password_guess(
    serve: Any, fake_node: Any, admin_key: bytes
) -> None:
    server = serve(fake_node)
    nonce = os.urandom(NONCE_BYTES)
    kind, payload = split_body(_challenge(server.address, nonce))
    assert kind is Kind.AUTH_CHALLENGE and len(payload) == NONCE_BYTES  # a bare nonce, no MAC
    # The client's next step works the same for the right and a wrong key:
    # nothing in the answer tells them apart.
    wrong = derive_cluster_key("not the password")
    for key in (admin_key, wrong):
        client_proof(key, nonce, kind, payload)


def test_a_cluster_id_gives_the_endpoint_its_own_key(serve: Any, fake_node: Any, admin_password: str) -> None:
    server = serve(fake_node, password=admin_password, cluster_id="prod-east")
    with AdminClient(server.address, password=admin_password, cluster_id="prod-east") as client:
        assert client.call("ping")["id"] == "n1"
    with (
        AdminClient(server.address, password=admin_password) as other,
        pytest.raises(AdminAuthError, match="authentication failed"),
    ):
        other.call("ping")
    assert fake_node.calls == []


def test_stalled_unauthenticated_connections_do_not_lock_the_operator_out(
    serve: Any, fake_node: Any, admin_key: bytes
) -> None:
    server = serve(fake_node)  # 32 connections, 8 of them authenticating
    host, port = server.address.rsplit(":", 1)
    stalled = []
    try:
        for _ in range(40):  # each sends a valid first step, then nothing
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(encode_frame(Kind.AUTH_NONCE, os.urandom(NONCE_BYTES)))
            stalled.append(sock)
        deadline = time.monotonic() + 5
        while server.stats["shed"] < 40 - server.max_unauthenticated and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.monotonic()
        with AdminClient(server.address, key=admin_key, timeout=5) as client:
            assert client.call("ping")["id"] == "n1"
        assert time.monotonic() - start < 2.0
    finally:
        for sock in stalled:
            with contextlib.suppress(OSError):
                sock.close()


def test_a_stalled_handshake_is_closed_after_the_authentication_deadline(serve: Any, fake_node: Any) -> None:
    server = serve(fake_node, handshake_timeout=0.3)
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(encode_frame(Kind.AUTH_NONCE, os.urandom(NONCE_BYTES)))
        sock.settimeout(5)
        received = b""
        start = time.monotonic()
        while chunk := sock.recv(65536):  # the challenge, then the close
            received += chunk
        assert time.monotonic() - start < 3.0
    assert received  # the challenge came, then the connection was closed


def test_stop_right_after_adopt_closes_the_handed_over_connection(fake_node: Any, admin_key: bytes) -> None:
    """Found by a warning in ``make test``: a connection handed over by the
    Raft port (``adopt``) joined the set ``stop()`` cancels only once its
    socket was wrapped, a loop turn later. A ``stop()`` in between left it
    pending on a stopped loop: the peer's socket stayed open, and garbage
    collection later ran its cleanup on the closed loop ("Event loop is closed")."""
    import gc
    import sys

    unraisable: list[Any] = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        for _ in range(5):  # bounded; each round is deterministic (adopt's first step runs before stop's)
            server = AdminServer(fake_node, "127.0.0.1:0", key=admin_key).start(listen=False)
            left, right = socket.socketpair()
            with right:
                server.adopt(left, b"")
                server.stop()
                right.settimeout(10)
                assert right.recv(1) == b""  # the server closed its end
            gc.collect()
    finally:
        sys.unraisablehook = old_hook
    assert unraisable == []


def test_nothing_is_adopted_once_stop_began(fake_node: Any, admin_key: bytes) -> None:
    """A hand-over racing stop(): refused by ``adopt`` when it sees the stop,
    and by the connection's first step when the stop came in between; the
    socket is closed either way, never left open."""
    import asyncio

    server = AdminServer(fake_node, "127.0.0.1:0", key=admin_key).start(listen=False)
    try:
        server._closing = True  # what stop() sets first, on the server's loop
        left, right = socket.socketpair()
        with right:
            with pytest.raises(RuntimeError, match="not running"):
                server.adopt(left, b"")
            assert left.fileno() == -1
        left, right = socket.socketpair()
        with right:
            left.setblocking(False)
            assert server._loop is not None
            asyncio.run_coroutine_threadsafe(server._adopt(left, b""), server._loop).result(10)
            assert left.fileno() == -1
            right.settimeout(10)
            assert right.recv(1) == b""
        assert server.stats["connections"] == 0  # never served
    finally:
        server._closing = False
        server.stop()
