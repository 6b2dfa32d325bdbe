"""The one canonical JSON encoding used for every digested document (manifest, config, index).

Compact separators, UTF-8, no ASCII escaping, key order as the caller built the dict (each
document fixes its own order, as Go's encoding/json does from struct field order). Parsing is
bounded and refuses duplicate keys, so two readers can never disagree about a document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from builder.errors import ImageError
from builder.image.digest import Digest

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def dump_canonical(obj: Mapping[str, Any]) -> bytes:
    """Encode `obj` with compact separators as UTF-8."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def load_object(data: bytes | str, what: str, error: type[ImageError]) -> dict[str, Any]:
    """Parse a JSON object, raising `error` naming `what` on malformed input or a non-object."""
    try:
        obj = json.loads(data, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError) as err:
        raise error(f"{what} is not valid JSON: {err}") from None
    if not isinstance(obj, dict):
        raise error(f"{what} is not a JSON object")
    if _SURROGATE_ESCAPE.search(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")):
        # "\udcff" alone is valid JSON but no Unicode text: it could never be written back.
        try:
            dump_canonical(obj)
        except UnicodeEncodeError:
            raise error(f"{what} holds a lone UTF-16 surrogate (\\ud800-\\udfff): not Unicode text") from None
    return obj


def string_map(value: Any, what: str, error: type[ImageError]) -> dict[str, str]:
    """A JSON object of strings (null reads as empty), as labels and annotations are."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise error(f"{what} must be an object of strings")
    return dict(value)


def string_list(value: Any, what: str, error: type[ImageError]) -> tuple[str, ...]:
    """A JSON array of strings (null reads as empty), as Env/Cmd/Entrypoint are."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise error(f"{what} must be an array of strings")
    return tuple(value)


class CanonicalDocument:
    """Shared by Manifest, Index and ImageConfig: bytes and digest from `to_json()`.

    A document parsed from elsewhere keeps the bytes it came as (`raw`), so that its digest is
    the one its producer computed; a derived document is encoded canonically.
    """

    __slots__ = ()
    raw: bytes | None

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The canonical bytes (or, for a parsed document, the bytes it was parsed from)."""
        if self.raw is not None:
            return self.raw
        return dump_canonical(self.to_json())

    @property
    def digest(self) -> Digest:
        return Digest.from_bytes(self.to_bytes())
