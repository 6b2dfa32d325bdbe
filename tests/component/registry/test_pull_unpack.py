"""A pull that unpacks its layers while they download (`tees=DiffDirUnpacker`), against a real
docker-registry: the same diff dirs as a pull followed by an unpack, made during the pull, and
nothing of a layer whose bytes fail their digest (no diff dir, no staging dir, no blob)."""

from __future__ import annotations

import gzip
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from builder.diffdirs import DiffDirUnpacker, diff_dirs, layer_id, unpack_image
from builder.errors import DigestMismatch, LayerError
from builder.image.config import History, ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.manifest import Manifest
from builder.image.mediatypes import COMPRESSION_LAYER
from builder.image.reference import Reference
from builder.registry.client import RegistryClient, RegistryOptions
from builder.registry.events import BlobProgress, RegistryEvent
from builder.store.layout import Store
from tests.component.registry._images import CREATED
from tests.registry_fixtures import RegistryServer
from tests.unit.layers._layer_trees import make_tree, tar_bytes
from tests.unit.store._tiny import compress, make_tar
from tests.validate import validate_image

pytestmark = pytest.mark.component


def _put_image(store: Store, name: str, tars: list[bytes], compression: str) -> Descriptor:
    config = ImageConfig.empty(Platform("linux", "amd64"), CREATED)
    layers = []
    for i, tar in enumerate(tars):
        digest, size = store.blobs.put(compress(tar, compression))
        layers.append(Descriptor(COMPRESSION_LAYER[compression], digest, size))
        config = config.with_layer(Digest.from_bytes(tar), History(CREATED, f"layer {i}"))
    desc = store.put_manifest(Manifest(store.put_config(config), tuple(layers)))
    store.refs.set(str(Reference.parse(name)), desc)
    return desc


def _tars(tmp_path: Path) -> list[bytes]:
    """A tree (setuid, hardlink, symlinks, a 0555 dir), whiteouts over it, and ~24 MB of files
    (many chunks: the unpack reads them while later ones arrive)."""
    tree = tar_bytes(root=make_tree(tmp_path / "tree"))
    whiteouts = make_tar({"etc/.wh.config": b"", "ro/.wh..wh..opq": b"", "ro/kept": b"new\n"})
    rng = bytes(range(251)) * 4096
    big = make_tar({f"data/part{i}": os.urandom(1 << 20) + rng * 3 for i in range(8)})
    return [tree, whiteouts, big]


def _snapshot(root: Path, since_ns: int) -> dict[str, tuple[Any, ...]]:
    """Every path below `root`: type, mode, owner, mtime, device, xattrs (overlay's opaque
    marker), then bytes or link target. An mtime after `since_ns` is the unpack's clock (a
    parent the tar does not list, a whiteout): shown as None."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            xattrs = {
                key: os.getxattr(path, key, follow_symlinks=False)
                for key in os.listxattr(path, follow_symlinks=False)
            }
            mtime = st.st_mtime_ns if st.st_mtime_ns < since_ns else None
            head = (st.st_mode, st.st_uid, st.st_gid, mtime, st.st_rdev, xattrs)
            if stat.S_ISLNK(st.st_mode):
                out[str(path.relative_to(root))] = (*head, os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                out[str(path.relative_to(root))] = (*head, st.st_nlink, path.read_bytes())
            else:
                out[str(path.relative_to(root))] = head
    return out


def _diff_trees(store: Store, desc: Descriptor, since_ns: int) -> list[dict[str, tuple[Any, ...]]]:
    layers = store.read_manifest(desc).layers
    return [_snapshot(diff_dirs(store).path(layer_id(layer)), since_ns) for layer in layers]


@pytest.mark.parametrize("compression", ["zstd", "gzip", ""])
def test_pull_unpacking_as_it_downloads_gives_the_trees_of_pull_then_unpack(
    registry: RegistryServer, tmp_path: Path, compression: str
) -> None:
    src = Store.open(tmp_path / "src")
    desc = _put_image(src, "app:v1", _tars(tmp_path), compression)
    ref = f"{registry.host}/app:v1"
    RegistryClient().push(src, "app:v1", ref)
    started = time.time_ns()

    overlapped = Store.open(tmp_path / "overlapped")
    assert RegistryClient().pull(overlapped, ref, tees=DiffDirUnpacker(overlapped)).digest == desc.digest
    validate_image(overlapped, ref)
    layers = overlapped.read_manifest(desc).layers
    # Every layer was unpacked by the pull itself, not left for later.
    assert all(diff_dirs(overlapped).has(layer_id(layer)) for layer in layers)
    unpack_image(overlapped, desc)  # finds them all: nothing to do

    sequential = Store.open(tmp_path / "sequential")
    RegistryClient().pull(sequential, ref)
    assert diff_dirs(sequential).ids() == []
    unpack_image(sequential, desc)

    assert _diff_trees(overlapped, desc, started) == _diff_trees(sequential, desc, started)
    for store in (overlapped, sequential):  # nothing left in staging
        assert sorted(p.name for p in store.overlay_dir.iterdir()) == sorted(layer_id(x) for x in layers)


def test_blob_failing_its_digest_leaves_no_diff_dir_and_no_blob(
    registry: RegistryServer, tmp_path: Path
) -> None:
    src = Store.open(tmp_path / "src")
    tars = _tars(tmp_path)
    desc = _put_image(src, "app:v1", tars, "gzip")
    big = src.read_manifest(desc).layers[2]
    ref = f"{registry.host}/app:v1"
    RegistryClient().push(src, "app:v1", ref)
    # The registry now serves other bytes of the same size that decompress to the very same
    # tar (a gzip header with another mtime): the diff_id still matches, only the blob's digest
    # tells. An unpack published before that check would leave a complete-looking diff dir.
    data = registry.blob_data_path(str(big.digest))
    raw = bytearray(data.read_bytes())
    raw[4:8] = b"\x01\x02\x03\x04"
    assert gzip.decompress(bytes(raw)) == tars[2]
    data.write_bytes(bytes(raw))

    dst = Store.open(tmp_path / "dst")
    with pytest.raises(DigestMismatch) as info:
        RegistryClient(RegistryOptions(retries=1)).pull(dst, ref, tees=DiffDirUnpacker(dst))
    assert str(big.digest) in str(info.value) and "\n" not in str(info.value)
    assert not diff_dirs(dst).has(layer_id(big))
    assert not dst.blobs.has(big.digest)
    assert dst.refs.list() == []
    leftovers = [p.name for p in dst.overlay_dir.iterdir()] if dst.overlay_dir.exists() else []
    assert all(name in {layer_id(x) for x in src.read_manifest(desc).layers[:2]} for name in leftovers), (
        leftovers
    )
    assert list(dst.tmp_dir.rglob("blob-*")) == []


def test_hostile_layer_fails_the_pull_naming_it_and_leaves_no_diff_dir(
    registry: RegistryServer, tmp_path: Path
) -> None:
    src = Store.open(tmp_path / "src")
    desc = _put_image(src, "evil:v1", [make_tar({"ok.txt": b"fine\n", "../escape.txt": b"out\n"})], "zstd")
    layer = src.read_manifest(desc).layers[0]
    ref = f"{registry.host}/evil:v1"
    RegistryClient().push(src, "evil:v1", ref)

    dst = Store.open(tmp_path / "dst")
    with pytest.raises(LayerError) as info:
        RegistryClient().pull(dst, ref, tees=DiffDirUnpacker(dst))
    assert str(info.value).startswith(f"layer {layer.digest}") and "\n" not in str(info.value)
    assert not (tmp_path / "dst" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert list(dst.overlay_dir.iterdir()) == [] if dst.overlay_dir.exists() else True
    assert dst.refs.list() == []


def test_unpacking_pull_resumes_with_range_after_registry_restart(
    registry: RegistryServer, tmp_path: Path
) -> None:
    src = Store.open(tmp_path / "src")
    tars = _tars(tmp_path)
    desc = _put_image(src, "app:v1", tars[2:] * 1 + [make_tar({"small": b"s"})], "gzip")
    big = src.read_manifest(desc).layers[0]
    ref = f"{registry.host}/app:v1"
    RegistryClient().push(src, "app:v1", ref)
    seen: list[int] = []

    def on_event(event: RegistryEvent) -> None:
        if isinstance(event, BlobProgress) and event.digest == str(big.digest):
            if event.done >= 4 << 20 and not seen:
                registry.kill()
                registry.start()
            seen.append(event.done)

    started = time.time_ns()
    dst = Store.open(tmp_path / "dst")
    client = RegistryClient(RegistryOptions(retries=3, timeout_s=10), on_event=on_event)
    assert client.pull(dst, ref, tees=DiffDirUnpacker(dst)).digest == desc.digest
    validate_image(dst, ref)
    assert seen == sorted(seen) and seen[-1] == big.size, "the download started again from byte 0"
    assert diff_dirs(dst).has(layer_id(big)), "the resumed download was not unpacked as it arrived"
    sequential = Store.open(tmp_path / "sequential")
    RegistryClient().pull(sequential, ref)
    unpack_image(sequential, desc)
    assert _diff_trees(dst, desc, started) == _diff_trees(sequential, desc, started)
