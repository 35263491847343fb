"""Password-authenticated, encrypted TCP: every node of a cluster knows one
shared password, and nothing reaches a node unless its sender proved it
knows the password too.

Key: ``K = scrypt(password, salt, n=2**14, r=8, p=1)``, 32 bytes, computed
once per transport (scrypt makes each guess of an offline password search
cost ~16 MiB and tens of milliseconds). The salt is the same on every node
of a cluster, so each derives the same ``K`` on its own, and differs between
clusters (``cluster_salt(cluster_id)``), so one precomputed dictionary does
not serve every raftkit cluster. Without a cluster id the raftkit-wide
``DEFAULT_SALT`` is used (and logged once): set one.

Handshake (frames sent in the clear; the dialler proves first)::

    dialler  -> listener  AUTH_NONCE      nonce_c | ids(dialler, listener)
    listener -> dialler   AUTH_CHALLENGE  nonce_s
    dialler  -> listener  AUTH_PROOF      HMAC(K, "raftkit dialler v2" | T)
    listener -> dialler   AUTH_CONFIRM    HMAC(K, "raftkit listener v2" | T)

with the transcript ``T = nonce_c | nonce_s | ids``, ``ids`` being both node
ids (each a 2-byte length and UTF-8). The listener answers a stranger with a
fresh random nonce and nothing else, and sends its own proof only after it
has checked the dialler's, so no unauthenticated round trip yields a value
against which password guesses can be checked offline. The claimed node ids
are inside the MAC'd transcript: the dialler's id is what the listener
authenticated (``peer_id``; its HELLO must name the same ids), and the
dialler learns it reached the node it meant. The labels stop a proof being
reflected back at its maker, and fresh nonces from both sides stop a
recorded handshake being replayed. Then each direction gets its own key,
``HKDF-SHA256(K, salt=nonce_c | nonce_s, info="c2s" / "s2c" | ids)``, and
every later frame body is sealed with ChaCha20-Poly1305 under a 96-bit nonce
that counts that direction's frames, with the frame header as associated
data. A frame that was altered, replayed, reordered, truncated or cut from
another connection fails authentication and the connection closes.

This handshake (v2) does not talk to releases whose listener proved first
(a v1 dialler's 32-byte AUTH_NONCE is refused, saying so).

With one shared password every holder can claim any node id: the password
authenticates membership of the cluster, not which member. Use TLS with a
certificate per node where members must not impersonate each other.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from raftkit.transports.framing import (
    AuthenticationError,
    Buffer,
    Channel,
    FrameError,
    FrameKind,
    decode_hello,
    encode_frame,
    encode_hello,
    frame_header,
    split_body,
)
from raftkit.transports.tcp import TcpTransport

log = logging.getLogger(__name__)

DEFAULT_SALT = b"raftkit cluster key v1"
"""The salt used when no cluster id (or salt) is given: it is the same for
every raftkit cluster, so give each cluster its own (``cluster_salt``)."""

WEAK_PASSWORD_CHARS = 12
"""Passwords shorter than this are accepted (existing clusters keep
working) but logged as weak; an empty one is refused."""

KEY_BYTES = 32
NONCE_BYTES = 32
MAC_BYTES = 32
TAG_BYTES = 16
_MAX_FRAMES = 2**64  # far beyond any connection's life; never let the nonce wrap
DIALLER_LABEL = b"raftkit dialler v2"
LISTENER_LABEL = b"raftkit listener v2"
_warned_default_salt = False


def check_password(password: object, what: str = "the cluster password", *, warn: bool = True) -> str:
    """``password`` if it is a non-empty str (one shorter than
    ``WEAK_PASSWORD_CHARS`` is logged as weak), else an error saying what to do."""
    if not isinstance(password, str):
        raise TypeError(f"{what} must be a str, got {type(password).__name__}")
    if not password.strip():
        raise ValueError(
            f"{what} is empty: give a long random passphrase (anyone who knows it can join the cluster); "
            "an empty password would authenticate everyone"
        )
    if warn and len(password) < WEAK_PASSWORD_CHARS:
        log.warning(
            "%s has only %d characters: it can be guessed; use a random passphrase of at least %d",
            what,
            len(password),
            WEAK_PASSWORD_CHARS,
        )
    return password


def check_key(key: object) -> bytes:
    """``key`` if it is a derived cluster key (32 bytes), else ``ValueError``."""
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        got = f"{len(key)} bytes" if isinstance(key, bytes | bytearray) else type(key).__name__
        raise ValueError(
            f"the cluster key must be the {KEY_BYTES} bytes derive_cluster_key(password, salt) returns, "
            f"got {got}"
        )
    if not any(key):
        raise ValueError(
            "the cluster key is all zero bytes: derive it with derive_cluster_key(password, salt)"
        )
    return bytes(key)


def cluster_salt(cluster_id: str | None = None, salt: bytes | None = None, *, warn: bool = True) -> bytes:
    """The scrypt salt for a cluster: ``salt`` if given, else one derived
    from ``cluster_id``, else ``DEFAULT_SALT`` (logged once per process
    unless ``warn`` is False, as for a client: every raftkit cluster
    without an id shares it)."""
    global _warned_default_salt
    if salt is not None and cluster_id is not None:
        raise ValueError("give a cluster id or a salt, not both")
    if salt is not None:
        if not isinstance(salt, bytes) or not salt:
            raise ValueError("the salt must be non-empty bytes")
        return salt
    if cluster_id is not None:
        if not isinstance(cluster_id, str) or not cluster_id:
            raise ValueError("the cluster id must be a non-empty str (the same on every node of the cluster)")
        return b"raftkit cluster id v1:" + cluster_id.encode("utf-8")
    if warn and not _warned_default_salt:
        _warned_default_salt = True
        log.warning(
            "no cluster id set: the password key uses raftkit's default salt, shared by every cluster "
            "without one; set a cluster id (the same on every node) so one precomputed password "
            "dictionary cannot serve them all"
        )
    return DEFAULT_SALT


def derive_cluster_key(password: str, salt: bytes = DEFAULT_SALT) -> bytes:
    """The 32-byte cluster key ``K`` for ``password``; slow on purpose."""
    if not password:
        raise ValueError("the cluster password must not be empty")
    return Scrypt(salt=salt, length=KEY_BYTES, n=2**14, r=8, p=1).derive(password.encode("utf-8"))


def _mac(key: bytes, label: bytes, nonce_c: bytes, nonce_s: bytes, ids: bytes = b"") -> bytes:
    return hmac.new(key, label + nonce_c + nonce_s + ids, hashlib.sha256).digest()


def _session_key(key: bytes, nonce_c: bytes, nonce_s: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=nonce_c + nonce_s, info=info).derive(key)


class _Direction:
    """AEAD for one direction of one connection; the nonce is the number of
    frames sealed (or opened) so far."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._count = 0

    def _next_nonce(self) -> bytes:
        if self._count >= _MAX_FRAMES:
            raise FrameError("frame counter exhausted: reconnect")
        nonce = self._count.to_bytes(12, "big")
        self._count += 1
        return nonce

    def seal(self, header: bytes, plaintext: bytes) -> bytes:
        return self._aead.encrypt(self._next_nonce(), plaintext, header)

    def open(self, header: bytes, sealed: Buffer) -> bytes:
        nonce = self._count.to_bytes(12, "big")
        try:
            plaintext = self._aead.decrypt(nonce, sealed, header)
        except InvalidTag:
            raise AuthenticationError(
                "a frame failed authentication (altered, replayed, reordered or forged)"
            ) from None
        self._count += 1
        return plaintext


class EncryptedChannel(Channel):
    """One connection's side of the handshake, then its sealing.

    ``node_id`` is this node's id; a dialler (``client_side``) also names the
    ``peer_id`` it means to reach. Both go into the authenticated
    transcript; after the handshake ``peer_id`` is the id the other side
    proved (with the password) it claims.
    """

    def __init__(
        self,
        key: bytes,
        *,
        client_side: bool,
        urandom: Callable[[int], bytes] = os.urandom,
        node_id: str = "",
        peer_id: str | None = None,
    ) -> None:
        self._key = key
        self._client_side = client_side
        self._urandom = urandom
        self._output = bytearray()
        self._send: _Direction | None = None
        self._receive: _Direction | None = None
        self._nonce_c = b""
        self._nonce_s = b""
        self._ids = b""
        self.node_id = node_id
        self.peer_id = peer_id if client_side else None
        self.proof_sent = False
        self.established = False
        if client_side:
            self._nonce_c = urandom(NONCE_BYTES)
            self._ids = encode_hello(node_id, peer_id or "")
            self._output += encode_frame(FrameKind.AUTH_NONCE, [self._nonce_c, self._ids])
            self._expect = FrameKind.AUTH_CHALLENGE
        else:
            self._expect = FrameKind.AUTH_NONCE

    @property
    def overhead(self) -> int:
        return 1 + TAG_BYTES

    def take_output(self) -> bytes:
        out = bytes(self._output)
        self._output.clear()
        return out

    def seal(self, kind: FrameKind, parts: Sequence[Buffer] = ()) -> bytes:
        if self._send is None:
            raise FrameError("cannot send data before the handshake completes")
        plaintext = b"".join((bytes((kind,)), *parts))
        header = frame_header(len(plaintext) + TAG_BYTES)
        return header + self._send.seal(header, plaintext)

    def open(self, header: bytes, body: Buffer) -> tuple[FrameKind, memoryview] | None:
        if self._receive is not None:
            return super().open(header, self._receive.open(header, body))
        kind, payload = split_body(body)
        if kind is not self._expect:
            raise FrameError(f"handshake: expected {self._expect.name}, got {kind.name}")
        if kind is FrameKind.AUTH_NONCE:  # listener: a stranger gets a nonce, nothing more
            if len(payload) == NONCE_BYTES:
                raise FrameError(
                    "handshake: the dialler speaks the v1 password handshake of an older raftkit "
                    "release (its listener proved first); upgrade every node"
                )
            if len(payload) < NONCE_BYTES:
                raise FrameError(f"handshake: a {len(payload)}-byte AUTH_NONCE is too short")
            self._nonce_c = bytes(payload[:NONCE_BYTES])
            self._ids = bytes(payload[NONCE_BYTES:])
            try:
                src, dst = decode_hello(self._ids)
            except FrameError as exc:
                raise FrameError(
                    f"handshake: the dialler's node ids are malformed ({exc}); a dialler must name its own "
                    "node id and the node it means to reach"
                ) from None
            if self.node_id and dst != self.node_id:
                raise FrameError(
                    f"handshake: {src!r} means to reach {dst!r}, but this node is {self.node_id!r}"
                )
            self._claimed = src
            self._nonce_s = self._urandom(NONCE_BYTES)
            self._output += encode_frame(FrameKind.AUTH_CHALLENGE, [self._nonce_s])
            self._expect = FrameKind.AUTH_PROOF
        elif kind is FrameKind.AUTH_CHALLENGE:  # dialler: prove first
            self._nonce_s = self._exact(payload, NONCE_BYTES)
            proof = _mac(self._key, DIALLER_LABEL, self._nonce_c, self._nonce_s, self._ids)
            self._output += encode_frame(FrameKind.AUTH_PROOF, [proof])
            self.proof_sent = True
            self._expect = FrameKind.AUTH_CONFIRM
        elif kind is FrameKind.AUTH_PROOF:  # listener: check, then prove in turn
            proof = self._exact(payload, MAC_BYTES)
            expected = _mac(self._key, DIALLER_LABEL, self._nonce_c, self._nonce_s, self._ids)
            if not hmac.compare_digest(proof, expected):
                raise AuthenticationError("the dialler could not prove it knows the cluster password")
            confirm = _mac(self._key, LISTENER_LABEL, self._nonce_c, self._nonce_s, self._ids)
            self._output += encode_frame(FrameKind.AUTH_CONFIRM, [confirm])
            self.peer_id = self._claimed
            self._establish()
        else:  # AUTH_CONFIRM, at the dialler
            confirm = self._exact(payload, MAC_BYTES)
            expected = _mac(self._key, LISTENER_LABEL, self._nonce_c, self._nonce_s, self._ids)
            if not hmac.compare_digest(confirm, expected):
                raise AuthenticationError("the listener could not prove it knows the cluster password")
            self._establish()
        return None

    @staticmethod
    def _exact(payload: memoryview, size: int) -> bytes:
        if len(payload) != size:
            raise FrameError(f"handshake: a {size}-byte field arrived as {len(payload)} bytes")
        return bytes(payload)

    def _establish(self) -> None:
        c2s = _session_key(self._key, self._nonce_c, self._nonce_s, b"c2s" + self._ids)
        s2c = _session_key(self._key, self._nonce_c, self._nonce_s, b"s2c" + self._ids)
        mine, theirs = (c2s, s2c) if self._client_side else (s2c, c2s)
        self._send, self._receive = _Direction(mine), _Direction(theirs)
        self.established = True


class EncryptedTcpTransport(TcpTransport):
    """``TcpTransport`` whose links are authenticated by a shared password and
    encrypted with ChaCha20-Poly1305 (see the module docstring for the
    protocol). ``authenticated`` is True: every frame that reaches the handler
    was sealed by a holder of the password, and the node id in its HELLO is
    the one bound into the handshake.

    ``cluster_id`` (or a raw ``salt``) must be the same on every node of one
    cluster and should differ between clusters; without either the shared
    ``DEFAULT_SALT`` is used and a warning logged once. ``password`` must
    not be empty (short ones are logged as weak); ``key`` (an already
    derived cluster key, 32 bytes) may stand for it. The other keyword options are
    ``TcpTransport``'s.
    """

    authenticated = True
    kind = "encrypted tcp"

    def __init__(
        self,
        password: str | None = None,
        bind: str = "127.0.0.1:0",
        *,
        salt: bytes | None = None,
        cluster_id: str | None = None,
        key: bytes | None = None,
        **options: Any,
    ) -> None:
        if key is not None:
            if password is not None:
                raise ValueError("give the password or its derived key, not both")
            self._key = check_key(key)
        elif password is None:
            raise ValueError("the encrypted transport needs the cluster password (or its derived key)")
        else:
            self._key = derive_cluster_key(check_password(password), cluster_salt(cluster_id, salt))
        super().__init__(bind, **options)  # TcpTransport's options, same names and defaults

    def client_channel(self, peer: str = "") -> Channel:
        return EncryptedChannel(self._key, client_side=True, node_id=self.node_id, peer_id=peer)

    def server_channel(self) -> Channel:
        return EncryptedChannel(self._key, client_side=False, node_id=self.node_id)
