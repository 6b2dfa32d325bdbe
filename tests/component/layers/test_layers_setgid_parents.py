"""A layer's entries get the tar's owner and mode under a lower layer's setgid dir, where the
kernel hands new entries the dir's group (and new dirs its setgid bit). Needs root (chown):
fails, never skips, without it."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from builder.layers.tarreader import extract_layer

pytestmark = pytest.mark.component

GROUP = 4242


def _layer() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, mode in (("sg/d", tarfile.DIRTYPE, 0o755), ("sg/f", tarfile.REGTYPE, 0o644)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = kind, mode, 0, 0
            tf.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
        info = tarfile.TarInfo("sg/implicit/f")  # its parent comes with no entry of its own
        tf.addfile(info, io.BytesIO(b""))
    return out.getvalue()


@pytest.mark.parametrize("whiteouts", ["apply", "overlay"])
def test_entries_under_a_setgid_lower_dir_get_the_tars_group_and_mode(tmp_path: Path, whiteouts: str) -> None:
    assert os.geteuid() == 0, "needs root (chown of the lower dir)"
    lower = tmp_path / "sg"
    lower.mkdir()
    os.chown(lower, 0, GROUP)
    os.chmod(lower, 0o2775)
    extract_layer(io.BytesIO(_layer()), tmp_path, whiteouts=whiteouts)  # type: ignore[arg-type]
    d, f = os.stat(tmp_path / "sg/d"), os.stat(tmp_path / "sg/f")
    assert (d.st_uid, d.st_gid, stat.S_IMODE(d.st_mode)) == (0, 0, 0o755)
    assert (f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode)) == (0, 0, 0o644)
    # an implicit dir keeps what the kernel gave it (as tar does); its file gets the tar's group
    assert os.stat(tmp_path / "sg/implicit/f").st_gid == 0


def test_a_setgid_root_is_honoured_too(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "needs root (chown of the root dir)"
    os.chown(tmp_path, 0, GROUP)
    os.chmod(tmp_path, 0o2775)
    extract_layer(io.BytesIO(_layer()), tmp_path, whiteouts="apply")
    assert os.stat(tmp_path / "sg/f").st_gid == 0
    assert stat.S_IMODE(os.stat(tmp_path / "sg/d").st_mode) == 0o755
