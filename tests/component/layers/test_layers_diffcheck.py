"""`compare_diff_dir` expects exactly what the unpack makes: no false positive.

Random small layers over a few names (files, dirs, symlinks, hardlinks, whiteouts, opaque
markers, the same path again, implicit parents, in any order) are unpacked by the real
`extract_layer` in "overlay" mode; every layer it accepts must compare clean. Layers it refuses
are never published, so they are skipped. Overlay whiteouts and opaque xattrs need root.
"""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

from builder.errors import LayerError
from builder.layers.diffcheck import compare_diff_dir
from builder.layers.tarreader import extract_layer

_NAMES = ["a", "a/b", "a/b/c", "a/d", "e", "e/f"]
_LAYERS = 600


def _random_layer(rng: random.Random) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for _ in range(rng.randint(1, 9)):
            name = rng.choice(_NAMES)
            info = tarfile.TarInfo(name)
            data = b""
            kind = rng.choice(["file", "file", "dir", "symlink", "hardlink", "whiteout", "opaque"])
            if kind == "file":
                data = rng.choice([b"", b"x", b"some bytes", b"other bytes"])
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, rng.choice(["a", "../x", "/abs"])
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, rng.choice(_NAMES)
            else:
                parent, _, base = name.rpartition("/")
                marker = ".wh..wh..opq" if kind == "opaque" else f".wh.{base}"
                info.name = f"{parent}/{marker}" if parent else marker
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_every_layer_the_unpack_accepts_compares_clean(tmp_path: Path) -> None:
    rng = random.Random(20261206)
    accepted = 0
    for i in range(_LAYERS):
        tar = _random_layer(rng)
        dest = tmp_path / str(i)
        dest.mkdir()
        try:
            extract_layer(io.BytesIO(tar), dest, whiteouts="overlay")
        except LayerError:
            continue
        accepted += 1
        with tarfile.open(fileobj=io.BytesIO(tar)) as members:
            names = [m.name for m in members]
        assert compare_diff_dir(io.BytesIO(tar), dest) == [], names
    assert accepted > _LAYERS // 5  # the sample exercises the checker, not only the refusals
