"""Overlay2 diff dirs of stored layers: the glue between the store and the layer code.

Diff dirs live under `$SEALER_ROOT/overlay2/<id>/diff`, one per layer blob (the id is the blob
digest's hex). They are unpacked from the verified blob the first time something needs them
(a RUN's lowerdirs, `sealer inspect`, a local run), through the hardened tar reader. This module
exists so that `store` and `layers` stay ignorant of each other; build, runtime and cli use it.
(It was `rootfs.py`; "rootfs" is the tree an image unpacks to on a host, whose Metadata file is
`image.metadata.RootfsMetadata`.)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from builder.errors import ImageError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.layers.overlapped import OverlappedUnpack
from builder.layers.overlay import DiffDirs
from builder.store import gc
from builder.store.layout import Store


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
