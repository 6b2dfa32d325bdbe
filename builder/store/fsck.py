"""Check a store's integrity (`sealer fsck`), and repair what can be repaired without guessing.

`check` is read-only: index.json parses; every name resolves to a manifest or index whose
blobs are all present, of the size their descriptors give and hashing to their digest; every
manifest and config parses and a config lists one diff_id per layer; an index's children are
present (at least one: a pull of one platform keeps only that one); no blob file is corrupt;
and it counts what dead sealer processes left behind (temp dirs, staging dirs, temp files).
(The unpacked layers are checked by `builder.diffdirs.check_store`, which needs `layers`.)
It never changes anything and takes no lock (a name changed meanwhile can show as a problem;
run it again). `repair` holds the GC lock exclusively: it deletes corrupt blobs, removes the
names whose image is then incomplete, and sweeps leftovers; it never invents data.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from builder.errors import ImageError, StoreError
from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.mediatypes import INDEXES, MANIFESTS
from builder.store.layout import MAX_DOCUMENT_BYTES, Store

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: `name` is the image it breaks (None for store-wide ones)."""

    message: str
    name: str | None = None
    digest: Digest | None = None


@dataclass(frozen=True, slots=True)
class FsckReport:
    names: int
    blobs: int
    problems: tuple[Problem, ...]
    broken_names: tuple[str, ...]  # names whose image is incomplete or corrupt
    corrupt_blobs: tuple[Digest, ...]  # blob files whose content is not their digest
    leftovers: int  # temp entries of dead sealer processes
    unreachable_blobs: int  # not a problem: `sealer prune` frees them
    diff_dirs: int = 0  # unpacked layers checked against their blobs (`builder.diffdirs.check_store`)
    differing_diff_dirs: tuple[Digest, ...] = ()  # layers whose unpacked files differ from the blob

    @property
    def ok(self) -> bool:
        return not self.problems and not self.leftovers


@dataclass(frozen=True, slots=True)
class RepairResult:
    removed_names: tuple[str, ...]
    removed_blobs: tuple[Digest, ...]
    swept: int
    removed_diff_dirs: tuple[Digest, ...] = ()


@dataclass
class _Walk:
    store: Store
    verified: dict[Digest, str | None] = field(default_factory=dict)  # digest -> error or None
    problems: list[Problem] = field(default_factory=list)
    broken: dict[str, None] = field(default_factory=dict)
    reached: set[Digest] = field(default_factory=set)

    def blob_error(self, desc: Descriptor) -> str | None:
        """Why the blob of `desc` is unusable (missing, wrong size, wrong content), or None."""
        if desc.digest not in self.verified:
            self.verified[desc.digest] = _verify_file(self.store, desc.digest)
        error = self.verified[desc.digest]
        if error is None:
            size = self.store.blobs.size(desc.digest)
            if size != desc.size:
                return f"is {size} bytes, its descriptor says {desc.size}"
        return error

    def fail(self, name: str, desc: Descriptor, what: str, why: str) -> None:
        self.problems.append(Problem(f"{name}: {what} {desc.digest} {why}", name, desc.digest))
        self.broken[name] = None

    def check_name(self, name: str, top: Descriptor) -> None:
        pending: list[tuple[Descriptor, str]] = [(top, "index" if top.media_type in INDEXES else "manifest")]
        seen: set[Digest] = set()
        while pending:
            desc, what = pending.pop()
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            self.reached.add(desc.digest)
            error = self.blob_error(desc)
            if error is not None:
                self.fail(name, desc, what, error)
                continue
            try:
                pending.extend(self._children(desc, what, name))
            except (ImageError, StoreError) as err:
                self.fail(name, desc, what, f"is unreadable: {err}")

    def _children(self, desc: Descriptor, what: str, name: str) -> Iterator[tuple[Descriptor, str]]:
        if what == "index":
            index = self.store.read_index(desc)
            children = [c for c in index.manifests if c.media_type in MANIFESTS | INDEXES]
            present = [c for c in children if self.store.blobs.has(c.digest)]
            if children and not present:
                self.fail(name, desc, what, "has none of its platform manifests")
            for child in present:
                yield child, "index" if child.media_type in INDEXES else "manifest"
        elif what == "manifest":
            manifest = self.store.read_manifest(desc)
            yield manifest.config, "config"
            for layer in manifest.layers:
                yield layer, "layer"
            if self.blob_error(manifest.config) is None:
                config = ImageConfig.from_bytes(self.store.blobs.read_bytes(manifest.config.digest))
                if len(config.diff_ids) != len(manifest.layers):
                    self.fail(
                        name,
                        manifest.config,
                        "config",
                        f"lists {len(config.diff_ids)} diff_ids for {len(manifest.layers)} layers",
                    )


def _verify_file(store: Store, digest: Digest) -> str | None:
    path = store.blobs.path(digest)
    hasher = hashlib.new(digest.algorithm)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                hasher.update(chunk)
    except FileNotFoundError:
        return "is missing"
    except OSError as err:
        return f"is unreadable: {err.strerror}"
    if hasher.hexdigest() != digest.hex:
        return f"is corrupt (its content hashes to {digest.algorithm}:{hasher.hexdigest()})"
    return None


def check(store: Store) -> FsckReport:
    """Check everything listed in the module docstring; changes nothing."""
    walk = _Walk(store)
    try:
        entries = store.refs.list()
    except StoreError as err:
        return FsckReport(0, 0, (Problem(str(err)),), (), (), store.sweep(dry_run=True), 0)
    for name, desc in entries:
        walk.check_name(name, desc)
    blobs = list(store.blobs.list())
    for digest in blobs:  # corrupt blobs no name reaches are problems too (a prune removes them)
        if digest not in walk.verified:
            walk.verified[digest] = _verify_file(store, digest)
    corrupt = tuple(d for d in blobs if (walk.verified.get(d) or "").startswith("is corrupt"))
    for digest in corrupt:
        if digest not in walk.reached:
            walk.problems.append(Problem(f"blob {digest} {walk.verified[digest]}", None, digest))
    _check_documents(store, entries, walk)
    return FsckReport(
        names=len(entries),
        blobs=len(blobs),
        problems=tuple(walk.problems),
        broken_names=tuple(walk.broken),
        corrupt_blobs=corrupt,
        leftovers=store.sweep(dry_run=True),
        unreachable_blobs=sum(1 for d in blobs if d not in walk.reached),
    )


def _check_documents(store: Store, entries: list[tuple[str, Descriptor]], walk: _Walk) -> None:
    """Names must point at a manifest or an index within the store's document size limit."""
    for name, desc in entries:
        if desc.media_type not in MANIFESTS | INDEXES:
            walk.problems.append(Problem(f"{name}: names a {desc.media_type}, not an image", name))
            walk.broken[name] = None
        elif desc.size > MAX_DOCUMENT_BYTES:
            walk.problems.append(Problem(f"{name}: its manifest claims {desc.size} bytes", name))
            walk.broken[name] = None


def repair(store: Store, *, timeout_s: float | None = None) -> RepairResult:
    """Delete corrupt blobs, remove names of incomplete images, sweep leftovers (GC lock held)."""
    with store.gc_lock(exclusive=True, timeout_s=timeout_s):
        return repair_holding_lock(store)


def repair_holding_lock(store: Store) -> RepairResult:
    """`repair`'s work, for a caller that holds the GC lock exclusively (and repairs more)."""
    report = check(store)
    for digest in report.corrupt_blobs:
        store.blobs.delete(digest)
    removed = []
    for name in report.broken_names:
        with contextlib.suppress(StoreError, ImageError):
            store.untag(name)
            removed.append(name)
    swept = store.sweep()
    return RepairResult(tuple(removed), report.corrupt_blobs, swept)
