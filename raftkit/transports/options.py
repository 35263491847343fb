"""Settings and counters shared by the socket transports."""

from __future__ import annotations

from dataclasses import dataclass

from raftkit.serializers import wire

MiB = 1024 * 1024


@dataclass(frozen=True)
class TcpOptions:
    """Tuning knobs of a socket transport; the defaults suit a LAN cluster.

    * ``max_frame_bytes``: the largest frame sent or accepted. Both sides of a
      link must agree, or big batches are refused by the smaller side.
    * ``connect_timeout`` / ``handshake_timeout``: give up on a dial (TCP
      connect) or on a connection's handshake (TLS or password, plus the
      HELLO frame) after this many seconds.
    * ``backoff_min`` / ``backoff_max``: reconnect delays double from the
      first to the second (with jitter) while a peer stays unreachable.
    * ``keepalive``: TCP keepalive probes, so a vanished peer is noticed.
    * ``send_queue_bytes``: per-peer budget for messages waiting on a slow or
      absent peer; past it the oldest are dropped (Raft resends).
    * ``snapshot_chunk_bytes``: snapshot streams travel in frames this big.
    * ``resolve_ttl``: how long a resolved host name is reused.
    * ``prefer_family``: "ipv4", "ipv6" or "any": which address to dial when
      a host name resolves to both.
    * ``bind_retries`` / ``bind_retry_delay``: a port that cannot be bound
      is retried this many times (delays growing linearly) before start fails.

    Limits on what strangers can make a listener spend (a connection is
    *unidentified* until its handshake and HELLO are done; then it is
    identified by the HELLO's node id):

    * ``max_inbound_connections``: accepted connections held at once. Past
      it a new connection first displaces the oldest unidentified one, then
      the idlest from a node id outside the address book; failing both it
      is closed at once, so the peers' own links are never displaced.
    * ``max_unidentified_connections``: connections still in their
      handshake held at once; a new one displaces the oldest.
    * ``max_connections_per_peer``: connections identified as one node id of
      the address book; a newer one displaces the idlest older one.
    * ``max_preauth_frame_bytes``: the largest frame accepted before HELLO
      (handshake frames and HELLO are tiny): a larger one closes the
      connection before its body is buffered.
    * ``max_buffered_bytes``: unfinished frames held across all inbound
      connections (0: twice ``max_frame_bytes``); the connection whose bytes
      would pass it is closed (its sender retries), so many connections that
      each announce a huge frame cannot exhaust memory.
    * ``handshake_timeout`` bounds the time to authenticate and send HELLO.
    """

    max_frame_bytes: int = wire.MAX_FRAME_BYTES
    connect_timeout: float = 5.0
    handshake_timeout: float = 5.0
    backoff_min: float = 0.05
    backoff_max: float = 2.0
    keepalive: bool = True
    send_queue_bytes: int = 32 * MiB
    snapshot_chunk_bytes: int = 1 * MiB
    resolve_ttl: float = 30.0
    prefer_family: str = "any"
    bind_retries: int = 5
    bind_retry_delay: float = 0.2
    max_inbound_connections: int = 128
    max_unidentified_connections: int = 16
    max_connections_per_peer: int = 4
    max_preauth_frame_bytes: int = 16 * 1024
    max_buffered_bytes: int = 0

    def __post_init__(self) -> None:
        if self.max_frame_bytes < 64 * 1024:
            raise ValueError("max_frame_bytes must be at least 64 KiB")
        if not 0 < self.backoff_min <= self.backoff_max:
            raise ValueError("need 0 < backoff_min <= backoff_max")
        if self.connect_timeout <= 0 or self.handshake_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.prefer_family not in ("any", "ipv4", "ipv6"):
            raise ValueError("prefer_family must be 'any', 'ipv4' or 'ipv6'")
        if self.bind_retries < 0 or self.bind_retry_delay < 0:
            raise ValueError("bind_retries and bind_retry_delay must not be negative")
        if self.send_queue_bytes <= 0:
            raise ValueError("send_queue_bytes must be positive")
        if not 0 < self.max_unidentified_connections <= self.max_inbound_connections:
            raise ValueError("need 0 < max_unidentified_connections <= max_inbound_connections")
        if self.max_connections_per_peer < 1:
            raise ValueError("max_connections_per_peer must be at least 1")
        if not 1024 <= self.max_preauth_frame_bytes <= self.max_frame_bytes:
            raise ValueError("max_preauth_frame_bytes must be between 1 KiB and max_frame_bytes")
        if self.max_buffered_bytes < 0 or 0 < self.max_buffered_bytes < self.max_frame_bytes:
            raise ValueError("max_buffered_bytes must be 0 (2 x max_frame_bytes) or >= max_frame_bytes")
        if not 0 < self.snapshot_chunk_bytes <= self.max_frame_bytes - 1024:
            raise ValueError("snapshot_chunk_bytes must be positive and leave room for framing")

    @property
    def buffer_budget(self) -> int:
        """Bytes of unfinished inbound frames allowed across connections."""
        return self.max_buffered_bytes or 2 * self.max_frame_bytes

    @property
    def batch_bytes(self) -> int:
        """Payload room in one frame, leaving space for kind byte and seal."""
        return self.max_frame_bytes - 64


@dataclass
class TransportStats:
    """Running counters, for tests, benchmarks and operators' dashboards."""

    dials: int = 0
    dial_failures: int = 0
    connections_lost: int = 0
    connections_accepted: int = 0
    connections_rejected: int = 0
    connections_shed: int = 0  # closed to keep within the connection limits
    frames_sent: int = 0
    bytes_sent: int = 0
    messages_sent: int = 0
    messages_dropped: int = 0
    messages_received: int = 0
    snapshots_sent: int = 0
    snapshots_failed: int = 0
    snapshots_received: int = 0
