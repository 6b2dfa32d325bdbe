"""Overlay mounts, the snapshot fallback, diff dirs. Needs root: fails (never skips) without."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path

import pytest

from builder.errors import LayerError, UnsafePath
from builder.layers.compression import Compression
from builder.layers.onepass import LayerWriter
from builder.layers.overlay import DiffDirs, mounted_rootfs
from builder.layers.tarwriter import TarEntry, TarWriter, walk_tree, walk_upperdir

pytestmark = pytest.mark.component


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


def _layer_blob(entries: list[TarEntry]) -> bytes:
    sink = io.BytesIO()
    with LayerWriter(sink, compression=Compression.ZSTD) as lw:
        lw.add_all(entries)
        lw.finish()
    return sink.getvalue()


def _tar(entries: list[TarEntry] | object) -> bytes:
    out = io.BytesIO()
    w = TarWriter(out)
    w.add_all(entries)  # type: ignore[arg-type]
    w.close()
    return out.getvalue()


@pytest.fixture
def lowers(tmp_path: Path) -> list[Path]:
    """Two diff dirs: a base and a layer that deletes and hides parts of it. Top-most first."""
    src = tmp_path / "src"
    for d in ("etc", "bin", "var/lib/olddir", "dir-to-file/child", "untouched/sub", "hidden/old", "gone-dir"):
        (src / d).mkdir(parents=True)
    for f, text in {
        "etc/config": "a=1\n",
        "etc/remove-me": "bye\n",
        "bin/tool": "#!/bin/sh\n",
        "var/lib/olddir/x": "old\n",
        "file-to-dir": "was a file\n",
        "dir-to-file/child/f": "c\n",
        "untouched/sub/file": "deep\n",
        "hidden/old/f": "hidden by layer 2\n",
        "gone-dir/f": "deleted by layer 2\n",
    }.items():
        (src / f).write_text(text)
    os.chmod(src / "bin/tool", 0o755)
    dirs = DiffDirs(tmp_path / "overlay2")
    base = _layer_blob(list(walk_tree(src)))
    top = _layer_blob(
        [
            TarEntry("gone-dir", "whiteout"),
            TarEntry("hidden", "dir", 0o755),
            TarEntry("hidden", "opaque"),
            TarEntry("hidden/new", "file", 0o644, 0, None),
        ]
    )
    one = dirs.materialize("base", lambda: io.BytesIO(base))
    two = dirs.materialize("top", lambda: io.BytesIO(top))
    return [two, one]


RUN = """
set -e
echo new > newfile
echo b=2 >> etc/config
rm etc/remove-me
rm -rf var/lib/olddir && mkdir -p var/lib/olddir && echo fresh > var/lib/olddir/x
rm file-to-dir && mkdir file-to-dir && touch file-to-dir/inside
rm -rf dir-to-file && echo f > dir-to-file
chmod 700 bin/tool
ln -s newfile newlink
ln newfile newhard
mkdir -p deep/a/b && echo d > deep/a/b/c
echo more >> untouched/sub/file
chown 1000:1001 newfile
cat bin/tool > /dev/null
ls hidden > visible-in-hidden
test ! -e gone-dir
"""


def _run_and_capture(lowers: list[Path], scratch: Path, mode: str) -> tuple[bytes, str]:
    with mounted_rootfs(lowers, scratch, mode=mode) as rootfs:  # type: ignore[arg-type]
        assert rootfs.mode == mode
        subprocess.run(["/bin/sh", "-c", RUN], cwd=rootfs.merged, check=True)
        data = _tar(rootfs.changes())
        listing = subprocess.run(
            ["tar", "-tvf", "-"], input=data, capture_output=True, check=True
        ).stdout.decode()
    return data, listing


def test_overlay_and_snapshot_give_the_same_layer(lowers: list[Path], tmp_path: Path) -> None:
    over, listing = _run_and_capture(lowers, tmp_path / "s1", "overlay")
    assert not _mounted(tmp_path / "s1" / "merged")
    snap, snap_listing = _run_and_capture(lowers, tmp_path / "s2", "snapshot")
    assert snap_listing == listing
    assert snap == over
    names = [
        line.split()[-1] if "->" not in line and " link to " not in line else line
        for line in listing.splitlines()
    ]
    joined = "\n".join(names)
    for expected in (
        "etc/.wh.remove-me",
        "var/lib/olddir/.wh..wh..opq",
        "file-to-dir/.wh..wh..opq",
        "dir-to-file",
        "newhard link to newfile",
        "untouched/sub/file",
    ):
        assert expected in joined
    assert "bin/tool" in joined and "1000/1001" in listing
    assert "visible-in-hidden" in joined


def test_merged_view_honours_lower_whiteouts(lowers: list[Path], tmp_path: Path) -> None:
    for mode in ("overlay", "snapshot"):
        with mounted_rootfs(lowers, tmp_path / mode, mode=mode) as rootfs:  # type: ignore[arg-type]
            m = rootfs.merged
            assert not (m / "gone-dir").exists()
            assert sorted(os.listdir(m / "hidden")) == ["new"]
            assert (m / "etc/config").read_text() == "a=1\n"
            assert list(rootfs.changes()) == []


def test_no_lowers_uses_an_empty_lowerdir(tmp_path: Path) -> None:
    with mounted_rootfs([], tmp_path / "s", mode="overlay") as rootfs:
        (rootfs.merged / "hello").write_text("hi")
        assert [e.name for e in rootfs.changes()] == ["hello"]
    assert not _mounted(tmp_path / "s" / "merged")


def test_unmounts_on_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError), mounted_rootfs([], tmp_path / "s", mode="overlay") as rootfs:
        assert _mounted(rootfs.merged)
        raise KeyError("step failed")
    assert not _mounted(tmp_path / "s" / "merged")


def test_busy_mount_is_detached_lazily(tmp_path: Path) -> None:
    with mounted_rootfs([], tmp_path / "s", mode="overlay") as rootfs:
        f = open(rootfs.merged / "held", "w")  # noqa: SIM115 - kept open across the unmount
    try:
        assert not _mounted(tmp_path / "s" / "merged")
    finally:
        f.close()


def test_many_long_lowerdirs_use_short_fd_paths(tmp_path: Path) -> None:
    lowers = []
    for i in range(40):
        d = tmp_path / ("l" * 120 + f"{i:03d}")
        d.mkdir()
        (d / f"f{i:03d}").write_text(str(i))
        lowers.append(d)
    with mounted_rootfs(lowers, tmp_path / "s", mode="overlay") as rootfs:
        assert len(os.listdir(rootfs.merged)) == 40
    too_many = [tmp_path / "e" / str(i) for i in range(300)]
    for d in too_many:
        d.mkdir(parents=True)
    with (
        pytest.raises(LayerError, match="300 lower layers do not fit"),
        mounted_rootfs(too_many, tmp_path / "t", mode="overlay"),
    ):
        pass


def test_walk_upperdir_from_a_real_upperdir(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "d").mkdir(parents=True)
    (lower / "d/f").write_text("x")
    with mounted_rootfs([lower], tmp_path / "s", mode="overlay") as rootfs:
        os.unlink(rootfs.merged / "d/f")
        entries = list(walk_upperdir(tmp_path / "s" / "upper"))
    assert [(e.name, e.kind) for e in entries] == [("d", "dir"), ("d/f", "whiteout")]
    st = os.lstat(tmp_path / "s/upper/d/f")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_diff_dirs_materialize_is_idempotent_and_removable(tmp_path: Path) -> None:
    dirs = DiffDirs(tmp_path / "overlay2")
    blob = _layer_blob([TarEntry("a", "dir", 0o755), TarEntry("a/b", "whiteout")])
    calls: list[int] = []

    def open_tar() -> io.BytesIO:
        calls.append(1)
        return io.BytesIO(blob)

    path = dirs.materialize("sha256-abc", open_tar)
    assert path == tmp_path / "overlay2/sha256-abc/diff"
    assert dirs.materialize("sha256-abc", open_tar) == path and len(calls) == 1
    assert dirs.has("sha256-abc") and dirs.ids() == ["sha256-abc"]
    assert stat.S_ISCHR(os.lstat(path / "a/b").st_mode)
    dirs.remove("sha256-abc")
    assert not dirs.has("sha256-abc") and dirs.ids() == [] and os.listdir(tmp_path / "overlay2") == []
    with pytest.raises(LayerError, match="invalid layer id"):
        dirs.path("../x")


def test_refused_layer_leaves_nothing(tmp_path: Path) -> None:
    dirs = DiffDirs(tmp_path / "overlay2")
    evil = _tar([TarEntry("link", "symlink", linkname="/etc"), TarEntry("ok", "dir", 0o755)])
    evil = evil[:-1024] + _tar([TarEntry("link/x", "dir", 0o755)])
    with pytest.raises(UnsafePath):
        dirs.materialize("bad", lambda: io.BytesIO(evil))
    assert os.listdir(tmp_path / "overlay2") == []
    assert not dirs.has("bad")


def test_refused_mount_falls_back_to_a_snapshot_in_auto_mode(tmp_path: Path) -> None:
    """overlayfs refuses an upperdir on overlayfs (EINVAL): auto falls back, overlay mode raises."""
    lower = tmp_path / "lower"
    lower.mkdir()
    (lower / "f").write_text("x")
    with mounted_rootfs([], tmp_path / "outer", mode="overlay") as outer:
        scratch = outer.merged / "scratch"
        with (
            pytest.raises(LayerError, match="overlay mount refused"),
            mounted_rootfs([lower], scratch, mode="overlay"),
        ):
            pass
        with mounted_rootfs([lower], outer.merged / "scratch2", mode="auto") as rootfs:
            assert rootfs.mode == "snapshot"
            (rootfs.merged / "g").write_text("y")
            assert [e.name for e in rootfs.changes()] == ["g"]
