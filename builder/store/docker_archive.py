"""Docker archives: what `docker save` writes and `docker load` reads, skopeo's `docker-archive:`.

The format: a tar holding `manifest.json` (a list of `{"Config", "RepoTags", "Layers"}`, paths
inside the archive), each image's config as a file, and each layer as an uncompressed tar.
There is no OCI manifest: the loader builds one.

Save writes every layer uncompressed, as `docker save` and skopeo do: Docker's loader takes
plain or gzip layers but not zstd (sealer's default), and a plain tar is what every loader of
the format reads. A zstd or gzip layer is decompressed into a scratch file while its sha256 is
taken; that digest must equal the config's diff_id (the uncompressed digest, unchanged by the
conversion), so the archive carries exactly the layers the image names. Files are named
`<config hex>.json` and `<diff_id hex>.tar` (skopeo's naming); a layer two images share is
written once; two names of one image share one manifest.json entry.

Load (`load_images`) treats the archive as hostile, as the OCI loader does: `manifest.json`
and each config are size-capped and parsed, layer counts must match the config's diff_ids,
descriptors met are bounded, entries are read by name from the tar (never extracted; a link is
followed one hop inside the archive, `_layout_source.TarSource`), and each layer streams
(decompressed if it is gzip or zstd, as docker load accepts) through a `BlobWriter` that checks
it against its diff_id. Layers are kept uncompressed in the store (blob digest = diff_id), as
docker and podman keep them. Names are returned only after every image arrived intact; the
caller sets them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import zstandard

from builder._fs import remove_tree
from builder.errors import (
    DigestMismatch,
    ImageError,
    ImageNotFound,
    LayoutInvalid,
    SizeMismatch,
    UnsupportedMediaType,
    UsageError,
)
from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.manifest import Manifest
from builder.image.mediatypes import INDEXES, LAYER_COMPRESSION, OCI_CONFIG, OCI_LAYER_TAR
from builder.image.reference import Reference
from builder.store._copier import MAX_LOAD_DESCRIPTORS
from builder.store._layout_source import DOCKER_MANIFEST_FILE, TarSource
from builder.store.layout import MAX_DOCUMENT_BYTES, Store

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_GZIP_MAGIC, _ZSTD_MAGIC = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"
# The expansion bound builder/layers/unpack.py puts on an untrusted layer (its docstring has the
# measurements): a compressed layer may grow to 200x its size + 32 MiB. The store may not import
# builder.layers (DESIGN.md section 1), hence these two numbers and the small decoder below.
MAX_RATIO = 200
RATIO_FLOOR_BYTES = 32 << 20


def _decompressed(f: IO[bytes], kind: str) -> IO[bytes]:
    """The uncompressed bytes of `f`: `kind` is "gzip", "zstd" or "" (plain); all frames or members."""
    if kind == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(
            f, read_size=_CHUNK, read_across_frames=True, closefd=False
        )
    if kind == "gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=f, mode="rb"))
    return f


# -- save -----------------------------------------------------------------------------------


@dataclass
class _Entry:
    config: Descriptor
    diff_ids: tuple[Digest, ...]
    layers: tuple[Descriptor, ...]
    tags: list[str]


def save(store: Store, names: Sequence[str], out: IO[bytes]) -> None:
    """Write the named images to `out` as a docker archive (the caller holds the GC lock).

    For a multi-platform image the host platform's manifest is saved (docker archives hold
    one platform per image). Every blob is read through the store's verifying reader.
    """
    entries: dict[Digest, _Entry] = {}
    for name in names:
        desc = store.resolve(name)
        manifest_desc, manifest = _platform_manifest(store, name, desc)
        entry = entries.get(manifest_desc.digest)
        if entry is None:
            config = store.read_config(manifest.config)
            for layer in manifest.layers:
                if layer.media_type not in LAYER_COMPRESSION:
                    raise UnsupportedMediaType(
                        f"{name}: layer {layer.digest} has media type {layer.media_type!r}, "
                        "which a docker archive cannot hold",
                        hint="save it with --format oci-archive",
                    )
            entry = _Entry(manifest.config, config.diff_ids, manifest.layers, [])
            entries[manifest_desc.digest] = entry
        tag = _repo_tag(store, name, desc)
        if tag and tag not in entry.tags:
            entry.tags.append(tag)
    scratch = store.scratch_dir("save-")
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            written: set[Digest] = set()
            for entry in entries.values():
                if entry.config.digest not in written:
                    written.add(entry.config.digest)
                    with store.blobs.open(entry.config.digest, expected_size=entry.config.size) as f:
                        _add(tar, f"{entry.config.digest.hex}.json", f, entry.config.size)
                for layer, diff_id in zip(entry.layers, entry.diff_ids, strict=True):
                    if diff_id not in written:
                        written.add(diff_id)
                        _add_layer(store, tar, layer, diff_id, scratch)
            listing = [
                {
                    "Config": f"{e.config.digest.hex}.json",
                    "RepoTags": e.tags or None,
                    "Layers": [f"{d.hex}.tar" for d in e.diff_ids],
                }
                for e in entries.values()
            ]
            data = json.dumps(listing, separators=(",", ":")).encode()
            _add(tar, DOCKER_MANIFEST_FILE, _BytesReader(data), len(data))
    finally:
        remove_tree(scratch)


def _platform_manifest(store: Store, name: str, desc: Descriptor) -> tuple[Descriptor, Manifest]:
    if desc.media_type in INDEXES:
        try:
            [(chosen, manifest)] = store.manifests_for(desc, Platform.host())
        except ImageNotFound as err:
            raise ImageNotFound(
                f"{name}: {err}", hint="a docker archive holds one platform: save with --format oci-archive"
            ) from None
        return chosen, manifest
    return desc, store.read_manifest(desc)


def _repo_tag(store: Store, name: str, desc: Descriptor) -> str | None:
    """The name as `docker save` writes it in RepoTags (`app:v1`, `reg:5000/x:v1`), if tagged."""
    try:
        ref = Reference.parse(name)
    except ImageError:
        ref = None
    if ref is None or ref.digest is not None or store.refs.get(str(ref)) != desc:
        # An ID or a digest: a name pointing there, as `save` of an OCI archive picks one.
        full = next((n for n, d in store.refs.list() if d.digest == desc.digest), None)
        ref = Reference.parse(full) if full else None
    if ref is None or ref.tag is None or ref.digest is not None:
        return None
    return ref.familiar


def _add_layer(store: Store, tar: tarfile.TarFile, layer: Descriptor, diff_id: Digest, scratch: Path) -> None:
    kind = LAYER_COMPRESSION[layer.media_type]
    name = f"{diff_id.hex}.tar"
    if not kind:
        if layer.digest != diff_id:
            raise DigestMismatch(f"uncompressed layer {layer.digest} differs from its diff_id {diff_id}")
        with store.blobs.open(layer.digest, expected_size=layer.size) as f:
            _add(tar, name, f, layer.size)
        return
    # The tar header needs the size before the bytes: decompress into a scratch file once,
    # hashing as it goes, then copy that into the archive.
    plain = scratch / name
    hasher = hashlib.sha256()
    with store.blobs.open(layer.digest, expected_size=layer.size) as blob, open(plain, "wb") as out:
        stream = _decompressed(blob, kind)
        while chunk := stream.read(_CHUNK):
            hasher.update(chunk)
            out.write(chunk)
    if hasher.hexdigest() != diff_id.hex:
        raise DigestMismatch(
            f"layer {layer.digest} decompresses to sha256:{hasher.hexdigest()}, its config says {diff_id}",
            hint="`sealer fsck` checks the store",
        )
    size = plain.stat().st_size
    with open(plain, "rb") as f:
        _add(tar, name, f, size)
    plain.unlink()


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def read(self, n: int = -1) -> bytes:
        n = len(self._data) if n < 0 else n
        out, self._data = bytes(self._data[:n]), self._data[n:]
        return out


def _add(tar: tarfile.TarFile, name: str, f: Any, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uname = info.gname = ""
    tar.addfile(info, f)
    if f.read(1):  # also runs a verifying reader's EOF digest check, which addfile stops short of
        raise SizeMismatch(f"{name} is longer than {size} bytes")


# -- load -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Listed:
    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


def load_images(store: Store, src: TarSource, override: str | None) -> list[tuple[str, Descriptor]]:
    """Copy every image of a docker archive into the store; (name, manifest descriptor) pairs.

    Names are not set here: the caller sets them once all images verified. An untagged image
    is skipped with a warning unless `override` names the archive's only image.
    """
    path = src.path
    listed = _read_listing(src, path)
    if override is not None and len(listed) != 1:
        raise UsageError(
            f"{path} holds {len(listed)} images; a name can be given only for one",
            hint="load without a name: each image keeps its own",
        )
    met = 0
    plan: list[tuple[str, Descriptor]] = []
    copied: dict[str, int] = {}  # layer entry -> its size in the store
    for item in listed:
        met += 1 + len(item.layers)
        if met > MAX_LOAD_DESCRIPTORS:
            raise LayoutInvalid(
                f"{path} lists more than {MAX_LOAD_DESCRIPTORS} descriptors",
                hint="load the images in several archives",
            )
        names = [str(Reference.parse(override))] if override else [_tag_name(path, t) for t in item.repo_tags]
        if not names:
            log.warning("%s: skipping untagged image %s", path, item.config)
            continue
        desc = _copy_image(store, src, path, item, copied)
        plan.extend((n, desc) for n in names)
    if not plan:
        raise ImageNotFound(f"{path} holds no tagged image", hint="pass a name for the image with --name")
    return plan


def _read_listing(src: TarSource, path: Path) -> list[_Listed]:
    data = src.read_member(DOCKER_MANIFEST_FILE, MAX_DOCUMENT_BYTES)
    assert data is not None  # is_docker_archive said it is there
    try:
        obj = json.loads(data)
    except ValueError as err:
        raise LayoutInvalid(f"{path}: {DOCKER_MANIFEST_FILE} is not JSON ({err})") from None
    if not isinstance(obj, list) or not obj:
        raise LayoutInvalid(f"{path}: {DOCKER_MANIFEST_FILE} must be a non-empty list of images")
    out = []
    for item in obj:
        config = item.get("Config") if isinstance(item, dict) else None
        tags = (item.get("RepoTags") or []) if isinstance(item, dict) else None
        layers = item.get("Layers") if isinstance(item, dict) else None
        if (
            not isinstance(config, str)
            or not isinstance(tags, list)
            or not isinstance(layers, list)
            or not all(isinstance(x, str) for x in (*tags, *layers))
        ):
            raise LayoutInvalid(
                f"{path}: {DOCKER_MANIFEST_FILE} entries need Config (string), RepoTags and Layers (lists of strings)"
            )
        out.append(_Listed(config, tuple(tags), tuple(layers)))
    return out


def _tag_name(path: Path, tag: str) -> str:
    try:
        return str(Reference.parse(tag))
    except ImageError:
        raise LayoutInvalid(f"{path}: RepoTag {tag[:200]!r} is not a valid image name") from None


def _copy_image(
    store: Store, src: TarSource, path: Path, item: _Listed, copied: dict[str, int]
) -> Descriptor:
    data = src.read_member(item.config, MAX_DOCUMENT_BYTES)
    if data is None:
        raise LayoutInvalid(
            f"{path} lacks the image config {item.config!r}", hint="the archive is incomplete"
        )
    try:
        config = ImageConfig.from_bytes(data)
    except ImageError as err:
        raise LayoutInvalid(f"{path}: image config {item.config!r} is invalid: {err}") from None
    if len(config.diff_ids) != len(item.layers):
        raise LayoutInvalid(
            f"{path}: image config {item.config!r} lists {len(config.diff_ids)} diff_ids, "
            f"{DOCKER_MANIFEST_FILE} {len(item.layers)} layers"
        )
    layers = []
    for entry, diff_id in zip(item.layers, config.diff_ids, strict=True):
        if entry not in copied:
            copied[entry] = _copy_layer(store, src, path, entry, diff_id)
        layers.append(Descriptor(OCI_LAYER_TAR, diff_id, copied[entry]))
    config_digest, config_size = store.blobs.put(data)
    try:
        manifest = Manifest(Descriptor(OCI_CONFIG, config_digest, config_size), tuple(layers))
    except ImageError as err:
        raise LayoutInvalid(f"{path}: image config {item.config!r}: {err}") from None
    return store.put_manifest(manifest)


def _copy_layer(store: Store, src: TarSource, path: Path, entry: str, diff_id: Digest) -> int:
    """Store layer `entry` uncompressed, checked against `diff_id`; its size."""
    if store.blobs.has(diff_id):
        with src.open_member(entry):  # it must be there (and no hostile link) all the same
            return store.blobs.size(diff_id)
    with src.open_member(entry) as (f, size):
        head = f.read(4)  # plain, gzip or zstd, as docker load accepts
        f.seek(0)  # a tar member reads from the archive file: it can seek
        kind = "gzip" if head.startswith(_GZIP_MAGIC) else "zstd" if head.startswith(_ZSTD_MAGIC) else ""
        limit = MAX_RATIO * size + RATIO_FLOOR_BYTES if kind else size
        try:
            stream = _decompressed(f, kind)
            with store.blobs.writer(expected=diff_id) as w:
                while chunk := stream.read(_CHUNK):
                    w.write(chunk)
                    if w.size > limit:
                        raise LayoutInvalid(
                            f"{path}: layer {entry!r} expands past {MAX_RATIO}x its compressed size "
                            f"({size} bytes): refused as a decompression bomb"
                        )
                w.commit()
        except DigestMismatch as err:
            raise DigestMismatch(f"{path}: layer {entry!r} does not match its diff_id ({err})") from None
        except (gzip.BadGzipFile, EOFError, zlib.error, zstandard.ZstdError) as err:
            raise LayoutInvalid(f"{path}: layer {entry!r} is corrupt ({err})") from None
    return store.blobs.size(diff_id)
