"""The admin endpoint's protocol and security: frames and their limits,
garbage, authentication (password and TLS), and the server's dispatch,
against a fake node that records what it is asked to do."""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkit.admin import (
    AdminAuthError,
    AdminClient,
    AdminConnectionError,
    AdminProtocolError,
    AdminRequestError,
    AdminServer,
)
from raftkit.admin.protocol import (
    HEADER_LEN,
    MAX_FRAME_BYTES,
    Kind,
    PlainChannel,
    client_finish,
    client_proof,
    decode_message,
    encode_frame,
    encode_message,
    frame_header,
    jsonable,
    parse_header,
    split_body,
)
from raftkit.errors import CommandTimeoutError
from raftkit.testing.cluster import wait_until
from raftkit.transports.encrypted import NONCE_BYTES
from raftkit.transports.tls import client_context, server_context

# -- raw connections ------------------------------------------------------------------------


def exchange(address: str, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data``, half-close, and return everything the server sends
    until it closes; fails if it does not close within ``timeout``."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close on the first bad bytes
        received = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        else:
            raise AssertionError("the server kept the connection open")
        return bytes(received)


def frames(data: bytes) -> list[tuple[Kind, bytes]]:
    """The plain frames in ``data`` (sealed ones come back as raw bodies)."""
    out = []
    while data:
        length = parse_header(data[:HEADER_LEN], 1 << 26)
        body = data[HEADER_LEN : HEADER_LEN + length]
        assert len(body) == length, "truncated frame from the server"
        out.append(split_body(body) if body[0] in (1, 2, 3, 4, 16, 17) else (None, body))
        data = data[HEADER_LEN + length :]
    return out  # type: ignore[return-value]


def refusal(data: bytes) -> str:
    """The text of the single ERROR frame the server sent before closing."""
    got = frames(data)
    assert got and got[-1][0] is Kind.ERROR, got
    message = decode_message(got[-1][1])
    assert message["ok"] is False
    return str(message["error"])


class RawClient:
    """A hand-driven password client, to send what a real client would not."""

    def __init__(self, address: str, key: bytes) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        nonce = os.urandom(NONCE_BYTES)
        self.sock.sendall(encode_frame(Kind.AUTH_NONCE, nonce))
        kind, payload = split_body(self.read()[1])
        proof, nonce_s = client_proof(key, nonce, kind, payload)
        self.sock.sendall(proof)
        kind, payload = split_body(self.read()[1])
        self.channel = client_finish(key, nonce, nonce_s, kind, payload)

    def read(self) -> tuple[bytes, bytes]:
        header = self._exactly(HEADER_LEN)
        return header, self._exactly(parse_header(header, 1 << 26))

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "closed"
            data += chunk
        return data

    def rest(self) -> bytes:
        self.sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := self.sock.recv(65536):
            data += chunk
        self.sock.close()
        return data


# -- frames ---------------------------------------------------------------------------------


def test_frames_round_trip_and_headers_are_checked() -> None:
    frame = encode_frame(Kind.MESSAGE, b'{"op":"status"}')
    assert frame[:4] == b"RKA\x01"
    assert parse_header(frame[:HEADER_LEN]) == len(frame) - HEADER_LEN
    assert split_body(frame[HEADER_LEN:]) == (Kind.MESSAGE, b'{"op":"status"}')
    assert PlainChannel().open(frame[:HEADER_LEN], frame[HEADER_LEN:]) == (Kind.MESSAGE, b'{"op":"status"}')
    for header, message in [
        (b"GET / HT", "bad magic"),
        (b"RKT\x01\0\0\0\x05", "Raft peer port"),
        (b"RKA\x09\0\0\0\x05", "unsupported admin protocol version 9"),
        (frame_header(0), "empty frame body"),
        (frame_header(MAX_FRAME_BYTES + 1), "exceeds the 1048576-byte limit"),
    ]:
        with pytest.raises(AdminProtocolError, match=message):
            parse_header(header)
    with pytest.raises(AdminProtocolError, match="unknown frame kind 99"):
        split_body(b"\x63{}")


def test_messages_must_be_json_objects_and_results_become_json() -> None:
    assert decode_message(encode_message({"op": "x", "args": {"n": 1}})) == {"op": "x", "args": {"n": 1}}
    for payload, message in [(b"\xff", "not UTF-8"), (b"{", "not valid JSON"), (b"[1]", "JSON object")]:
        with pytest.raises(AdminProtocolError, match=message):
            decode_message(payload)
    assert jsonable({1: {"b", "a"}, "t": (1, 2.5), "f": float("inf"), "b": b"\x01"}) == {
        "1": ["a", "b"],
        "t": [1, 2.5],
        "f": "inf",
        "b": "01",
    }


# -- authentication ---------------------------------------------------------------------------


def test_an_endpoint_without_authentication_refuses_to_start(fake_node: Any) -> None:
    with pytest.raises(ValueError, match="an admin endpoint must be authenticated"):
        AdminServer(fake_node, "127.0.0.1:0")
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # no client certificate required
    with pytest.raises(ValueError, match="must require client certificates"):
        AdminServer(fake_node, "127.0.0.1:0", ssl_context=lax)


def test_the_right_password_runs_requests(serve: Any, fake_node: Any, admin_key: bytes) -> None:
    server = serve(fake_node)
    with AdminClient(server.address, key=admin_key) as client:
        assert client.call("ping")["id"] == "n1"
        status = client.call("status")
        assert status["role"] == "leader" and status["some_future_key"] == ["a", "b"]
        assert client.call("members")["voters"] == ["n1", "n2", "n3"]  # same connection, in order


def test_a_wrong_password_fails_and_nothing_is_done(serve: Any, fake_node: Any) -> None:
    server = serve(fake_node)
    client = AdminClient(server.address, password="not the password")
    with pytest.raises(AdminAuthError, match="authentication failed"):
        client.call("remove", {"id": "n2"})
    assert fake_node.calls == []


def test_a_forged_proof_is_refused_before_any_request_is_read(serve: Any, fake_node: Any) -> None:
    server = serve(fake_node)
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(encode_frame(Kind.AUTH_NONCE, os.urandom(NONCE_BYTES)))
        header = sock.recv(HEADER_LEN, socket.MSG_WAITALL)
        sock.recv(parse_header(header), socket.MSG_WAITALL)  # the challenge
        request = encode_frame(Kind.MESSAGE, encode_message({"op": "remove", "args": {"id": "n2"}}))
        sock.sendall(encode_frame(Kind.AUTH_PROOF, os.urandom(32)) + request)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert refusal(reply) == "authentication failed: wrong password (or another cluster id)"
    assert fake_node.calls == [] and server.stats["auth_failures"] == 1


def test_a_client_without_the_password_is_told_it_is_required(serve: Any, fake_node: Any) -> None:
    server = serve(fake_node)
    request = encode_frame(Kind.MESSAGE, encode_message({"op": "status"}))
    assert "requires the cluster password" in refusal(exchange(server.address, request))
    with (
        AdminClient(server.address, ssl_context=None, key=None) as client,  # a plain client
        pytest.raises(AdminAuthError, match="authentication failed: this admin endpoint requires"),
    ):
        client.call("status")
    assert fake_node.calls == []


def test_a_tampered_sealed_frame_closes_the_connection(serve: Any, fake_node: Any, admin_key: bytes) -> None:
    server = serve(fake_node)
    raw = RawClient(server.address, admin_key)
    sealed = bytearray(raw.channel.seal(Kind.MESSAGE, encode_message({"op": "remove", "args": {"id": "n2"}})))
    sealed[-1] ^= 1
    raw.sock.sendall(bytes(sealed))
    assert "authentication failed" in refusal(raw.rest())
    assert fake_node.calls == []


def test_a_malformed_request_inside_a_valid_frame_is_answered_then_closed(
    serve: Any, fake_node: Any, admin_key: bytes
) -> None:
    server = serve(fake_node)
    for payload, message in [
        (b"not json", "not valid JSON"),
        (b'["status"]', "must be a JSON object"),
        (b'{"args": {}}', "'op' must be a non-empty string"),
        (b'{"op": "status", "args": [1]}', "'args' must be a JSON object"),
    ]:
        raw = RawClient(server.address, admin_key)
        raw.sock.sendall(raw.channel.seal(Kind.MESSAGE, payload))
        kind, answer = raw.channel.open(*raw.read())
        assert kind is Kind.ERROR and message in decode_message(answer)["error"]
        assert raw.rest() == b"", "the connection stayed open after a malformed request"
    assert fake_node.calls == []


def test_tls_requires_a_client_certificate_from_the_cluster_ca(
    serve: Any, fake_node: Any, tls_files: Any
) -> None:
    server = serve(fake_node, ssl_context=server_context(*tls_files.server, tls_files.ca))
    assert server.auth == "tls"
    with AdminClient(server.address, ssl_context=client_context(*tls_files.client, tls_files.ca)) as client:
        assert client.call("status")["id"] == "n1"
    no_cert = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    no_cert.check_hostname = False
    no_cert.load_verify_locations(tls_files.ca)
    rogue = client_context(*tls_files.rogue, tls_files.ca)
    for context in (no_cert, rogue):
        with (
            AdminClient(server.address, ssl_context=context, timeout=5) as client,
            pytest.raises(AdminAuthError, match="authentication failed"),
        ):
            client.call("remove", {"id": "n2"})
    with (
        AdminClient(server.address, key=b"k" * 32, timeout=5) as client,  # no TLS at all
        pytest.raises(AdminConnectionError, match="closed the connection"),
    ):
        client.call("status")
    assert fake_node.mutating_calls() == []


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad magic"),
        (b"RKT\x01" + bytes(8), "Raft peer port"),
        (frame_header(MAX_FRAME_BYTES + 1), "exceeds the"),
        (frame_header(100) + bytes(10), "truncated frame"),
        (b"RKA", "truncated frame header"),
        (encode_frame(Kind.AUTH_NONCE, b"short"), "handshake: nonce of 5 bytes"),
        (encode_frame(Kind.MESSAGE, b"{}"), "requires the cluster password"),
    ],
)
def test_each_kind_of_bad_input_gets_a_clear_refusal(
    serve: Any, fake_node: Any, data: bytes, message: str
) -> None:
    server = serve(fake_node)
    assert message in refusal(exchange(server.address, data))
    assert fake_node.calls == []


header_like = st.builds(
    lambda version, length, tail: b"RKA" + bytes((version,)) + length.to_bytes(4, "big") + tail,
    st.integers(0, 255),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=64),
)
framed_junk = st.builds(
    lambda kind, body, tail: encode_frame(kind, body) + tail,
    st.sampled_from(list(Kind)),
    st.binary(max_size=200),
    st.binary(max_size=20),
)
after_nonce = st.builds(
    lambda junk: encode_frame(Kind.AUTH_NONCE, os.urandom(NONCE_BYTES)) + junk,
    st.binary(max_size=200) | framed_junk,
)


def test_garbage_never_reaches_the_node_and_the_endpoint_keeps_serving(
    serve: Any, fake_node: Any, admin_key: bytes
) -> None:
    server = serve(fake_node)
    client = AdminClient(server.address, key=admin_key)

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.binary(max_size=300) | header_like | framed_junk | after_nonce)
    def attack(data: bytes) -> None:
        exchange(server.address, data)  # answered (or not) and closed, never hung

    attack()
    assert fake_node.calls == []
    assert client.call("status")["id"] == "n1"
    client.close()


# -- dispatch ---------------------------------------------------------------------------------


def test_operations_reach_the_node_with_their_arguments(serve: Any, fake_node: Any, admin_key: bytes) -> None:
    server = serve(fake_node)
    with AdminClient(server.address, key=admin_key) as client:
        client.call("add", {"id": "n4", "address": "127.0.0.1:5004", "learner": True}, timeout=12)
        client.call("promote", {"id": "n4"})
        client.call("remove", {"id": "n4"}, timeout=3.5)
        assert client.call("transfer", {"to": "n3"}) == {"leader": "n3"}
        assert client.call("snapshot") == {"index": 120, "term": 7}
    assert fake_node.mutating_calls() == [
        "add_member",
        "promote_member",
        "remove_member",
        "transfer_leadership",
        "request_log_compaction",
    ]
    assert fake_node.calls[0] == ("add_member", ("n4", "127.0.0.1:5004"), {"learner": True, "timeout": 12.0})
    assert fake_node.calls[1] == ("promote_member", ("n4",), {"timeout": 60.0})
    assert fake_node.calls[2] == ("remove_member", ("n4",), {"timeout": 3.5})


def test_failures_are_answered_with_their_message_and_the_connection_stays(
    serve: Any, fake_node: Any, admin_key: bytes
) -> None:
    fake_node.fail["transfer_leadership"] = CommandTimeoutError("leadership did not move within 1.0s")
    server = serve(fake_node, handlers={"set-version": lambda args: {"version": args["version"]}})
    with AdminClient(server.address, key=admin_key) as client:
        with pytest.raises(AdminRequestError, match="n9 is not a member") as err:
            client.call("remove", {"id": "n9"})
        assert err.value.type == "RaftkitError"
        with pytest.raises(AdminRequestError, match="did not move") as err:
            client.call("transfer", {"to": "n2"}, timeout=1)
        assert err.value.type == "CommandTimeoutError"
        with pytest.raises(AdminRequestError, match="unknown operation 'frobnicate'"):
            client.call("frobnicate")
        with pytest.raises(AdminRequestError, match="bad request for add: 'id' must be a non-empty string"):
            client.call("add", {"id": 7})
        with pytest.raises(AdminRequestError, match="'timeout' must be a number"):
            client.call("remove", {"id": "n2", "timeout": "soon"})
        assert client.call("set-version", {"version": 3}) == {"version": 3}


def test_set_version_without_a_handler_says_so(serve: Any, fake_node: Any, admin_key: bytes) -> None:
    server = serve(fake_node)
    with (
        AdminClient(server.address, key=admin_key) as client,
        pytest.raises(AdminRequestError, match="this node does not serve set-version: it has no code"),
    ):
        client.call("set-version", {"version": 2})


def test_a_node_without_membership_methods_says_what_is_missing(serve: Any, admin_key: bytes) -> None:
    class OldNode:
        id = "old"
        peers = {"old": "127.0.0.1:1"}

        def status(self) -> dict[str, Any]:
            return {"id": "old", "members": ["old"]}

    server = serve(OldNode())
    with AdminClient(server.address, key=admin_key) as client:
        assert client.call("members") == {
            "voters": ["old"],
            "learners": [],
            "addresses": {"old": "127.0.0.1:1"},
        }
        with pytest.raises(AdminRequestError, match=r"it has no add_member\(\) method"):
            client.call("add", {"id": "n2"})


def test_a_slow_operation_does_not_hold_up_other_clients(
    serve: Any, fake_node: Any, admin_key: bytes
) -> None:
    gate = fake_node.gate["promote_member"] = threading.Event()
    server = serve(fake_node)
    result: list[Any] = []
    slow = threading.Thread(
        target=lambda: result.append(AdminClient(server.address, key=admin_key).call("promote", {"id": "n2"}))
    )
    slow.start()
    try:
        wait_until(lambda: any(op == "promote_member" for op, _, _ in fake_node.calls), 5, what="the promote")
        with AdminClient(server.address, key=admin_key) as other:
            assert other.call("status")["id"] == "n1"  # answered while promote waits
    finally:
        gate.set()
        slow.join(10)
    assert result == [{"id": "n2"}]


def test_connections_beyond_the_limit_are_refused(serve: Any, fake_node: Any, admin_key: bytes) -> None:
    server = serve(fake_node, max_connections=1)
    with AdminClient(server.address, key=admin_key) as first:
        first.call("ping")
        with (
            AdminClient(server.address, key=admin_key) as second,
            pytest.raises(AdminRequestError, match="too many admin connections"),
        ):
            second.call("ping")
        assert first.call("ping")["id"] == "n1"


def test_stop_closes_connections_and_the_thread(fake_node: Any, admin_key: bytes) -> None:
    server = AdminServer(fake_node, "127.0.0.1:0", key=admin_key).start()
    client = AdminClient(server.address, key=admin_key)
    client.call("ping")
    server.stop()
    assert not any(t.name.startswith("admin-server") and t.is_alive() for t in threading.enumerate())
    with pytest.raises(AdminConnectionError):
        client.call("ping")
    with pytest.raises(AdminConnectionError, match="cannot connect"):
        AdminClient(server.address, key=admin_key, timeout=2).call("ping")
    server.stop()  # idempotent


def test_the_endpoint_reports_a_taken_port(fake_node: Any, admin_key: bytes) -> None:
    with AdminServer(fake_node, "127.0.0.1:0", key=admin_key) as first, pytest.raises(OSError):
        AdminServer(fake_node, first.address, key=admin_key).start()


def test_answers_are_json(serve: Any, fake_node: Any, admin_key: bytes) -> None:
    server = serve(fake_node, handlers={"odd": lambda args: {"set": {3, 1}, "nan": float("nan")}})
    with AdminClient(server.address, key=admin_key) as client:
        assert client.call("odd") == {"set": [1, 3], "nan": "nan"}
        json.dumps(client.call("status"))
