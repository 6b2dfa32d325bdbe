from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from builder.errors import BadWhiteout, UnsafePath
from builder.layers.tarwriter import walk_upperdir
from builder.layers.whiteout import (
    is_opaque_name,
    is_overlay_whiteout,
    is_whiteout_name,
    oci_opaque_name,
    oci_whiteout_name,
    whiteout_target,
)


@pytest.mark.parametrize(
    ("target", "name"),
    [("a/b", "a/.wh.b"), ("top", ".wh.top"), ("a/b/.hidden", "a/b/.wh..hidden")],
)
def test_oci_whiteout_names_both_ways(target: str, name: str) -> None:
    assert oci_whiteout_name(target) == name
    assert is_whiteout_name(name) and not is_opaque_name(name)
    assert whiteout_target(name) == target


def test_opaque_names_both_ways() -> None:
    assert oci_opaque_name("etc/x") == "etc/x/.wh..wh..opq"
    assert oci_opaque_name("") == ".wh..wh..opq"
    assert is_opaque_name("etc/x/.wh..wh..opq") and is_whiteout_name("etc/x/.wh..wh..opq")
    assert whiteout_target("etc/x/.wh..wh..opq") == "etc/x"


def test_plain_names_are_not_whiteouts() -> None:
    assert not is_whiteout_name("a/.whiteout")
    assert not is_whiteout_name(".wh/x")
    with pytest.raises(BadWhiteout):
        whiteout_target("a/b")


def test_only_a_0_0_char_device_is_an_overlay_whiteout(tmp_path: Path) -> None:
    """A `mknod` in a RUN step leaves a real device in the upperdir: it is refused, never read
    as an overlay whiteout (which would ship `.wh.null`, deleting the lower file)."""
    if os.geteuid() != 0:
        pytest.fail("mknod of devices needs root")
    upper = tmp_path / "upper"
    upper.mkdir()
    os.mknod(upper / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.mknod(upper / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert is_overlay_whiteout(os.lstat(upper / "gone"))
    assert not is_overlay_whiteout(os.lstat(upper / "null"))
    with pytest.raises(UnsafePath, match=r"null: a character device cannot be put in a layer"):
        list(walk_upperdir(upper))
    os.unlink(upper / "null")
    assert [(e.name, e.kind) for e in walk_upperdir(upper)] == [("gone", "whiteout")]
