"""extract_layer sets a mode or owner only where creation did not give it already (issue 16: fewer
syscalls per file); the result must be exactly the tar's modes, whatever the umask."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.layers.tarreader import extract_layer

FILE_MODES = (0o644, 0o666, 0o600, 0o640, 0o400, 0o000, 0o755, 0o777, 0o4755, 0o2755, 0o1755, 0o6711)
DIR_MODES = (0o755, 0o777, 0o700, 0o750, 0o500, 0o000, 0o1777, 0o2775, 0o311)


def _tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for mode in DIR_MODES:
            info = tarfile.TarInfo(f"d{mode:o}")
            info.type, info.mode = tarfile.DIRTYPE, mode
            tf.addfile(info)
            child = tarfile.TarInfo(f"d{mode:o}/child")
            child.size = 1
            tf.addfile(child, io.BytesIO(b"c"))
        for mode in FILE_MODES:
            info = tarfile.TarInfo(f"f{mode:o}")
            info.mode, info.size = mode, 2
            tf.addfile(info, io.BytesIO(b"xy"))
    return out.getvalue()


@pytest.fixture(params=[0o022, 0o077, 0o000, 0o027])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_modes_are_the_tars_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    extract_layer(io.BytesIO(_tar()), tmp_path, whiteouts="apply")
    for mode in FILE_MODES:
        path = tmp_path / f"f{mode:o}"
        assert stat.S_IMODE(os.stat(path).st_mode) == mode, f"{path.name} under umask {umask:o}"
        assert path.read_bytes() == b"xy"
    for mode in DIR_MODES:
        path = tmp_path / f"d{mode:o}"
        assert stat.S_IMODE(os.stat(path).st_mode) == mode, f"{path.name} under umask {umask:o}"
        assert os.stat(path / "child").st_size == 1
        assert os.stat(path).st_mtime == 0  # set after its child was created


def test_an_implicit_parent_is_0755_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("a/b/file")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    extract_layer(io.BytesIO(out.getvalue()), tmp_path, whiteouts="apply")
    # what tar and umoci give an implicit parent: 0755 less the umask
    assert stat.S_IMODE(os.stat(tmp_path / "a/b").st_mode) == 0o755 & ~umask
