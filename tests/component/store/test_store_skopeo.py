"""Interop: skopeo and umoci read what the store writes; what skopeo writes loads.

A missing skopeo/umoci fails these tests; it never skips them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.errors import DigestMismatch
from builder.store.archive import load, save
from builder.store.layout import Store
from tests.unit.store._tiny import add_image
from tests.validate import validate_image

pytestmark = pytest.mark.component


def _run(*args: str) -> str:
    tool = shutil.which(args[0])
    assert tool is not None, f"{args[0]} is not installed (apt-get install {args[0]}); these tests need it"
    proc = subprocess.run([tool, *args[1:]], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}"
    return proc.stdout


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "root")
    add_image(s, "app:v1", [{"etc/a.conf": b"a" * 1000}, {"bin/tool": b"#!/bin/sh\n"}], compression="gzip")
    add_image(s, "127.0.0.1:5000/sealer/k8s:v1.22", [{"Metadata": b"{}"}], compression="zstd")
    return s


def test_skopeo_inspects_and_copies_our_layout(store: Store, tmp_path: Path) -> None:
    desc = store.resolve("app:v1")
    info = json.loads(_run("skopeo", "inspect", f"oci:{store.oci_dir}:docker.io/library/app:v1"))
    assert info["Digest"] == str(desc.digest)
    assert len(info["Layers"]) == 2
    raw = json.loads(
        _run("skopeo", "inspect", "--raw", f"oci:{store.oci_dir}:127.0.0.1:5000/sealer/k8s:v1.22")
    )
    assert raw["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    other = tmp_path / "other"
    _run("skopeo", "copy", f"oci:{store.oci_dir}:docker.io/library/app:v1", f"oci:{other}:copied")
    copied = json.loads((other / "index.json").read_text())
    assert copied["manifests"][0]["digest"] == str(desc.digest)  # byte-identical copy
    bundle = tmp_path / "bundle"
    _run("umoci", "unpack", "--rootless", "--image", f"{other}:copied", str(bundle))
    assert (bundle / "rootfs/etc/a.conf").read_bytes() == b"a" * 1000


def test_skopeo_reads_saved_archive(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "images.tar"
    save(store, ["app:v1", "127.0.0.1:5000/sealer/k8s:v1.22"], out)
    for name in ("docker.io/library/app:v1", "127.0.0.1:5000/sealer/k8s:v1.22"):
        info = json.loads(_run("skopeo", "inspect", f"oci-archive:{out}:{name}"))
        assert info["Digest"] == str(store.resolve(name).digest)


def test_layout_written_by_skopeo_loads(store: Store, tmp_path: Path) -> None:
    layout = tmp_path / "kube-layout"
    _run("skopeo", "copy", f"oci:{store.oci_dir}:docker.io/library/app:v1", f"oci:{layout}:v1")
    dst = Store.open(tmp_path / "dst")
    assert load(dst, layout) == ["docker.io/library/kube-layout:v1"]
    validate_image(dst, "kube-layout:v1")
    archive = tmp_path / "kube.tar"
    _run("skopeo", "copy", f"oci:{store.oci_dir}:docker.io/library/app:v1", f"oci-archive:{archive}:v2")
    assert load(dst, archive) == ["docker.io/library/kube:v2"]
    validate_image(dst, "kube:v2")


def test_corrupt_blob_in_skopeo_layout_fails_load(store: Store, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    _run("skopeo", "copy", f"oci:{store.oci_dir}:docker.io/library/app:v1", f"oci:{layout}:v1")
    manifest = store.read_manifest(store.resolve("app:v1"))
    layer = manifest.layers[1]
    blob = layout / "blobs/sha256" / layer.digest.hex
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    dst = Store.open(tmp_path / "dst")
    with pytest.raises(DigestMismatch, match=str(layer.digest)):
        load(dst, layout)
    assert dst.refs.list() == []
    assert not dst.blobs.has(layer.digest)
