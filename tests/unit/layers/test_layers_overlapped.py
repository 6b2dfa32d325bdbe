"""OverlappedUnpack driven by hand: any chunking gives the tree `materialize` gives; nothing is
visible before `publish`; abort, restart and a refused layer leave nothing behind."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest
import zstandard

from builder.errors import LayerError
from builder.image.digest import Digest
from builder.layers.overlapped import OverlappedUnpack
from builder.layers.overlay import DiffDirs
from tests.unit.layers._layer_trees import make_tree, tar_bytes
from tests.unit.store._tiny import make_tar


def _listing(root: Path) -> list[tuple[str, int, int, bytes | str | None]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            body: bytes | str | None = None
            if path.is_symlink():
                body = os.readlink(path)
            elif path.is_file():
                body = path.read_bytes()
            out.append((str(path.relative_to(root)), st.st_mode, st.st_mtime_ns, body))
    return sorted(out)


def _start(dirs: DiffDirs, tar: bytes, blob: bytes, **kw: object) -> OverlappedUnpack:
    return OverlappedUnpack(
        dirs, "layer", compressed_size=len(blob), diff_id=Digest.from_bytes(tar), what="layer x", **kw
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("chunk", [1, 3, 4096, 1 << 20])
def test_any_chunking_gives_the_tree_materialize_gives(tmp_path: Path, chunk: int) -> None:
    tar = tar_bytes(root=make_tree(tmp_path / "tree"))
    blob = zstandard.ZstdCompressor(level=3).compress(tar)
    want = DiffDirs(tmp_path / "want").materialize(
        "layer", lambda: io.BytesIO(blob), diff_id=Digest.from_bytes(tar)
    )

    dirs = DiffDirs(tmp_path / "got")
    unpack = _start(dirs, tar, blob, slots=threading.Semaphore(1))
    try:
        for i in range(0, len(blob), chunk):
            unpack.write(blob[i : i + chunk])
        unpack.finish()
        assert not dirs.has("layer"), "visible before publish"
        unpack.publish()
    finally:
        unpack.abort()  # a no-op after publish
    assert dirs.has("layer")
    assert _listing(dirs.path("layer")) == _listing(want)
    assert os.listdir(dirs.root) == ["layer"]


def test_abort_mid_stream_and_restart_leave_nothing(tmp_path: Path) -> None:
    tar = make_tar({f"f{i}": os.urandom(64 << 10) for i in range(64)})
    blob = zstandard.ZstdCompressor(level=1).compress(tar)
    dirs = DiffDirs(tmp_path / "d")
    for stop in ("abort", "restart"):
        unpack = _start(dirs, tar, blob)
        unpack.write(blob[: len(blob) // 2])
        if stop == "abort":
            unpack.abort()
        else:
            unpack.restart()
            unpack.write(blob)  # ignored from now on
            unpack.finish()
            unpack.publish()
        assert unpack.dropped
        assert os.listdir(dirs.root) == []


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"../out": b"x"}, "'..' component"),
        ({"a": b"a"}, "does not match its diff_id"),
    ],
)
def test_a_refused_layer_raises_at_finish_and_leaves_nothing(
    tmp_path: Path, files: dict[str, bytes], message: str
) -> None:
    tar = make_tar(files)
    diff_tar = tar if "out" in str(files) else make_tar({"b": b"b"})
    dirs = DiffDirs(tmp_path / "d")
    unpack = OverlappedUnpack(
        dirs, "layer", compressed_size=len(tar), diff_id=Digest.from_bytes(diff_tar), what="layer x"
    )
    unpack.write(tar)
    with pytest.raises(LayerError, match=message) as info:
        unpack.finish()
    assert str(info.value).startswith("layer x") and "\n" not in str(info.value)
    unpack.publish()  # after a failure: nothing to publish
    assert os.listdir(dirs.root) == []
    assert not (tmp_path / "out").exists()
