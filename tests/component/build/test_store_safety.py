"""Two builds into one store at once, and a build killed half-way (DESIGN section 3)."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from builder.store import gc
from builder.store.layout import Store
from tests.validate import validate_image


def sealer_proc(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "builder.cli", "--root", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def make_big_context(path: Path, mb: int, seed: int) -> Path:
    rng = random.Random(seed)
    (path / "bin").mkdir(parents=True)
    for i in range(4):
        (path / "bin" / f"blob{i}").write_bytes(rng.randbytes((mb << 20) // 4))
    (path / "Kubefile").write_text("FROM scratch\nCOPY bin bin/\nLABEL x=y\n")
    return path


def assert_blobs_intact(store: Store) -> None:
    for digest in store.blobs.list():
        h = hashlib.sha256()
        with open(store.blobs.path(digest), "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        assert h.hexdigest() == digest.hex, f"blob {digest} is not what its name says"


def test_two_builds_at_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    a = make_big_context(tmp_path / "a", 24, 1)
    b = make_big_context(tmp_path / "b", 24, 2)
    procs = [
        sealer_proc(root, "build", "-q", "-t", "a:v1", str(a)),
        sealer_proc(root, "build", "-q", "-t", "b:v1", str(b)),
    ]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    store = Store.open(root)
    assert sorted(r.name for r in store.images()) == ["docker.io/library/a:v1", "docker.io/library/b:v1"]
    validate_image(store, "a:v1")
    validate_image(store, "b:v1")
    assert_blobs_intact(store)


def test_build_killed_half_way_leaves_no_image(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ctx = make_big_context(tmp_path / "ctx", 400, 3)
    proc = sealer_proc(root, "build", "-q", "-t", "killed:v1", str(ctx))
    # Wait (bounded) until the build is writing a layer blob, then kill it without warning.
    deadline = time.monotonic() + 30
    writing = False
    while time.monotonic() < deadline and proc.poll() is None:
        tmp = root / "tmp"
        if tmp.is_dir() and any(
            f.stat().st_size > (1 << 20)
            for d in tmp.iterdir()
            if d.is_dir()
            for f in d.rglob("*")
            if f.is_file()
        ):
            writing = True
            break
        time.sleep(0.02)
    assert writing, "the build never started writing a blob"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]

    left = [d.name for d in (root / "tmp").iterdir()]
    assert any(name.startswith(f"proc-{proc.pid}-") for name in left), left
    # Opening the store reclaims the dead build's temp dir (its flock is free): no prune needed.
    store = Store.open(root)
    assert not any((root / "tmp").iterdir())
    assert store.refs.list() == []
    assert store.images() == []
    assert_blobs_intact(store)
    assert gc.collect(store).removed_tmp_dirs == 0
    # The store still works: the same build completes.
    done = sealer_proc(root, "build", "-q", "-t", "killed:v1", str(ctx))
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err.decode()
    validate_image(Store.open(root), "killed:v1")
