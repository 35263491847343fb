"""NodeBuilder.password(..., cluster_id=...) (or the config's cluster_id)
salts the password's key: a peer of the same cluster id authenticates, one
with another id or the raftkit-wide default salt does not."""

from __future__ import annotations

import pytest

from raftkit.builder import BuildError, NodeBuilder
from raftkit.runtime.config import NodeConfig
from raftkit.testing.kv import KeyValueStateMachine
from raftkit.transports.encrypted import DEFAULT_SALT, EncryptedChannel, cluster_salt, derive_cluster_key
from raftkit.transports.framing import AuthenticationError, FrameDecoder

PASSWORD = "correct horse battery staple"


def authenticates(transport: object, salt: bytes) -> bool:
    """Whether a dialler holding the password with ``salt`` completes the
    handshake with ``transport``'s listener."""
    server = transport.server_channel()  # type: ignore[attr-defined]
    client = EncryptedChannel(derive_cluster_key(PASSWORD, salt), client_side=True, node_id="x", peer_id="a")
    try:
        for _ in range(2):
            for frame in FrameDecoder().feed(client.take_output()):
                server.open(*frame)
            for frame in FrameDecoder().feed(server.take_output()):
                client.open(*frame)
    except AuthenticationError:
        return False
    return bool(client.established and server.established)


def build(**kwargs: object) -> object:
    config = kwargs.pop("config", None)
    b = NodeBuilder("a", "127.0.0.1:0").partners([]).state_machine(KeyValueStateMachine())
    if config is not None:
        b.config(config)  # type: ignore[arg-type]
    return b.password(PASSWORD, **kwargs).build().transport  # type: ignore[arg-type]


def test_the_cluster_id_given_with_the_password_salts_the_key() -> None:
    transport = build(cluster_id="east")
    assert authenticates(transport, cluster_salt("east"))
    assert not authenticates(transport, cluster_salt("west"))
    assert not authenticates(transport, DEFAULT_SALT)


def test_the_configs_cluster_id_salts_the_key_too() -> None:
    transport = build(config=NodeConfig(cluster_id="east"))
    assert authenticates(transport, cluster_salt("east"))
    assert not authenticates(transport, DEFAULT_SALT)


def test_without_a_cluster_id_the_default_salt_still_works() -> None:
    assert authenticates(build(), DEFAULT_SALT)


def test_an_empty_cluster_id_is_refused() -> None:
    with pytest.raises(BuildError, match="cluster id"):
        NodeBuilder("a").password(PASSWORD, cluster_id="")
