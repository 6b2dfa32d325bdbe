from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from builder.errors import UnsafePath
from builder.layers.tarreader import ExtractStats, extract_layer
from builder.layers.tarwriter import TarEntry
from tests.unit.layers._layer_trees import describe, make_tree, tar_bytes


def build_tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def member(
    name: str, kind: bytes = tarfile.REGTYPE, *, mode: int = 0o644, linkname: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    return info


def test_round_trip_keeps_modes_links_content(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    dest = tmp_path / "dest"
    dest.mkdir()
    stats = extract_layer(io.BytesIO(tar_bytes(root=src)), dest, whiteouts="apply")
    assert stats == ExtractStats(
        files=5, dirs=5, symlinks=2, hardlinks=1, whiteouts=0, bytes=10_244 + 11 + 17 + 513 + 22
    )
    assert describe(dest) == describe(src)
    assert os.stat(dest / "bin/tool").st_ino == os.stat(dest / "bin/tool-link").st_ino
    assert stat.S_IMODE(os.stat(dest / "ro").st_mode) == 0o555  # applied after its contents
    assert os.lstat(dest / "etc/config").st_mtime == 0
    assert os.lstat(dest / "bin/cfg").st_mtime == 0


def test_owners_are_kept_when_root(tmp_path: Path) -> None:
    info = member("owned")
    info.uid, info.gid = 1001, 1002
    extract_layer(io.BytesIO(build_tar((info, b"x"))), tmp_path, whiteouts="apply")
    st = os.stat(tmp_path / "owned")
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1001, 1002)


def test_setuid_survives_chown(tmp_path: Path) -> None:
    info = member("su", mode=0o4755)
    info.uid = 0
    extract_layer(io.BytesIO(build_tar((info, b"x"))), tmp_path, whiteouts="apply")
    assert stat.S_IMODE(os.stat(tmp_path / "su").st_mode) == 0o4755


def test_dot_slash_names_and_root_entry(tmp_path: Path) -> None:
    data = build_tar((member("./", tarfile.DIRTYPE, mode=0o700), None), (member("./a/b"), b"hi"))
    extract_layer(io.BytesIO(data), tmp_path, whiteouts="apply")
    assert (tmp_path / "a/b").read_bytes() == b"hi"
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o755  # implicit parent


def test_duplicates_of_one_type_later_wins(tmp_path: Path) -> None:
    data = build_tar(
        (member("f"), b"one"),
        (member("f"), b"two"),
        (member("d", tarfile.DIRTYPE), None),
        (member("d/x"), b"x"),
        (member("d", tarfile.DIRTYPE, mode=0o700), None),
        (member("s", tarfile.SYMTYPE, linkname="f"), None),
        (member("s", tarfile.SYMTYPE, linkname="d"), None),
    )
    extract_layer(io.BytesIO(data), tmp_path, whiteouts="apply")
    assert (tmp_path / "f").read_bytes() == b"two"
    assert (tmp_path / "d/x").read_bytes() == b"x" and stat.S_IMODE(os.stat(tmp_path / "d").st_mode) == 0o700
    assert os.readlink(tmp_path / "s") == "d"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ((member("d", tarfile.DIRTYPE), None), (member("d"), b"now a file")),
        ((member("s", tarfile.SYMTYPE, linkname="f"), None), (member("s"), b"file over symlink")),
        ((member("f"), b"x"), (member("f", tarfile.DIRTYPE), None)),
    ],
)
def test_a_path_changing_type_within_a_layer_is_refused(
    tmp_path: Path, first: tuple[tarfile.TarInfo, bytes | None], second: tuple[tarfile.TarInfo, bytes | None]
) -> None:
    """The runtime's stack check refuses these (a host's tar would apply a dir's mode through an
    earlier symlink); the store follows the same policy (builder/layers/safety.py)."""
    with pytest.raises(UnsafePath, match="names a path this layer already made as another type"):
        extract_layer(io.BytesIO(build_tar(first, second)), tmp_path, whiteouts="apply")


def test_apply_whiteout_deletes_lower_entries(tmp_path: Path) -> None:
    (tmp_path / "etc/sub").mkdir(parents=True)
    (tmp_path / "etc/sub/x").write_text("x")
    (tmp_path / "etc/keep").write_text("k")
    (tmp_path / "gone").write_text("g")
    data = tar_bytes(
        [TarEntry("etc", "dir", 0o755), TarEntry("etc/sub", "whiteout"), TarEntry("gone", "whiteout")]
    )
    stats = extract_layer(io.BytesIO(data), tmp_path, whiteouts="apply")
    assert stats.whiteouts == 2
    assert sorted(os.listdir(tmp_path)) == ["etc"]
    assert os.listdir(tmp_path / "etc") == ["keep"]
    # A whiteout for something that is not there is fine.
    extract_layer(io.BytesIO(tar_bytes([TarEntry("nope/deeper", "whiteout")])), tmp_path, whiteouts="apply")
    assert not (tmp_path / "nope").exists()


def test_apply_opaque_keeps_this_layers_entries_wherever_the_marker_sorts(tmp_path: Path) -> None:
    lower = tmp_path / "d"
    (lower / "old-dir").mkdir(parents=True)
    (lower / "old-dir" / "f").write_text("lower")
    (lower / "old").write_text("lower")
    (lower / "+early").mkdir()
    (lower / "+early" / "lower-child").write_text("lower")
    # '+' and '-' sort before '.wh..wh..opq': these entries come before the marker.
    data = build_tar(
        (member("d", tarfile.DIRTYPE, mode=0o755), None),
        (member("d/+early", tarfile.DIRTYPE, mode=0o755), None),
        (member("d/+early/new"), b"new"),
        (member("d/-new"), b"new"),
        (member("d/.wh..wh..opq"), b""),
        (member("d/zz"), b"new"),
    )
    stats = extract_layer(io.BytesIO(data), tmp_path, whiteouts="apply")
    assert stats.whiteouts == 1
    assert sorted(os.listdir(lower)) == ["+early", "-new", "zz"]
    assert os.listdir(lower / "+early") == ["new"]


def test_overlay_mode_writes_overlay_forms(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("mknod of overlay whiteouts needs root")
    data = tar_bytes(
        [
            TarEntry("d", "dir", 0o755),
            TarEntry("d", "opaque"),
            TarEntry("d/gone", "whiteout"),
            TarEntry("e", "dir", 0o755),
            TarEntry("e", "whiteout"),  # this layer's own dir: kept, made opaque
        ]
    )
    extract_layer(io.BytesIO(data), tmp_path, whiteouts="overlay")
    st = os.lstat(tmp_path / "d/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(tmp_path / "d", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(tmp_path / "e", "trusted.overlay.opaque") == b"y"


def test_stream_is_read_to_eof(tmp_path: Path) -> None:
    data = tar_bytes([TarEntry("a", "dir", 0o755)]) + bytes(10240)
    stream = io.BytesIO(data)
    extract_layer(stream, tmp_path, whiteouts="apply")
    assert stream.tell() == len(data)


def test_gnu_longnames_are_read(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo("l" * 150 + "/f")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"ok"))
    extract_layer(io.BytesIO(out.getvalue()), tmp_path, whiteouts="apply")
    assert (tmp_path / ("l" * 150) / "f").read_bytes() == b"ok"
