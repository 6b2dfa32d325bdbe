"""Glue between the store and the layer code: a stored layer's overlay2 diff dir.

Diff dirs live under `$SEALER_ROOT/overlay2/<id>/diff`, one per layer blob (the id is the blob
digest's hex). They are unpacked from the verified blob the first time something needs them
(a RUN's lowerdirs, `sealer inspect`, a local run), through the hardened tar reader. This module
exists so that `store` and `layers` stay ignorant of each other; build, runtime and cli use it.
"""

from __future__ import annotations

from pathlib import Path

from builder.image import mediatypes
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.layers.compression import Compression, open_decompressed
from builder.layers.overlay import DiffDirs
from builder.store.layout import Store


def diff_dirs(store: Store) -> DiffDirs:
    return DiffDirs(store.overlay_dir)


def layer_id(desc: Descriptor) -> str:
    return desc.digest.hex


def ensure_diff_dir(store: Store, desc: Descriptor) -> Path:
    """The diff dir of a stored layer, unpacked (verified, atomically) if it is not yet there."""
    dirs = diff_dirs(store)
    lid = layer_id(desc)
    if dirs.has(lid):
        return dirs.path(lid)
    kind = Compression(mediatypes.LAYER_COMPRESSION.get(desc.media_type, ""))
    return dirs.materialize(
        lid, lambda: open_decompressed(store.blobs.open(desc.digest, expected_size=desc.size), kind)
    )


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
