"""Decompression bombs and other hostile images, made by hand for the hostile tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from typing import Protocol

import zstandard

from builder.image.config import History, ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.manifest import Manifest
from builder.image.mediatypes import OCI_LAYER_GZIP, OCI_LAYER_ZSTD
from builder.image.reference import Reference
from builder.store.layout import Store

CREATED = "1970-01-01T00:00:00Z"
_ZEROS = bytes(1 << 20)


class _Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


def zeros_tar(size: int, write: _Sink) -> Digest:
    """Stream a tar holding one file of `size` zero bytes into `write`; returns its sha256."""
    h = hashlib.sha256()

    def put(data: bytes) -> None:
        h.update(data)
        write.write(data)

    info = tarfile.TarInfo("zeros")
    info.size = size
    put(info.tobuf(tarfile.PAX_FORMAT))
    left = size
    while left:
        put(_ZEROS[: min(left, len(_ZEROS))])
        left -= min(left, len(_ZEROS))
    put(bytes(-size % 512) + bytes(1024))
    return Digest("sha256", h.hexdigest())


def zstd_bomb(size: int) -> tuple[bytes, Digest]:
    """(zstd blob, diff_id) of a tar of `size` zeros: a few kB for tens of MiB."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False) as w:
        diff_id = zeros_tar(size, w)
    return out.getvalue(), diff_id


def gzip_bomb(size: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as w:
        zeros_tar(size, w)
    return out.getvalue()


def add_layer_image(store: Store, name: str, blob: bytes, diff_id: Digest, *, gz: bool = False) -> Descriptor:
    """Name an image of the one layer `blob` whose config says `diff_id`; its layer descriptor."""
    digest, size = store.blobs.put(blob)
    layer = Descriptor(OCI_LAYER_GZIP if gz else OCI_LAYER_ZSTD, digest, size)
    config = ImageConfig.empty(Platform("linux", "amd64"), CREATED).with_layer(diff_id, History(CREATED, "x"))
    manifest = Manifest(store.put_config(config), (layer,))
    store.refs.set(str(Reference.parse(name)), store.put_manifest(manifest))
    return layer
