"""The hostile-image corpus: OCI layouts and stored images built to hurt `load`, `inspect`, FROM.

Each layout case is written by hand (blobs, index.json) and loaded both as a directory and as
an archive where the case allows; each must be refused with one line naming what is wrong
and register nothing. The bomb cases run the CLI with its default limits.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from builder.errors import LayoutInvalid
from builder.image.digest import Digest
from builder.image.index import MAX_NESTED_INDEXES
from builder.image.manifest import MAX_LAYERS
from builder.image.mediatypes import OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST
from builder.store.archive import MAX_LOAD_DESCRIPTORS, load
from builder.store.layout import Store
from tests.conftest import SealerRunner
from tests.hostile._bombs import add_layer_image, gzip_bomb, zstd_bomb
from tests.unit.store._tiny import make_tar

REF = "org.opencontainers.image.ref.name"


class Layout:
    """An OCI image layout written blob by blob."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def blob(self, data: bytes, media_type: str) -> dict[str, Any]:
        digest = Digest.from_bytes(data)
        (self.root / "blobs" / "sha256" / digest.hex).write_bytes(data)
        return {"mediaType": media_type, "digest": str(digest), "size": len(data)}

    def doc(self, obj: dict[str, Any], media_type: str) -> dict[str, Any]:
        return self.blob(json.dumps(obj).encode(), media_type)

    def image(self, *, config: bytes | None = None, layers: int = 1) -> dict[str, Any]:
        tar = make_tar({"f": b"x"})
        layer = self.blob(tar, OCI_LAYER_TAR)
        if config is None:
            config = json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": [str(Digest.from_bytes(tar))] * layers},
                }
            ).encode()
        cfg = self.blob(config, OCI_CONFIG)
        return self.doc(
            {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [layer] * layers},
            OCI_MANIFEST,
        )

    def index(self, children: list[dict[str, Any]]) -> dict[str, Any]:
        return self.doc({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}, OCI_INDEX)

    def name(self, desc: dict[str, Any], name: str = "docker.io/library/evil:v1") -> Path:
        entry = {**desc, "annotations": {REF: name}}
        (self.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
        return self.root

    def archive(self, out: Path) -> Path:
        with tarfile.open(out, "w") as tar:
            for path in sorted(self.root.rglob("*")):
                tar.add(path, path.relative_to(self.root).as_posix(), recursive=False)
        return out


def diamond(layout: Layout, levels: int, width: int) -> dict[str, Any]:
    """`levels` indexes, each listing the one below `width` times: width**levels paths, one image."""
    desc = layout.image()
    for _ in range(levels):
        desc = layout.index([desc] * width)
    return desc


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Layout], dict[str, Any]]
    message: str  # regex, {path} is the layout
    symlink: str | None = None  # a path in the layout to replace by a symlink to a copy


def _missing_child(layout: Layout) -> dict[str, Any]:
    image = layout.image()
    (layout.root / "blobs" / "sha256" / image["digest"].split(":")[1]).unlink()
    return layout.index([image])


CASES = [
    Case(
        "deep-diamond",  # 2**40 paths: the recursive walk never ended
        lambda lay: diamond(lay, 40, 2),
        rf"{{path}}: image index sha256:\w+ is nested more than {MAX_NESTED_INDEXES} deep",
    ),
    Case(
        "3000-nested",  # RecursionError before
        lambda lay: diamond(lay, 3000, 1),
        rf"{{path}}: image index sha256:\w+ is nested more than {MAX_NESTED_INDEXES} deep",
    ),
    Case(
        "missing-only-child",  # was loaded and named
        _missing_child,
        r"{path}: image index sha256:\w+ lists 1 images, none of them in the archive",
    ),
    Case(
        "config-not-json",  # was loaded and named; `images` and `inspect` failed afterwards
        lambda lay: lay.image(config=b"not json at all"),
        r"{path}: image config sha256:\w+ is invalid: image config is not valid JSON: .+",
    ),
    Case(
        "config-not-image",
        lambda lay: lay.image(config=b'{"architecture": "amd64", "os": "linux"}'),
        r"{path}: image config sha256:\w+ is invalid: image config rootfs must be .+",
    ),
    Case(
        "too-many-layers",
        lambda lay: lay.image(layers=MAX_LAYERS + 1),
        rf"{{path}}: manifest sha256:\w+ is invalid: manifest lists {MAX_LAYERS + 1} layers, "
        rf"more than the {MAX_LAYERS} allowed",
    ),
    Case(
        "diff-ids-mismatch",
        lambda lay: lay.image(
            config=json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
        ),
        r"{path}: manifest sha256:\w+ has 1 layers, its config sha256:\w+ lists 0 diff_ids",
    ),
    Case(
        "too-many-descriptors",
        lambda lay: lay.index([lay.image()] * (MAX_LOAD_DESCRIPTORS + 1)),
        rf"{{path}} lists more than {MAX_LOAD_DESCRIPTORS} descriptors",
    ),
    Case(
        "symlinked-blobs-sha256",  # was followed (the docs said symlinks are refused)
        lambda lay: lay.image(),
        r"{path}/blobs/sha256 is a symlink \(symlinks are refused\)",
        symlink="blobs/sha256",
    ),
    Case(
        "symlinked-blobs",
        lambda lay: lay.image(),
        r"{path}/blobs is a symlink \(symlinks are refused\)",
        "blobs",
    ),
    Case(
        "symlinked-index",
        lambda lay: lay.image(),
        r"{path}/index.json is a symlink \(symlinks are refused\)",
        symlink="index.json",
    ),
]


def _prepare(tmp_path: Path, case: Case) -> Path:
    layout = Layout(tmp_path / "layout")
    root = layout.name(case.build(layout))
    if case.symlink:
        # The real content sits next to the layout: a followed link would load it.
        target = tmp_path / "elsewhere"
        os.rename(root / case.symlink, target)
        (root / case.symlink).symlink_to(target)
    return root


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_layout_is_refused(tmp_path: Path, case: Case) -> None:
    root = _prepare(tmp_path, case)
    store = Store.open(tmp_path / "store")
    started = time.monotonic()
    with pytest.raises(LayoutInvalid) as info:
        load(store, root)
    assert time.monotonic() - started < 10  # the deep diamond never ended before
    message = str(info.value)
    assert "\n" not in message
    assert re.fullmatch(case.message.format(path=re.escape(str(root))), message), message
    assert store.refs.list() == []


@pytest.mark.parametrize("case", [c for c in CASES if c.symlink is None][:4], ids=lambda c: c.id)
def test_hostile_archive_is_refused(tmp_path: Path, case: Case) -> None:
    """The same graphs in a tar archive: same refusal, naming the archive."""
    layout = Layout(tmp_path / "layout")
    layout.name(case.build(layout))
    out = layout.archive(tmp_path / "evil.tar")
    store = Store.open(tmp_path / "store")
    with pytest.raises(LayoutInvalid, match=r"^" + str(out).replace(".", r"\.")):
        load(store, out)
    assert store.refs.list() == []


def test_wide_diamond_loads_in_linear_time(tmp_path: Path) -> None:
    """8 nested indexes, each listing the one below 30 times: 30**8 paths, 9 documents."""
    layout = Layout(tmp_path / "layout")
    root = layout.name(diamond(layout, MAX_NESTED_INDEXES, 30))
    store = Store.open(tmp_path / "store")
    started = time.monotonic()
    assert load(store, root) == ["docker.io/library/evil:v1"]
    assert time.monotonic() - started < 5
    desc = store.resolve("evil:v1")
    assert len(store.manifests_for(desc)) == 1  # the store's walk is linear too


def test_partial_index_loads(tmp_path: Path) -> None:
    """An index listing a platform the archive lacks loads (skopeo copies one unless --all)."""
    layout = Layout(tmp_path / "layout")
    present = layout.image()
    absent = {**present, "digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "arm64"}}
    root = layout.name(layout.index([present, absent]))
    store = Store.open(tmp_path / "store")
    assert load(store, root) == ["docker.io/library/evil:v1"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"hello\n", "truncated header"),
        (os.urandom(2048), "invalid header|bad checksum|truncated header"),
        (b"\x1f\x8b" + os.urandom(100), "gzip data, .+"),
    ],
    ids=["text", "random", "bad-gzip"],
)
def test_not_a_tar_is_one_line(tmp_path: Path, sealer: SealerRunner, content: bytes, reason: str) -> None:
    """Was a 5-line message listing every compression tarfile tried."""
    path = tmp_path / "junk.tar"
    path.write_bytes(content)
    result = sealer("load", "-i", str(path), expect=1)
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[1].startswith("hint: "), result.stderr
    assert re.fullmatch(rf"error: {re.escape(str(path))} is not a tar archive \(({reason})\)", lines[0]), (
        lines[0]
    )


def test_symlinked_layout_root_is_allowed(tmp_path: Path) -> None:
    """The input itself may be a symlink: the user named it; only links inside are refused."""
    layout = Layout(tmp_path / "layout")
    layout.name(layout.image())
    (tmp_path / "link").symlink_to(layout.root)
    assert load(Store.open(tmp_path / "store"), tmp_path / "link") == ["docker.io/library/evil:v1"]


# --- decompression bombs through read-only commands, default limits ----------------------------

_BOMB_BYTES = 64 << 20  # zstd: ~2 kB; the default cap (200x + 32 MiB) trips after ~32 MiB


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if not line.startswith("hint: ")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("command", ["inspect", "from"])
def test_bomb_layer_is_refused_by_inspect_and_from(
    root: Path, store: Store, sealer: SealerRunner, make_context: Callable[..., Path], command: str
) -> None:
    blob, diff_id = zstd_bomb(_BOMB_BYTES)
    layer = add_layer_image(store, "bomb:v1", blob, diff_id)
    if command == "inspect":
        result = sealer("inspect", "--unpack", "bomb:v1", expect=1)
    else:
        ctx = make_context({"f": "x"}, kubefile="FROM bomb:v1\nCOPY f sub\n")
        result = sealer("build", "-q", "-t", "x:v1", str(ctx), expect=1)
    line = _one_error_line(result.stderr)
    assert f"layer {layer.digest} expands past 200x its compressed size ({len(blob)} bytes" in line
    assert line.endswith("refused as a decompression bomb")
    assert os.listdir(root / "overlay2") == []


def test_wrong_diff_id_is_refused_by_inspect(root: Path, store: Store, sealer: SealerRunner) -> None:
    blob, _ = zstd_bomb(1 << 20)
    wrong = Digest("sha256", "e" * 64)
    layer = add_layer_image(store, "liar:v1", blob, wrong)
    line = _one_error_line(sealer("inspect", "--unpack", "liar:v1", expect=1).stderr)
    assert line.startswith(f"error: layer {layer.digest} does not match its diff_id: ")
    assert line.endswith(f"the image config says {wrong}")
    assert os.listdir(root / "overlay2") == []
    assert sealer("inspect", "liar:v1").exit_code == 0  # read-only by default: nothing unpacked


def test_add_of_an_archive_bomb_is_refused(
    root: Path, sealer: SealerRunner, make_context: Callable[..., Path]
) -> None:
    """ADD unpacks local archives: gzip of 64 MiB zeros (~65 kB) trips the default cap."""
    bomb = gzip_bomb(_BOMB_BYTES)
    ctx = make_context({"bomb.tar.gz": bomb}, kubefile="FROM scratch\nADD bomb.tar.gz /\n")
    line = _one_error_line(sealer("build", "-q", "-t", "x:v1", str(ctx), expect=1).stderr)
    assert f"archive {ctx / 'bomb.tar.gz'} expands past 200x its compressed size ({len(bomb)} bytes" in line
    assert not list(root.rglob("unpacked"))
