"""Archives both ways with skopeo and a real Docker engine: `save --format
oci-archive|docker-archive|oci-dir`, `save -o -` to stdout, `load` from stdin, docker archives
written by `docker save` and skopeo, several images per archive.

The Docker engine is a private dockerd started once per session (tests/docker_fixtures.py,
through this directory's conftest),
driven through the `docker` package; nothing here touches the network.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import docker
import pytest

from builder.image.descriptor import Descriptor
from builder.store.layout import Store
from tests.unit.store._tiny import add_image, make_tar
from tests.validate import validate_image

pytestmark = pytest.mark.component

APP = "docker.io/library/app:v1"
K8S = "127.0.0.1:5000/x/k8s:v1.22"
SOLO = "docker.io/library/solo:v1"


def _run(*args: str, stdin: object = None) -> str:
    tool = shutil.which(args[0])
    assert tool is not None, f"{args[0]} is not installed; these tests need it"
    proc = subprocess.run([tool, *args[1:]], capture_output=True, text=True, timeout=120, stdin=stdin)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}"
    return str(proc.stdout)


def _sealer(
    root: Path, *args: str, cwd: Path | None = None, **kw: object
) -> subprocess.CompletedProcess[bytes]:
    """The real `sealer` program, so that stdin and stdout are real files and pipes."""
    cmd = [str(Path(sys.executable).parent / "sealer"), "--root", str(root), *args]
    return subprocess.run(cmd, capture_output=kw.pop("capture_output", True), timeout=120, cwd=cwd, **kw)  # type: ignore[call-overload, no-any-return]


@pytest.fixture
def images(store: Store) -> dict[str, Descriptor]:
    """Three images: zstd (sealer's default), gzip, and one whose only layer is app's second
    (same diff_id at another position: `docker save` writes it as a symlink)."""
    shared = {"etc/a.conf": b"a" * 1000}
    tool = {"bin/tool": b"#!/bin/sh\necho tool\n"}
    return {
        APP: add_image(store, APP, [shared, tool], compression="zstd"),
        K8S: add_image(store, K8S, [shared, {"Metadata": b"{}"}], compression="gzip"),
        SOLO: add_image(store, SOLO, [tool], compression="zstd"),
    }


def _diff_ids(store: Store, name: str) -> list[str]:
    manifest = store.read_manifest(store.resolve(name))
    return [str(d) for d in store.read_config(manifest.config).diff_ids]


def _config_digest(store: Store, name: str) -> str:
    return str(store.read_manifest(store.resolve(name)).config.digest)


# -- skopeo ---------------------------------------------------------------------------------


def test_docker_archive_is_read_by_skopeo(
    store: Store, root: Path, images: dict[str, Descriptor], tmp_path: Path
) -> None:
    out = tmp_path / "d.tar"
    _sealer(root, "save", "--format", "docker-archive", "-o", str(out), APP, K8S, check=True)
    for name in (APP, K8S):
        info = json.loads(_run("skopeo", "inspect", f"docker-archive:{out}:{name}"))
        assert info["Layers"] == _diff_ids(store, name)  # zstd and gzip both became plain tars
    # skopeo copies it into an OCI archive, which loads back as the same image (same ID).
    oci = tmp_path / "o.tar"
    _run("skopeo", "copy", f"docker-archive:{out}:{APP}", f"oci-archive:{oci}:v2")
    dst = tmp_path / "dst"
    _sealer(dst, "load", "-i", str(oci), "--name", "copied:v2", check=True)
    loaded = Store.open(dst)
    validate_image(loaded, "copied:v2")
    assert _config_digest(loaded, "copied:v2") == _config_digest(store, APP)


def test_skopeo_docker_archive_loads(
    store: Store, root: Path, images: dict[str, Descriptor], tmp_path: Path
) -> None:
    out = tmp_path / "skopeo.tar"
    # skopeo refuses zstd layers for docker archives ("zstd compression is not supported for
    # docker images"); sealer converts them. The gzip image here.
    _run("skopeo", "copy", f"oci:{store.oci_dir}:{K8S}", f"docker-archive:{out}:{K8S}")
    with tarfile.open(out) as tar:
        assert any(m.issym() for m in tar)  # skopeo's ID/layer.tar -> ../DIFFID.tar
    dst = tmp_path / "dst"
    with open(out, "rb") as f:  # from stdin, no -i (as `docker load < file`)
        proc = _sealer(dst, "load", stdin=f, check=True)
    assert proc.stdout.decode() == "loaded: 127.0.0.1:5000/x/k8s:v1.22\n"
    loaded = Store.open(dst)
    validate_image(loaded, K8S)
    assert _diff_ids(loaded, K8S) == _diff_ids(store, K8S)
    assert _config_digest(loaded, K8S) == _config_digest(store, K8S)


def test_oci_archive_through_stdout_and_stdin(
    store: Store, root: Path, images: dict[str, Descriptor], tmp_path: Path
) -> None:
    """`save -o -` used to write a file named `-`; now the archive goes to stdout."""
    out = tmp_path / "o.tar"
    with open(out, "wb") as f:
        _sealer(root, "save", "-o", "-", APP, K8S, cwd=tmp_path, stdout=f, capture_output=False, check=True)
    assert not (tmp_path / "-").exists()
    theirs = tmp_path / "theirs.tar"
    _run("skopeo", "copy", f"oci-archive:{out}:{K8S}", f"oci-archive:{theirs}:{K8S}")
    dst = tmp_path / "dst"
    for archive in (out, theirs):
        with open(archive, "rb") as f:
            _sealer(dst, "load", "-i", "-", stdin=f, check=True)
    loaded = Store.open(dst)
    for name in (APP, K8S):
        validate_image(loaded, name)
        assert loaded.resolve(name).digest == images[name].digest


def test_oci_dir_is_read_by_skopeo(
    store: Store, root: Path, images: dict[str, Descriptor], tmp_path: Path
) -> None:
    out = tmp_path / "layout"
    _sealer(root, "save", "--format", "oci-dir", "-o", str(out), APP, check=True)
    info = json.loads(_run("skopeo", "inspect", f"oci:{out}:{APP}"))
    assert info["Digest"] == str(images[APP].digest)
    again = _sealer(root, "save", "--format", "oci-dir", "-o", str(out), APP)
    assert again.returncode == 2 and b"already exists" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["save", "--format", "oci-dir", APP], "oci-dir writes a directory"),
        (["save", APP], "refusing to write an archive to a terminal"),
        (["load"], "load needs an archive"),
    ],
    ids=["oci-dir-to-stdout", "save-to-tty", "load-from-tty"],
)
def test_terminal_is_refused(
    root: Path, images: dict[str, Descriptor], args: list[str], message: str
) -> None:
    main, other = pty.openpty()
    try:
        proc = _sealer(root, *args, stdin=other, stdout=other, stderr=subprocess.PIPE, capture_output=False)
    finally:
        os.close(other)
        os.close(main)
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 2 and message in lines[0] and len(lines) == 2, lines


# -- a real Docker engine ---------------------------------------------------------------------


def test_docker_loads_our_docker_archive(
    store: Store, root: Path, images: dict[str, Descriptor], dockerd: docker.DockerClient, tmp_path: Path
) -> None:
    proc = _sealer(root, "save", "--format", "docker-archive", APP, K8S, check=True)  # to stdout
    loaded = dockerd.images.load(proc.stdout)
    tags = sorted(t for image in loaded for t in image.tags)
    assert tags == ["127.0.0.1:5000/x/k8s:v1.22", "app:v1"]
    for name, tag in ((APP, "app:v1"), (K8S, "127.0.0.1:5000/x/k8s:v1.22")):
        image = dockerd.images.get(tag)
        assert image.id == _config_digest(store, name)  # one image ID in both tools
        assert image.attrs["RootFS"]["Layers"] == _diff_ids(store, name)


def test_docker_save_loads(
    store: Store, root: Path, images: dict[str, Descriptor], dockerd: docker.DockerClient, tmp_path: Path
) -> None:
    ours = tmp_path / "ours.tar"
    _sealer(root, "save", "--format", "docker-archive", "-o", str(ours), APP, SOLO, check=True)
    dockerd.images.load(ours.read_bytes())
    dockerd.api.import_image_from_data(
        make_tar({"hello.txt": b"imported\n"}), repository="imported", tag="v1"
    )
    names = ["app:v1", "solo:v1", "imported:v1"]
    response = dockerd.api.get(dockerd.api._url("/images/get"), params={"names": names}, stream=True)
    assert response.status_code == 200, response.text
    saved = tmp_path / "docker-saved.tar"
    with open(saved, "wb") as f:
        for chunk in response.iter_content(1 << 20):
            f.write(chunk)
    with tarfile.open(saved) as tar:
        assert any(m.issym() for m in tar)  # docker links solo's layer to app's
    dst = tmp_path / "dst"
    out = _sealer(dst, "load", "-i", str(saved), check=True).stdout.decode()
    assert sorted(out.splitlines()) == ["loaded: app:v1", "loaded: imported:v1", "loaded: solo:v1"]
    loaded = Store.open(dst)
    for name in ("app:v1", "solo:v1", "imported:v1"):
        validate_image(loaded, name)
        image = dockerd.images.get(name)
        assert _config_digest(loaded, name) == image.id
        assert _diff_ids(loaded, name) == image.attrs["RootFS"]["Layers"]


def test_bare_tag_from_stdin_needs_a_name(
    store: Store, images: dict[str, Descriptor], tmp_path: Path
) -> None:
    """A file's name gives a bare tag its repository (`kube.tar` + `v1`); stdin has none."""
    out = tmp_path / "kube.tar"
    _run("skopeo", "copy", f"oci:{store.oci_dir}:{APP}", f"oci-archive:{out}:v1")
    dst = tmp_path / "dst"
    with open(out, "rb") as f:
        proc = _sealer(dst, "load", stdin=f)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.decode().splitlines()[0] == "error: the archive names an image only by its tag 'v1'"
    with open(out, "rb") as f:
        assert _sealer(dst, "load", "--name", "kube:v1", stdin=f, check=True).stdout == b"loaded: kube:v1\n"
    validate_image(Store.open(dst), "kube:v1")
