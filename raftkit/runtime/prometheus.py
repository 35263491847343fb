"""An optional Prometheus exporter: the figures of ``Node.status()`` plus
proposal latency and apply throughput, in the text exposition format.

Needs ``prometheus-client`` (``pip install pyraftkit[metrics]``), imported
only when a collector is made, so raftkit itself never depends on it.

::

    from raftkit.runtime.prometheus import serve_prometheus

    server = serve_prometheus([node], "127.0.0.1:9464")  # GET http://127.0.0.1:9464/metrics
    ...
    server.close()

or, to add the figures to an existing registry (your own HTTP server)::

    from prometheus_client import REGISTRY
    from raftkit.runtime.prometheus import Collector

    REGISTRY.register(Collector([node]))

Every sample is labelled ``node`` (the node's id); per-peer ones also
``peer``. Metric names are listed in docs/metrics.md.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from raftkit.runtime.metrics import NodeMetrics

__all__ = ["Collector", "PrometheusServer", "serve_prometheus"]

_ROLES = ("follower", "pre-candidate", "candidate", "leader")


def _client() -> Any:
    try:
        import prometheus_client
        import prometheus_client.core
    except ImportError as exc:
        raise ImportError(
            "the Prometheus exporter needs prometheus-client: pip install pyraftkit[metrics]"
        ) from exc
    return prometheus_client


def _nodes(node_or_nodes: Any) -> list[Any]:
    """A Node, a SyncObj (its node), or an iterable of either."""
    items = [node_or_nodes] if hasattr(node_or_nodes, "status") else list(node_or_nodes)
    return [item.get_node() if hasattr(item, "get_node") else item for item in items]


class Collector:
    """A ``prometheus_client`` custom collector over one or more nodes; each
    scrape reads ``status()`` and the metrics of every node (any thread)."""

    def __init__(self, node_or_nodes: Any) -> None:
        self._core = _client().core  # fail now, with the hint, if it is missing
        self.nodes = _nodes(node_or_nodes)

    def describe(self) -> Iterable[Any]:
        return []  # names come from collect(); keeps registration from scraping the nodes

    def collect(self) -> Iterator[Any]:
        core = self._core

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ("node",)) -> Any:
            return core.GaugeMetricFamily(name, doc, labels=list(labels))

        def counter(name: str, doc: str) -> Any:
            return core.CounterMetricFamily(name, doc, labels=["node"])

        g = {
            "term": gauge("raftkit_term", "Current Raft term"),
            "commit": gauge("raftkit_commit_index", "Highest log index known to be committed"),
            "applied": gauge("raftkit_applied_index", "Highest log index applied to the state machine"),
            "first": gauge("raftkit_log_first_index", "First index held in the log"),
            "last": gauge("raftkit_log_last_index", "Last index of the log"),
            "entries": gauge("raftkit_log_entries", "Entries held in the log"),
            "snapshot": gauge("raftkit_snapshot_index", "Index covered by the newest snapshot"),
            "members": gauge("raftkit_members", "Voting members in the configuration"),
            "learners": gauge("raftkit_learners", "Learners (non-voting members) in the configuration"),
            "pending": gauge("raftkit_pending_commands", "Commands submitted here and awaiting an outcome"),
            "queued": gauge("raftkit_queued_commands", "Commands waiting to be proposed"),
            "running": gauge("raftkit_running", "1 while the node runs"),
            "error": gauge("raftkit_error", "1 while the node reports an error (see status()['error'])"),
            "leader": gauge("raftkit_is_leader", "1 on the leader"),
            "role": gauge("raftkit_role", "1 for the node's current role", ("node", "role")),
            "match": gauge("raftkit_peer_match_index",
                           "Leader only: highest index known replicated on a peer", ("node", "peer")),
            "contact": gauge("raftkit_peer_last_contact_seconds",
                             "Seconds since a message from the peer arrived", ("node", "peer")),
            "rate": gauge("raftkit_apply_rate", "Log entries applied per second, recent average"),
        }
        c = {
            "proposals": counter("raftkit_proposals", "Commands submitted on this node"),
            "proposals_applied": counter("raftkit_proposals_applied", "Commands submitted here and applied"),
            "proposals_failed": counter("raftkit_proposals_failed",
                                        "Commands submitted here that failed before being applied"),
            "applied_entries": counter("raftkit_applied_entries", "Log entries applied to the state machine"),
            "applied_bytes": counter("raftkit_applied_bytes", "Bytes of the log entries applied"),
        }
        latency = core.HistogramMetricFamily(
            "raftkit_proposal_latency_seconds",
            "Seconds from submit to outcome of the commands applied", labels=["node"],
        )
        for node in self.nodes:
            s = node.status()
            m: dict[str, Any] = s["metrics"]
            n = str(s["id"])
            for key, value in (
                ("term", s["term"]), ("commit", s["commit_index"]), ("applied", s["applied_index"]),
                ("first", s["log_first_index"]), ("last", s["log_last_index"]), ("entries", s["log_entries"]),
                ("snapshot", s["snapshot_index"]), ("members", len(s["members"])),
                ("learners", len(s["learners"])), ("pending", s["pending_commands"]),
                ("queued", s["queued_commands"]), ("running", s["running"]), ("error", bool(s["error"])),
                ("leader", s["role"] == "leader"), ("rate", m["apply_rate_per_s"]),
            ):
                g[key].add_metric([n], float(value))
            for role in _ROLES:
                g["role"].add_metric([n, role], float(s["role"] == role))
            for peer, info in s["peers"].items():
                g["match"].add_metric([n, str(peer)], float(info["match"]))
            for peer, age in s["last_contact"].items():
                if age is not None:
                    g["contact"].add_metric([n, str(peer)], age)
            for key, value in (
                ("proposals", m["proposals_total"]), ("proposals_applied", m["proposals_applied"]),
                ("proposals_failed", m["proposals_failed"]), ("applied_entries", m["applied_total"]),
                ("applied_bytes", m["applied_bytes"]),
            ):
                c[key].add_metric([n], float(value))
            metrics: NodeMetrics = node.metrics
            buckets, total, _ = metrics.latency_histogram()
            latency.add_metric(
                [n], [("+Inf" if b == float("inf") else repr(b), float(k)) for b, k in buckets], total
            )
        yield from g.values()
        yield from c.values()
        yield latency


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class PrometheusServer:
    """A running exporter (``serve_prometheus``): ``address``, ``url``, ``close()``."""

    def __init__(self, collector: Collector, host: str, port: int) -> None:
        client = _client()
        registry = client.CollectorRegistry(auto_describe=False)
        registry.register(collector)
        self.collector = collector

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?", 1)[0] not in ("/", "/metrics"):
                    self.send_error(404, "try /metrics")
                    return
                try:
                    body = client.generate_latest(registry)
                except Exception as exc:  # a broken scrape says why instead of dropping the socket
                    self.send_error(500, f"collecting the metrics failed: {exc!r}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", client.CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet scrapes
                pass

        server_class = _Server6 if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, port), Handler)
        self._server.daemon_threads = True
        # An IP server's address is (host str, port): the bytes in its type are for AF_UNIX.
        self.address = cast("tuple[str, int]", self._server.server_address[:2])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"metrics-http-{self.address[1]}", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host if ':' not in host else f'[{host}]'}:{port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse(address: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(address, tuple):
        return address[0], int(address[1])
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address must be 'host:port' or (host, port), got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve_prometheus(
    node_or_nodes: Any, address: str | tuple[str, int] = "127.0.0.1:9464"
) -> PrometheusServer:
    """Serve ``/metrics`` for a node, a SyncObj, or several, on ``address``
    (``"host:port"`` or ``(host, port)``; port 0 picks a free one, see
    ``.address``) from a daemon thread; ``close()`` stops it. Raises
    ImportError (with the pip command) without prometheus-client."""
    host, port = _parse(address)
    return PrometheusServer(Collector(node_or_nodes), host, port)
