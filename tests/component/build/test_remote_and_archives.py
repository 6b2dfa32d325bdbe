"""APP/ADD sources fetched over HTTP (a real server on 127.0.0.1) and ADD's archive unpacking."""

from __future__ import annotations

import http.server
import io
import tarfile
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.errors import BuildError, UnsafePath
from builder.image.descriptor import Platform
from builder.store.layout import Store
from tests.component.build.test_build import extension, layer_members
from tests.validate import validate_image

AMD64 = (Platform("linux", "amd64"),)


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static file server on 127.0.0.1 at a free port, stopped in the finalizer."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

    handler = partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_build(store: Store, ctx: Path) -> None:
    build_image(store, BuildOptions(context=ctx, tags=("remote:v1",), platforms=AMD64))
    validate_image(store, "remote:v1")


def test_app_from_http(store: Store, make_context: Callable[..., Path], http_root: tuple[str, Path]) -> None:
    url, www = http_root
    (www / "dashboard.yaml").write_text("kind: Deployment\n")
    ctx = make_context({}, kubefile=f'FROM scratch\nAPP dash {url}/dashboard.yaml\nLAUNCH ["dash"]\n')
    run_build(store, ctx)
    manifest = store.read_manifest(store.resolve("remote:v1"))
    assert "application/apps/dash/dashboard.yaml" in layer_members(store, manifest, 0)
    assert extension(manifest).applications[0].type == "kube"


def test_app_fetch_failure_is_clear(
    store: Store, make_context: Callable[..., Path], http_root: tuple[str, Path]
) -> None:
    url, _ = http_root
    ctx = make_context({}, kubefile=f"FROM scratch\nAPP dash {url}/missing.yaml\n")
    with pytest.raises(BuildError) as info:
        run_build(store, ctx)
    message = str(info.value)
    assert (
        "Kubefile:2:1: APP:" in message and f"cannot fetch {url}/missing.yaml" in message and "404" in message
    )
    assert store.refs.list() == []


def test_app_fetch_connection_refused(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context({}, kubefile="FROM scratch\nAPP dash http://127.0.0.1:9/x.yaml\n")
    with pytest.raises(BuildError, match=r"cannot fetch http://127.0.0.1:9/x.yaml: .*refused"):
        run_build(store, ctx)


def test_add_url_is_copied_not_unpacked(
    store: Store, make_context: Callable[..., Path], http_root: tuple[str, Path]
) -> None:
    url, www = http_root
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("inner.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    (www / "bundle.tar.gz").write_bytes(buf.getvalue())
    ctx = make_context({}, kubefile=f"FROM scratch\nADD {url}/bundle.tar.gz downloads/\n")
    run_build(store, ctx)
    manifest = store.read_manifest(store.resolve("remote:v1"))
    assert sorted(layer_members(store, manifest, 0)) == ["downloads", "downloads/bundle.tar.gz"]


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_add_unpacks_local_archives(
    store: Store, make_context: Callable[..., Path], tmp_path: Path, mode: str
) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:  # type: ignore[call-overload]
        for name, data in (("bin/tool", b"#!/bin/sh\n"), ("etc/conf", b"x=1\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    ctx = make_context({"pkg.tar": buf.getvalue()}, kubefile="FROM scratch\nADD pkg.tar /opt/\n")
    run_build(store, ctx)
    manifest = store.read_manifest(store.resolve("remote:v1"))
    members = layer_members(store, manifest, 0)
    assert {"opt/bin/tool", "opt/etc/conf"} <= set(members)
    assert members["opt/bin/tool"].mode == 0o755


def test_add_refuses_a_hostile_archive(store: Store, make_context: Callable[..., Path]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    ctx = make_context({"evil.tar": buf.getvalue()}, kubefile="FROM scratch\nADD evil.tar /opt/\n")
    with pytest.raises(UnsafePath, match="escape"):
        run_build(store, ctx)
    assert store.refs.list() == []
