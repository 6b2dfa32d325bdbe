"""Commands that write blobs and then name them, or read blobs a name may stop reaching, raced
against prune (issue 9, item 1).

Two kinds of test per command: a deterministic one (the test holds the GC lock exclusively,
as a prune does, and the command must wait for it rather than write around it), and a
bounded race of real processes (the command against a loop of prunes), after which the store
checker (`builder.store.fsck`) must find every name whole.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.diffdirs import prune
from builder.errors import StoreLocked
from builder.store import archive
from builder.store.layout import Store
from tests.component.registry._images import add_big_image
from tests.registry_fixtures import RegistryServer, docker_config, registry
from tests.validate import assert_store_ok, validate_image

__all__ = ["docker_config", "registry"]

ROUNDS = 3  # races per command; each is bounded by RACE_LIMIT_S
RACE_LIMIT_S = 60.0
HELD_S = 1.0  # how long a command must keep waiting while the test holds the lock


def sealer(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "builder.cli", "--root", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes], *, timeout_s: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@contextlib.contextmanager
def held_like_prune(root: Path) -> Iterator[None]:
    with Store.open(root).gc_lock(exclusive=True):
        yield


def waits_for_the_lock(root: Path, *args: str) -> str:
    """Start `sealer ARGS` while the test holds the GC lock: it must not finish meanwhile, and
    must succeed once the lock is free. Returns its stdout."""
    with held_like_prune(root):
        proc = sealer(root, *args)
        deadline = time.monotonic() + HELD_S
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        finished_early = proc.poll() is not None
    if finished_early:
        _, err = proc.communicate()
        pytest.fail(f"`sealer {' '.join(args)}` did not wait for the GC lock: {err.decode()}")
    return finish(proc)


def saved_archive(tmp_path: Path, *, big_mb: int) -> Path:
    """race/app:v1 (one big layer of `big_mb` MB) saved as an OCI archive from a store of its own."""
    src = Store.open(tmp_path / "src")
    add_big_image(src, "race/app:v1", big_mb=big_mb)
    tarball = tmp_path / "app.tar"
    archive.save(src, ["race/app:v1"], tarball)
    return tarball


def race_with_prunes(root: Path, proc: subprocess.Popen[bytes]) -> int:
    """Prune in a loop (bounded) while `proc` runs; returns how many prunes ran."""
    store = Store.open(root)
    count = 0
    deadline = time.monotonic() + RACE_LIMIT_S
    while proc.poll() is None and time.monotonic() < deadline:
        prune(store)
        count += 1
    return count


def wait_until_reading(proc: subprocess.Popen[bytes], blobs: Path) -> None:
    """Wait (bounded) until `proc` has a blob of the store open."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        for fd in Path(f"/proc/{proc.pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd).startswith(str(blobs)):
                    return
        time.sleep(0.01)
    pytest.fail("the push never opened a blob")


@pytest.fixture
def pushed(registry: RegistryServer, tmp_path: Path) -> str:
    """A 12 MB image in the registry, pushed from a throw-away store."""
    src = tmp_path / "src-root"
    add_big_image(Store.open(src), "race/app:v1", big_mb=12)
    remote = f"{registry.host}/race/app:v1"
    finish(sealer(src, "push", "race/app:v1", remote))
    return remote


def test_pull_waits_for_a_running_prune(tmp_path: Path, pushed: str) -> None:
    root = tmp_path / "root"
    Store.open(root)
    waits_for_the_lock(root, "pull", pushed)
    validate_image(Store.open(root), pushed)


def test_pull_raced_by_prunes_names_a_whole_image(tmp_path: Path, pushed: str) -> None:
    root = tmp_path / "root"
    Store.open(root)
    for _ in range(ROUNDS):
        proc = sealer(root, "pull", pushed)
        assert race_with_prunes(root, proc) > 0
        finish(proc)
        store = Store.open(root)
        validate_image(store, pushed)
        assert_store_ok(store)
        finish(sealer(root, "rmi", pushed))  # the next round writes every blob again
    assert Store.open(root).images() == []


def test_push_reads_survive_rmi_and_prune(tmp_path: Path, registry: RegistryServer) -> None:
    root = tmp_path / "root"
    for round_ in range(ROUNDS):
        add_big_image(Store.open(root), "race/big:v1", big_mb=24)
        proc = sealer(root, "push", "race/big:v1", f"{registry.host}/race/big:v{round_}")
        wait_until_reading(proc, root / "oci" / "blobs")
        store = Store.open(root)
        store.untag("race/big:v1")  # what `sealer rmi` does: untag, then prune
        prune(store)  # waits for the push, which still has to read the manifest
        finish(proc)
        assert Store.open(root).images() == []
    check = tmp_path / "check"
    for round_ in range(ROUNDS):
        finish(sealer(check, "pull", f"{registry.host}/race/big:v{round_}"))
        validate_image(Store.open(check), f"{registry.host}/race/big:v{round_}")


def test_push_waits_for_a_running_prune(tmp_path: Path, registry: RegistryServer) -> None:
    root = tmp_path / "root"
    add_big_image(Store.open(root), "race/app:v1", big_mb=1)
    waits_for_the_lock(root, "push", "race/app:v1", f"{registry.host}/race/app:v1")


def test_load_tag_and_save_wait_for_a_running_prune(tmp_path: Path) -> None:
    tarball = saved_archive(tmp_path, big_mb=1)
    root = tmp_path / "root"
    Store.open(root)
    waits_for_the_lock(root, "load", "-i", str(tarball))
    waits_for_the_lock(root, "tag", "race/app:v1", "race/app:v2")
    waits_for_the_lock(root, "save", "-o", str(tmp_path / "again.tar"), "race/app:v2")
    store = Store(root, lock_timeout_s=0.2)
    with held_like_prune(root), pytest.raises(StoreLocked):
        store.tag("race/app:v1", "race/app:v3")
    validate_image(Store.open(root), "race/app:v2")


def test_load_raced_by_prunes_names_a_whole_image(tmp_path: Path) -> None:
    tarball = saved_archive(tmp_path, big_mb=16)
    root = tmp_path / "root"
    Store.open(root)
    for _ in range(ROUNDS):
        proc = sealer(root, "load", "-i", str(tarball))
        race_with_prunes(root, proc)
        finish(proc)
        store = Store.open(root)
        validate_image(store, "race/app:v1")
        assert_store_ok(store)
        finish(sealer(root, "rmi", "race/app:v1"))


def test_build_raced_by_prunes_names_a_whole_image(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "bin").mkdir(parents=True)
    (ctx / "bin" / "blob").write_bytes(b"\x01" * (8 << 20))
    (ctx / "Kubefile").write_text("FROM scratch\nCOPY bin bin/\nRUN ls bin > listing\n")
    root = tmp_path / "root"
    Store.open(root)
    waits_for_the_lock(root, "build", "-q", "--no-cache", "-t", "race/built:v0", str(ctx))
    for round_ in range(ROUNDS):
        proc = sealer(root, "build", "-q", "--no-cache", "-t", f"race/built:v{round_ + 1}", str(ctx))
        race_with_prunes(root, proc)
        finish(proc)
        validate_image(Store.open(root), f"race/built:v{round_ + 1}")
    assert_store_ok(Store.open(root))


def test_run_holds_the_store_while_it_delivers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cluster commands stream the image's blobs to hosts: a prune must wait for them too."""
    from scripts.basefs import build_basefs
    from tests.standins import make_bin_dir

    root = tmp_path / "root"
    store = Store.open(root)
    image = build_basefs("k3s", make_bin_dir("k3s", tmp_path / "bin"), store, "race/k3s:v1")
    monkeypatch.setenv("SEALER_STATE_HOME", str(tmp_path / "state"))
    out = waits_for_the_lock(root, "run", image, "--masters", "10.0.0.1", "--dry-run")
    assert out.startswith("# run: cluster my-cluster")
