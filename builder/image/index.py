"""OCI image indexes (and Docker manifest lists): one manifest per platform.

The same type encodes `index.json` of an OCI image layout, whose entries carry the
`org.opencontainers.image.ref.name` annotation instead of a platform.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from builder.errors import ImageNotFound, InvalidManifest, UnsupportedMediaType
from builder.image._json import CanonicalDocument, load_object, string_map
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.mediatypes import INDEXES, MANIFESTS, OCI_INDEX

# Indexes may list indexes (OCI image-spec image-index.md); real images nest one or two deep.
# Walkers stop past this many nested indexes, so a chain of 3000 costs nothing.
MAX_NESTED_INDEXES = 8


@dataclass(frozen=True, slots=True)
class Index(CanonicalDocument):
    """An image index: descriptors of manifests (or nested indexes), plus annotations."""

    manifests: tuple[Descriptor, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    media_type: str = OCI_INDEX
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.media_type not in INDEXES:
            raise UnsupportedMediaType(f"unsupported index media type {self.media_type!r}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [m.to_json() for m in self.manifests],
        }
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out

    def descriptor(self) -> Descriptor:
        data = self.to_bytes()
        return Descriptor(self.media_type, Digest.from_bytes(data), len(data))

    @classmethod
    def from_bytes(cls, data: bytes) -> Index:
        obj = load_object(data, "image index", InvalidManifest)
        if obj.get("schemaVersion") != 2:
            raise InvalidManifest(f"image index has schemaVersion {obj.get('schemaVersion')!r}, expected 2")
        media_type = obj.get("mediaType") or OCI_INDEX
        if media_type in MANIFESTS:
            raise InvalidManifest(f"expected an image index, found a manifest ({media_type})")
        if media_type not in INDEXES:
            raise UnsupportedMediaType(f"unsupported index media type {media_type!r}")
        manifests = obj.get("manifests")
        if manifests is None:
            manifests = []
        if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
            raise InvalidManifest("image index manifests must be an array of descriptors")
        return cls(
            tuple(Descriptor.from_json(m) for m in manifests),
            string_map(obj.get("annotations"), "image index annotations", InvalidManifest),
            media_type,
            bytes(data),
        )

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return tuple(m.platform for m in self.manifests if m.platform is not None)

    def select(self, platform: Platform) -> Descriptor:
        """The manifest for `platform`; ImageNotFound listing the platforms there are."""
        candidates = [m for m in self.manifests if m.platform is not None and m.platform.matches(platform)]
        # Prefer an exact variant match (linux/arm64/v8 over linux/arm64 when asked for v8).
        exact = [m for m in candidates if m.platform == platform]
        if exact or candidates:
            return (exact or candidates)[0]
        available = ", ".join(str(p) for p in self.platforms) or "none"
        raise ImageNotFound(
            f"no manifest for platform {platform} (available: {available})",
            hint="pass --platform with one of the available platforms",
        )

    def with_manifest(self, desc: Descriptor) -> Index:
        """A new index with `desc` appended (replacing an entry for the same platform)."""
        kept = tuple(
            m for m in self.manifests if desc.platform is None or m.platform != desc.platform or m == desc
        )
        kept = tuple(m for m in kept if m != desc)
        return Index((*kept, desc), dict(self.annotations), self.media_type)

    def with_annotations(self, annotations: Mapping[str, str]) -> Index:
        return Index(self.manifests, {**self.annotations, **annotations}, self.media_type)
