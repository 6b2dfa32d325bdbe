"""OCI image manifests (and Docker v2 schema 2 ones, read only as they are).

`Manifest.to_bytes()` is the canonical encoding whose sha256 is the manifest digest. A manifest
parsed with `from_bytes` keeps the bytes it came from, so its digest is the digest of what the
registry or layout held, even when another tool wrote keys in another order (ggcr's
`rawManifest`); deriving a new manifest (`with_layer`, ...) drops them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from builder.errors import InvalidManifest, UnsupportedMediaType
from builder.image._json import CanonicalDocument, load_object, string_map
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.mediatypes import (
    DOCKER_MANIFEST,
    INDEXES,
    MANIFESTS,
    OCI_MANIFEST,
)

# Layers one manifest may list. OCI sets no limit; docker stops at 127 (overlay2's depth) and an
# overlay mount's options hold ~200 lowers (builder/layers/overlay.py _MOUNT_DATA_MAX). 500 keeps
# room for images from other tools while the work per image (a diff dir and an fd per lower)
# stays far below the usual 1024 open files; 100000 layers failed with EMFILE before this cap.
MAX_LAYERS = 500

_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)


def _check_layer_count(count: int) -> None:
    if count > MAX_LAYERS:
        raise InvalidManifest(
            f"manifest lists {count} layers, more than the {MAX_LAYERS} allowed",
            hint="squash the image's layers",
        )


@dataclass(frozen=True, slots=True)
class Manifest(CanonicalDocument):
    """An image manifest: one config descriptor, ordered layer descriptors, annotations."""

    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    media_type: str = OCI_MANIFEST
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.media_type not in MANIFESTS:
            raise UnsupportedMediaType(f"unsupported manifest media type {self.media_type!r}")
        _check_layer_count(len(self.layers))

    def to_json(self) -> dict[str, Any]:
        """The manifest as a dict in canonical key order."""
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out

    def descriptor(self, platform: Platform | None = None) -> Descriptor:
        """A descriptor pointing at this manifest (as an index or index.json holds it)."""
        data = self.to_bytes()
        return Descriptor(self.media_type, Digest.from_bytes(data), len(data), {}, platform)

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse and validate an OCI or Docker v2 schema 2 manifest; keep its bytes."""
        obj = load_object(data, "manifest", InvalidManifest)
        media_type = obj.get("mediaType")
        schema = obj.get("schemaVersion")
        if schema == 1 or media_type in _SCHEMA1:
            raise InvalidManifest(
                "Docker image manifest v2 schema 1 is not supported",
                hint="re-push the image with a current docker/skopeo to convert it to schema 2",
            )
        if schema != 2:
            raise InvalidManifest(f"manifest has schemaVersion {schema!r}, expected 2")
        if media_type is None:
            # The OCI spec made mediaType optional in manifests before v1.0.2; such a manifest
            # is an OCI manifest if it has a config and layers.
            media_type = OCI_MANIFEST
        if media_type in INDEXES:
            raise InvalidManifest(f"expected an image manifest, found an index ({media_type})")
        if media_type not in MANIFESTS:
            raise UnsupportedMediaType(f"unsupported manifest media type {media_type!r}")
        if "config" not in obj or not isinstance(obj["config"], dict):
            raise InvalidManifest("manifest has no config descriptor")
        layers = obj.get("layers")
        if layers is None and media_type == DOCKER_MANIFEST:
            layers = []
        if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
            raise InvalidManifest("manifest layers must be an array of descriptors")
        _check_layer_count(len(layers))  # before parsing 100000 descriptors
        return cls(
            Descriptor.from_json(obj["config"]),
            tuple(Descriptor.from_json(x) for x in layers),
            string_map(obj.get("annotations"), "manifest annotations", InvalidManifest),
            media_type,
            bytes(data),
        )

    def with_layer(self, desc: Descriptor) -> Manifest:
        """A new manifest with `desc` appended to the layers."""
        return Manifest(self.config, (*self.layers, desc), dict(self.annotations), self.media_type)

    def with_layers(self, descs: tuple[Descriptor, ...]) -> Manifest:
        """A new manifest whose layers are exactly `descs`."""
        return Manifest(self.config, tuple(descs), dict(self.annotations), self.media_type)

    def with_annotations(self, annotations: Mapping[str, str], *, replace: bool = False) -> Manifest:
        """A new manifest with `annotations` merged in (or, with replace=True, instead)."""
        merged = dict(annotations) if replace else {**self.annotations, **annotations}
        return Manifest(self.config, self.layers, merged, self.media_type)

    def with_config(self, desc: Descriptor) -> Manifest:
        """A new manifest pointing at another config blob."""
        return Manifest(desc, self.layers, dict(self.annotations), self.media_type)
