"""Password-authenticated, encrypted TCP: every node of a cluster knows one
shared password, and nothing reaches a node unless its sender proved it
knows the password too.

Key: ``K = scrypt(password, salt, n=2**14, r=8, p=1)``, 32 bytes, computed
once per transport (scrypt makes each guess of an offline password search
cost ~16 MiB and tens of milliseconds). The salt is fixed per cluster so
every node derives the same ``K`` on its own; the default is a raftkit-wide
constant, so give each cluster its own (its name, say) to keep one
precomputed dictionary from serving every raftkit cluster.

Handshake (a mutual challenge–response; frames sent in the clear)::

    dialler  -> listener  AUTH_NONCE      nonce_c                      (32 fresh random bytes)
    listener -> dialler   AUTH_CHALLENGE  nonce_s, HMAC(K, "server" | nonce_c | nonce_s)
    dialler  -> listener  AUTH_PROOF      HMAC(K, "client" | nonce_c | nonce_s)

Each side checks the other's HMAC before it believes anything, so a peer
with another password is dropped before any payload is decoded; the labels
stop a proof being reflected back at its maker, and fresh nonces from both
sides stop a recorded handshake being replayed. Then each direction gets its
own key, ``HKDF-SHA256(K, salt=nonce_c | nonce_s, info="c2s" / "s2c")``, and
every later frame body is sealed with ChaCha20-Poly1305 under a 96-bit
nonce that counts that direction's frames, with the frame header as
associated data. A frame that was altered, replayed, reordered, truncated or
cut from another connection fails authentication and the connection closes.
"""

from __future__ import annotations

import hashlib
import hmac
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
    encode_frame,
    frame_header,
    split_body,
)
from raftkit.transports.tcp import TcpTransport

DEFAULT_SALT = b"raftkit cluster key v1"
"""The salt used when none is given: fine for a single cluster, but prefer a
per-cluster value (see the module docstring)."""

NONCE_BYTES = 32
MAC_BYTES = 32
TAG_BYTES = 16
_MAX_FRAMES = 2**64  # far beyond any connection's life; never let the nonce wrap


def derive_cluster_key(password: str, salt: bytes = DEFAULT_SALT) -> bytes:
    """The 32-byte cluster key ``K`` for ``password``; slow on purpose."""
    if not password:
        raise ValueError("the cluster password must not be empty")
    return Scrypt(salt=salt, length=32, n=2**14, r=8, p=1).derive(password.encode("utf-8"))


def _mac(key: bytes, label: bytes, nonce_c: bytes, nonce_s: bytes) -> bytes:
    return hmac.new(key, label + nonce_c + nonce_s, hashlib.sha256).digest()


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

    def open(self, header: bytes, sealed: bytes) -> bytes:
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
    """One connection's side of the handshake, then its sealing."""

    def __init__(
        self, key: bytes, *, client_side: bool, urandom: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._key = key
        self._client_side = client_side
        self._urandom = urandom
        self._output = bytearray()
        self._send: _Direction | None = None
        self._receive: _Direction | None = None
        self._nonce_c = b""
        self._nonce_s = b""
        self.established = False
        if client_side:
            self._nonce_c = urandom(NONCE_BYTES)
            self._output += encode_frame(FrameKind.AUTH_NONCE, [self._nonce_c])
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

    def open(self, header: bytes, body: bytes) -> tuple[FrameKind, memoryview] | None:
        if self._receive is not None:
            return super().open(header, self._receive.open(header, body))
        kind, payload = split_body(body)
        if kind is not self._expect:
            raise FrameError(f"handshake: expected {self._expect.name}, got {kind.name}")
        if kind is FrameKind.AUTH_NONCE:
            self._nonce_c = self._exact(payload, NONCE_BYTES)
            self._nonce_s = self._urandom(NONCE_BYTES)
            proof = _mac(self._key, b"server", self._nonce_c, self._nonce_s)
            self._output += encode_frame(FrameKind.AUTH_CHALLENGE, [self._nonce_s, proof])
            self._expect = FrameKind.AUTH_PROOF
        elif kind is FrameKind.AUTH_CHALLENGE:
            data = self._exact(payload, NONCE_BYTES + MAC_BYTES)
            self._nonce_s = data[:NONCE_BYTES]
            expected = _mac(self._key, b"server", self._nonce_c, self._nonce_s)
            if not hmac.compare_digest(data[NONCE_BYTES:], expected):
                raise AuthenticationError("the listener could not prove it knows the cluster password")
            self._output += encode_frame(
                FrameKind.AUTH_PROOF, [_mac(self._key, b"client", self._nonce_c, self._nonce_s)]
            )
            self._establish()
        else:  # AUTH_PROOF
            proof = self._exact(payload, MAC_BYTES)
            if not hmac.compare_digest(proof, _mac(self._key, b"client", self._nonce_c, self._nonce_s)):
                raise AuthenticationError("the dialler could not prove it knows the cluster password")
            self._establish()
        return None

    @staticmethod
    def _exact(payload: memoryview, size: int) -> bytes:
        if len(payload) != size:
            raise FrameError(f"handshake: a {size}-byte field arrived as {len(payload)} bytes")
        return bytes(payload)

    def _establish(self) -> None:
        c2s = _session_key(self._key, self._nonce_c, self._nonce_s, b"c2s")
        s2c = _session_key(self._key, self._nonce_c, self._nonce_s, b"s2c")
        mine, theirs = (c2s, s2c) if self._client_side else (s2c, c2s)
        self._send, self._receive = _Direction(mine), _Direction(theirs)
        self.established = True


class EncryptedTcpTransport(TcpTransport):
    """``TcpTransport`` whose links are authenticated by a shared password and
    encrypted with ChaCha20-Poly1305 (see the module docstring for the
    protocol). ``authenticated`` is True: every frame that reaches the handler
    was sealed by a holder of the password.

    ``salt`` should be the same on every node of one cluster and differ
    between clusters. The other keyword options are ``TcpTransport``'s.
    """

    authenticated = True
    kind = "encrypted tcp"

    def __init__(
        self,
        password: str,
        bind: str = "127.0.0.1:0",
        *,
        salt: bytes = DEFAULT_SALT,
        **options: Any,
    ) -> None:
        super().__init__(bind, **options)  # TcpTransport's options, same names and defaults
        self._key = derive_cluster_key(password, salt)

    def client_channel(self) -> Channel:
        return EncryptedChannel(self._key, client_side=True)

    def server_channel(self) -> Channel:
        return EncryptedChannel(self._key, client_side=False)
