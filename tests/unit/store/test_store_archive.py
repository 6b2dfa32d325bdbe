"""save/load without external tools: round trip, naming, hostile archives."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from builder.errors import DigestMismatch, ImageNotFound, LayoutInvalid, UsageError
from builder.image.index import Index
from builder.store.archive import load, save
from builder.store.layout import Store
from tests.unit.store._tiny import add_image
from tests.validate import validate_image


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isreg() else b"") for m in tar}  # type: ignore[union-attr]


def _write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


def test_save_load_round_trip(tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    a = add_image(src, "app:v1", [{"a": b"1"}, {"b": b"2"}], compression="zstd")
    b = add_image(src, "127.0.0.1:5000/x/y:z")
    out = tmp_path / "out" / "images.tar"
    save(src, ["app:v1", "127.0.0.1:5000/x/y:z"], out)
    members = _members(out)
    assert {"oci-layout", "index.json"} <= set(members)
    index = Index.from_bytes(members["index.json"])
    names = [m.annotations["org.opencontainers.image.ref.name"] for m in index.manifests]
    assert names == ["docker.io/library/app:v1", "127.0.0.1:5000/x/y:z"]
    save(src, ["app:v1", "127.0.0.1:5000/x/y:z"], tmp_path / "again.tar")
    assert (tmp_path / "again.tar").read_bytes() == out.read_bytes()  # deterministic

    dst = Store.open(tmp_path / "dst")
    assert load(dst, out) == names
    assert dst.resolve("app:v1") == a and dst.resolve("127.0.0.1:5000/x/y:z") == b
    validate_image(dst, "app:v1")
    validate_image(dst, "127.0.0.1:5000/x/y:z")
    assert load(dst, out) == names  # idempotent


def test_load_name_override_and_bare_tags(tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    add_image(src, "app:v1")
    out = tmp_path / "My_Image.tar"
    save(src, ["app:v1"], out)
    dst = Store.open(tmp_path / "dst")
    assert load(dst, out, name="other/name:x") == ["docker.io/other/name:x"]
    # Rewrite the ref name as a bare tag, as `skopeo copy ... oci:DIR:v1` does.
    members = _members(out)
    index = json.loads(members["index.json"])
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = "v7"
    members["index.json"] = json.dumps(index).encode()
    bare = tmp_path / "My_Image.tar"
    _write_tar(bare, [(tarfile.TarInfo(n), d) for n, d in members.items() if d or n == "oci-layout"])
    assert load(dst, bare) == ["docker.io/library/my_image:v7"]
    validate_image(dst, "my_image:v7")
    index["manifests"][0]["annotations"] = {}
    members["index.json"] = json.dumps(index).encode()
    _write_tar(bare, [(tarfile.TarInfo(n), d) for n, d in members.items() if d])
    with pytest.raises(ImageNotFound, match="no named image"):
        load(dst, bare)
    assert load(dst, bare, name="unnamed:v1") == ["docker.io/library/unnamed:v1"]


def test_load_corrupt_blob_registers_nothing(tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    desc = add_image(src, "app:v1", [{"a": b"1" * 100}])
    layer = src.read_manifest(desc).layers[0]
    out = tmp_path / "a.tar"
    save(src, ["app:v1"], out)
    members = _members(out)
    name = f"blobs/sha256/{layer.digest.hex}"
    members[name] = bytes([members[name][0] ^ 1]) + members[name][1:]
    _write_tar(out, [(tarfile.TarInfo(n), d) for n, d in members.items() if d])
    dst = Store.open(tmp_path / "dst")
    with pytest.raises(DigestMismatch, match=str(layer.digest)):
        load(dst, out)
    assert dst.refs.list() == []
    assert not dst.blobs.has(layer.digest)


def test_load_hostile_tar(tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    desc = add_image(src, "app:v1")
    out = tmp_path / "a.tar"
    save(src, ["app:v1"], out)
    members = [(tarfile.TarInfo(n), d) for n, d in _members(out).items() if d]
    evil = []
    for name in ("../escape", "/abs/path", "blobs/../../escape2", "blobs/sha256/../../../x"):
        evil.append((tarfile.TarInfo(name), b"pwned"))
    _write_tar(out, members + evil)
    dst = Store.open(tmp_path / "dst")
    assert load(dst, out) == ["docker.io/library/app:v1"]  # junk ignored, never written
    assert not (tmp_path / "escape").exists() and not (tmp_path / "escape2").exists()
    assert not Path("/abs/path").exists()
    assert dst.resolve("app:v1") == desc

    layer = src.read_manifest(desc).layers[0]
    link = tarfile.TarInfo(f"blobs/sha256/{layer.digest.hex}")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    kept = [(i, d) for i, d in members if i.name != link.name]
    _write_tar(out, [*kept, (link, b"")])
    with pytest.raises(LayoutInvalid, match="links are refused"):
        load(Store.open(tmp_path / "dst2"), out)
    _write_tar(out, [*members, (tarfile.TarInfo("index.json"), b"{}")])
    with pytest.raises(LayoutInvalid, match="twice"):
        load(Store.open(tmp_path / "dst3"), out)


def test_load_bad_inputs(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    with pytest.raises(UsageError):
        load(store, tmp_path / "missing")
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(LayoutInvalid):
        load(store, tmp_path / "junk.tar")
    (tmp_path / "dir").mkdir()
    with pytest.raises(LayoutInvalid, match="oci-layout"):
        load(store, tmp_path / "dir")
    with pytest.raises(UsageError):
        save(store, [], tmp_path / "x.tar")
    with pytest.raises(ImageNotFound):
        save(store, ["nope:v1"], tmp_path / "x.tar")
    assert not (tmp_path / "x.tar").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".x.tar")] == []


def test_load_layout_dir_with_symlinked_blob(tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    desc = add_image(src, "app:v1")
    layer = src.read_manifest(desc).layers[0]
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(tmp_path / "a.tar", "w") as _:
        pass
    save(src, ["app:v1"], tmp_path / "a.tar")
    with tarfile.open(tmp_path / "a.tar") as tar:
        tar.extractall(layout, filter="data")
    dst = Store.open(tmp_path / "dst")
    assert load(dst, layout) == ["docker.io/library/app:v1"]
    blob = layout / "blobs/sha256" / layer.digest.hex
    blob.unlink()
    blob.symlink_to("/etc/passwd")
    dst2 = Store.open(tmp_path / "dst2")
    with pytest.raises(LayoutInvalid, match="symlinks are refused"):
        load(dst2, layout)
    assert dst2.refs.list() == []
