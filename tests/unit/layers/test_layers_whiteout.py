from __future__ import annotations

import pytest

from builder.errors import BadWhiteout
from builder.layers.whiteout import (
    is_opaque_name,
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
