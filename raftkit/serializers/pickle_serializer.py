"""A pickle serializer, for arbitrary Python objects between trusted nodes."""

from __future__ import annotations

import pickle
from typing import Any

from raftkit.errors import CodecError, SerializationError
from raftkit.serializers.base import Serializer

# Fixed rather than HIGHEST_PROTOCOL, so nodes on different Python versions
# read each other's logs and snapshots.
_PROTOCOL = 5


class PickleSerializer(Serializer):
    """pickle (protocol 5): encodes almost any Python object.

    NOT safe for untrusted input: unpickling attacker-chosen bytes runs
    attacker-chosen code. Use it only over authenticated links (shared
    password or mutual TLS); the node builder refuses it over plain TCP.

    Round-trips whatever pickle does (values equal after decoding, types
    kept), provided every node can import the classes involved.
    """

    name = "pickle"
    safe_for_untrusted = False

    def dumps(self, obj: Any) -> bytes:
        try:
            return pickle.dumps(obj, protocol=_PROTOCOL)
        except Exception as exc:
            # Pickling runs objects' own __reduce__/__getstate__, which may fail
            # any way they like. pickle's messages name the culprit ("cannot
            # pickle '_thread.lock' object", "Can't pickle <function <lambda>>").
            raise SerializationError(
                f"PickleSerializer cannot encode a value of type {type(obj).__name__}: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        try:
            return pickle.loads(data)
        except Exception as exc:
            # Unpickling runs arbitrary reconstructors, so malformed input can
            # fail with any exception type; the contract promises CodecError.
            raise CodecError(f"malformed pickle data ({type(exc).__name__}: {exc})") from exc
