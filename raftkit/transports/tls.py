"""Mutual-TLS transport (stdlib ``ssl``): every node holds a certificate
signed by the cluster's own CA, and both ends of every link verify the other.

* TLS 1.3 only: no downgrade to older protocol versions or cipher suites.
* Client certificates are required (``CERT_REQUIRED`` on both sides): a
  dialler without a certificate from the cluster CA is refused before any
  frame is read.
* Host names are not checked (``check_hostname = False``): raftkit nodes are
  reached by ``host:port`` addresses that are often IP literals. Node ids
  are checked instead: a certificate must name the node id its holder
  claims, as a DNS (or URI) subject alternative name, or as its common name
  when it has neither. A listener refuses a dialler whose HELLO claims an id
  its certificate does not name, and a dialler refuses a listener whose
  certificate does not name the peer it dialled. So a certificate the CA
  issued for anything else (monitoring, a client) cannot claim a node's id
  (under its own name it is a non-member, whose requests are ignored, though
  its leader traffic is not yet refused: raftkit.core.admission); still,
  use a private CA for the cluster, never a public one.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from raftkit.transports.identity import certificate_names, identity_error
from raftkit.transports.tcp import TcpTransport

__all__ = ["TlsTransport", "certificate_names", "client_context", "identity_error", "server_context"]

StrPath = str | os.PathLike[str]


def _context(purpose: int, certfile: StrPath, keyfile: StrPath | None, cafile: StrPath) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(certfile, keyfile)
    context.load_verify_locations(cafile)
    context.check_hostname = False  # set before verify_mode: client contexts start with it on
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def server_context(certfile: StrPath, keyfile: StrPath | None, cafile: StrPath) -> ssl.SSLContext:
    """The listener's context: present our certificate, demand the dialler's."""
    return _context(ssl.PROTOCOL_TLS_SERVER, certfile, keyfile, cafile)


def client_context(certfile: StrPath, keyfile: StrPath | None, cafile: StrPath) -> ssl.SSLContext:
    """The dialler's context: present our certificate, verify the listener's
    against the cluster CA (not its host name; see the module docstring)."""
    return _context(ssl.PROTOCOL_TLS_CLIENT, certfile, keyfile, cafile)


class TlsTransport(TcpTransport):
    """``TcpTransport`` over mutually authenticated TLS 1.3.

    ``certfile`` (PEM, may include the chain) and ``keyfile`` are this node's;
    ``cafile`` holds the CA certificates peers must chain to. Files are read
    once, here, so a bad path fails at construction. ``authenticated`` is
    True: every frame comes from a holder of a certificate the CA signed.
    The other keyword options are ``TcpTransport``'s.
    """

    authenticated = True
    kind = "tls"

    def __init__(
        self,
        certfile: StrPath,
        keyfile: StrPath | None,
        cafile: StrPath,
        bind: str = "127.0.0.1:0",
        **options: Any,
    ) -> None:
        super().__init__(bind, **options)  # TcpTransport's options, same names and defaults
        self.server_ssl = server_context(certfile, keyfile, cafile)
        self.client_ssl = client_context(certfile, keyfile, cafile)
