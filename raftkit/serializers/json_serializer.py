"""A JSON serializer, for commands and snapshots other tools should read."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from raftkit.errors import CodecError, SerializationError
from raftkit.serializers.base import Serializer

_COMPACT = (",", ":")


class JsonSerializer(Serializer):
    """Standard JSON (RFC 8259) as UTF-8; safe for untrusted input.

    Round-trips exactly: ``None``, ``bool``, ``int``, finite ``float``,
    ``str``, ``list`` and ``dict`` with ``str`` keys.

    Lossy, by JSON's own rules: a ``tuple`` comes back as a ``list``, and
    ``int``/``float``/``bool``/``None`` dict keys come back as ``str``.
    Rejected with ``SerializationError``: ``bytes``, sets, NaN and
    infinities (not valid JSON), other dict key types and every other type.
    """

    name = "json"
    safe_for_untrusted = True

    def dumps(self, obj: Any) -> bytes:
        try:
            text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=_COMPACT, default=_reject)
            return text.encode("utf-8")
        except SerializationError:
            raise
        except UnicodeEncodeError as exc:
            raise SerializationError(
                f"JsonSerializer cannot encode a str that is not valid UTF-8 ({exc.reason})"
            ) from exc
        except (TypeError, ValueError, RecursionError) as exc:
            # json's messages name the type: "keys must be str, ..., not tuple",
            # "Out of range float values are not JSON compliant", circular refs.
            raise SerializationError(
                f"JsonSerializer cannot encode a value of type {type(obj).__name__}: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        try:
            return json.loads(data, parse_constant=_reject_constant)
        except CodecError:
            raise
        except (ValueError, RecursionError) as exc:
            # ValueError covers JSONDecodeError and UnicodeDecodeError.
            raise CodecError(f"malformed JSON ({type(exc).__name__}: {exc})") from exc


def _reject_constant(name: str) -> NoReturn:
    """Python's json reads NaN and Infinity by default; RFC 8259 has neither."""
    raise CodecError(f"malformed JSON: {name} is not a JSON value")


def _reject(obj: Any) -> NoReturn:
    """json's hook for values it has no encoding for."""
    raise SerializationError(f"JsonSerializer cannot encode a value of type {type(obj).__qualname__}")
