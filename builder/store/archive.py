"""Save images to an archive or a layout directory; load them from either.

Formats (`FORMATS`): `oci-archive` (the default), `oci-dir` (an OCI layout directory, what
skopeo calls `oci:DIR`) and `docker-archive` (`docker save`'s format, `docker_archive`). An
archive may go to a stream (stdout) and be loaded from one (stdin, spooled to a scratch file
in the store's temp dir first, since a tar's index is needed before its blobs; docker load
does the same). `load` tells a docker archive from an OCI one by its `manifest.json`.

An OCI archive is a tar of an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/*`),
what skopeo calls `oci-archive:`. `save` names each image in index.json by its full reference
(`docker.io/library/app:v1`), so `skopeo inspect oci-archive:FILE:docker.io/library/app:v1`
finds it. `load` treats its input as hostile: it never extracts the tar; only the three kinds
of entries above are read, links and duplicates are refused (in a directory, any symlink below
the input; `_layout_source`), every blob streams through a `BlobWriter` that checks the
descriptor's digest and size, every manifest, index and config is size-capped and parsed, the
walk of nested indexes is bounded (`_copier.Copier`), and names are set only after every blob of
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
import shutil
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from builder._fs import atomic_dir, atomic_file, remove_tree
from builder.errors import (
    ImageError,
    ImageNotFound,
    InvalidManifest,
    InvalidReference,
    LayoutInvalid,
    SizeMismatch,
    UsageError,
)
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.index import MAX_NESTED_INDEXES, Index
from builder.image.mediatypes import ANNOTATION_REF_NAME, INDEXES, MANIFESTS, OCI_LAYOUT_VERSION
from builder.image.reference import Reference
from builder.store import docker_archive
from builder.store._copier import MAX_LOAD_DESCRIPTORS as MAX_LOAD_DESCRIPTORS  # re-exported
from builder.store._copier import Copier
from builder.store._layout_source import DirSource, LayoutSource, TarSource
from builder.store.layout import LAYOUT_FILE, MAX_DOCUMENT_BYTES, Store
from builder.store.refs import INDEX_FILE

log = logging.getLogger(__name__)

_TAG_ONLY = re.compile(r"^[\w][\w.-]{0,127}$")
_COPY_CHUNK = 1 << 20
FORMATS = ("oci-archive", "docker-archive", "oci-dir")
STDIN = Path("<stdin>")  # how messages name an archive read from stdin


# -- save -----------------------------------------------------------------------------------


def save(
    store: Store,
    names: Sequence[str],
    out: str | os.PathLike[str] | IO[bytes],
    *,
    fmt: str = "oci-archive",
) -> None:
    """Write the named images in format `fmt` to `out`: a path (temp file or dir, then rename) or
    a binary stream (stdout; an archive format only).

    Blobs are streamed from the store through verifying readers, so a corrupt store blob
    fails the save instead of ending up in the archive. The GC lock is held shared while they
    are read, so an `rmi` meanwhile cannot free them half-way.
    """
    if not names:
        raise UsageError("save needs at least one image name")
    if fmt not in FORMATS:
        raise UsageError(f"unknown archive format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    if fmt == "oci-dir":
        if not isinstance(out, (str, os.PathLike)):
            raise UsageError("--format oci-dir writes a directory, not a stream", hint="give one with -o DIR")
        if os.path.lexists(out):
            raise UsageError(f"{os.fspath(out)} already exists", hint="give a new directory with -o")
    with store.gc_lock(exclusive=False), _output(out, directory=fmt == "oci-dir") as target:
        if fmt == "docker-archive":
            assert not isinstance(target, Path)
            docker_archive.save(store, names, target)
        elif isinstance(target, Path):
            _save_dir(store, names, target)
        else:
            _save(store, names, target)


@contextmanager
def _output(out: str | os.PathLike[str] | IO[bytes], *, directory: bool) -> Iterator[IO[bytes] | Path]:
    if not isinstance(out, (str, os.PathLike)):
        yield out
    elif directory:
        with atomic_dir(out) as staging:
            yield staging
    else:
        with atomic_file(out) as f:
            yield f


def _collect(store: Store, names: Sequence[str]) -> tuple[Index, dict[Digest, int]]:
    """index.json naming each image, and every blob the images reach (digest -> size)."""
    entries: list[Descriptor] = []
    blobs: dict[Digest, int] = {}
    for name in names:
        desc = store.resolve(name)
        ref_name = _saved_name(store, name, desc)
        entries.append(desc.with_annotations({**desc.annotations, ANNOTATION_REF_NAME: ref_name}))
        _walk(store, desc, blobs)
    return Index(tuple(entries)), blobs


def _save(store: Store, names: Sequence[str], out: IO[bytes]) -> None:
    index, blobs = _collect(store, names)
    # Stream mode ("w|"): it never seeks or asks tell(), so stdout and pipes work; same bytes.
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
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


def _save_dir(store: Store, names: Sequence[str], root: Path) -> None:
    """An OCI layout directory, as skopeo's `oci:DIR` (copies, not links into the store)."""
    index, blobs = _collect(store, names)
    (root / LAYOUT_FILE).write_text(json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    (root / INDEX_FILE).write_bytes(index.to_bytes())
    for digest in sorted(blobs):
        path = root / "blobs" / digest.algorithm / digest.hex
        path.parent.mkdir(parents=True, exist_ok=True)
        with store.blobs.open(digest, expected_size=blobs[digest]) as blob, open(path, "wb") as f:
            shutil.copyfileobj(blob, f, _COPY_CHUNK)


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


def load(
    store: Store,
    source: str | os.PathLike[str] | IO[bytes],
    *,
    name: str | None = None,
    label: str | None = None,
) -> list[str]:
    """Load every named image of an OCI archive, a docker archive, an OCI layout dir or a stream
    holding an archive (`label` names a stream in messages, default `<stdin>`); returns the
    names set.

    Nothing is named unless every blob of every image verified; blobs written before a failure
    are unreachable and go at the next gc.
    """
    with _opened(store, source, label) as (src, path), store.gc_lock(exclusive=False):
        if isinstance(src, TarSource) and src.is_docker_archive:
            plan = docker_archive.load_images(store, src, name)
        else:
            plan = _plan(src, path, name)
            copier = Copier(store, src, path)
            for _, desc in plan:
                copier.copy_image(desc)
        for ref_name, desc in plan:
            store.refs.set(ref_name, desc)
    return [n for n, _ in plan]


@contextmanager
def _opened(
    store: Store, source: str | os.PathLike[str] | IO[bytes], label: str | None = None
) -> Iterator[tuple[LayoutSource, Path]]:
    spool: Path | None = None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            src: LayoutSource = DirSource(path)
        elif path.is_file():
            src = TarSource(path)
        else:
            raise UsageError(f"{path} does not exist")
    else:
        path = Path(label) if label else STDIN
        spool = store.scratch_dir("load-")
        try:
            with open(spool / "archive", "wb") as f:
                shutil.copyfileobj(source, f, _COPY_CHUNK)
            src = TarSource(path, file=spool / "archive")
        except BaseException:
            remove_tree(spool)
            raise
    try:
        yield src, path
    finally:
        src.close()
        if spool is not None:
            remove_tree(spool)


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
        if not stem:  # from stdin: no file name to take the repository from
            raise UsageError(
                f"the archive names an image only by its tag {ref_name!r}", hint="give it a name with --name"
            )
        repo = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("._-") or "image"
        return str(Reference.parse(f"{repo}:{ref_name}"))
    return str(Reference.parse(ref_name))


def _strip(desc: Descriptor) -> Descriptor:
    return desc.with_annotations({k: v for k, v in desc.annotations.items() if k != ANNOTATION_REF_NAME})
