"""Build tiny images by hand through the store API (no builder needed): tar layer(s), config,
manifest, name. Used by the store's unit and component tests."""

from __future__ import annotations

import gzip
import io
import tarfile

import zstandard

from builder.image.config import History, ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.manifest import Manifest
from builder.image.mediatypes import COMPRESSION_LAYER
from builder.image.reference import Reference
from builder.store.layout import Store

CREATED = "1970-01-01T00:00:00Z"


def make_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def add_image(
    store: Store,
    name: str,
    layers: list[dict[str, bytes]] | None = None,
    *,
    compression: str = "gzip",
    platform: Platform | None = None,
    labels: dict[str, str] | None = None,
) -> Descriptor:
    """Put an image with one layer per dict in `layers` and name it `name`; returns its descriptor."""
    platform = platform or Platform("linux", "amd64")
    config = ImageConfig.empty(platform, CREATED).with_labels(labels or {})
    manifest_layers = []
    for i, files in enumerate(layers if layers is not None else [{"hello.txt": name.encode()}]):
        tar = make_tar(files)
        blob = compress(tar, compression)
        digest, size = store.blobs.put(blob)
        manifest_layers.append(Descriptor(COMPRESSION_LAYER[compression], digest, size))
        config = config.with_layer(Digest.from_bytes(tar), History(CREATED, f"COPY layer {i}"))
    manifest = Manifest(store.put_config(config), tuple(manifest_layers))
    desc = store.put_manifest(manifest)
    store.refs.set(str(Reference.parse(name)), desc)
    return desc
