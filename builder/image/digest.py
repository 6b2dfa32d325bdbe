"""Content digests (`sha256:<hex>`), as the OCI image spec defines them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from builder.errors import InvalidDigest

_HEX = {"sha256": re.compile(r"^[a-f0-9]{64}$"), "sha512": re.compile(r"^[a-f0-9]{128}$")}


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """An algorithm and its lowercase hex value; `str()` gives `sha256:<hex>`."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        algorithm, sep, value = text.partition(":")
        pattern = _HEX.get(algorithm)
        if not sep or pattern is None or not pattern.match(value):
            raise InvalidDigest(f"invalid digest {text!r}", hint="expected sha256:<64 lowercase hex digits>")
        return cls(algorithm, value)

    @classmethod
    def from_bytes(cls, data: bytes) -> Digest:
        return cls("sha256", hashlib.sha256(data).hexdigest())

    @classmethod
    def from_hash(cls, hasher: hashlib._Hash) -> Digest:
        return cls(hasher.name, hasher.hexdigest())

    @classmethod
    def is_valid(cls, text: str) -> bool:
        try:
            cls.parse(text)
        except InvalidDigest:
            return False
        return True

    @property
    def short(self) -> str:
        """The 12-hex-digit form `docker images` shows."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"
