"""Bundling images from the Docker daemon (issue 14 item 4), with the suite's private dockerd.

An image is built in the engine with `docker build` from a local context (COPY only: no
network), `sealer build` bundles it from an imageList line `docker-daemon:NAME:TAG` or with
`--image-source docker-daemon`, a stock docker-registry serves the ClusterImage's registry/,
and skopeo copies it back into the engine: the same image ID (config bytes) and diff_ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import socket
import socketserver
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from builder.image import mediatypes
from builder.image.extension import parse_container_images
from builder.store.layout import Store
from tests.component.build.test_build_registry import extract_layer_tar
from tests.conftest import SealerRunner
from tests.registry_fixtures import RegistryServer
from tests.validate import validate_image

pytestmark = pytest.mark.component

APP = "sealer-test/daemon-app:v1"
FULL = f"docker.io/{APP}"


def docker_build(client: docker.DockerClient, ctx: Path, tag: str, files: dict[str, str]) -> str:
    """`docker build` of a FROM scratch image with one COPY per file; its image ID."""
    ctx.mkdir(parents=True, exist_ok=True)
    lines = ["FROM scratch"]
    for name, text in files.items():
        (ctx / name).write_text(text)
        lines.append(f"COPY {name} /{name}")
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    image, _ = client.images.build(path=str(ctx), tag=tag, rm=True)
    return str(image.id)


@pytest.fixture
def app_image(dockerd: docker.DockerClient, tmp_path: Path) -> str:
    image_id = docker_build(dockerd, tmp_path / "app-ctx", APP, {"a.txt": "a\n", "b.txt": "b\n" * 1000})
    yield image_id
    dockerd.images.remove(APP, force=True)


@pytest.fixture
def on_private_engine(docker_host: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    return docker_host


def skopeo(*args: str) -> str:
    tool = shutil.which("skopeo")
    assert tool is not None, "skopeo is not installed"
    proc = subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"skopeo {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def image_list_context(make_context: Callable[..., Path], text: str) -> tuple[Path, Path]:
    """A context whose Kubefile copies `images/imageList` (holding `text`) into manifests/;
    (context, imageList path as messages name it)."""
    ctx = make_context({"images/imageList": text}, kubefile="FROM scratch\nCOPY images manifests/\n")
    return ctx, ctx / "images" / "imageList"


def bundled_registry(store: Store, tag: str, dest: Path) -> Path:
    """The last layer of `tag` (its registry/ layer) unpacked; the registry storage dir."""
    layers = store.read_manifest(store.resolve(tag)).layers
    extract_layer_tar(store, tag, len(layers) - 1, dest)
    return dest / "registry"


def test_daemon_image_is_bundled_served_and_pulled_back(
    root: Path,
    sealer: SealerRunner,
    make_context: Callable[..., Path],
    dockerd: docker.DockerClient,
    on_private_engine: str,
    app_image: str,
    tmp_path: Path,
) -> None:
    ctx, _ = image_list_context(make_context, f"# from the local engine\ndocker-daemon:{APP}\n")
    result = sealer("build", "-t", "cluster:v1", "--platform", "linux/amd64", str(ctx))
    assert f"warning: exporting docker-daemon:{APP}" in result.stderr.splitlines()
    store = Store.open(root)
    validate_image(store, "cluster:v1")
    manifest = store.read_manifest(store.resolve("cluster:v1"))
    listed = parse_container_images(manifest.annotations[mediatypes.ANNOTATION_SEALER_CONTAINER_IMAGES])
    assert [(i.image, str(i.platform)) for i in listed] == [(FULL, "linux/amd64")]

    attrs = dockerd.api.inspect_image(APP)
    served = RegistryServer(tmp_path / "served")
    served.workdir.mkdir()
    shutil.move(bundled_registry(store, "cluster:v1", tmp_path / "unpacked"), served.storage)
    served.start()
    try:
        src = f"docker://{served.host}/{APP}"
        out = json.loads(skopeo("inspect", "--tls-verify=false", src))
        # Layers kept as docker keeps them (uncompressed): their digests are the diff_ids.
        assert out["Layers"] == attrs["RootFS"]["Layers"]
        config = skopeo("inspect", "--tls-verify=false", "--raw", "--config", src)
        assert "sha256:" + hashlib.sha256(config.encode()).hexdigest() == app_image
        # Back into the engine under another name: the same image ID, config and layers alike.
        skopeo(
            "copy",
            "--src-tls-verify=false",
            "--dest-daemon-host",
            on_private_engine,
            src,
            "docker-daemon:sealer-test/pulled-back:v1",
        )
    finally:
        served.kill()
    try:
        assert dockerd.images.get("sealer-test/pulled-back:v1").id == app_image
    finally:
        dockerd.images.remove("sealer-test/pulled-back:v1")

    # Nothing changed: the BUNDLE step is cached, nothing exported, the same image.
    again = sealer("build", "-t", "cluster:v1", "--platform", "linux/amd64", str(ctx))
    assert "exporting" not in again.stderr
    assert store.read_manifest(store.resolve("cluster:v1")).digest == manifest.digest

    # `docker build -t` the same tag with new content: exported again, a new image.
    new_id = docker_build(dockerd, tmp_path / "app-ctx2", APP, {"a.txt": "changed\n"})
    assert new_id != app_image
    third = sealer("build", "-t", "cluster:v2", "--platform", "linux/amd64", str(ctx))
    assert f"warning: exporting docker-daemon:{APP}" in third.stderr.splitlines()
    validate_image(store, "cluster:v2")
    assert store.read_manifest(store.resolve("cluster:v2")).digest != manifest.digest


def test_image_source_flag_takes_manifest_images_from_the_daemon(
    root: Path,
    sealer: SealerRunner,
    make_context: Callable[..., Path],
    on_private_engine: str,
    app_image: str,
    tmp_path: Path,
) -> None:
    """An image a Deployment names, in no registry: `--image-source docker-daemon` bundles it."""
    deployment = f"kind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      containers:\n      - {{name: app, image: {APP}}}\n"
    ctx = make_context({"app.yaml": deployment}, kubefile="FROM scratch\nCOPY app.yaml manifests/\n")
    sealer("build", "-t", "cluster:v1", "--image-source", "docker-daemon", str(ctx))
    store = Store.open(root)
    validate_image(store, "cluster:v1")
    registry = bundled_registry(store, "cluster:v1", tmp_path / "unpacked")
    tag_link = (
        registry / "docker/registry/v2/repositories" / APP.split(":")[0] / "_manifests/tags/v1/current/link"
    )
    digest = tag_link.read_text()
    blob = registry / "docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:] / "data"
    assert json.loads(blob.read_bytes())["config"]["digest"] == app_image

    # A manifest's image the daemon lacks: the message names the file and the field.
    missing = make_context(
        {"app.yaml": deployment.replace(APP, "sealer-test/missing:v1")},
        kubefile="FROM scratch\nCOPY app.yaml manifests/\n",
    )
    result = sealer("build", "-t", "cluster:v2", "--image-source", "docker-daemon", str(missing), expect=1)
    assert (
        f"error: {missing / 'app.yaml'}: Deployment/app spec.template.spec.containers[0].image: "
        "sealer-test/missing:v1 is not in the Docker daemon" in result.stderr.splitlines()
    ), result.stderr
    assert store.refs.get("docker.io/library/cluster:v2") is None


@pytest.mark.parametrize(
    ("text", "flags", "message"),
    [
        (
            f"docker-daemon:{APP}\ndocker-daemon:sealer-test/missing:v1\n",
            (),
            "{listed}:2: sealer-test/missing:v1 is not in the Docker daemon",
        ),
        (
            f"docker-daemon:{APP}\n",
            ("--platform", "linux/arm64"),
            f"{{listed}}:1: {APP} in the Docker daemon is linux/amd64, this build is for linux/arm64",
        ),
    ],
    ids=["missing", "other-platform"],
)
def test_refusals_name_the_imagelist_line(
    root: Path,
    sealer: SealerRunner,
    make_context: Callable[..., Path],
    on_private_engine: str,
    app_image: str,
    text: str,
    flags: tuple[str, ...],
    message: str,
) -> None:
    ctx, listed = image_list_context(make_context, text)
    result = sealer("build", "-t", "cluster:v1", *flags, str(ctx), expect=1)
    assert "error: " + message.format(listed=listed) in result.stderr.splitlines(), result.stderr
    assert "exporting" not in result.stderr  # refused before any export
    store = Store.open(root)
    assert store.refs.list() == []
    assert not store.tmp_dir.exists() or not any(store.tmp_dir.iterdir())  # no scratch left


def test_no_engine_is_one_line(
    root: Path,
    sealer: SealerRunner,
    make_context: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    host = f"unix://{tmp_path}/no-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", host)
    ctx, _ = image_list_context(make_context, f"docker-daemon:{APP}\n")
    result = sealer("build", "-t", "cluster:v1", str(ctx), expect=1)
    lines = result.stderr.splitlines()
    assert f"error: no Docker engine answers at {host} (no such socket)" in lines
    assert "Traceback" not in result.stderr
    assert Store.open(root).refs.list() == []


# The content of app_image's b.txt as it appears in the exported layer, and the same length
# with one byte changed: the relay below swaps them, leaving the HTTP framing intact.
_LAYER_BYTES, _ALTERED = b"b\nb\nb\nb\n", b"b\nX\nb\nb\n"


@contextlib.contextmanager
def altering_relay(engine_socket: str, path: Path) -> Iterator[str]:
    """A unix socket relaying to the real engine that changes one byte of what the engine sends
    back inside the exported layer; yields its DOCKER_HOST. Closed (and its threads end) on exit."""

    class Relay(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(engine_socket)
            threading.Thread(target=self.pipe, args=(self.request, upstream), daemon=True).start()
            self.pipe(upstream, self.request, alter=True)
            upstream.close()

        @staticmethod
        def pipe(src: socket.socket, dst: socket.socket, alter: bool = False) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(1 << 16):
                    dst.sendall(data.replace(_LAYER_BYTES, _ALTERED, 1) if alter else data)
                dst.shutdown(socket.SHUT_WR)

    server = socketserver.ThreadingUnixStreamServer(str(path), Relay)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_an_export_altered_on_the_way_is_refused(
    root: Path,
    sealer: SealerRunner,
    make_context: Callable[..., Path],
    docker_host: str,
    app_image: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The export is checked as a registry pull is: a layer whose bytes are not its diff_id's."""
    ctx, _ = image_list_context(make_context, f"docker-daemon:{APP}\n")
    with altering_relay(docker_host.removeprefix("unix://"), tmp_path / "relay.sock") as relay:
        monkeypatch.setenv("DOCKER_HOST", relay)
        result = sealer("build", "-t", "cluster:v1", str(ctx), expect=1)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith(f"error: docker-daemon:{APP}: layer "), result.stderr
    assert "does not match its diff_id" in lines[0]
    store = Store.open(root)
    assert store.refs.list() == []
    assert not store.tmp_dir.exists() or not any(store.tmp_dir.iterdir())
