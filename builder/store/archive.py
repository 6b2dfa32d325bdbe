"""Save images to an OCI archive, load them from an OCI archive or an OCI layout directory.

An OCI archive is a tar of an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/*`),
what skopeo calls `oci-archive:`. `save` names each image in index.json by its full reference
(`docker.io/library/app:v1`), so `skopeo inspect oci-archive:FILE:docker.io/library/app:v1`
finds it. `load` treats its input as hostile: it never extracts the tar; only the three kinds
of entries above are read, links and duplicates are refused, every blob streams through a
`BlobWriter` that checks the descriptor's digest and size, and names are set only after every
blob of every image arrived intact, so a corrupt input registers nothing.

Names on load: a `ref.name` that is a full or familiar reference is normalised
(`app:v1` -> `docker.io/library/app:v1`); a bare tag (what `skopeo copy ... oci:DIR:v1` writes)
becomes `docker.io/library/<stem>:<tag>`, `<stem>` being the directory or archive name without
extension, lower-cased; an explicit `name` overrides both when the input holds one image.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import stat
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, BinaryIO

from builder._fs import atomic_file
from builder.errors import (
    ImageError,
    ImageNotFound,
    InvalidReference,
    LayoutInvalid,
    SizeMismatch,
    UsageError,
)
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.index import Index
from builder.image.mediatypes import ANNOTATION_REF_NAME, INDEXES, MANIFESTS, OCI_LAYOUT_VERSION
from builder.image.reference import Reference
from builder.store.gc import gc_lock
from builder.store.layout import LAYOUT_FILE, MAX_DOCUMENT_BYTES, Store
from builder.store.refs import INDEX_FILE

log = logging.getLogger(__name__)

_BLOB_NAME = re.compile(r"^blobs/([a-z0-9]+)/([a-f0-9]+)$")
_TAG_ONLY = re.compile(r"^[\w][\w.-]{0,127}$")
_COPY_CHUNK = 1 << 20


# -- save -----------------------------------------------------------------------------------


def save(store: Store, names: Sequence[str], out: str | os.PathLike[str]) -> None:
    """Write the named images as an OCI archive at `out` (temp file, then rename).

    Blobs are streamed from the store through verifying readers, so a corrupt store blob
    fails the save instead of ending up in the archive.
    """
    if not names:
        raise UsageError("save needs at least one image name")
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


def _walk(store: Store, desc: Descriptor, out: dict[Digest, int]) -> None:
    if desc.digest in out:
        return
    if desc.media_type in INDEXES:
        out[desc.digest] = desc.size
        for child in store.read_index(desc).manifests:
            if store.blobs.has(child.digest):
                _walk(store, child, out)
    elif desc.media_type in MANIFESTS:
        out[desc.digest] = desc.size
        manifest = store.read_manifest(desc)
        for blob in (manifest.config, *manifest.layers):
            out[blob.digest] = blob.size
    else:
        out[desc.digest] = desc.size


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


class _Source:
    """Read access to an OCI layout, wherever it lives."""

    stem: str

    def read_small(self, name: str, limit: int) -> bytes | None:
        raise NotImplementedError

    def has_blob(self, digest: Digest) -> bool:
        raise NotImplementedError

    @contextlib.contextmanager
    def open_blob(self, digest: Digest) -> Iterator[tuple[IO[bytes], int]]:
        raise NotImplementedError
        yield  # pragma: no cover

    def close(self) -> None:
        pass


class _DirSource(_Source):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.stem = root.resolve().name

    def _open(self, rel: str) -> BinaryIO | None:
        # Names are fixed or built from parsed digests; O_NOFOLLOW refuses a planted symlink.
        try:
            fd = os.open(self.root / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise LayoutInvalid(
                f"{self.root / rel}: cannot open ({err.strerror}); symlinks are refused"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise LayoutInvalid(f"{self.root / rel} is not a regular file")
        return os.fdopen(fd, "rb")

    def has_blob(self, digest: Digest) -> bool:
        return os.path.lexists(self.root / "blobs" / digest.algorithm / digest.hex)

    def read_small(self, name: str, limit: int) -> bytes | None:
        f = self._open(name)
        if f is None:
            return None
        with f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise LayoutInvalid(f"{self.root / name} is larger than {limit} bytes")
        return data

    @contextlib.contextmanager
    def open_blob(self, digest: Digest) -> Iterator[tuple[IO[bytes], int]]:
        f = self._open(f"blobs/{digest.algorithm}/{digest.hex}")
        if f is None:
            raise LayoutInvalid(f"{self.root} lacks blob {digest}", hint="the layout is incomplete")
        with f:
            yield f, os.fstat(f.fileno()).st_size


class _TarSource(_Source):
    def __init__(self, path: Path) -> None:
        self.path = path
        name = path.name
        for ext in (".tar.gz", ".tgz", ".tar", ".oci"):
            if name.endswith(ext):
                name = name[: -len(ext)]
                break
        self.stem = name
        try:
            self.tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by close()
        except (tarfile.TarError, OSError) as err:
            raise LayoutInvalid(f"{path} is not a tar archive: {err}") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            for member in self.tar:
                name = member.name.removeprefix("./")
                if name not in (LAYOUT_FILE, INDEX_FILE) and not _BLOB_NAME.match(name):
                    continue  # anything else in the archive is ignored, never extracted
                if name in self.members:
                    raise LayoutInvalid(f"{path}: entry {name!r} appears twice")
                if not member.isreg():
                    raise LayoutInvalid(f"{path}: entry {name!r} is not a regular file (links are refused)")
                self.members[name] = member
        except tarfile.TarError as err:
            self.tar.close()
            raise LayoutInvalid(f"{path} is a corrupt tar archive: {err}") from None
        except BaseException:
            self.tar.close()
            raise

    def has_blob(self, digest: Digest) -> bool:
        return f"blobs/{digest.algorithm}/{digest.hex}" in self.members

    def read_small(self, name: str, limit: int) -> bytes | None:
        member = self.members.get(name)
        if member is None:
            return None
        if member.size > limit:
            raise LayoutInvalid(f"{self.path}: {name} is larger than {limit} bytes")
        f = self.tar.extractfile(member)
        assert f is not None  # regular files always have content
        with f:
            return f.read()

    @contextlib.contextmanager
    def open_blob(self, digest: Digest) -> Iterator[tuple[IO[bytes], int]]:
        member = self.members.get(f"blobs/{digest.algorithm}/{digest.hex}")
        if member is None:
            raise LayoutInvalid(f"{self.path} lacks blob {digest}", hint="the archive is incomplete")
        f = self.tar.extractfile(member)
        assert f is not None
        with f:
            yield f, member.size

    def close(self) -> None:
        self.tar.close()


def load(store: Store, source: str | os.PathLike[str], *, name: str | None = None) -> list[str]:
    """Load every named image of an OCI archive or layout dir; returns the names set.

    Nothing is named unless every blob of every image verified; blobs written before a failure
    are unreachable and go at the next gc.
    """
    path = Path(source)
    if path.is_dir():
        src: _Source = _DirSource(path)
    elif path.is_file():
        src = _TarSource(path)
    else:
        raise UsageError(f"{path} does not exist")
    try:
        plan = _plan(src, path, name)
        with gc_lock(store, exclusive=False):
            for _, desc in plan:
                _copy(store, src, desc)
            for ref_name, desc in plan:
                store.refs.set(ref_name, desc)
    finally:
        src.close()
    return [n for n, _ in plan]


def _plan(src: _Source, path: Path, override: str | None) -> list[tuple[str, Descriptor]]:
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


def _copy(store: Store, src: _Source, desc: Descriptor) -> None:
    """Copy `desc` and everything it references into the store, verifying each blob."""
    if not store.blobs.has(desc.digest):
        with src.open_blob(desc.digest) as (f, size):
            if size != desc.size:
                raise SizeMismatch(f"blob {desc.digest} is {size} bytes, its descriptor says {desc.size}")
            with store.blobs.writer(expected=desc.digest, expected_size=desc.size) as w:
                while chunk := f.read(_COPY_CHUNK):
                    w.write(chunk)
                w.commit()
    if desc.media_type in INDEXES:
        for child in store.read_index(desc).manifests:
            if not store.blobs.has(child.digest) and not src.has_blob(child.digest):
                # skopeo copies one platform of a multi-platform index unless --all.
                log.info("skipping %s: absent from the source", child.digest)
                continue
            _copy(store, src, child)
    elif desc.media_type in MANIFESTS:
        manifest = store.read_manifest(desc)
        for blob in (manifest.config, *manifest.layers):
            _copy(store, src, blob)
