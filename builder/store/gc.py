"""Garbage collection of the store: unreachable blobs and abandoned temp dirs.

Mark from every name in index.json (manifests, indexes followed recursively, configs,
layers), sweep the rest. Safe against concurrent builds: a build holds `gc_lock(shared)` from
its first blob write until its name is set, and `collect` takes it exclusively, so it never
runs while a build has blobs that no name reaches yet. Temp dirs under tmp/ are removed only
when their owner's flock is free, i.e. the process that made them is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

from builder._fs import remove_tree
from builder.errors import ImageError, StoreError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.mediatypes import INDEXES, MANIFESTS
from builder.store._lock import locked_dir, try_lock
from builder.store.layout import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GCResult:
    removed_blobs: tuple[Digest, ...]
    freed_bytes: int
    removed_tmp_dirs: int = 0


@contextlib.contextmanager
def gc_lock(store: Store, *, exclusive: bool, timeout_s: float | None = None) -> Iterator[None]:
    """The store-wide GC lock: builds and loads hold it shared, `collect` exclusive."""
    store.tmp_dir.mkdir(parents=True, exist_ok=True)
    timeout = store.refs.lock_timeout_s if timeout_s is None else timeout_s
    with locked_dir(store.tmp_dir, exclusive=exclusive, timeout_s=timeout, what="the store (gc lock)"):
        yield


def reachable(store: Store) -> set[Digest]:
    """Every blob digest some name in index.json reaches (missing children are skipped)."""
    marked: set[Digest] = set()
    pending: list[Descriptor] = [desc for _, desc in store.refs.list()]
    pending.extend(d for d in store.refs.read_index().manifests if d not in pending)
    while pending:
        desc = pending.pop()
        if desc.digest in marked:
            continue
        marked.add(desc.digest)
        if not store.blobs.has(desc.digest):
            continue
        try:
            if desc.media_type in INDEXES:
                pending.extend(store.read_index(desc).manifests)
            elif desc.media_type in MANIFESTS:
                manifest = store.read_manifest(desc)
                pending.append(manifest.config)
                pending.extend(manifest.layers)
        except (StoreError, ImageError) as err:
            # A corrupt manifest keeps itself but cannot protect children it no longer names.
            log.warning("gc: cannot read %s: %s", desc.digest, err)
    return marked


def collect(store: Store, *, timeout_s: float | None = None) -> GCResult:
    """Remove unreachable blobs and unlocked temp dirs; returns what was freed."""
    with gc_lock(store, exclusive=True, timeout_s=timeout_s):
        keep = reachable(store)
        removed: list[Digest] = []
        freed = 0
        for digest in list(store.blobs.list()):
            if digest in keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                freed += store.blobs.path(digest).stat().st_size
            store.blobs.delete(digest)
            removed.append(digest)
        return GCResult(tuple(sorted(removed)), freed, _sweep_tmp(store))


def _sweep_tmp(store: Store) -> int:
    count = 0
    for entry in os.scandir(store.tmp_dir):
        if not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if not try_lock(fd, exclusive=True):
                continue  # in flight: its owner holds the lock
            remove_tree(entry.path)
            count += 1
        finally:
            os.close(fd)
    return count
