"""The store: `$SEALER_ROOT` with an OCI image layout in `oci/`, plus `tmp/`, `overlay2/`, `cache/`.

`Store` opens or creates the layout and adds image semantics on top of `BlobStore` (bytes by
digest) and `RefStore` (names), as umoci's casext does on top of cas: typed reads of manifests,
configs and indexes, name resolution as docker does it, and the `images` listing (identity.py:
IMAGE IDs and records).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from builder._fs import atomic_write, sweep_temps
from builder._reclaim import undo_leftovers
from builder.errors import (
    ImageNotFound,
    InvalidReference,
    LayoutInvalid,
    SealerError,
    SizeMismatch,
    StoreError,
)
from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.index import MAX_NESTED_INDEXES, Index
from builder.image.manifest import Manifest
from builder.image.mediatypes import INDEXES, MANIFESTS, OCI_CONFIG, OCI_LAYOUT_VERSION
from builder.image.reference import Reference
from builder.store._lock import locked_dir
from builder.store.blobs import TMP_PREFIX, BlobStore
from builder.store.identity import ImageRecord, image_id, image_records
from builder.store.refs import DEFAULT_LOCK_TIMEOUT_S, RefStore

log = logging.getLogger(__name__)

LAYOUT_FILE = "oci-layout"
MAX_DOCUMENT_BYTES = 16 << 20
MIN_ID_PREFIX = 12
_HEX_PREFIX = re.compile(r"^(?:sha256:)?([a-f0-9]{12,64})$")


def default_root() -> Path:
    """`$SEALER_ROOT`, else /var/lib/sealer as root, else ~/.local/share/sealer."""
    env = os.environ.get("SEALER_ROOT")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/sealer")
    return Path.home() / ".local" / "share" / "sealer"


def _document(data: bytes, what: str, *, hint: str | None = None) -> bytes:
    """`data` if the store will read it back (`MAX_DOCUMENT_BYTES`); refused before it is named."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise SizeMismatch(
            f"the {what} would be {len(data) / (1 << 20):.1f} MiB, more than the "
            f"{MAX_DOCUMENT_BYTES >> 20} MiB a store (and most registries) accept",
            hint=hint or "make the image smaller (fewer layers, platforms or annotations)",
        )
    return data


def _subdirs(path: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


class Store:
    """A sealer store rooted at `root` (see the module docstring for the layout)."""

    def __init__(self, root: Path, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.root = root
        self.oci_dir = root / "oci"
        self.tmp_dir = root / "tmp"
        self.overlay_dir = root / "overlay2"
        self.cache_dir = root / "cache"
        self.blobs = BlobStore(self.oci_dir, self.tmp_dir)
        self.refs = RefStore(self.oci_dir, lock_timeout_s=lock_timeout_s)

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        sweep: bool = True,
    ) -> Store:
        """Open the store at `root` (default: `default_root()`), creating it unless create=False,
        and reclaim what dead sealer processes left in it (`sweep`) unless sweep=False."""
        store = cls(Path(root) if root is not None else default_root(), lock_timeout_s=lock_timeout_s)
        layout = store.oci_dir / LAYOUT_FILE
        if not layout.exists():
            if not create:
                raise StoreError(
                    f"no sealer store at {store.root}",
                    hint="build, pull or load an image first, or check --root",
                )
            for d in (store.oci_dir / "blobs" / "sha256", store.tmp_dir, store.overlay_dir, store.cache_dir):
                d.mkdir(parents=True, exist_ok=True)
            atomic_write(layout, json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}).encode())
        else:
            for d in (store.tmp_dir, store.overlay_dir, store.cache_dir):
                d.mkdir(parents=True, exist_ok=True)
        store._check_layout()
        store.refs.ensure()
        try:
            if sweep:
                store.sweep()
        except (SealerError, OSError) as err:
            # Reading the store must not fail on another process's leftovers; prune and
            # `fsck --repair` sweep strictly and report.
            log.warning("could not reclaim leftovers of dead sealer processes: %s", err)
        return store

    def _check_layout(self) -> None:
        path = self.oci_dir / LAYOUT_FILE
        try:
            obj = json.loads(path.read_bytes())
        except (OSError, ValueError) as err:
            raise LayoutInvalid(
                f"{path} is unreadable or not JSON: {err}",
                hint=f'rewrite it as {{"imageLayoutVersion":"{OCI_LAYOUT_VERSION}"}}',
            ) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("imageLayoutVersion"), str):
            raise LayoutInvalid(
                f"{path} has no imageLayoutVersion",
                hint=f'rewrite it as {{"imageLayoutVersion":"{OCI_LAYOUT_VERSION}"}}',
            )

    def close(self) -> None:
        self.blobs.close()

    # -- concurrency and leftovers ---------------------------------------------------------

    @contextlib.contextmanager
    def gc_lock(self, *, exclusive: bool, timeout_s: float | None = None) -> Iterator[None]:
        """The store-wide GC lock. Every command that writes blobs and then names them (build,
        pull, load, tag) or reads blobs a name may stop reaching (push, inspect) holds it shared
        across both; `gc.collect` holds it exclusive, so it never frees what is in flight."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        timeout = self.refs.lock_timeout_s if timeout_s is None else timeout_s
        with locked_dir(self.tmp_dir, exclusive=exclusive, timeout_s=timeout, what="the store (gc lock)"):
            yield

    def scratch_dir(self, prefix: str) -> Path:
        """A new dir in this process's locked temp dir, reclaimed by `sweep` if we die."""
        path = self.blobs.process_dir() / f"{prefix}{os.urandom(6).hex()}"
        path.mkdir()
        return path

    def sweep(self, *, dry_run: bool = False) -> int:
        """Remove what dead sealer processes left, returning how many temp entries went.

        Their process dirs under tmp/ go after the processes still running in them are killed
        and their mounts undone (a build killed during RUN); abandoned `.NAME.RAND.tmp` entries
        (an unpack's staging dir, a half-written index.json or cache file) go from overlay2/,
        oci/ and cache/. Entries whose owner is alive hold a flock and are left alone. Run by
        every `Store.open`, so no command has to remember it.
        """
        removed = sweep_temps(
            self.tmp_dir,
            is_temp=lambda name: name.startswith(TMP_PREFIX),
            before_remove=undo_leftovers,
            dry_run=dry_run,
        )
        for directory in (self.overlay_dir, self.oci_dir, self.cache_dir, *_subdirs(self.cache_dir)):
            removed += sweep_temps(directory, dry_run=dry_run)
        return removed

    # -- typed blobs -----------------------------------------------------------------------

    def put_manifest(self, manifest: Manifest) -> Descriptor:
        digest, size = self.blobs.put(_document(manifest.to_bytes(), "image manifest"))
        return Descriptor(manifest.media_type, digest, size)

    def put_index(self, index: Index) -> Descriptor:
        digest, size = self.blobs.put(_document(index.to_bytes(), "image index"))
        return Descriptor(index.media_type, digest, size)

    def put_config(self, config: ImageConfig, media_type: str = OCI_CONFIG) -> Descriptor:
        data = _document(config.to_bytes(), "image config", hint="a LABEL, ENV or ARG value is too large")
        digest, size = self.blobs.put(data)
        return Descriptor(media_type, digest, size)

    def _read_document(self, target: Descriptor | Digest) -> bytes:
        if isinstance(target, Descriptor):
            if target.size > MAX_DOCUMENT_BYTES:
                raise StoreError(f"{target.digest} claims {target.size} bytes, too large for a manifest")
            data = self.blobs.read_bytes(target.digest, MAX_DOCUMENT_BYTES)
            if len(data) != target.size:
                raise SizeMismatch(
                    f"blob {target.digest} is {len(data)} bytes, its descriptor says {target.size}"
                )
            return data
        return self.blobs.read_bytes(target, MAX_DOCUMENT_BYTES)

    def read_manifest(self, target: Descriptor | Digest) -> Manifest:
        return Manifest.from_bytes(self._read_document(target))

    def read_index(self, target: Descriptor | Digest) -> Index:
        return Index.from_bytes(self._read_document(target))

    def read_config(self, target: Descriptor | Digest) -> ImageConfig:
        return ImageConfig.from_bytes(self._read_document(target))

    # -- names -----------------------------------------------------------------------------

    def resolve(self, ref: str | Reference) -> Descriptor:
        """The descriptor `ref` names: a full or familiar name, a manifest digest, or an ID prefix.

        Order as docker: the name first, then a manifest digest, then an image ID (config
        digest) prefix of at least 12 hex digits. ImageNotFound otherwise.
        """
        entries = self.refs.list()
        by_name = dict(entries)
        text = str(ref)
        if text in by_name:
            return by_name[text]
        parsed: Reference | None = ref if isinstance(ref, Reference) else None
        if parsed is None:
            try:
                parsed = Reference.parse(text)
            except InvalidReference:
                parsed = None
        if parsed is not None:
            if str(parsed) in by_name:
                return by_name[str(parsed)]
            if parsed.digest is not None:
                for name, desc in entries:
                    if desc.digest == parsed.digest and Reference.parse(name).name == parsed.name:
                        return desc
                if self.blobs.has(parsed.digest):
                    return self._descriptor_for_blob(parsed.digest)
        if isinstance(ref, str):
            found = self._resolve_digest_or_id(ref, entries)
            if found is not None:
                return found
        raise ImageNotFound(
            f"image {text!r} not found in {self.root}", hint="`sealer images` lists what is there"
        )

    def _resolve_digest_or_id(self, text: str, entries: list[tuple[str, Descriptor]]) -> Descriptor | None:
        if Digest.is_valid(text):
            digest = Digest.parse(text)
            for _, desc in entries:
                if desc.digest == digest:
                    return desc
            if self.blobs.has(digest):
                return self._descriptor_for_blob(digest)
        match = _HEX_PREFIX.match(text)
        if match is None:
            return None
        prefix = match.group(1)
        # Names of one image (an index and its host manifest, two tags) share its ID: one hit.
        hits: dict[Digest, Descriptor] = {}
        for _, desc in entries:
            if desc.digest.hex.startswith(prefix):
                hits.setdefault(desc.digest, desc)
            else:
                found = image_id(self, desc)
                if found.hex.startswith(prefix):
                    hits.setdefault(found, desc)
        if len(hits) > 1:
            raise ImageNotFound(
                f"image ID prefix {prefix!r} is ambiguous ({len(hits)} images)", hint="give more digits"
            )
        return next(iter(hits.values()), None)

    def _descriptor_for_blob(self, digest: Digest) -> Descriptor:
        data = self.blobs.read_bytes(digest, MAX_DOCUMENT_BYTES)
        obj = json.loads(data)
        media_type = obj.get("mediaType") if isinstance(obj, dict) else None
        if media_type not in MANIFESTS | INDEXES:
            media_type = (
                Index.from_bytes(data).media_type
                if "manifests" in obj
                else Manifest.from_bytes(data).media_type
            )
        return Descriptor(media_type, digest, len(data))

    def tag(self, src: str | Reference, dst: str | Reference) -> str:
        """Name `dst` the image `src` resolves to; returns the full name stored.

        Holds the GC lock across resolve and set: a prune between the two would free the
        blobs of an image whose only other name was just removed, leaving `dst` dangling.
        """
        name = str(dst if isinstance(dst, Reference) else Reference.parse(dst))
        with self.gc_lock(exclusive=False):
            desc = self.resolve(src)
            self.refs.set(name, desc)
        return name

    def untag(self, name: str | Reference) -> str:
        """Remove a name (blobs stay until gc); ImageNotFound if no such name. Returns it."""
        full = str(name) if isinstance(name, Reference) else name
        if not self.refs.remove(full):
            try:
                full = str(Reference.parse(full))
            except InvalidReference:
                full = ""
            if not full or not self.refs.remove(full):
                raise ImageNotFound(f"no image named {str(name)!r}", hint="`sealer images` lists the names")
        return full

    # -- listing ---------------------------------------------------------------------------

    def manifests_for(
        self, desc: Descriptor, platform: Platform | None = None
    ) -> list[tuple[Descriptor, Manifest]]:
        """The image manifests under `desc`: itself for a manifest; for an index, each
        per-platform manifest present locally (only the one for `platform` when given).

        Iterative, in index order, each digest once; LayoutInvalid past MAX_NESTED_INDEXES
        nested indexes (a pulled graph of indexes listing each other cannot hang or recurse).
        """
        if desc.media_type in MANIFESTS:
            return [(desc, self.read_manifest(desc))]
        index = self.read_index(desc)
        if platform is not None:
            chosen = index.select(platform)
            return self.manifests_for(chosen)  # one level: `chosen` is walked without a platform
        out: list[tuple[Descriptor, Manifest]] = []
        seen = {desc.digest}
        stack = [(iter(index.manifests), 1)]  # (children left, indexes down to them)
        while stack:
            children, depth = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                continue
            if child.digest in seen or not self.blobs.has(child.digest):
                continue  # an index may list platforms we never pulled
            seen.add(child.digest)
            if child.media_type in MANIFESTS:
                out.append((child, self.read_manifest(child)))
            elif child.media_type in INDEXES:
                if depth >= MAX_NESTED_INDEXES:
                    raise LayoutInvalid(
                        f"image index {child.digest} is nested more than {MAX_NESTED_INDEXES} deep"
                    )
                stack.append((iter(self.read_index(child).manifests), depth + 1))
        return out

    def images(self) -> list[ImageRecord]:
        """Every named image, in index order, broken ones with their `problem` (identity.py)."""
        return image_records(self)
