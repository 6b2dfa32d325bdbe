"""Copy images from an untrusted OCI layout into the store (`archive.load`'s OCI half)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from builder.errors import ImageError, LayoutInvalid, SizeMismatch
from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.index import MAX_NESTED_INDEXES, Index
from builder.image.manifest import Manifest
from builder.image.mediatypes import CONFIGS, INDEXES, MANIFESTS
from builder.store._layout_source import LayoutSource
from builder.store.layout import MAX_DOCUMENT_BYTES, Store

log = logging.getLogger(__name__)

_COPY_CHUNK = 1 << 20
# Descriptors one load may meet (index entries, configs, layers, duplicates included): a
# bound on the work a hostile graph can ask for; 200 images of 500 layers each fit.
MAX_LOAD_DESCRIPTORS = 100_000
_Doc = TypeVar("_Doc", Index, Manifest, ImageConfig)


class Copier:
    """Copies images from a layout into the store, each blob verified, each document validated.

    The walk is iterative and visits each digest once (a graph of indexes that list each other
    many times is walked in linear time); indexes nest at most MAX_NESTED_INDEXES deep and one
    load meets at most MAX_LOAD_DESCRIPTORS descriptors. Manifests, indexes and configs are
    size-capped before they are copied and parsed after (a config must be an image config whose
    diff_ids match the manifest's layers), so nothing that `images`, `inspect` or a build
    cannot read gets a name.
    """

    def __init__(self, store: Store, src: LayoutSource, path: Path) -> None:
        self.store = store
        self.src = src
        self.path = path
        self.seen: set[Digest] = set()
        self.met = 0
        self.configs: dict[Digest, int] = {}  # config digest -> number of diff_ids

    def copy_image(self, root: Descriptor) -> None:
        stack: list[tuple[Descriptor, int]] = [(root, 1)]  # (descriptor, indexes down to it)
        while stack:
            desc, depth = stack.pop()
            if desc.digest in self.seen:
                continue
            self.seen.add(desc.digest)
            if desc.media_type in INDEXES:
                children = self._index(desc, depth)
                stack.extend((child, depth + 1) for child in reversed(children))
            else:
                for blob in self._manifest(desc):
                    if blob.digest not in self.seen:
                        self.seen.add(blob.digest)
                        self._blob(blob)

    def _meet(self, count: int) -> None:
        self.met += count
        if self.met > MAX_LOAD_DESCRIPTORS:
            raise LayoutInvalid(
                f"{self.path} lists more than {MAX_LOAD_DESCRIPTORS} descriptors",
                hint="load the images in several archives",
            )

    def _index(self, desc: Descriptor, depth: int) -> list[Descriptor]:
        if depth > MAX_NESTED_INDEXES:
            raise LayoutInvalid(
                f"{self.path}: image index {desc.digest} is nested more than {MAX_NESTED_INDEXES} deep"
            )
        self._document(desc, "image index")
        index = self._parse(desc, "image index", self.store.read_index)
        self._meet(len(index.manifests))
        images = [c for c in index.manifests if c.media_type in MANIFESTS | INDEXES]
        present = [c for c in images if self.store.blobs.has(c.digest) or self.src.has_blob(c.digest)]
        if not present:
            # An index may list platforms the archive lacks (skopeo copies one platform unless
            # --all), but one with none of its images is no image at all.
            raise LayoutInvalid(
                f"{self.path}: image index {desc.digest} lists {len(images)} images, none of them in the archive",
                hint="save the image again with all its platforms (skopeo copy --all)",
            )
        for child in images:
            if child not in present:
                log.info("%s: skipping %s, absent from the archive", self.path, child.digest)
        return present

    def _manifest(self, desc: Descriptor) -> tuple[Descriptor, ...]:
        """Copy and validate manifest `desc` and its config; the layers it lists."""
        self._document(desc, "manifest")
        manifest = self._parse(desc, "manifest", self.store.read_manifest)
        self._meet(1 + len(manifest.layers))
        config = manifest.config
        if config.media_type not in CONFIGS:
            raise LayoutInvalid(
                f"{self.path}: manifest {desc.digest} has a config of type {config.media_type!r}, "
                "not an image config",
                hint="sealer loads container images only",
            )
        if config.digest not in self.configs:
            self.seen.add(config.digest)
            self._document(config, "image config")
            parsed = self._parse(config, "image config", self.store.read_config)
            self.configs[config.digest] = len(parsed.diff_ids)
        if self.configs[config.digest] != len(manifest.layers):
            raise LayoutInvalid(
                f"{self.path}: manifest {desc.digest} has {len(manifest.layers)} layers, its config "
                f"{config.digest} lists {self.configs[config.digest]} diff_ids"
            )
        return manifest.layers

    def _document(self, desc: Descriptor, what: str) -> None:
        if desc.size > MAX_DOCUMENT_BYTES:
            raise LayoutInvalid(
                f"{self.path}: {what} {desc.digest} is {desc.size} bytes (limit {MAX_DOCUMENT_BYTES})"
            )
        self._blob(desc)

    def _parse(self, desc: Descriptor, what: str, read: Callable[[Descriptor], _Doc]) -> _Doc:
        try:
            return read(desc)
        except ImageError as err:
            raise LayoutInvalid(f"{self.path}: {what} {desc.digest} is invalid: {err}") from None

    def _blob(self, desc: Descriptor) -> None:
        if self.store.blobs.has(desc.digest):
            return
        with self.src.open_blob(desc.digest) as (f, size):
            if size != desc.size:
                raise SizeMismatch(
                    f"{self.path}: blob {desc.digest} is {size} bytes, its descriptor says {desc.size}"
                )
            with self.store.blobs.writer(expected=desc.digest, expected_size=desc.size) as w:
                while chunk := f.read(_COPY_CHUNK):
                    w.write(chunk)
                w.commit()
