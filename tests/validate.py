"""`validate_image(store, name)`: ggcr's `validate`, for every test that produces an image.

Recomputes every blob's digest and size, decompresses every layer (gzip, zstd or plain tar)
and checks its sha256 against the config's diff_ids in order, and checks media types. Raises
AssertionError with details; returns nothing.
"""

from __future__ import annotations

import gzip
import hashlib
from typing import Any

import zstandard

from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor
from builder.image.manifest import Manifest
from builder.image.mediatypes import CONFIGS, DOCKER_MANIFEST, INDEXES, LAYER_COMPRESSION, MANIFESTS
from builder.store import fsck
from builder.store.layout import Store

_CHUNK = 1 << 20


def _hash_file(path: Any) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def _check_blob(store: Store, desc: Descriptor, what: str) -> None:
    path = store.blobs.path(desc.digest)
    assert path.is_file(), f"{what} {desc.digest}: blob missing at {path}"
    digest, size = _hash_file(path)
    assert digest == str(desc.digest), f"{what}: blob {desc.digest} hashes to {digest}"
    assert size == desc.size, f"{what} {desc.digest}: descriptor size {desc.size}, blob has {size}"


def _diff_id(store: Store, layer: Descriptor) -> str:
    compression = LAYER_COMPRESSION.get(layer.media_type)
    assert compression is not None, f"layer {layer.digest}: unknown layer media type {layer.media_type}"
    h = hashlib.sha256()
    with open(store.blobs.path(layer.digest), "rb") as raw:
        if compression == "gzip":
            stream: Any = gzip.GzipFile(fileobj=raw)
        elif compression == "zstd":
            stream = zstandard.ZstdDecompressor().stream_reader(raw)
        else:
            stream = raw
        while chunk := stream.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _validate_manifest(store: Store, desc: Descriptor) -> None:
    _check_blob(store, desc, "manifest")
    manifest = Manifest.from_bytes(store.blobs.path(desc.digest).read_bytes())
    assert manifest.media_type == desc.media_type, (
        f"manifest {desc.digest}: descriptor says {desc.media_type}, manifest says {manifest.media_type}"
    )
    assert manifest.config.media_type in CONFIGS, (
        f"manifest {desc.digest}: config media type {manifest.config.media_type}"
    )
    if manifest.media_type == DOCKER_MANIFEST:
        assert manifest.config.media_type.startswith("application/vnd.docker"), (
            "docker manifest with OCI config"
        )
    _check_blob(store, manifest.config, "config")
    config = ImageConfig.from_bytes(store.blobs.path(manifest.config.digest).read_bytes())
    assert len(config.diff_ids) == len(manifest.layers), (
        f"manifest {desc.digest}: {len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids"
    )
    for i, (layer, diff_id) in enumerate(zip(manifest.layers, config.diff_ids, strict=True)):
        _check_blob(store, layer, f"layer {i}")
        actual = _diff_id(store, layer)
        assert actual == str(diff_id), (
            f"layer {i} {layer.digest}: uncompressed sha256 {actual}, diff_id {diff_id}"
        )
    non_empty = [h for h in config.history if not h.empty_layer]
    if config.history:
        assert len(non_empty) == len(config.diff_ids), (
            f"config {manifest.config.digest}: {len(non_empty)} non-empty history entries, {len(config.diff_ids)} layers"
        )


def validate_image(store: Store, name: str) -> None:
    """Check everything about image `name` in `store` that can be recomputed."""
    desc = store.resolve(name)
    if desc.media_type in INDEXES:
        _check_blob(store, desc, "index")
        index = store.read_index(desc)
        assert index.manifests, f"index {desc.digest} is empty"
        for child in index.manifests:
            assert child.media_type in MANIFESTS, f"index {desc.digest}: child media type {child.media_type}"
            _validate_manifest(store, child)
    else:
        assert desc.media_type in MANIFESTS, f"{name}: unexpected media type {desc.media_type}"
        _validate_manifest(store, desc)


def assert_store_ok(store: Store) -> None:
    """The store checker (`sealer fsck`) finds nothing wrong: every name whole, no leftovers."""
    report = fsck.check(store)
    assert report.ok, [p.message for p in report.problems] + [f"{report.leftovers} leftovers"]
