"""PartitionProxy on 127.0.0.1: it forwards both ways (5 MB intact, with
backpressure), cuts exactly the pairs asked for and one way only, resets
open connections on a cut, closes connections to a target that is down,
leaves no thread or listening port after close, and partitions a real
three-node raftkit cluster over TCP (the isolated leader is replaced; after
healing, one leader commits)."""

from __future__ import annotations

import itertools
import random
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from raftkit import NodeBuilder
from raftkit.runtime.node import Node
from raftkit.testing.cluster import fast_config, wait_until
from raftkit.testing.kv import KeyValueStateMachine, set_command
from raftkit.testing.netproxy import PartitionProxy
from raftkit.testing.process_cluster import free_ports

pytest.importorskip("raftkit.transports.tcp")

DEADLINE = 5.0


# -- echo servers -------------------------------------------------------------------


class EchoServer(socketserver.ThreadingTCPServer):
    """Echoes every byte back; counts bytes received and open connections."""

    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.received = 0
        self.active = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(DEADLINE)


class _EchoHandler(socketserver.BaseRequestHandler):
    server: EchoServer

    def handle(self) -> None:
        self.request.settimeout(DEADLINE * 2)  # a handler never outlives a test by long
        with self.server.lock:
            self.server.active += 1
        try:
            while data := self.request.recv(65536):
                with self.server.lock:
                    self.server.received += len(data)
                self.request.sendall(data)
        except OSError:
            pass
        finally:
            with self.server.lock:
                self.server.active -= 1


@pytest.fixture
def echo() -> Iterator[dict[str, EchoServer]]:
    servers = {name: EchoServer() for name in ("a", "b")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def proxy(echo: dict[str, EchoServer]) -> Iterator[PartitionProxy]:
    with PartitionProxy({name: s.address for name, s in echo.items()}) as p:
        yield p


# -- client helpers -------------------------------------------------------------------


def dial(route: str) -> socket.socket:
    host, port = route.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=DEADLINE)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    deadline = time.monotonic() + DEADLINE
    data = bytearray()
    while len(data) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        more = sock.recv(n - len(data))  # socket.timeout fails the test at the deadline
        assert more, f"connection closed after {len(data)} of {n} bytes"
        data += more
    return bytes(data)


def echoes(route: str, payload: bytes = b"ping") -> bool:
    """A new connection to ``route`` carries ``payload`` there and back."""
    with dial(route) as sock:
        sock.sendall(payload)
        return recv_exactly(sock, len(payload)) == payload


def closed_by_peer(sock: socket.socket) -> bool:
    """Read until the other end closes ``sock`` (EOF or reset); a socket
    still open at the deadline raises socket.timeout, failing the test."""
    sock.settimeout(DEADLINE)
    try:
        while sock.recv(65536):
            pass
    except ConnectionError:
        pass
    return True


def closed_at_once(route: str) -> bool:
    """Dial ``route`` and see the proxy close the connection. Its reset can
    reach us before our connect() returns (about 1 run in 40 on loopback):
    that is the same closure."""
    try:
        sock = dial(route)
    except ConnectionResetError:
        return True
    with sock:
        return closed_by_peer(sock)


# -- forwarding ---------------------------------------------------------------------


def test_forwards_both_ways_to_the_right_target(proxy: PartitionProxy, echo: dict[str, EchoServer]) -> None:
    assert set(proxy.routes("a")) == {"b"} and proxy.routes("a")["b"] == proxy.route("a", "b")
    assert proxy.route("a", "b") != proxy.route("b", "a")
    assert echoes(proxy.route("a", "b"), b"hello")
    wait_until(lambda: echo["b"].received == 5, DEADLINE, what="b received 5 bytes")
    assert echo["a"].received == 0
    assert proxy.bytes_forwarded("a", "b") == 10  # 5 there, 5 back
    assert echoes(proxy.route("b", "a"), b"xyz")
    wait_until(lambda: echo["a"].received == 3, DEADLINE, what="a received 3 bytes")
    assert proxy.bytes_forwarded("b", "a") == 6


def test_five_megabytes_arrive_intact(proxy: PartitionProxy) -> None:
    payload = random.Random(7).randbytes(5 * 1024 * 1024)
    with dial(proxy.route("a", "b")) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        try:
            assert recv_exactly(sock, len(payload)) == payload
        finally:
            sender.join(DEADLINE)
    assert proxy.bytes_forwarded("a", "b") == 2 * len(payload)


def test_a_slow_reader_holds_the_sender_back() -> None:
    """The proxy buffers a bounded amount: a target that never reads soon
    blocks the sender, instead of the proxy swallowing everything."""
    with socket.socket() as sink:
        sink.bind(("127.0.0.1", 0))
        sink.listen(1)
        with PartitionProxy({"a": "127.0.0.1:1", "b": f"127.0.0.1:{sink.getsockname()[1]}"}) as proxy:
            with dial(proxy.route("a", "b")) as sock:
                sock.settimeout(0.5)
                chunk = b"x" * (256 * 1024)
                sent = 0
                try:
                    while sent < 64 * 1024 * 1024:
                        sent += sock.send(chunk)
                except socket.timeout:  # noqa: UP041 - on 3.10 it is not TimeoutError
                    pass  # blocked: what the test wants
            assert sent < 64 * 1024 * 1024, f"the proxy took {sent} bytes that nobody read"


# -- cutting ------------------------------------------------------------------------


def test_cut_is_one_way_resets_open_connections_and_heal_lets_new_ones_through(
    proxy: PartitionProxy, echo: dict[str, EchoServer]
) -> None:
    a_to_b = dial(proxy.route("a", "b"))
    b_to_a = dial(proxy.route("b", "a"))
    with a_to_b, b_to_a:
        for sock in (a_to_b, b_to_a):
            sock.sendall(b"hi")
            assert recv_exactly(sock, 2) == b"hi"
        proxy.cut("a", "b")
        assert proxy.is_cut("a", "b") and not proxy.is_cut("b", "a")
        assert closed_by_peer(a_to_b)
        wait_until(lambda: echo["b"].active == 0, DEADLINE, what="b's end of the cut connection to close")
        # the other direction is untouched, open and new connections alike
        b_to_a.sendall(b"still")
        assert recv_exactly(b_to_a, 5) == b"still"
        assert echoes(proxy.route("b", "a"))
    # new connections on the cut pair are accepted and closed at once
    assert closed_at_once(proxy.route("a", "b"))
    proxy.heal()
    assert not proxy.is_cut("a", "b")
    assert echoes(proxy.route("a", "b"))


def expected_cuts(names: list[str], cut: set[tuple[str, str]], proxy: PartitionProxy) -> None:
    actual = {(s, d) for s, d in itertools.permutations(names, 2) if proxy.is_cut(s, d)}
    assert actual == cut


def test_isolate_and_partition_cut_exactly_the_right_pairs() -> None:
    names = ["a", "b", "c", "d"]
    with PartitionProxy({n: f"127.0.0.1:{i + 1}" for i, n in enumerate(names)}) as proxy:
        expected_cuts(names, set(), proxy)
        proxy.isolate("b")
        expected_cuts(names, {("b", n) for n in "acd"} | {(n, "b") for n in "acd"}, proxy)
        proxy.heal()
        expected_cuts(names, set(), proxy)
        proxy.partition({"a", "b"}, ["c"])  # d is in no group: it reaches everyone
        expected_cuts(names, {("a", "c"), ("b", "c"), ("c", "a"), ("c", "b")}, proxy)
        proxy.cut("d", "a")
        expected_cuts(names, {("a", "c"), ("b", "c"), ("c", "a"), ("c", "b"), ("d", "a")}, proxy)
        proxy.heal()
        expected_cuts(names, set(), proxy)
        with pytest.raises(ValueError, match="more than one group"):
            proxy.partition({"a", "b"}, {"b", "c"})


def test_unknown_names_and_self_routes_are_refused(proxy: PartitionProxy) -> None:
    for call in (
        lambda: proxy.route("a", "zz"),
        lambda: proxy.routes("zz"),
        lambda: proxy.cut("zz", "a"),
        lambda: proxy.isolate("zz"),
        lambda: proxy.partition({"a"}, {"zz"}),
        lambda: proxy.is_cut("a", "zz"),
        lambda: proxy.bytes_forwarded("zz", "b"),
    ):
        with pytest.raises(KeyError, match=r"unknown node 'zz'; the proxy knows \['a', 'b'\]"):
            call()
    with pytest.raises(ValueError, match="itself"):
        proxy.route("a", "a")


def test_a_target_that_is_down_gets_its_connections_closed() -> None:
    with socket.socket() as down:
        down.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        proxy = PartitionProxy({"a": "127.0.0.1:1", "b": f"127.0.0.1:{down.getsockname()[1]}"})
        with proxy:
            assert closed_at_once(proxy.route("a", "b"))


def proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("partition-proxy-")]


def test_close_leaves_no_thread_and_no_listening_port(echo: dict[str, EchoServer]) -> None:
    before = set(proxy_threads())
    proxy = PartitionProxy({name: s.address for name, s in echo.items()})
    routes = [proxy.route("a", "b"), proxy.route("b", "a")]
    assert len(set(proxy_threads()) - before) == 1
    open_conn = dial(routes[0])
    with open_conn:
        open_conn.sendall(b"hi")
        assert recv_exactly(open_conn, 2) == b"hi"
        proxy.close()
        assert closed_by_peer(open_conn)
    assert set(proxy_threads()) == before
    for route in routes:
        with pytest.raises(ConnectionRefusedError):
            dial(route).close()
    proxy.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        proxy.cut("a", "b")


# -- a real cluster -----------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[tuple[PartitionProxy, dict[str, Node]]]:
    ids = ["n1", "n2", "n3"]
    real = {i: f"127.0.0.1:{p}" for i, p in zip(ids, free_ports(3), strict=True)}
    nodes: dict[str, Node] = {}
    with PartitionProxy(real) as proxy:
        try:
            for i in ids:
                peers = {i: real[i], **proxy.routes(i)}
                builder = NodeBuilder(i, real[i]).peers(peers).config(fast_config())
                nodes[i] = builder.state_machine(KeyValueStateMachine()).build()
                nodes[i].start()
            yield proxy, nodes
        finally:
            for node in nodes.values():
                node.stop()


def agreed_leader(nodes: list[Node]) -> str | None:
    """The leader all of ``nodes`` name, if it is one of them and leads."""
    leaders = {n.leader for n in nodes}
    leader = leaders.pop() if len(leaders) == 1 else None
    by_id = {n.id: n for n in nodes}
    return leader if leader in by_id and by_id[leader].is_leader else None


def test_isolating_the_leader_of_a_real_tcp_cluster(cluster: tuple[PartitionProxy, dict[str, Node]]) -> None:
    proxy, nodes = cluster
    old = wait_until(lambda: agreed_leader(list(nodes.values())), 10, what="a first leader")
    others = [n for i, n in nodes.items() if i != old]
    # the nodes really talk through the proxy: the leader dials each follower and back
    for other in others:
        wait_until(
            lambda o=other.id: proxy.bytes_forwarded(old, o) and proxy.bytes_forwarded(o, old),
            DEADLINE,
            what=f"traffic between {old} and {other.id} through the proxy",
        )
    started = time.monotonic()
    proxy.isolate(old)
    isolated = {(s, d): proxy.bytes_forwarded(s, d) for s in nodes for d in nodes if old in (s, d) and s != d}
    new = wait_until(
        lambda: (leader := agreed_leader(others)) != old and leader,
        10,
        what=f"the nodes other than {old} to elect a new leader",
    )
    print(f"\nisolated {old}: {new} led the others after {time.monotonic() - started:.2f}s")
    wait_until(lambda: not nodes[old].is_leader, 10, what=f"{old} to step down (check_quorum)")
    print(f"{old} stepped down after {time.monotonic() - started:.2f}s")
    assert {pair: proxy.bytes_forwarded(*pair) for pair in isolated} == isolated, "a cut pair carried bytes"
    proxy.heal()
    started = time.monotonic()
    leader = wait_until(lambda: agreed_leader(list(nodes.values())), 10, what="one leader after healing")
    print(f"healed: all three agreed on {leader} after {time.monotonic() - started:.2f}s")
    nodes[leader].submit(set_command("k", "v"), timeout=5).result(timeout=10)
    machines = [n.state_machine for n in nodes.values()]
    assert all(isinstance(m, KeyValueStateMachine) for m in machines)
    wait_until(
        lambda: all(m.data.get("k") == "v" for m in machines),  # type: ignore[attr-defined]
        10,
        what="the command applied on every node, the old leader included",
    )


def test_free_ports_are_distinct_bindable_and_outside_the_kernels_own_range() -> None:
    # A port the kernel hands out on its own (bind(0), an outgoing
    # connection) could be given to a proxy listener in the moment before
    # the node binds it: free_ports picks from below that range.
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except OSError:
        pytest.skip("the kernel does not say which ports it hands out (not Linux)")
    assert all(port < low for port in ports)
    with socket.socket() as s:  # what bind(0) gives is in that range
        s.bind(("127.0.0.1", 0))
        assert s.getsockname()[1] >= low
