"""The admin protocol: frames, JSON messages and authentication.

A connection is a sequence of frames::

    b"RKA" | version (1 byte) | length (4 bytes, big-endian) | body (length bytes)

The magic differs from the peer transports' ``b"RKT"``, so an admin client
pointed at a node's Raft port (or a Raft peer at an admin port) is refused
after four bytes with a message that says so. Every length is checked
against ``max_frame_bytes`` (1 MiB by default) before any body is read.

A body is a kind byte and a payload:

* ``AUTH_NONCE`` / ``AUTH_CHALLENGE`` / ``AUTH_PROOF`` / ``AUTH_CONFIRM``:
  the password handshake, in the clear (below).
* ``MESSAGE``: one JSON object, UTF-8. A request is
  ``{"op": "status", "args": {...}}``; its answer is
  ``{"ok": true, "result": ...}`` or
  ``{"ok": false, "error": "what went wrong", "type": "ErrorClass"}``.
  Requests on one connection are answered in order.
* ``ERROR``: a refusal sent in the clear just before the endpoint closes the
  connection (bad frame, failed authentication, malformed request); JSON
  like a failed answer. Unauthenticated by nature: a client shows it as the
  reason the connection ended, nothing more.

**Authentication** is mandatory: an endpoint has the cluster password, a TLS
server context that demands client certificates, or both. An empty password
or a key that is not a derived 32-byte key is refused at construction.

With a password, the connection starts with the challenge-response of
``raftkit.transports.encrypted`` (the same key ``K = scrypt(password,
salt)``, with the salt of the cluster's id, the same HMAC and HKDF
constructions), with admin-specific labels so that no handshake message of
one protocol is accepted by the other. The client proves first::

    client -> server  AUTH_NONCE      nonce_c
    server -> client  AUTH_CHALLENGE  nonce_s
    client -> server  AUTH_PROOF      HMAC(K, "raftkit admin client v2" | nonce_c | nonce_s)
    server -> client  AUTH_CONFIRM    HMAC(K, "raftkit admin server v2" | nonce_c | nonce_s)

The server answers a stranger with a bare random nonce, and proves its own
knowledge of the password only to a client that has proven its own, so no
unauthenticated round trip yields a value to check password guesses
against. A server that receives a wrong proof answers with an ``ERROR``
("authentication failed") and closes: no request is ever read from an
unauthenticated client. A client that cannot verify the server's
AUTH_CONFIRM (a fake endpoint) stops there and sends no request. After the
handshake every body is sealed with ChaCha20-Poly1305 under per-direction
keys ``HKDF(K, salt=nonce_c | nonce_s, info="raftkit admin c2s" / "... s2c")``
with the frame counter as nonce and the frame header as associated data
(``raftkit.transports.encrypted._Direction``). This handshake does not talk
to releases whose server proved first.

With TLS (``raftkit.transports.tls.server_context``), the client must present
a certificate signed by the cluster CA; bodies then travel as they are
inside the TLS stream.
"""

from __future__ import annotations

import enum
import hmac
import json
import math
import os
import struct
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any

from raftkit.errors import RaftkitError
from raftkit.transports.encrypted import (
    DEFAULT_SALT,
    MAC_BYTES,
    NONCE_BYTES,
    TAG_BYTES,
    _Direction,
    _mac,
    _session_key,
    check_key,
    check_password,
    cluster_salt,
    derive_cluster_key,
)
from raftkit.transports.framing import AuthenticationError as _SealError

__all__ = [
    "DEFAULT_SALT",
    "DEFAULT_TIMEOUTS",
    "admin_key",
    "HEADER_LEN",
    "MAX_FRAME_BYTES",
    "AdminAuthError",
    "AdminError",
    "AdminProtocolError",
    "AdminRequestError",
    "Kind",
    "PlainChannel",
    "SealedChannel",
    "ServerHandshake",
    "client_finish",
    "client_proof",
    "decode_message",
    "derive_cluster_key",
    "encode_frame",
    "encode_message",
    "error_body",
    "jsonable",
    "parse_header",
]

MAGIC = b"RKA"
VERSION = 1
PREFIX = MAGIC + bytes((VERSION,))
HEADER_LEN = 8
MAX_FRAME_BYTES = 1 << 20
_LENGTH = struct.Struct(">I")

DEFAULT_TIMEOUTS = {"add": 30.0, "remove": 30.0, "promote": 60.0, "transfer": 10.0, "snapshot": 60.0}
"""The node's deadline for an operation whose request gives none (else 30 s)."""

SERVER_LABEL = b"raftkit admin server v2"
CLIENT_LABEL = b"raftkit admin client v2"
C2S_INFO = b"raftkit admin c2s"
S2C_INFO = b"raftkit admin s2c"


class Kind(enum.IntEnum):
    AUTH_NONCE = 1
    AUTH_CHALLENGE = 2
    AUTH_PROOF = 3
    AUTH_CONFIRM = 4
    MESSAGE = 16
    ERROR = 17


_KINDS = {int(k): k for k in Kind}


# -- errors -----------------------------------------------------------------------------


class AdminError(RaftkitError):
    """An admin request could not be made or was refused; the message says why."""


class AdminProtocolError(AdminError):
    """Bytes on an admin connection are not a valid frame or message, or not
    the one expected next; the connection is closed."""


class AdminAuthError(AdminProtocolError):
    """Authentication failed (wrong or missing password, or a frame that does
    not authenticate); nothing was done."""


class AdminRequestError(AdminError):
    """The node ran the request and it failed; ``type`` names the error the
    node raised (``CommandTimeoutError``, ``NotLeaderError``...)."""

    def __init__(self, message: str, type: str | None = None) -> None:
        super().__init__(message)
        self.type = type


# -- frames -------------------------------------------------------------------------------


def frame_header(body_length: int) -> bytes:
    return PREFIX + _LENGTH.pack(body_length)


def encode_frame(kind: Kind, payload: bytes = b"") -> bytes:
    """A plain (unsealed) frame."""
    body = bytes((kind,)) + payload
    return frame_header(len(body)) + body


def parse_header(header: bytes, max_frame_bytes: int = MAX_FRAME_BYTES) -> int:
    """The body length announced by an 8-byte header, checked."""
    if header[:3] != MAGIC:
        if header[:3] == b"RKT":
            raise AdminProtocolError(
                "this is a Raft peer port, not an admin endpoint (use the node's --admin address)"
            )
        raise AdminProtocolError(f"bad magic {bytes(header[:4])!r}: not a raftkit admin connection")
    if len(header) < HEADER_LEN:
        raise AdminProtocolError("truncated frame header")
    if header[3] != VERSION:
        raise AdminProtocolError(
            f"unsupported admin protocol version {header[3]} (this build speaks {VERSION})"
        )
    length = int(_LENGTH.unpack_from(header, 4)[0])
    if length == 0:
        raise AdminProtocolError("empty frame body (no kind byte)")
    if length > max_frame_bytes:
        raise AdminProtocolError(f"frame of {length} bytes exceeds the {max_frame_bytes}-byte limit")
    return length


def split_body(body: bytes) -> tuple[Kind, bytes]:
    if not body:
        raise AdminProtocolError("empty frame body (no kind byte)")
    kind = _KINDS.get(body[0])
    if kind is None:
        raise AdminProtocolError(f"unknown frame kind {body[0]}")
    return kind, body[1:]


# -- messages -----------------------------------------------------------------------------


def encode_message(message: dict[str, Any]) -> bytes:
    return json.dumps(jsonable(message), separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_message(payload: bytes) -> dict[str, Any]:
    """A JSON object, or ``AdminProtocolError`` saying what is wrong."""
    try:
        value = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise AdminProtocolError(f"message is not UTF-8: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise AdminProtocolError(f"message is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise AdminProtocolError(f"message must be a JSON object, got {type(value).__name__}")
    return value


def error_body(message: str, type: str = "AdminProtocolError") -> bytes:
    """The JSON payload of a failed answer or an ``ERROR`` frame."""
    return encode_message({"ok": False, "error": message, "type": type})


def jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` made of JSON types only: sets and tuples become (sorted)
    lists, dataclasses and objects with ``_asdict`` dicts, enums their
    value, dict keys strings, non-finite floats strings; anything else its
    ``str``. Deep structures are cut at 50 levels."""
    if _depth > 50:
        return "..."
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value, _depth + 1)
    if isinstance(value, dict):
        return {str(k): jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        items = [jsonable(v, _depth + 1) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if isinstance(value, (list, tuple)):
        if hasattr(value, "_asdict"):
            return jsonable(value._asdict(), _depth + 1)
        return [jsonable(v, _depth + 1) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value), _depth + 1)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


def admin_key(
    password: str | None,
    key: bytes | None,
    salt: bytes | None = None,
    cluster_id: str | None = None,
    *,
    warn: bool = True,
) -> bytes | None:
    """The cluster key an admin endpoint or client authenticates with:
    ``key`` (checked), else derived from ``password`` (not empty) with the
    cluster's salt; None when neither is given. An empty password or a key
    that is not a derived key raises ``ValueError``, never means "no
    authentication". ``warn``: log once when the default salt is used (the
    endpoint does; a client leaves that to the node)."""
    if key is not None:
        if password is not None:
            raise ValueError("give the password or its derived key, not both")
        return check_key(key)
    if password is None:
        return None
    password = check_password(password, warn=warn)
    return derive_cluster_key(password, cluster_salt(cluster_id, salt, warn=warn))


# -- channels -----------------------------------------------------------------------------


class PlainChannel:
    """Bodies as they are (inside TLS, which authenticates the client)."""

    established = True

    def seal(self, kind: Kind, payload: bytes) -> bytes:
        return encode_frame(kind, payload)

    def open(self, header: bytes, body: bytes) -> tuple[Kind, bytes]:
        return split_body(body)


class SealedChannel:
    """Bodies sealed with ChaCha20-Poly1305 after a password handshake."""

    established = True

    def __init__(self, key: bytes, nonce_c: bytes, nonce_s: bytes, *, client_side: bool) -> None:
        c2s = _session_key(key, nonce_c, nonce_s, C2S_INFO)
        s2c = _session_key(key, nonce_c, nonce_s, S2C_INFO)
        mine, theirs = (c2s, s2c) if client_side else (s2c, c2s)
        self._send, self._receive = _Direction(mine), _Direction(theirs)

    def seal(self, kind: Kind, payload: bytes) -> bytes:
        plaintext = bytes((kind,)) + payload
        header = frame_header(len(plaintext) + TAG_BYTES)
        return header + self._send.seal(header, plaintext)

    def open(self, header: bytes, body: bytes) -> tuple[Kind, bytes]:
        try:
            plaintext = self._receive.open(header, body)
        except _SealError as exc:
            raise AdminAuthError(f"authentication failed: {exc}") from None
        return split_body(plaintext)


def _exact(payload: bytes, size: int, what: str) -> bytes:
    if len(payload) != size:
        raise AdminProtocolError(f"handshake: {what} of {len(payload)} bytes, expected {size}")
    return payload


class ServerHandshake:
    """The server side of the password handshake, one step per frame."""

    def __init__(self, key: bytes, urandom: Callable[[int], bytes] = os.urandom) -> None:
        self._key = key
        self._urandom = urandom
        self._nonce_c = b""
        self._nonce_s = b""

    def challenge(self, kind: Kind, payload: bytes) -> bytes:
        """Answer the client's AUTH_NONCE with the AUTH_CHALLENGE frame: a
        bare nonce, nothing that depends on the password."""
        if kind is not Kind.AUTH_NONCE:
            raise AdminAuthError(
                "authentication failed: this admin endpoint requires the cluster password "
                "(the client did not start the password handshake)"
            )
        self._nonce_c = _exact(payload, NONCE_BYTES, "nonce")
        self._nonce_s = self._urandom(NONCE_BYTES)
        return encode_frame(Kind.AUTH_CHALLENGE, self._nonce_s)

    def finish(self, kind: Kind, payload: bytes) -> tuple[bytes, SealedChannel]:
        """Check the client's AUTH_PROOF; if it holds, the AUTH_CONFIRM frame
        (the server's proof) and the sealed channel."""
        if kind is not Kind.AUTH_PROOF:
            raise AdminProtocolError(f"handshake: expected AUTH_PROOF, got {kind.name}")
        proof = _exact(payload, MAC_BYTES, "proof")
        expected = _mac(self._key, CLIENT_LABEL, self._nonce_c, self._nonce_s)
        if not hmac.compare_digest(proof, expected):
            raise AdminAuthError("authentication failed: wrong password (or another cluster id)")
        confirm = encode_frame(Kind.AUTH_CONFIRM, _mac(self._key, SERVER_LABEL, self._nonce_c, self._nonce_s))
        return confirm, SealedChannel(self._key, self._nonce_c, self._nonce_s, client_side=False)


def client_proof(key: bytes, nonce_c: bytes, kind: Kind, payload: bytes) -> tuple[bytes, bytes]:
    """The client's answer to AUTH_CHALLENGE: the AUTH_PROOF frame, and the
    server's nonce (for ``client_finish``)."""
    if kind is not Kind.AUTH_CHALLENGE:
        raise AdminProtocolError(f"handshake: expected AUTH_CHALLENGE, got {kind.name}")
    nonce_s = _exact(payload, NONCE_BYTES, "challenge")
    return encode_frame(Kind.AUTH_PROOF, _mac(key, CLIENT_LABEL, nonce_c, nonce_s)), nonce_s


def client_finish(key: bytes, nonce_c: bytes, nonce_s: bytes, kind: Kind, payload: bytes) -> SealedChannel:
    """Check the server's AUTH_CONFIRM; the sealed channel if it holds.
    Raises ``AdminAuthError`` when the server does not know the password
    (the client then sends no request to it)."""
    if kind is not Kind.AUTH_CONFIRM:
        raise AdminProtocolError(f"handshake: expected AUTH_CONFIRM, got {kind.name}")
    server_mac = _exact(payload, MAC_BYTES, "confirmation")
    if not hmac.compare_digest(server_mac, _mac(key, SERVER_LABEL, nonce_c, nonce_s)):
        raise AdminAuthError(
            "authentication failed: the endpoint could not prove it knows the password (a fake endpoint, "
            "or another cluster's)"
        )
    return SealedChannel(key, nonce_c, nonce_s, client_side=True)
