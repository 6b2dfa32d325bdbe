"""Builds that reach a registry: FROM a registry image, and bundled container images."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.cli.build import registry_puller
from builder.diffdirs import diff_dirs
from builder.errors import ImageNotFound, RegistryUnavailable
from builder.image import mediatypes
from builder.image.descriptor import Platform
from builder.image.extension import parse_container_images
from builder.registry.client import RegistryClient
from builder.store.layout import Store
from tests.conftest import SealerRunner
from tests.registry_fixtures import RegistryServer
from tests.validate import validate_image

AMD64 = (Platform("linux", "amd64"),)


def build(store: Store, ctx: Path, tag: str, **kw: object) -> None:
    options = BuildOptions(context=ctx, tags=(tag,), platforms=AMD64, **kw)  # type: ignore[arg-type]
    build_image(store, options, pull=registry_puller(None))
    validate_image(store, tag)


def test_from_an_image_in_a_registry(
    tmp_path: Path, make_context: Callable[..., Path], registry: RegistryServer
) -> None:
    publisher = Store.open(tmp_path / "publisher")
    base_ctx = make_context({"etc/base.conf": "base\n"}, kubefile="FROM scratch\nCOPY etc etc/\n")
    build(publisher, base_ctx, "base:v1")
    remote = f"{registry.host}/team/base:v1"
    RegistryClient().push(publisher, "base:v1", remote)

    store = Store.open(tmp_path / "builder")
    child = make_context({"x.yaml": "x: 1\n"}, kubefile=f"FROM {remote}\nCOPY x.yaml manifests/\n")
    with pytest.raises(ImageNotFound):
        build(store, child, "child:v1", pull="never")
    build(store, child, "child:v1")  # pull=missing: pulled once
    manifest = store.read_manifest(store.resolve("child:v1"))
    base = publisher.read_manifest(publisher.resolve("base:v1"))
    assert manifest.layers[0] == base.layers[0]
    assert store.refs.get(remote) is not None

    registry.kill()  # `missing` finds the base locally now: no registry needed
    build(store, child, "child:v2")
    with pytest.raises(RegistryUnavailable, match=registry.host):
        build(store, child, "child:v3", pull="always")


def test_run_over_a_registry_base_has_its_layers_unpacked_by_the_pull(
    tmp_path: Path, make_context: Callable[..., Path], registry: RegistryServer
) -> None:
    """A RUN needs the base's diff dirs as lowerdirs: the pull unpacks them as they download
    (`unpack=True`), so they exist when the pull returns; a build without RUN leaves them packed."""
    publisher = Store.open(tmp_path / "publisher")
    build(
        publisher,
        make_context({"etc/base.conf": "base\n"}, kubefile="FROM scratch\nCOPY etc etc/\n"),
        "base:v1",
    )
    remote = f"{registry.host}/team/base:v1"
    RegistryClient().push(publisher, "base:v1", remote)
    base_layer = publisher.read_manifest(publisher.resolve("base:v1")).layers[0]
    inner = registry_puller(None)
    seen: list[tuple[str, bool, list[str]]] = []

    def pull(
        store: Store, image: str, platform: Platform | None, tag_as: str | None, *, unpack: bool = False
    ) -> None:
        inner(store, image, platform, tag_as, unpack=unpack)
        seen.append((image, unpack, diff_dirs(store).ids()))

    def build_with(store: Store, kubefile: str, tag: str) -> None:
        ctx = make_context({"x": "x\n"}, kubefile=kubefile)
        build_image(store, BuildOptions(context=ctx, tags=(tag,), platforms=AMD64), pull=pull)
        validate_image(store, tag)

    runs = Store.open(tmp_path / "runs")
    build_with(runs, f"FROM {remote}\nRUN cat etc/base.conf > seen.txt\n", "child:v1")
    assert seen == [(remote, True, [base_layer.digest.hex])]
    top = runs.read_manifest(runs.resolve("child:v1")).layers[-1]
    with tarfile.open(fileobj=io.BytesIO(zstandard.ZstdDecompressor().decompressobj().decompress(
        runs.blobs.read_bytes(top.digest)))) as tar:  # fmt: skip
        member = tar.extractfile("seen.txt")
        assert member is not None and member.read() == b"base\n"

    seen.clear()
    copies = Store.open(tmp_path / "copies")
    build_with(copies, f"FROM {remote}\nCOPY x /\n", "child:v1")
    assert seen == [(remote, False, [])]


def test_sealer_build_shows_the_pull_of_its_base(
    tmp_path: Path, make_context: Callable[..., Path], registry: RegistryServer, sealer: SealerRunner
) -> None:
    """The build's registry access is the CLI's (the build imports no registry client): the
    pull of a FROM image the store lacks still shows its blobs on the build's display."""
    publisher = Store.open(tmp_path / "publisher")
    build(publisher, make_context({"a.txt": "a\n"}, kubefile="FROM scratch\nCOPY a.txt /\n"), "base:v1")
    remote = f"{registry.host}/team/base:v1"
    RegistryClient().push(publisher, "base:v1", remote)
    layer = publisher.read_manifest(publisher.resolve("base:v1")).layers[0]
    child = make_context({"b.txt": "b\n"}, kubefile=f"FROM {remote}\nCOPY b.txt /\n")
    result = sealer("build", "-t", "child:v1", "--platform", "linux/amd64", str(child))
    lines = result.stderr.splitlines()
    assert f"warning: pulling {remote} for linux/amd64" in lines
    assert any(line.startswith(f"  blob {layer.digest.hex[:12]} ") and line.endswith("s") for line in lines)
    assert any(line.startswith(f"  manifest {remote} sha256:") for line in lines)
    quiet = sealer(
        "build", "-q", "--pull", "always", "-t", "child:v2", "--platform", "linux/amd64", str(child)
    )
    assert "blob" not in quiet.stderr and "manifest" not in quiet.stderr


def extract_layer_tar(store: Store, tag: str, index: int, dest: Path) -> None:
    manifest = store.read_manifest(store.resolve(tag))
    desc = manifest.layers[index]
    data = store.blobs.read_bytes(desc.digest, max_size=1 << 30)
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        tar.extractall(dest, filter="tar")


def test_bundled_images_are_served_by_a_stock_registry(
    tmp_path: Path, make_context: Callable[..., Path], registry: RegistryServer
) -> None:
    # A small container image, pushed to the test registry.
    publisher = Store.open(tmp_path / "publisher")
    app_ctx = make_context({"hello.txt": "hello\n"}, kubefile="FROM scratch\nCOPY hello.txt /\n")
    build(publisher, app_ctx, "hello:v1", bundle_images=False)
    image = f"{registry.host}/library/hello:v1"
    pushed = RegistryClient().push(publisher, "hello:v1", image)

    # A ClusterImage whose manifest runs it.
    deployment = f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: hello}}
spec:
  template:
    spec:
      initContainers: [{{name: init, image: "{image}"}}]
      containers:
        - name: hello
          image: {image}
"""
    ctx = make_context(
        {"hello.yaml": deployment, "cm.yaml": "kind: ConfigMap\ndata: {image: not-a-container}\n"},
        kubefile="FROM scratch\nCOPY hello.yaml manifests/\nCOPY cm.yaml manifests/\n",
    )
    store = Store.open(tmp_path / "builder")
    build(store, ctx, "cluster:v1")
    manifest = store.read_manifest(store.resolve("cluster:v1"))
    images = parse_container_images(manifest.annotations[mediatypes.ANNOTATION_SEALER_CONTAINER_IMAGES])
    assert [(i.image, str(i.platform)) for i in images] == [(image, "linux/amd64")]
    assert len(manifest.layers) == 3  # two COPY layers and registry/

    # A second, stock registry serves the image from the ClusterImage's registry/ directory.
    unpacked = tmp_path / "unpacked"
    extract_layer_tar(store, "cluster:v1", 2, unpacked)
    served = RegistryServer(tmp_path / "served")
    served.workdir.mkdir()
    shutil.move(unpacked / "registry", served.storage)
    served.start()
    try:
        out = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{served.host}/library/hello:v1"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["Digest"] == str(pushed.digest)
    finally:
        served.kill()

    # A rebuild reuses the cached registry layer without the source registry.
    registry.kill()
    build(store, ctx, "cluster:v1")
    assert store.read_manifest(store.resolve("cluster:v1")).digest == manifest.digest


def test_unreachable_image_registry_is_one_clear_error(
    tmp_path: Path, make_context: Callable[..., Path]
) -> None:
    ctx = make_context(
        {"list/imageList": "127.0.0.1:9/nothing/here:v1\n"}, kubefile="FROM scratch\nCOPY list manifests/\n"
    )
    store = Store.open(tmp_path / "builder")
    with pytest.raises(RegistryUnavailable, match=r"127\.0\.0\.1:9"):
        build(store, ctx, "broken:v1")
    assert store.refs.list() == []
