"""The timed child of the registry benchmark's pull + unpack (`python -m bench._pull_child
STORE_ROOT REF`): what a build FROM a registry image with a RUN does, and nothing of the
harness (bench/run_registry.py and its imports stay out of the measured process)."""

from __future__ import annotations

import sys
import tempfile


def pull_and_unpack(store_root: str, ref: str) -> None:
    """`ref` pulled into a new store under `store_root`, every layer unpacked into the store's
    overlay2 diff dirs as it downloads (`DiffDirUnpacker`: diff_id checked, published once its
    blob's digest matched)."""
    from builder.diffdirs import DiffDirUnpacker, unpack_image
    from builder.registry.client import RegistryClient
    from builder.store.layout import Store

    # A new store under the given dir for every run (see run_registry._pull_contenders).
    store = Store.open(tempfile.mkdtemp(dir=store_root))
    desc = RegistryClient().pull(store, ref, tees=DiffDirUnpacker(store))
    unpack_image(store, desc)  # nothing left to do here unless a download restarted


if __name__ == "__main__":
    pull_and_unpack(*sys.argv[1:3])
