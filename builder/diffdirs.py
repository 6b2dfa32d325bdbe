"""Overlay2 diff dirs of stored layers: the glue between the store and the layer code.

Diff dirs live under `$SEALER_ROOT/overlay2/<id>/diff`, one per layer blob (the id is the blob
digest's hex). They are unpacked from the verified blob the first time something needs them
(a RUN's lowerdirs, `sealer inspect`, a local run), through the hardened tar reader. This module
exists so that `store` and `layers` stay ignorant of each other; build, runtime and cli use it.
`sealer fsck` checks diff dirs against their blobs here too (`check_store`, `repair_store`).
(It was `rootfs.py`; "rootfs" is the tree an image unpacks to on a host, whose Metadata file is
`image.metadata.RootfsMetadata`.)
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection, Sequence
from pathlib import Path

from builder.errors import ImageError, LayerError, StoreError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.layers.compression import open_decompressed
from builder.layers.diffcheck import compare_diff_dir
from builder.layers.overlapped import OverlappedUnpack
from builder.layers.overlay import DiffDirs
from builder.store import fsck, gc
from builder.store.layout import Store

# Paths named per differing layer by `sealer fsck`: a torn layer can differ at thousands.
FSCK_PATHS_SHOWN = 5


def diff_dirs(store: Store) -> DiffDirs:
    return DiffDirs(store.overlay_dir)


def layer_id(desc: Descriptor) -> str:
    return desc.digest.hex


def diff_id_of(layers: Sequence[Descriptor], diff_ids: Sequence[Digest], index: int) -> Digest:
    """The diff_id of `layers[index]`: the config's `rootfs.diff_ids` entry at the same index.

    ImageError when the config lists another number of diff_ids than the manifest has layers
    (OCI image-spec config.md: one diff_id per layer, in order).
    """
    if len(layers) != len(diff_ids):
        raise ImageError(
            f"the image config lists {len(diff_ids)} diff_ids for {len(layers)} layers",
            hint="the image is corrupt: pull or build it again",
        )
    return diff_ids[index]


def ensure_diff_dir(store: Store, desc: Descriptor, diff_id: Digest | None) -> Path:
    """The diff dir of a stored layer, unpacked (verified, atomically) if it is not yet there.

    The blob is checked against `desc` (digest, size) and the uncompressed tar against
    `diff_id` (None only for layers this machine just wrote); the unpack is bounded
    (`builder.layers.unpack`). Compression is detected from the blob's first bytes, as
    containerd does, whatever the media type says.
    """
    dirs = diff_dirs(store)
    lid = layer_id(desc)
    if dirs.has(lid):
        return dirs.path(lid)
    return dirs.materialize(
        lid,
        lambda: store.blobs.open(desc.digest, expected_size=desc.size),
        compressed_size=desc.size,
        diff_id=diff_id,
        what=f"layer {desc.digest}",
    )


class DiffDirUnpacker:
    """Layer tees for `RegistryClient.pull(..., tees=...)` (`builder.registry.tee.LayerTees`):
    each layer unpacks into its diff dir while it downloads, with the guarantees of
    `ensure_diff_dir` (bounded, diff_id checked, atomic), published only after the blob's digest
    matched. Layers already unpacked get no tee. Follow the pull with `unpack_image` for the
    layers the store already held (or whose download restarted)."""

    def __init__(self, store: Store, *, max_unpacks: int = 2) -> None:
        self._dirs = diff_dirs(store)
        # Layers unpacking at once: each holds ~25 MB, and two keep two cores busy (the pull
        # moves 3 blobs at once; a third unpack only waits, its bytes queued, its slot to come).
        self._slots = threading.Semaphore(max_unpacks)

    def open(self, layer: Descriptor, diff_id: Digest | None) -> OverlappedUnpack | None:
        lid = layer_id(layer)
        if self._dirs.has(lid):
            return None
        return OverlappedUnpack(
            self._dirs,
            lid,
            compressed_size=layer.size,
            diff_id=diff_id,
            what=f"layer {layer.digest}",
            slots=self._slots,
        )


def unpack_image(store: Store, desc: Descriptor) -> list[Path]:
    """The diff dirs of every layer of the stored image `desc` (each manifest of an index),
    bottom layer first, unpacked where missing (`ensure_diff_dir`)."""
    dirs = []
    for _, manifest in store.manifests_for(desc):
        diff_ids = store.read_config(manifest.config).diff_ids
        for i, layer in enumerate(manifest.layers):
            dirs.append(ensure_diff_dir(store, layer, diff_id_of(manifest.layers, diff_ids, i)))
    return dirs


def prune_diff_dirs(store: Store) -> int:
    """Remove diff dirs whose layer blob is gone from the store; returns how many."""
    dirs = diff_dirs(store)
    removed = 0
    for lid in dirs.ids():
        try:
            present = store.blobs.has(Digest("sha256", lid))
        except ValueError:
            present = False
        if not present:
            dirs.remove(lid)
            removed += 1
    return removed


def prune(store: Store, *, timeout_s: float | None = None) -> tuple[gc.GCResult, int]:
    """Free unreachable blobs, the diff dirs of the layers they were, and dead processes' temp
    dirs, in one exclusive hold of the GC lock (so no build starts on a diff dir being removed).
    Returns the gc result and how many diff dirs went."""
    with store.gc_lock(exclusive=True, timeout_s=timeout_s):
        result = gc.collect_holding_lock(store)
        return result, prune_diff_dirs(store)


def check_diff_dirs(store: Store, *, skip: Collection[Digest] = ()) -> tuple[int, list[fsck.Problem]]:
    """Compare every published diff dir whose blob is in the store (and not in `skip`: blobs
    known corrupt) with that blob, decompressed as the unpack reads it
    (`builder.layers.diffcheck`): one Problem per differing path, at most FSCK_PATHS_SHOWN
    per layer and then one for the rest. Orphans (no blob) are prune's; staging dirs are not
    listed by `DiffDirs.ids`. Read-only. Returns how many were checked, and the problems."""
    dirs = diff_dirs(store)
    problems: list[fsck.Problem] = []
    checked = 0
    for lid in dirs.ids():
        try:
            digest = Digest("sha256", lid)
        except ValueError:
            continue
        if digest in skip or not store.blobs.has(digest):
            continue
        what = f"unpacked layer {digest}"
        checked += 1
        try:
            with store.blobs.open(digest) as raw, open_decompressed(raw) as tar:
                differences = compare_diff_dir(tar, dirs.path(lid))
        except FileNotFoundError:
            continue  # removed (prune, repair) while we looked
        except (LayerError, StoreError, OSError) as err:
            problems.append(fsck.Problem(f"{what} cannot be checked against its blob: {err}", None, digest))
            continue
        for d in differences[:FSCK_PATHS_SHOWN]:
            problems.append(
                fsck.Problem(f"{what} differs from its blob at {d.path!r} ({d.what})", None, digest)
            )
        if len(differences) > FSCK_PATHS_SHOWN:
            more = len(differences) - FSCK_PATHS_SHOWN
            problems.append(fsck.Problem(f"{what} differs from its blob at {more} more paths", None, digest))
    return checked, problems


def check_store(store: Store) -> fsck.FsckReport:
    """`sealer fsck`: the store's check (`builder.store.fsck.check`) and its diff dirs'."""
    report = fsck.check(store)
    checked, found = check_diff_dirs(store, skip=report.corrupt_blobs)
    return dataclasses.replace(
        report,
        problems=report.problems + tuple(found),
        diff_dirs=checked,
        differing_diff_dirs=tuple(dict.fromkeys(p.digest for p in found if p.digest is not None)),
    )


def repair_store(store: Store, *, timeout_s: float | None = None) -> fsck.RepairResult:
    """`sealer fsck --repair`: the store's repair, then the removal of the diff dirs that differ
    from their blobs (each is unpacked again from its verified blob when next needed), in one
    exclusive hold of the GC lock (no build reads a diff dir meanwhile)."""
    with store.gc_lock(exclusive=True, timeout_s=timeout_s):
        result = fsck.repair_holding_lock(store)
        differing = {p.digest for p in check_diff_dirs(store)[1] if p.digest is not None}
        dirs = diff_dirs(store)
        removed = tuple(sorted(differing, key=str))
        for digest in removed:
            dirs.remove(digest.hex)
    return dataclasses.replace(result, removed_diff_dirs=removed)
