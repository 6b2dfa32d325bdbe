"""RefStore (index.json) and Store: names, locking, resolution, listing."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from builder.errors import ImageNotFound, LayoutInvalid, StoreError, StoreLocked
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.index import Index
from builder.image.mediatypes import ANNOTATION_REF_NAME, OCI_MANIFEST
from builder.store._lock import locked_dir
from builder.store.layout import Store, default_root
from builder.store.refs import ANNOTATION_STORED, RefStore
from tests.unit.store._tiny import add_image
from tests.validate import validate_image

DESC = Descriptor(OCI_MANIFEST, Digest.from_bytes(b"m"), 1)


def test_set_get_list_remove(tmp_path: Path) -> None:
    refs = RefStore(tmp_path)
    assert refs.list() == [] and refs.get("x") is None
    refs.set("docker.io/library/app:v1", DESC)
    refs.set("docker.io/library/app:v2", DESC)
    other = Descriptor(OCI_MANIFEST, Digest.from_bytes(b"n"), 2)
    refs.set("docker.io/library/app:v1", other)
    assert refs.list() == [("docker.io/library/app:v1", other), ("docker.io/library/app:v2", DESC)]
    assert refs.get("docker.io/library/app:v2") == DESC
    raw = json.loads((tmp_path / "index.json").read_bytes())
    assert raw["schemaVersion"] == 2 and raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert raw["manifests"][0]["annotations"] == {
        ANNOTATION_REF_NAME: "docker.io/library/app:v1",
        ANNOTATION_STORED: raw["manifests"][0]["annotations"][ANNOTATION_STORED],
    }
    assert refs.remove("docker.io/library/app:v1") is True
    assert refs.remove("docker.io/library/app:v1") is False
    assert [n for n, _ in refs.list()] == ["docker.io/library/app:v2"]


def _add_refs(root: str, prefix: str) -> None:
    refs = RefStore(root)
    for i in range(50):
        refs.set(f"docker.io/library/{prefix}:{i}", DESC)


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_refs, args=(str(tmp_path), p)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    names = {n for n, _ in RefStore(tmp_path).list()}
    assert len(names) == 100
    Index.from_bytes((tmp_path / "index.json").read_bytes())  # still a valid index
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]  # no temp files left


def test_lock_timeout(tmp_path: Path) -> None:
    refs = RefStore(tmp_path, lock_timeout_s=0.2)
    with (
        locked_dir(tmp_path, exclusive=True, timeout_s=1, what="test"),
        pytest.raises(StoreLocked, match="locked by another") as info,
    ):
        refs.set("docker.io/library/x:1", DESC)
    assert info.value.hint
    refs.set("docker.io/library/x:1", DESC)


def test_corrupt_index_is_layout_invalid(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(LayoutInvalid, match=r"index\.json") as info:
        RefStore(tmp_path).list()
    assert info.value.hint and "move it away" in info.value.hint


def test_store_open_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StoreError, match="no sealer store"):
        Store.open(tmp_path / "none", create=False)
    store = Store.open(tmp_path / "root")
    for d in ("oci/blobs/sha256", "tmp", "overlay2", "cache"):
        assert (tmp_path / "root" / d).is_dir()
    assert json.loads((tmp_path / "root/oci/oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    assert Index.from_bytes((tmp_path / "root/oci/index.json").read_bytes()) == Index()
    assert Store.open(tmp_path / "root", create=False).root == store.root
    (tmp_path / "root/oci/oci-layout").write_text("[]")
    with pytest.raises(LayoutInvalid, match="oci-layout"):
        Store.open(tmp_path / "root")
    monkeypatch.setenv("SEALER_ROOT", str(tmp_path / "env"))
    assert default_root() == tmp_path / "env"
    assert Store.open().root == tmp_path / "env"
    assert Store.open(tmp_path / "explicit").root == tmp_path / "explicit"
    monkeypatch.delenv("SEALER_ROOT")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_root() == Path("/var/lib/sealer")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home/.local/share/sealer"


def test_resolve_names_ids_digests(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    desc = add_image(store, "app:v1")
    add_image(store, "127.0.0.1:5000/a/b:t", compression="zstd")
    validate_image(store, "app:v1")
    validate_image(store, "127.0.0.1:5000/a/b:t")
    image_id = store.read_manifest(desc).config.digest
    for text in (
        "app:v1",
        "docker.io/library/app:v1",
        "library/app:v1",
        str(desc.digest),
        f"app@{desc.digest}",
        image_id.hex[:12],
        image_id.hex,
        str(image_id)[:20],
    ):
        assert store.resolve(text) == desc, text
    for bad in ("app", "app:v2", image_id.hex[:11], "Bad Name", str(Digest.from_bytes(b"?"))):
        with pytest.raises(ImageNotFound) as info:
            store.resolve(bad)
        assert info.value.hint and "sealer images" in info.value.hint


def test_tag_untag_images(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    desc = add_image(store, "app:v1", [{"a": b"1"}, {"b": b"22"}], labels={"k": "v"})
    assert store.tag("app:v1", "registry.local/x/app:v9") == "registry.local/x/app:v9"
    assert store.resolve("registry.local/x/app:v9") == desc
    (record,) = [r for r in store.images() if r.name == "docker.io/library/app:v1"]
    manifest = store.read_manifest(desc)
    assert record.digest == desc.digest
    assert record.image_id == manifest.config.digest
    assert record.size == desc.size + manifest.config.size + sum(layer.size for layer in manifest.layers)
    assert record.platforms == (Platform("linux", "amd64"),)
    assert record.created == "1970-01-01T00:00:00Z"
    assert store.untag("app:v1") == "docker.io/library/app:v1"
    with pytest.raises(ImageNotFound):
        store.untag("app:v1")
    assert [r.name for r in store.images()] == ["registry.local/x/app:v9"]


def test_manifests_for_index(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    amd = add_image(store, "tmp:amd", platform=Platform("linux", "amd64"))
    arm = add_image(store, "tmp:arm", platform=Platform("linux", "arm64", "v8"))
    index = Index(
        (amd.with_platform(Platform("linux", "amd64")), arm.with_platform(Platform("linux", "arm64", "v8")))
    )
    idx = store.put_index(index)
    store.refs.set("docker.io/library/multi:v1", idx)
    validate_image(store, "multi:v1")
    assert [d.digest for d, _ in store.manifests_for(idx)] == [amd.digest, arm.digest]
    assert [d.digest for d, _ in store.manifests_for(idx, Platform("linux", "arm64"))] == [arm.digest]
    with pytest.raises(ImageNotFound, match="available"):
        store.manifests_for(idx, Platform("linux", "ppc64le"))
    (record,) = [r for r in store.images() if r.name == "docker.io/library/multi:v1"]
    # IMAGE ID: the config digest of this host's platform manifest (podman), not the index's.
    host = amd if Platform.host() == Platform("linux", "amd64") else arm
    assert record.image_id == store.read_manifest(host).config.digest
    assert store.resolve(record.image_id.hex[:12]).digest in (idx.digest, host.digest)
    assert record.platforms == (Platform("linux", "amd64"), Platform("linux", "arm64", "v8"))
