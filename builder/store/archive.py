"""Save images to an OCI archive, load them from an OCI archive or an OCI layout directory.

An OCI archive is a tar of an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/*`),
what skopeo calls `oci-archive:`. `save` names each image in index.json by its full reference
(`docker.io/library/app:v1`), so `skopeo inspect oci-archive:FILE:docker.io/library/app:v1`
finds it. `load` treats its input as hostile: it never extracts the tar; only the three kinds
of entries above are read, links and duplicates are refused (in a directory, any symlink below
the input; `_layout_source`), every blob streams through a `BlobWriter` that checks the
descriptor's digest and size, every manifest, index and config is size-capped and parsed, the
walk of nested indexes is bounded (`_Copier`), and names are set only after every blob of
every image arrived intact and valid, so a corrupt or hostile input registers nothing.

Names on load: a `ref.name` that is a full or familiar reference is normalised
(`app:v1` -> `docker.io/library/app:v1`); a bare tag (what `skopeo copy ... oci:DIR:v1` writes)
becomes `docker.io/library/<stem>:<tag>`, `<stem>` being the directory or archive name without
extension, lower-cased; an explicit `name` overrides both when the input holds one image.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from builder._fs import atomic_file
from builder.errors import (
    ImageError,
    ImageNotFound,
    InvalidManifest,
    InvalidReference,
    LayoutInvalid,
    SizeMismatch,
    UsageError,
)
from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.index import MAX_NESTED_INDEXES, Index
from builder.image.manifest import Manifest
from builder.image.mediatypes import ANNOTATION_REF_NAME, CONFIGS, INDEXES, MANIFESTS, OCI_LAYOUT_VERSION
from builder.image.reference import Reference
from builder.store._layout_source import DirSource, LayoutSource, TarSource
from builder.store.layout import LAYOUT_FILE, MAX_DOCUMENT_BYTES, Store
from builder.store.refs import INDEX_FILE

log = logging.getLogger(__name__)

_TAG_ONLY = re.compile(r"^[\w][\w.-]{0,127}$")
_COPY_CHUNK = 1 << 20
# Descriptors one load may meet (index entries, configs, layers, duplicates included): a
# bound on the work a hostile graph can ask for; 200 images of 500 layers each fit.
MAX_LOAD_DESCRIPTORS = 100_000
_Doc = TypeVar("_Doc", Index, Manifest, ImageConfig)


# -- save -----------------------------------------------------------------------------------


def save(store: Store, names: Sequence[str], out: str | os.PathLike[str]) -> None:
    """Write the named images as an OCI archive at `out` (temp file, then rename).

    Blobs are streamed from the store through verifying readers, so a corrupt store blob
    fails the save instead of ending up in the archive. The GC lock is held shared while they
    are read, so an `rmi` meanwhile cannot free them half-way.
    """
    if not names:
        raise UsageError("save needs at least one image name")
    with store.gc_lock(exclusive=False):
        _save(store, names, out)


def _save(store: Store, names: Sequence[str], out: str | os.PathLike[str]) -> None:
    entries: list[Descriptor] = []
    blobs: dict[Digest, int] = {}
    for name in names:
        desc = store.resolve(name)
        ref_name = _saved_name(store, name, desc)
        entries.append(desc.with_annotations({**desc.annotations, ANNOTATION_REF_NAME: ref_name}))
        _walk(store, desc, blobs)
    index = Index(tuple(entries))
    with atomic_file(out) as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, LAYOUT_FILE, json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}).encode())
        _add_bytes(tar, INDEX_FILE, index.to_bytes())
        for d in ("blobs", "blobs/sha256"):
            tar.addfile(_info(d, 0, tarfile.DIRTYPE))
        for digest in sorted(blobs):
            size = blobs[digest]
            with store.blobs.open(digest, expected_size=size) as blob:
                tar.addfile(_info(f"blobs/{digest.algorithm}/{digest.hex}", size), blob)
                if blob.read(1):  # also runs the EOF digest check addfile stops short of
                    raise SizeMismatch(f"blob {digest} is longer than {size} bytes")


def _saved_name(store: Store, name: str, desc: Descriptor) -> str:
    try:
        full = str(Reference.parse(name))
    except InvalidReference:
        full = ""
    if full and store.refs.get(full) == desc:
        return full
    # An ID or digest: use a name that points there, if any.
    return next((n for n, d in store.refs.list() if d.digest == desc.digest), full or name)


def _walk(store: Store, root: Descriptor, out: dict[Digest, int]) -> None:
    """Every blob of the image `root` present in the store (iterative, each digest once)."""
    stack: list[tuple[Descriptor, int]] = [(root, 1)]
    while stack:
        desc, depth = stack.pop()
        if desc.digest in out:
            continue
        out[desc.digest] = desc.size
        if desc.media_type in INDEXES:
            if depth > MAX_NESTED_INDEXES:
                raise InvalidManifest(
                    f"image index {desc.digest} is nested more than {MAX_NESTED_INDEXES} deep"
                )
            children = store.read_index(desc).manifests
            stack.extend((c, depth + 1) for c in reversed(children) if store.blobs.has(c.digest))
        elif desc.media_type in MANIFESTS:
            manifest = store.read_manifest(desc)
            for blob in (manifest.config, *manifest.layers):
                out[blob.digest] = blob.size


def _info(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    # Fixed metadata so the same images give the same archive bytes.
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


# -- load -----------------------------------------------------------------------------------


def load(store: Store, source: str | os.PathLike[str], *, name: str | None = None) -> list[str]:
    """Load every named image of an OCI archive or layout dir; returns the names set.

    Nothing is named unless every blob of every image verified; blobs written before a failure
    are unreachable and go at the next gc.
    """
    path = Path(source)
    if path.is_dir():
        src: LayoutSource = DirSource(path)
    elif path.is_file():
        src = TarSource(path)
    else:
        raise UsageError(f"{path} does not exist")
    try:
        plan = _plan(src, path, name)
        with store.gc_lock(exclusive=False):
            copier = _Copier(store, src, path)
            for _, desc in plan:
                copier.copy_image(desc)
            for ref_name, desc in plan:
                store.refs.set(ref_name, desc)
    finally:
        src.close()
    return [n for n, _ in plan]


def _plan(src: LayoutSource, path: Path, override: str | None) -> list[tuple[str, Descriptor]]:
    layout = src.read_small(LAYOUT_FILE, 4096)
    if layout is None:
        raise LayoutInvalid(f"{path} is not an OCI image layout: no {LAYOUT_FILE}")
    try:
        version = json.loads(layout).get("imageLayoutVersion")
    except (ValueError, AttributeError):
        version = None
    if not isinstance(version, str):
        raise LayoutInvalid(f"{path}: {LAYOUT_FILE} has no imageLayoutVersion")
    data = src.read_small(INDEX_FILE, MAX_DOCUMENT_BYTES)
    if data is None:
        raise LayoutInvalid(f"{path} is not an OCI image layout: no {INDEX_FILE}")
    try:
        index = Index.from_bytes(data)
    except ImageError as err:
        raise LayoutInvalid(f"{path}: {INDEX_FILE} is invalid: {err}") from None
    entries = [d for d in index.manifests if d.media_type in MANIFESTS | INDEXES]
    if override is not None:
        if len(entries) != 1:
            raise UsageError(
                f"{path} holds {len(entries)} images; a name can be given only for one",
                hint="load without a name: each image keeps its own",
            )
        return [(str(Reference.parse(override)), _strip(entries[0]))]
    plan = []
    for desc in entries:
        ref_name = desc.annotations.get(ANNOTATION_REF_NAME)
        if not ref_name:
            log.warning("%s: skipping unnamed image %s", path, desc.digest)
            continue
        plan.append((_normalise_name(ref_name, src.stem), _strip(desc)))
    if not plan:
        raise ImageNotFound(f"{path} holds no named image", hint="pass a name for the image")
    return plan


def _normalise_name(ref_name: str, stem: str) -> str:
    if "/" not in ref_name and ":" not in ref_name and "@" not in ref_name and _TAG_ONLY.match(ref_name):
        repo = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("._-") or "image"
        return str(Reference.parse(f"{repo}:{ref_name}"))
    return str(Reference.parse(ref_name))


def _strip(desc: Descriptor) -> Descriptor:
    return desc.with_annotations({k: v for k, v in desc.annotations.items() if k != ANNOTATION_REF_NAME})


class _Copier:
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
