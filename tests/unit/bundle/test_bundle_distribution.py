"""write_distribution: distribution's filesystem layout, idempotence, conflicts, verification."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from builder.build.bundle.distribution import write_distribution
from builder.errors import DigestMismatch, DistributionLayoutError, ImageNotFound
from builder.store.layout import Store
from tests.unit.bundle._images import add_index
from tests.unit.store._tiny import add_image

V2 = Path("docker/registry/v2")


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_single_image_layout(store: Store, tmp_path: Path) -> None:
    desc = add_image(store, "nginx:1.25", [{"a": b"1"}, {"b": b"2"}])
    manifest = store.read_manifest(desc)
    dest = tmp_path / "registry"
    stats = write_distribution(store, [("nginx:1.25", "docker.io/library/nginx:1.25")], dest)
    assert (stats.images, stats.repositories, stats.manifests) == (1, 1, 1)
    assert stats.blobs_written == 4 and stats.blobs_present == 0
    files = files_under(dest)
    repo = "docker/registry/v2/repositories/library/nginx"
    for blob in (desc, manifest.config, *manifest.layers):
        data = files[f"docker/registry/v2/blobs/sha256/{blob.digest.hex[:2]}/{blob.digest.hex}/data"]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == str(blob.digest)
    for blob in (manifest.config, *manifest.layers):
        assert files[f"{repo}/_layers/sha256/{blob.digest.hex}/link"] == str(blob.digest).encode()
    assert files[f"{repo}/_manifests/revisions/sha256/{desc.digest.hex}/link"] == str(desc.digest).encode()
    assert files[f"{repo}/_manifests/tags/1.25/current/link"] == str(desc.digest).encode()
    assert (
        files[f"{repo}/_manifests/tags/1.25/index/sha256/{desc.digest.hex}/link"] == str(desc.digest).encode()
    )
    assert len(files) == 4 + 3 + 1 + 2  # blobs, layer links, revision, tag links: nothing else
    assert not [p for p in dest.rglob("*.tmp")]


def test_rerun_is_idempotent(store: Store, tmp_path: Path) -> None:
    add_image(store, "nginx:1.25")
    dest = tmp_path / "registry"
    write_distribution(store, [("nginx:1.25", "nginx:1.25")], dest)
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}
    stats = write_distribution(store, [("nginx:1.25", "nginx:1.25")], dest)
    assert stats.blobs_written == 0 and stats.blobs_present == 3 and stats.bytes_written == 0
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()} == before


def test_index_writes_every_local_platform(store: Store, tmp_path: Path) -> None:
    index_desc, children = add_index(store, "multi:v1")
    dest = tmp_path / "registry"
    stats = write_distribution(store, [("multi:v1", "quay.io/acme/multi:v1")], dest)
    assert stats.manifests == 3
    repo = dest / V2 / "repositories/acme/multi"
    assert (repo / "_manifests/tags/v1/current/link").read_text() == str(index_desc.digest)
    for child in children:
        assert (repo / f"_manifests/revisions/sha256/{child.digest.hex}/link").is_file()
        manifest = store.read_manifest(child)
        for blob in (manifest.config, *manifest.layers):
            assert (repo / f"_layers/sha256/{blob.digest.hex}/link").read_text() == str(blob.digest)
    # the shared layer is one blob file, linked once
    assert stats.blobs_written == 1 + 2 * 3 + 1  # index, (manifest, config, own layer) x2, shared


def test_digest_references_and_missing_platforms(store: Store, tmp_path: Path) -> None:
    index_desc, children = add_index(store, "multi:v1")
    store.blobs.delete(children[1].digest)  # a platform never pulled
    dest = tmp_path / "registry"
    ref = f"registry.k8s.io/ingress-nginx/controller:v1.5.1@{index_desc.digest}"
    stats = write_distribution(store, [("multi:v1", ref)], dest)
    assert stats.manifests == 2
    repo = dest / V2 / "repositories/ingress-nginx/controller"
    assert (repo / "_manifests/tags/v1.5.1/current/link").read_text() == str(index_desc.digest)
    assert not (repo / f"_manifests/revisions/sha256/{children[1].digest.hex}").exists()

    write_distribution(store, [("multi:v1", f"registry.k8s.io/x/by-digest@{index_desc.digest}")], dest)
    by_digest = dest / V2 / "repositories/x/by-digest/_manifests"
    assert (by_digest / f"revisions/sha256/{index_desc.digest.hex}/link").is_file()
    assert not (by_digest / "tags").exists()


def test_wrong_digest_in_reference(store: Store, tmp_path: Path) -> None:
    add_image(store, "a:1")
    other = add_image(store, "b:1")
    with pytest.raises(DistributionLayoutError, match=r"names digest sha256:.*but 'a:1' in the store is"):
        write_distribution(store, [("a:1", f"a:1@{other.digest}")], tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_same_repository_from_two_registries_is_an_error(store: Store, tmp_path: Path) -> None:
    add_image(store, "a:1")
    add_image(store, "b:1")
    with pytest.raises(DistributionLayoutError) as info:
        write_distribution(
            store, [("a:1", "docker.io/bitnami/nginx:1"), ("b:1", "quay.io/bitnami/nginx:2")], tmp_path / "r"
        )
    assert "docker.io/bitnami/nginx:1 and quay.io/bitnami/nginx:2" in str(info.value)
    assert "'bitnami/nginx'" in str(info.value)
    assert not (tmp_path / "r").exists()


def test_one_tag_two_images_is_an_error(store: Store, tmp_path: Path) -> None:
    add_image(store, "a:1")
    add_image(store, "b:1")
    with pytest.raises(DistributionLayoutError, match="tag library/x:1 with different images"):
        write_distribution(store, [("a:1", "x:1"), ("b:1", "docker.io/library/x:1")], tmp_path / "r")


def test_unknown_store_name(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound):
        write_distribution(store, [("nope:1", "nope:1")], tmp_path / "r")


def test_corrupt_store_blob_is_never_written(store: Store, tmp_path: Path) -> None:
    desc = add_image(store, "a:1", [{"big": b"x" * 10000}])
    layer = store.read_manifest(desc).layers[0]
    path = store.blobs.path(layer.digest)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    dest = tmp_path / "r"
    with pytest.raises(DigestMismatch):
        write_distribution(store, [("a:1", "a:1")], dest)
    assert not (dest / V2 / "blobs/sha256" / layer.digest.hex[:2] / layer.digest.hex / "data").exists()
    assert not list(dest.rglob("*.tmp"))
    assert not (dest / V2 / "repositories/library/a/_manifests").exists()
