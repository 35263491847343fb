"""AdminClient: a blocking client of a node's admin endpoint.

::

    with AdminClient("127.0.0.1:7001", password=secret) as admin:
        print(admin.call("status")["role"])
        admin.call("add", {"id": "n4", "address": "10.0.0.4:4321", "learner": True})

Failures raise ``AdminError`` subclasses whose messages are meant for a
human: ``AdminAuthError`` (wrong or missing credentials: nothing was done),
``AdminRequestError`` (the node ran the request and it failed),
``AdminConnectionError`` (cannot reach or lost the endpoint) and
``AdminProtocolError`` (the endpoint said something that is not the admin
protocol).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from typing import Any

from raftkit.admin.protocol import (
    DEFAULT_TIMEOUTS,
    HEADER_LEN,
    AdminAuthError,
    AdminError,
    AdminProtocolError,
    AdminRequestError,
    Kind,
    PlainChannel,
    SealedChannel,
    admin_key,
    client_finish,
    client_proof,
    decode_message,
    encode_frame,
    encode_message,
    parse_header,
    split_body,
)
from raftkit.transports.encrypted import NONCE_BYTES
from raftkit.transports.netutil import parse_address

__all__ = ["AdminClient", "AdminConnectionError"]

MAX_ANSWER_BYTES = 64 << 20  # answers (a big cluster's status) may exceed the request limit


class AdminConnectionError(AdminError):
    """The endpoint cannot be reached, or the connection broke."""


class AdminClient:
    """One connection to the admin endpoint at ``address``, opened on the
    first ``call`` (or ``connect()``) and kept for the next ones.

    Give the cluster ``password`` (with the cluster's ``cluster_id``, or its
    derived ``key``), an
    ``ssl_context`` (``raftkit.transports.tls.client_context``), or both, as
    the endpoint requires. ``timeout`` bounds connecting and each answer;
    a call's own ``timeout`` is sent to the node as the operation's deadline
    and the client waits that long plus ``grace`` (without one, the node's
    default for the operation plus ``grace``).
    """

    def __init__(
        self,
        address: str,
        *,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        salt: bytes | None = None,
        key: bytes | None = None,
        grace: float = 5.0,
        cluster_id: str | None = None,
    ) -> None:
        self.address = address
        self.host, self.port = parse_address(address)
        self._key = admin_key(password, key, salt, cluster_id, warn=False)
        self._ssl = ssl_context
        self.timeout = timeout
        self.grace = grace
        self._sock: socket.socket | None = None
        self._answered = False  # this connection got an answer (so TLS accepted us)
        self._channel: PlainChannel | SealedChannel | None = None

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        sock, self._sock, self._channel = self._sock, None, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # -- connecting ---------------------------------------------------------------------------

    def connect(self) -> None:
        if self._sock is not None:
            return
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise AdminConnectionError(
                f"cannot connect to the admin endpoint {self.address}: {_reason(exc)} "
                "(is the node running, and is this its admin address?)"
            ) from None
        try:
            if self._ssl is not None:
                try:
                    sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
                except ssl.SSLError as exc:
                    raise AdminAuthError(
                        f"authentication failed: TLS handshake refused: {_reason(exc)}"
                    ) from None
            self._sock = sock
            self._answered = False
            self._channel = PlainChannel() if self._key is None else self._handshake()
        except BaseException:
            with contextlib.suppress(OSError):
                sock.close()
            self._sock = self._channel = None
            raise

    def _handshake(self) -> SealedChannel:
        assert self._key is not None
        nonce_c = os.urandom(NONCE_BYTES)
        self._send(encode_frame(Kind.AUTH_NONCE, nonce_c))
        header, body = self._receive(self.timeout, during="the authentication handshake")
        kind, payload = split_body(body)
        if kind is Kind.ERROR:
            raise _refusal(payload)
        frame, nonce_s = client_proof(self._key, nonce_c, kind, payload)
        self._send(frame)  # we prove first; the node proves itself in turn
        header, body = self._receive(self.timeout, during="the authentication handshake")
        kind, payload = split_body(body)
        if kind is Kind.ERROR:
            raise _refusal(payload)
        return client_finish(self._key, nonce_c, nonce_s, kind, payload)

    # -- requests -----------------------------------------------------------------------------

    def call(self, op: str, args: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Run ``op`` on the node and return its result. ``timeout`` (the
        node's deadline for the operation) is added to ``args``."""
        args = dict(args or {})
        if timeout is not None:
            args["timeout"] = timeout
        self.connect()
        assert self._channel is not None
        # Without a timeout the node applies its default for ``op``: wait for that long.
        limit = timeout if timeout is not None else max(self.timeout, DEFAULT_TIMEOUTS.get(op, 0.0))
        wait = limit + self.grace
        try:
            self._send(self._channel.seal(Kind.MESSAGE, encode_message({"op": op, "args": args})))
            header, body = self._receive(wait, during=f"the {op} request")
            try:
                kind, payload = self._channel.open(header, body)
            except AdminAuthError:
                kind, payload = split_body(body)  # a refusal in the clear, after a fault of ours
                if kind is not Kind.ERROR:
                    raise
            if kind is Kind.ERROR:
                raise _refusal(payload)
            if kind is not Kind.MESSAGE:
                raise AdminProtocolError(f"unexpected {kind.name} frame from the node")
            answer = decode_message(payload)
        except BaseException:
            self.close()
            raise
        if answer.get("ok") is True:
            return answer.get("result")
        raise AdminRequestError(str(answer.get("error") or "the request failed"), answer.get("type"))

    # -- bytes --------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise AdminConnectionError(f"lost the connection to {self.address}: {_reason(exc)}") from None

    def _receive(self, timeout: float, during: str) -> tuple[bytes, bytes]:
        header = self._exactly(HEADER_LEN, timeout, during)
        self._answered = True
        length = parse_header(header, MAX_ANSWER_BYTES)
        return header, self._exactly(length, timeout, during)

    def _exactly(self, size: int, timeout: float, during: str) -> bytes:
        assert self._sock is not None
        self._sock.settimeout(timeout)
        chunks: list[bytes] = []
        got = 0
        while got < size:
            try:
                chunk = self._sock.recv(min(size - got, 1 << 20))
            except TimeoutError:
                raise AdminConnectionError(
                    f"no answer from {self.address} within {timeout:g}s during {during}"
                ) from None
            except ssl.SSLError as exc:
                raise AdminAuthError(f"authentication failed: TLS refused: {_reason(exc)}") from None
            except OSError as exc:
                raise AdminConnectionError(
                    f"lost the connection to {self.address} during {during}: {_reason(exc)}"
                ) from None
            if not chunk:
                if self._ssl is not None and not self._answered:
                    raise AdminAuthError(
                        f"authentication failed: {self.address} closed the TLS connection before answering "
                        "(it did not accept this client certificate)"
                    )
                hint = ""
                if during == "the authentication handshake" or (self._ssl is None and self._key is None):
                    hint = (
                        " (is this the node's admin address, not its Raft address? does it need other "
                        "credentials, such as TLS or the cluster password?)"
                    )
                raise AdminConnectionError(
                    f"the node {self.address} closed the connection during {during}{hint}"
                )
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)


def _refusal(payload: bytes) -> AdminError:
    """The exception for an ERROR frame's payload."""
    try:
        message = decode_message(payload)
        text = str(message.get("error") or "refused")
        kind = message.get("type")
    except AdminProtocolError:
        text, kind = payload[:200].decode("utf-8", "replace"), None
    if kind == "AdminAuthError":
        return AdminAuthError(text)
    if kind == "AdminProtocolError":
        return AdminProtocolError(f"the node refused the request: {text}")
    return AdminRequestError(text, kind if isinstance(kind, str) else None)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__
