from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from builder.errors import LayerError, UnsafePath
from builder.layers.tarwriter import TarEntry, TarWriter, entry_sort_key, walk_tree
from tests.unit.layers._layer_trees import make_tree, tar_bytes


def names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.getnames()


def test_identical_trees_at_different_paths_give_identical_bytes(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "one" / "src", mtime=1_600_000_000)
    b = make_tree(tmp_path / "other-longer-path" / "x", mtime=1_700_000_000)
    if os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(b):
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), 1234, 5678, follow_symlinks=False)
        os.chmod(b / "bin" / "tool", 0o4755)  # chown cleared the setuid bit
    assert tar_bytes(root=a) == tar_bytes(root=b)
    assert tar_bytes(root=a, dest="opt/app") == tar_bytes(root=b, dest="/opt/app/")


def test_headers_are_normalised(tmp_path: Path) -> None:
    data = tar_bytes(root=make_tree(tmp_path / "t"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0)
    assert len(data) % 512 == 0
    assert data.endswith(bytes(1024))


def test_mtime_clamped_to_source_date_epoch(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t", mtime=2_000)
    out = io.BytesIO()
    w = TarWriter(out, source_date_epoch=1_000_000)
    w.add_all(walk_tree(root))
    w.close()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        assert {m.mtime for m in tf.getmembers()} == {2_000}
    out = io.BytesIO()
    w = TarWriter(out, source_date_epoch=1_000)
    w.add_all(walk_tree(root))
    w.close()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        assert {m.mtime for m in tf.getmembers()} == {1_000}


def test_order_depth_first_by_name_bytes_with_dest_parents(tmp_path: Path) -> None:
    data = tar_bytes(root=make_tree(tmp_path / "t"), dest="opt/app")
    assert names(data) == [
        "opt",
        "opt/app",
        "opt/app/a-b",
        "opt/app/bin",
        "opt/app/bin/cfg",
        "opt/app/bin/tool",
        "opt/app/bin/tool-link",
        "opt/app/dangling",
        "opt/app/etc",
        "opt/app/etc/config",
        "opt/app/etc/empty",
        "opt/app/ro",
        "opt/app/ro/file",
        "opt/app/ro/inner",
        "opt/app/ro/inner/data",
    ]


def test_kinds_modes_links(tmp_path: Path) -> None:
    data = tar_bytes(root=make_tree(tmp_path / "t"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        m = {x.name: x for x in tf.getmembers()}
        assert m["bin/tool"].isreg() and m["bin/tool"].mode == 0o4755
        assert m["bin/tool-link"].islnk() and m["bin/tool-link"].linkname == "bin/tool"
        assert m["bin/cfg"].issym() and m["bin/cfg"].linkname == "../etc/config"
        assert m["dangling"].linkname == "/nonexistent/abs"
        assert m["etc/empty"].isdir() and m["ro"].mode == 0o555
        assert tf.extractfile("ro/file").read() == b"x" * 513  # type: ignore[union-attr]


def test_chmod_overrides_files_and_dirs_not_symlinks(tmp_path: Path) -> None:
    data = tar_bytes(root=make_tree(tmp_path / "t"), dest="d", chmod=0o700)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        modes = {m.name: m.mode for m in tf.getmembers() if not m.issym()}
        links = {m.name: m.mode for m in tf.getmembers() if m.issym()}
    assert set(modes.values()) == {0o700}  # the dest dir, dirs, files, hardlinks; setuid dropped
    assert set(links.values()) == {0o777}
    parents = tar_bytes(root=make_tree(tmp_path / "u"), dest="opt/d", chmod=0o700)
    with tarfile.open(fileobj=io.BytesIO(parents)) as tf:
        assert tf.getmember("opt").mode == 0o755 and tf.getmember("opt/d").mode == 0o700


def test_include_filters_and_prunes(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    seen: list[tuple[str, bool]] = []

    def include(rel: str, is_dir: bool) -> bool:
        seen.append((rel, is_dir))
        return rel not in ("etc", "bin/cfg")

    got = names(tar_bytes(root=root, include=include))
    assert "etc" not in got and "etc/config" not in got and "bin/cfg" not in got
    assert ("etc", True) in seen and ("etc/config", False) not in seen


def test_single_file_root(tmp_path: Path) -> None:
    f = tmp_path / "kubectl"
    f.write_bytes(b"bin")
    assert names(tar_bytes(root=f, dest="usr/local/bin/kubectl")) == [
        "usr",
        "usr/local",
        "usr/local/bin",
        "usr/local/bin/kubectl",
    ]
    assert names(tar_bytes(root=f)) == ["kubectl"]


def test_long_and_unicode_names_use_pax(tmp_path: Path) -> None:
    root = tmp_path / "t"
    deep = root / ("d" * 90) / ("e" * 90)
    deep.mkdir(parents=True)
    (deep / ("f" * 120)).write_text("long")
    (root / "ünïcode-名前").write_text("u")
    os.symlink("t" * 150, root / "longlink")
    data = tar_bytes(root=root)
    assert b"path=" in data  # PAX records present
    got = names(data)
    assert f"{'d' * 90}/{'e' * 90}/{'f' * 120}" in got
    assert "ünïcode-名前" in got
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.getmember("longlink").linkname == "t" * 150
    # Short ASCII names need no PAX header at all.
    assert b"PaxHeader" not in tar_bytes(root=make_tree(tmp_path / "plain"))


def test_gnu_tar_reads_our_tar(tmp_path: Path) -> None:
    tar = shutil.which("tar")
    assert tar, "GNU tar is required"
    data = tar_bytes(root=make_tree(tmp_path / "t"), dest="rootfs")
    (tmp_path / "l.tar").write_bytes(data)
    listing = subprocess.run([tar, "-tvf", tmp_path / "l.tar"], check=True, capture_output=True, text=True)
    assert "rootfs/bin/tool-link link to rootfs/bin/tool" in listing.stdout
    assert "-rwsr-xr-x 0/0" in listing.stdout
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run([tar, "-xf", tmp_path / "l.tar", "-C", out], check=True)
    assert (out / "rootfs/etc/config").read_text() == "key: value\n"


def test_fifo_is_refused_with_its_path(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    os.mkfifo(root / "pipe")
    with pytest.raises(UnsafePath, match=r"/t/pipe: a fifo cannot be put in a layer"):
        tar_bytes(root=root)


def test_writer_refuses_unclean_names_and_missing_source() -> None:
    w = TarWriter(io.BytesIO())
    for bad in ("../x", "/abs", "a//b", "./a", ""):
        with pytest.raises(UnsafePath):
            w.add(TarEntry(bad, "file"))
    with pytest.raises(LayerError, match="no source"):
        w.add(TarEntry("f", "file", size=3))


def test_file_that_shrinks_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    with pytest.raises(LayerError, match="shrank"):
        tar_bytes([TarEntry("f", "file", size=10, source=str(f))])


def test_whiteout_entries_and_sort_key() -> None:
    data = tar_bytes([TarEntry("a", "dir", 0o755), TarEntry("a", "opaque"), TarEntry("a/b", "whiteout")])
    assert names(data) == ["a", "a/.wh..wh..opq", "a/.wh.b"]
    entries = [
        TarEntry("a/c", "file"),
        TarEntry("a/b", "whiteout"),
        TarEntry("a", "opaque"),
        TarEntry("a", "dir"),
    ]
    assert [e.tar_name for e in sorted(entries, key=entry_sort_key)] == [
        "a",
        "a/.wh..wh..opq",
        "a/.wh.b",
        "a/c",
    ]


def test_big_file_streams_across_chunks(tmp_path: Path) -> None:
    f = tmp_path / "big"
    payload = os.urandom(9 * 1024 * 1024 + 7)
    f.write_bytes(payload)
    sizes: list[int] = []

    class Sink(io.BytesIO):
        def write(self, b: object) -> int:  # type: ignore[override]
            sizes.append(len(b))  # type: ignore[arg-type]
            return super().write(b)  # type: ignore[arg-type]

    out = Sink()
    w = TarWriter(out)
    w.add_all(walk_tree(f))
    w.close()
    assert all(s == 4 << 20 for s in sizes[:-1])
    assert w.bytes_written == len(out.getvalue())
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        assert tf.extractfile("big").read() == payload  # type: ignore[union-attr]
