"""Images written straight into a Store for the registry tests (no build needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile

from builder.image.config import History, ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.index import Index
from builder.image.manifest import Manifest
from builder.image.mediatypes import OCI_LAYER_TAR
from builder.image.reference import Reference
from builder.store.layout import Store
from tests.unit.store._tiny import CREATED, add_image, make_tar

__all__ = ["CREATED", "add_big_image", "add_image", "add_index", "run_tool"]


def add_index(store: Store, name: str) -> Descriptor:
    """A two-platform index (linux/amd64 + linux/arm64/v8) named `name`."""
    children = []
    for platform in (Platform("linux", "amd64"), Platform("linux", "arm64", "v8")):
        desc = add_image(
            store, f"tmp-{platform.architecture}:x", [{"arch": str(platform).encode()}], platform=platform
        )
        store.untag(f"tmp-{platform.architecture}:x")
        children.append(desc.with_platform(platform))
    desc = store.put_index(Index(tuple(children)))
    store.refs.set(str(Reference.parse(name)), desc)
    return desc


def add_big_image(store: Store, name: str, *, big_mb: int, small_layers: int = 2) -> Descriptor:
    """Small tar layers first, then one uncompressed layer of `big_mb` MB of random bytes last.

    The big layer is a valid tar (one file), written in 1 MB pieces so the test stays small in
    memory; it comes last so that the small blobs are complete when a fault hits the big one.
    """
    config = ImageConfig.empty(Platform("linux", "amd64"), CREATED)
    layers = []
    for i in range(small_layers):
        tar = make_tar({f"small{i}.txt": os.urandom(2048)})
        digest, size = store.blobs.put(tar)
        layers.append(Descriptor(OCI_LAYER_TAR, digest, size))
        config = config.with_layer(digest, History(CREATED, f"small {i}"))
    size = big_mb << 20

    info = tarfile.TarInfo("big.bin")
    info.size = size
    info.mode = 0o644
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    with store.blobs.writer() as w:
        w.write(header)
        for _ in range(big_mb):
            w.write(os.urandom(1 << 20))
        w.write(b"\0" * 1024)  # end-of-archive; size is a multiple of 512 already
        digest, total = w.commit()
    layers.append(Descriptor(OCI_LAYER_TAR, digest, total))
    config = config.with_layer(digest, History(CREATED, "big"))
    manifest = Manifest(store.put_config(config), tuple(layers))
    desc = store.put_manifest(manifest)
    store.refs.set(str(Reference.parse(name)), desc)
    return desc


def run_tool(*args: str, timeout: float = 60) -> str:
    """Run skopeo/umoci/...; a missing tool fails the test (never skips)."""
    tool = shutil.which(args[0])
    assert tool is not None, f"{args[0]} is not installed (make install puts it in place)"
    proc = subprocess.run([tool, *args[1:]], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}"
    return proc.stdout
