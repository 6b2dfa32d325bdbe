"""GC: keeps what names reach, removes the rest, spares in-flight temp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.errors import StoreLocked
from builder.image.descriptor import Platform
from builder.image.index import Index
from builder.store._lock import locked_dir
from builder.store.gc import collect
from builder.store.layout import Store
from tests.unit.store._tiny import add_image
from tests.validate import validate_image


def test_gc_keeps_reachable_removes_unreachable(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    add_image(store, "keep:v1", [{"shared": b"s"}, {"k": b"keep"}])
    gone = add_image(store, "gone:v1", [{"shared": b"s"}, {"g": b"gone"}])
    gone_manifest = store.read_manifest(gone)
    # An index (followed recursively) keeps its children.
    child = add_image(store, "child:v1", [{"c": b"child"}])
    store.refs.remove("docker.io/library/child:v1")
    idx = store.put_index(Index((child.with_platform(Platform("linux", "amd64")),)))
    store.refs.set("docker.io/library/multi:v1", idx)
    stray, _ = store.blobs.put(b"stray")
    store.refs.remove("docker.io/library/gone:v1")
    before = set(store.blobs.list())

    result = collect(store)

    expected_gone = {gone.digest, gone_manifest.config.digest, gone_manifest.layers[1].digest, stray}
    assert set(result.removed_blobs) == expected_gone
    assert (
        result.freed_bytes
        == sum(len(x) for x in (b"stray",))
        + gone.size
        + gone_manifest.config.size
        + gone_manifest.layers[1].size
    )
    assert set(store.blobs.list()) == before - expected_gone
    validate_image(store, "keep:v1")
    validate_image(store, "multi:v1")
    assert collect(store).removed_blobs == ()


def test_gc_spares_locked_tmp_dirs(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.blobs.put(b"x")  # creates and locks this process's dir
    ours = store.blobs.process_dir()
    dead = tmp_path / "tmp" / "proc-99999-dead"
    (dead / "ro").mkdir(parents=True)
    (dead / "ro" / "f").write_bytes(b"left over")
    os.chmod(dead / "ro", 0o500)
    held = tmp_path / "tmp" / "proc-held"
    held.mkdir()
    with locked_dir(held, exclusive=True, timeout_s=1, what="test"):
        result = collect(store)
        assert held.is_dir()
    assert result.removed_tmp_dirs == 1
    assert not dead.exists() and ours.is_dir()


def test_gc_lock_excludes_builds(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with (
        store.gc_lock(exclusive=False),
        store.gc_lock(exclusive=False, timeout_s=0.1),
        pytest.raises(StoreLocked, match="gc lock"),
    ):
        collect(store, timeout_s=0.2)
    with (
        store.gc_lock(exclusive=True),
        pytest.raises(StoreLocked),
        store.gc_lock(exclusive=False, timeout_s=0.1),
    ):
        pass
    assert collect(store).removed_blobs == ()
