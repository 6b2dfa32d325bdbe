"""`sealer fsck` compares unpacked layers (overlay2 diff dirs) with their blobs.

Their files are never fsynced, so a power loss can leave a published diff dir torn (empty,
missing or zeroed files). A store whose layers hold files, an empty file, a setuid file,
symlinks, hardlinks, whiteouts, opaque dirs, a path written twice and implicit parents is
unpacked by the real unpack and must check clean; each kind of damage is then named (layer and
path, one line, exit 1), `--repair` removes that diff dir only, and the next use unpacks it
again. Real overlay whiteouts (char device 0/0, trusted xattrs) need root, as the suite runs.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.diffdirs import check_store, diff_dirs, ensure_diff_dir, unpack_image
from builder.image.config import History, ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.manifest import Manifest
from builder.image.mediatypes import COMPRESSION_LAYER
from builder.image.reference import Reference
from builder.layers.compression import open_decompressed
from builder.layers.diffcheck import compare_diff_dir
from builder.layers.overlay import DiffDirs
from builder.store.layout import Store
from tests.conftest import SealerRunner
from tests.unit.layers._layer_trees import make_tree, tar_bytes
from tests.unit.store._tiny import CREATED, compress


def _member(
    tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **kw: object
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1_700_000_000
    for key, value in kw.items():
        setattr(info, key, value)
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if data else None)


def _upper_layer() -> bytes:
    """What the unpack does beyond one entry per path: whiteouts (of a lower path, of this
    layer's own dir), an opaque marker, a dir over a whiteout (opaque), a path written twice
    with a hardlink to its first content, parents never listed."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _member(tar, ".wh.a-b")  # whiteout of a lower file
        _member(tar, ".wh.ro")
        _member(tar, "ro", tarfile.DIRTYPE)  # a dir over this layer's whiteout: opaque
        _member(tar, "ro/new", data=b"new in ro\n")
        _member(tar, "etc/.wh..wh..opq")  # opaque marker, parent implicit
        _member(tar, "etc/only", data=b"only this\n")
        _member(tar, "twice", data=b"first")
        _member(tar, "first-link", tarfile.LNKTYPE, linkname="twice")
        _member(tar, "twice", data=b"second, longer")  # the later entry wins
        _member(tar, "deep/x/y/file", data=b"implicit parents\n")
        _member(tar, "own", tarfile.DIRTYPE)
        _member(tar, "own/kept", data=b"kept\n")
        _member(tar, ".wh.own")  # spares this layer's dir, makes it opaque
        _member(tar, "empty-again", data=b"")
    return buf.getvalue()


def _add_image(store: Store, name: str, tars: list[bytes]) -> Descriptor:
    config = ImageConfig.empty(Platform("linux", "amd64"), CREATED)
    layers = []
    for i, tar in enumerate(tars):
        digest, size = store.blobs.put(compress(tar, "zstd"))
        layers.append(Descriptor(COMPRESSION_LAYER["zstd"], digest, size))
        config = config.with_layer(Digest.from_bytes(tar), History(CREATED, f"layer {i}"))
    desc = store.put_manifest(Manifest(store.put_config(config), tuple(layers)))
    store.refs.set(str(Reference.parse(name)), desc)
    return desc


@pytest.fixture
def unpacked(store: Store, tmp_path: Path) -> tuple[Descriptor, list[Path]]:
    tree = make_tree(tmp_path / "tree")
    (tree / "etc" / "empty-file").write_bytes(b"")
    desc = _add_image(store, "layers:v1", [tar_bytes(root=tree), _upper_layer()])
    return desc, unpack_image(store, desc)


def test_a_healthy_store_checks_clean(
    store: Store, unpacked: tuple[Descriptor, list[Path]], sealer: SealerRunner
) -> None:
    _, (lower, upper) = unpacked
    # What the check must accept is what the unpack made (sanity of the fixture itself).
    assert stat.S_ISCHR(os.lstat(upper / "a-b").st_mode) and (upper / "first-link").read_bytes() == b"first"
    assert os.lstat(lower / "bin" / "tool").st_mode & stat.S_ISUID
    report = check_store(store)
    assert report.problems == () and report.diff_dirs == 2
    result = sealer("fsck")
    assert "2 unpacked layers, 0 problems" in result.stdout, result.stdout


def _truncate(d: Path) -> str:
    os.truncate(d / "etc" / "config", 0)
    return "'etc/config' (0 bytes, the blob has 11)"


def _remove(d: Path) -> str:
    (d / "bin" / "tool-link").unlink()
    return "'bin/tool-link' (missing, the blob has a file of 10244 bytes)"


def _zero(d: Path) -> str:
    path = d / "ro" / "file"
    path.write_bytes(bytes(path.stat().st_size))
    return "'ro/file' (513 bytes as in the blob, but other bytes)"


def _add(d: Path) -> str:
    (d / "etc" / "extra").write_bytes(b"x")
    return "'etc/extra' (a file of 1 bytes the blob does not make)"


def _repoint(d: Path) -> str:
    (d / "bin" / "cfg").unlink()
    os.symlink("/etc/shadow", d / "bin" / "cfg")
    return "'bin/cfg' (a symlink to '/etc/shadow', the blob's points to '../etc/config')"


def _unwhiteout(d: Path) -> str:
    (d / "a-b").unlink()
    return "'a-b' (missing, the blob has a whiteout)"


def _unopaque(d: Path) -> str:
    os.removexattr(d / "etc", "trusted.overlay.opaque")
    return "'etc' (not opaque, the blob makes it opaque)"


DAMAGES: dict[str, tuple[int, Callable[[Path], str]]] = {
    "truncated": (0, _truncate),
    "removed": (0, _remove),
    "zeroed": (0, _zero),
    "extra": (0, _add),
    "symlink-repointed": (0, _repoint),
    "whiteout-removed": (1, _unwhiteout),
    "opaque-lost": (1, _unopaque),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_fsck_names_the_damage_and_repair_removes_only_that_diff_dir(
    store: Store, unpacked: tuple[Descriptor, list[Path]], sealer: SealerRunner, damage: str
) -> None:
    desc, dirs = unpacked
    index, damage_fn = DAMAGES[damage]
    layers = store.read_manifest(desc).layers
    layer, other = layers[index], layers[1 - index]
    detail = damage_fn(dirs[index])
    found = sealer("fsck", expect=1)
    problems = [line for line in found.stdout.splitlines() if line.startswith("problem: ")]
    assert problems == [f"problem: unpacked layer {layer.digest} differs from its blob at {detail}"], (
        found.stdout
    )
    assert found.stderr.startswith("error: ") and "Traceback" not in found.stderr + found.stdout
    assert "fsck --repair" in found.stderr and "unpacked layers that differ" in found.stderr
    other_ino = os.lstat(dirs[1 - index]).st_ino
    repaired = sealer("fsck", "--repair")
    assert f"removed unpacked layer: {layer.digest}" in repaired.stdout
    assert "1 unpacked layer, 0 problems" in repaired.stdout, repaired.stdout
    dirs_now = diff_dirs(store)
    assert not dirs_now.has(layer.digest.hex) and os.lstat(dirs[1 - index]).st_ino == other_ino
    assert dirs_now.has(other.digest.hex)
    sealer("fsck")
    # The next use unpacks it again from the verified blob, and it matches.
    again = ensure_diff_dir(store, layer, store.read_config(store.read_manifest(desc).config).diff_ids[index])
    with store.blobs.open(layer.digest) as raw, open_decompressed(raw) as tar:
        assert compare_diff_dir(tar, again) == []
    assert "2 unpacked layers, 0 problems" in sealer("fsck").stdout


def test_many_differences_are_capped_per_layer(
    store: Store, unpacked: tuple[Descriptor, list[Path]], sealer: SealerRunner
) -> None:
    _, (lower, _) = unpacked
    for i in range(8):
        (lower / f"stray-{i}").write_bytes(b"")
    found = sealer("fsck", expect=1)
    problems = [line for line in found.stdout.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 6 and problems[-1].endswith("differs from its blob at 3 more paths")


def test_orphans_and_staging_dirs_are_not_checked(
    store: Store, unpacked: tuple[Descriptor, list[Path]]
) -> None:
    orphan = DiffDirs(store.overlay_dir).path("0" * 64)
    orphan.mkdir(parents=True)
    (orphan / "anything").write_bytes(b"x")
    staging = store.overlay_dir / f".{'1' * 64}.abcd.tmp" / "diff"
    staging.mkdir(parents=True)
    report = check_store(store)
    assert report.problems == () and report.diff_dirs == 2
