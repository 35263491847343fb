"""SyncObj over the real socket transports on 127.0.0.1, when they are
installed: the builder's default (plain TCP) and password (encrypted TCP,
which also admits pickle) paths."""

from __future__ import annotations

import socket
import threading

import pytest

from raftkit import SyncObj, SyncObjConf, replicated
from raftkit.testing.cluster import fast_conf, wait_until

pytest.importorskip("raftkit.transports.tcp")


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Counter(SyncObj):
    def __init__(self, address: str, partners: list[str], conf: SyncObjConf) -> None:
        super().__init__(address, partners, conf)
        self.__value = 0

    @replicated
    def inc(self) -> int:
        self.__value += 1
        return self.__value

    def get(self) -> int:
        return self.__value


@pytest.mark.parametrize(
    ("options", "transport"),
    [({}, "TcpTransport"), ({"password": "s3cret", "serializer": "pickle"}, "EncryptedTcpTransport")],
)
def test_three_nodes_over_tcp(options: dict[str, str], transport: str) -> None:
    if "password" in options:
        pytest.importorskip("raftkit.transports.encrypted")
    addresses = [f"127.0.0.1:{p}" for p in free_ports(3)]
    nodes = [Counter(a, [p for p in addresses if p != a], fast_conf(**options)) for a in addresses]
    try:
        assert type(nodes[0].get_node().transport).__name__ == transport
        assert nodes[0].wait_ready(10)
        assert [n.inc(sync=True, timeout=10) for n in nodes] == [1, 2, 3]
        wait_until(lambda: all(n.get() == 3 for n in nodes), what="3 on every node")
    finally:
        for n in nodes:
            n.destroy()
    # No node thread, and no executor thread a transport's loop started.
    wait_until(
        lambda: not [t for t in threading.enumerate() if t.name.startswith(("raftkit-", "asyncio_"))],
        what="every thread to end",
    )
