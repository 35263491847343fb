"""Which node ids a verified TLS peer certificate may speak for.

A certificate names node ids as DNS (or URI) subject alternative names, or,
when it has no subject alternative name at all, as its common name; a
connection whose peer claims any other id is refused (see
``raftkit.transports.tls``). A certificate with only IP (or e-mail) SANs
names no node: its common name is typically a host name, which may well be
a node id, and such certificates are issued for other purposes.
"""

from __future__ import annotations

from typing import Any

PeerCert = dict[str, Any]


def certificate_names(cert: PeerCert | None) -> set[str]:
    """The node ids a verified peer certificate (``getpeercert()`` form)
    names: its DNS and URI subject alternative names; its common names only
    when it has no subject alternative name of any kind."""
    if not cert:
        return set()
    sans = cert.get("subjectAltName", ())
    if sans:
        return {value for kind, value in sans if kind in ("DNS", "URI")}
    return {value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"}


def identity_error(cert: PeerCert | None, node_id: str, role: str) -> str | None:
    """Why ``cert`` may not speak as ``node_id`` (None: it may)."""
    names = certificate_names(cert)
    if node_id in names:
        return None
    shown = ", ".join(sorted(names)[:5]) or "nothing"
    return (
        f"the {role}'s certificate names {shown}, not node {node_id!r}: a node's certificate must name its "
        "node id as a DNS subject alternative name (or common name)"
    )
