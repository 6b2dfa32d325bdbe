"""Garbage collection of the store: unreachable blobs and abandoned temp dirs.

Mark from every name in index.json (manifests, indexes followed recursively, configs,
layers), sweep the rest. Safe against concurrent writers: build, pull, load and tag hold
`Store.gc_lock(exclusive=False)` from their first blob write until their name is set (push
and inspect while they read), and `collect` takes it exclusively, so it never runs while
blobs are in flight that no name reaches yet. Temp dirs are removed only when their owner's
flock is free, i.e. the process that made them is gone (`Store.sweep`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from builder.errors import ImageError, StoreError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.mediatypes import INDEXES, MANIFESTS
from builder.store.layout import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GCResult:
    removed_blobs: tuple[Digest, ...]
    freed_bytes: int
    removed_tmp_dirs: int = 0


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
    """Remove unreachable blobs and dead processes' temp dirs, under the exclusive GC lock."""
    with store.gc_lock(exclusive=True, timeout_s=timeout_s):
        return collect_holding_lock(store)


def collect_holding_lock(store: Store) -> GCResult:
    """`collect` for a caller that already holds `store.gc_lock(exclusive=True)` (to free more
    than blobs in the same critical section, as `builder.diffdirs.prune` does)."""
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
    return GCResult(tuple(sorted(removed)), freed, store.sweep())
