"""One bad image never breaks the store for the others (issue 9, item 5), and `sealer fsck`.

A build refuses a config the store would refuse to read back, before naming anything;
`sealer images` lists the good images and marks a broken one with `rmi` as the hint;
`sealer fsck` finds dangling names, corrupt blobs and leftovers, and `--repair` removes them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.errors import SizeMismatch
from builder.image.config import ImageConfig
from builder.image.descriptor import Platform
from builder.store.layout import MAX_DOCUMENT_BYTES, Store
from tests.conftest import SealerRunner
from tests.unit.store._tiny import CREATED, add_image
from tests.validate import assert_store_ok


def test_build_refuses_a_config_the_store_could_not_read(store: Store, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("x")
    (ctx / "Kubefile").write_text("FROM scratch\nCOPY f f\n")
    big = "x" * (MAX_DOCUMENT_BYTES + 1)
    options = BuildOptions(context=ctx, tags=("big/label:v1",), labels={"huge": big}, bundle_images=False)
    with pytest.raises(SizeMismatch, match=r"image config would be 16\.0 MiB, more than the 16 MiB") as err:
        build_image(store, options)
    assert "\n" not in err.value.message and err.value.hint and "LABEL" in err.value.hint
    assert store.refs.list() == []
    assert_store_ok(store)


def test_put_config_refuses_before_writing(store: Store) -> None:
    big = ImageConfig.empty(Platform("linux", "amd64"), CREATED).with_labels(
        {"huge": "y" * MAX_DOCUMENT_BYTES}
    )
    before = set(store.blobs.list())
    with pytest.raises(SizeMismatch):
        store.put_config(big)
    assert set(store.blobs.list()) == before


def broken_store(store: Store) -> None:
    """good:v1 whole; nolayer:v1 with a layer blob gone; badconfig:v1 with a config that is not JSON."""
    add_image(store, "good:v1", [{"a": b"1"}])
    gone = add_image(store, "nolayer:v1", [{"b": b"2"}])
    store.blobs.delete(store.read_manifest(gone).layers[0].digest)
    bad = add_image(store, "badconfig:v1", [{"c": b"3"}])
    config = store.read_manifest(bad).config
    path = store.blobs.path(config.digest)
    path.chmod(0o644)
    path.write_bytes(b"not json" + b" " * (config.size - len(b"not json")))


def test_images_lists_the_good_and_marks_the_broken(store: Store, sealer: SealerRunner) -> None:
    broken_store(store)
    listed = sealer("images")
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["IMAGE", "NAME", "IMAGE"]
    rows = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert rows["good:v1"] != "BROKEN"
    assert rows["nolayer:v1"] == "BROKEN" and rows["badconfig:v1"] == "BROKEN"
    warnings = listed.stderr.splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: ") and "sealer rmi" in w for w in warnings)
    as_json = sealer("images", "--format", "json").stdout
    assert '"problem"' in as_json
    sealer("rmi", "nolayer:v1", "badconfig:v1")
    assert [r.name for r in store.images()] == ["docker.io/library/good:v1"]


def test_fsck_finds_and_repairs(store: Store, sealer: SealerRunner) -> None:
    sealer("fsck")
    broken_store(store)
    found = sealer("fsck", expect=1)
    problems = [line for line in found.stdout.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 2, found.stdout
    assert any("nolayer:v1: layer sha256:" in p and "is missing" in p for p in problems)
    assert any("badconfig:v1: config sha256:" in p and "is corrupt" in p for p in problems)
    assert found.stderr.startswith("error: the store at ") and "fsck --repair" in found.stderr
    repaired = sealer("fsck", "--repair")
    assert "removed name: nolayer:v1" in repaired.stdout and "removed name: badconfig:v1" in repaired.stdout
    assert "0 problems" in repaired.stdout
    assert [r.name for r in store.images()] == ["docker.io/library/good:v1"]
    assert_store_ok(store)


def test_fsck_of_no_store_is_one_line(tmp_path: Path, sealer: SealerRunner) -> None:
    result = sealer("--root", str(tmp_path / "none"), "fsck", expect=1)
    assert result.stderr.startswith("error: no sealer store at ")
