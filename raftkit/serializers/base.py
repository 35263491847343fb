"""The Serializer interface: how commands and snapshots become bytes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar


class Serializer(ABC):
    """Turns application values (commands, state-machine snapshots) into bytes
    and back.

    Contract (every implementation is checked by
    ``raftkit.testing.conformance.serializer``):

    * ``name`` is a short, unique, lower-case identifier (``"msgpack"``) used
      in configuration and error messages.
    * ``safe_for_untrusted`` is True only if ``loads`` on attacker-chosen
      bytes cannot execute code or build arbitrary objects. The node builder
      refuses an unsafe serializer on an unauthenticated link, so it defaults
      to False: a plug-in must opt in.
    * ``dumps(obj)`` returns bytes such that ``loads`` gives back a value
      equal to ``obj`` (with the exact types the implementation documents).
      A value it cannot encode raises ``SerializationError`` whose message
      names the offending value's type and the serializer; nothing else
      escapes.
    * ``loads(data)`` on malformed, truncated or otherwise undecodable input
      raises ``CodecError`` and never any other exception type, so a node can
      treat bad input uniformly.
    * Instances are stateless and safe to share between threads.
    """

    name: ClassVar[str]
    safe_for_untrusted: ClassVar[bool] = False

    @abstractmethod
    def dumps(self, obj: Any) -> bytes:
        """Encode ``obj``; raise ``SerializationError`` if it cannot be."""

    @abstractmethod
    def loads(self, data: bytes) -> Any:
        """Decode ``data``; raise ``CodecError`` if it is malformed."""

    def dump_to(self, obj: Any, write: Callable[[bytes], object]) -> None:
        """Write ``dumps(obj)``'s bytes to ``write``, possibly in several
        pieces. ``obj`` must not change meanwhile (a snapshot in a forked
        child). This default writes them whole; a serializer that can
        stream a big value without building all its bytes first overrides it."""
        write(self.dumps(obj))
