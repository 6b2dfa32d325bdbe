"""skopeo reads what we push; we pull what skopeo pushes (OCI and Docker schema 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.image.mediatypes import DOCKER_MANIFEST, OCI_INDEX
from builder.registry.client import RegistryClient
from builder.store.layout import Store
from tests.component.registry._images import add_image, add_index, run_tool
from tests.registry_fixtures import RegistryServer
from tests.validate import validate_image

pytestmark = pytest.mark.component


def test_skopeo_reads_what_we_push(registry: RegistryServer, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    desc = add_image(store, "app:v1", [{"etc/a.conf": b"a" * 1000}, {"bin/tool": b"#!/bin/sh\n"}])
    ref = f"{registry.host}/sealer/app:v1"
    RegistryClient().push(store, "app:v1", ref)
    info = json.loads(run_tool("skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"))
    assert info["Digest"] == str(desc.digest) and len(info["Layers"]) == 2
    out = tmp_path / "copied"
    run_tool("skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{out}:copied")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == str(desc.digest)
    bundle = tmp_path / "bundle"
    run_tool("umoci", "unpack", "--rootless", "--image", f"{out}:copied", str(bundle))
    assert (bundle / "rootfs/etc/a.conf").read_bytes() == b"a" * 1000

    add_index(store, "multi:v1")
    RegistryClient().push(store, "multi:v1", f"{registry.host}/multi:v1")
    raw = json.loads(
        run_tool("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/multi:v1")
    )
    assert raw["mediaType"] == OCI_INDEX and len(raw["manifests"]) == 2


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_we_pull_what_skopeo_pushes(registry: RegistryServer, tmp_path: Path, fmt: str) -> None:
    layout = Store.open(tmp_path / "layout")
    add_image(layout, "src:v1", [{"etc/x": b"x" * 3000}, {"bin/y": b"y"}], compression="gzip")
    ref = f"{registry.host}/from-skopeo/{fmt}:v1"
    run_tool(
        "skopeo", "copy", "--dest-tls-verify=false", "--format", fmt,
        f"oci:{layout.oci_dir}:docker.io/library/src:v1", f"docker://{ref}",
    )  # fmt: skip
    remote = json.loads(run_tool("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"))
    store = Store.open(tmp_path / "s")
    got = RegistryClient().pull(store, ref)
    validate_image(store, ref)
    if fmt == "v2s2":
        assert remote["mediaType"] == DOCKER_MANIFEST and got.media_type == DOCKER_MANIFEST
    info = json.loads(run_tool("skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"))
    assert info["Digest"] == str(got.digest)
