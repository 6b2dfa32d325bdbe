"""A stock docker-registry serves what write_distribution writes: skopeo inspects and copies it.

The registry runs on 127.0.0.1 at a free port with its filesystem root on our directory (config
written here), is awaited for a bounded time and killed by PID in a finalizer, also on failure.
A missing docker-registry or skopeo fails the test; it never skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.build.bundle.discover import discover_images
from builder.build.bundle.distribution import write_distribution
from builder.image.digest import Digest
from builder.store.layout import Store
from tests.conftest import write_tree
from tests.unit.bundle._images import add_index
from tests.unit.store._tiny import add_image

pytestmark = pytest.mark.component

REGISTRY_BIN = "/usr/bin/docker-registry"
START_TIMEOUT_S = 10.0


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(rootdirectory: Path, workdir: Path) -> Iterator[str]:
    """docker-registry serving `rootdirectory` read-mostly; yields `127.0.0.1:PORT`."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.fail(f"{REGISTRY_BIN} is missing (apt-get install docker-registry)")
    port = _free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {rootdirectory}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: bundle-test\n"
    )
    log_path = workdir / "registry.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"docker-registry did not answer /v2/ on port {port}:\n{log_path.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                    break
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def skopeo(*args: str) -> str:
    result = subprocess.run(
        [_tool("skopeo"), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"skopeo {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def test_registry_serves_bundled_images(store: Store, tmp_path: Path) -> None:
    single = add_image(store, "nginx:1.25", [{"etc/nginx.conf": b"events {}"}, {"www/index.html": b"hi"}])
    index_desc, children = add_index(store, "multi:v1")
    dest = tmp_path / "rootfs" / "registry"
    write_distribution(
        store,
        [
            ("nginx:1.25", "docker.io/library/nginx:1.25"),
            ("multi:v1", "quay.io/acme/multi:v1"),
            ("multi:v1", f"registry.k8s.io/pinned/multi@{index_desc.digest}"),
        ],
        dest,
    )
    with serve(dest, tmp_path / "registry-run") as host:
        out = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{host}/library/nginx:1.25"))
        assert out["Digest"] == str(single.digest)
        assert len(out["Layers"]) == 2

        raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{host}/acme/multi:v1")
        assert Digest.from_bytes(raw.encode()) == index_desc.digest
        for child, arch in zip(children, ("amd64", "arm64"), strict=True):
            out = json.loads(
                skopeo(
                    "inspect", "--tls-verify=false", "--override-arch", arch, f"docker://{host}/acme/multi:v1"
                )
            )
            # skopeo reports the digest it fetched (the index); the layers are the platform's own
            assert out["Digest"] == str(index_desc.digest)
            assert out["Architecture"] == arch
            assert out["Layers"] == [str(layer.digest) for layer in store.read_manifest(child).layers]

        out = json.loads(
            skopeo(
                "inspect", "--tls-verify=false", "--raw", f"docker://{host}/pinned/multi@{index_desc.digest}"
            )
        )
        assert out["mediaType"] == index_desc.media_type

        # blobs are really served: a full copy to an OCI layout, checked by digest
        layout = tmp_path / "copied"
        skopeo("copy", "--src-tls-verify=false", f"docker://{host}/library/nginx:1.25", f"oci:{layout}:nginx")
        skopeo(
            "copy", "--src-tls-verify=false", "--all", f"docker://{host}/acme/multi:v1", f"oci:{layout}:multi"
        )
    copied = json.loads((layout / "index.json").read_text())
    by_name = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in copied["manifests"]
    }
    assert by_name["nginx"] == str(single.digest)
    assert by_name["multi"] == str(index_desc.digest)
    manifest = store.read_manifest(single)
    for blob in (manifest.config, *manifest.layers):
        assert (layout / "blobs/sha256" / blob.digest.hex).read_bytes() == store.blobs.path(
            blob.digest
        ).read_bytes()


def test_discovered_images_round_trip(store: Store, tmp_path: Path) -> None:
    """Discovery's references, written as they were found, are what the cluster asks for."""
    context = write_tree(
        tmp_path / "ctx",
        {
            "manifests/app.yaml": "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
            "  - {name: a, image: nginx:1.25}\n  - {name: b, image: 'registry.k8s.io/pause:3.9'}\n",
        },
    )
    found = discover_images(context)
    for f in found:
        add_image(store, f.image)
    dest = tmp_path / "registry"
    write_distribution(store, [(f.image, f.image) for f in found], dest)
    with serve(dest, tmp_path / "registry-run") as host:
        for repo_tag in ("library/nginx:1.25", "pause:3.9"):
            name = repo_tag.split(":")[0]
            out = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{host}/{repo_tag}"))
            assert out["Name"] == f"{host}/{name}"
