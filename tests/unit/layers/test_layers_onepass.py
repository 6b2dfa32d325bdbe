from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from builder.errors import LayerError
from builder.image import mediatypes
from builder.layers.compression import Compression, open_decompressed
from builder.layers.onepass import LayerWriter
from builder.layers.tarwriter import walk_tree
from tests.unit.layers._layer_trees import make_tree, tar_bytes


@pytest.mark.parametrize(
    ("kind", "media_type"),
    [
        (Compression.ZSTD, mediatypes.OCI_LAYER_ZSTD),
        (Compression.GZIP, mediatypes.OCI_LAYER_GZIP),
        (Compression.NONE, mediatypes.OCI_LAYER_TAR),
    ],
)
def test_diff_id_is_sha256_of_the_plain_tar(tmp_path: Path, kind: Compression, media_type: str) -> None:
    root = make_tree(tmp_path / "t")
    (root / "big").write_bytes(bytes(range(256)) * 40_000)
    plain = tar_bytes(root=root, dest="rootfs")
    sink = io.BytesIO()
    progress: list[int] = []
    with LayerWriter(sink, compression=kind, progress=progress.append) as lw:
        lw.add_all(walk_tree(root, dest="rootfs"))
        stats = lw.finish()
    assert str(stats.diff_id) == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert stats.uncompressed_size == len(plain)
    assert stats.media_type == media_type
    assert progress[-1] == len(plain) and progress == sorted(progress)
    assert not sink.closed
    sink.seek(0)
    assert open_decompressed(sink).read() == plain
    assert lw.finish() is stats  # idempotent


def test_same_input_same_blob(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    blobs = []
    for _ in range(2):
        sink = io.BytesIO()
        with LayerWriter(sink) as lw:
            lw.add_all(walk_tree(root))
            lw.finish()
        blobs.append(sink.getvalue())
    assert blobs[0] == blobs[1]


def test_leaving_without_finish_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="without finish"), LayerWriter(io.BytesIO()) as lw:
        lw.add_all(walk_tree(make_tree(tmp_path / "t")))
    with pytest.raises(KeyError), LayerWriter(io.BytesIO()):
        raise KeyError("the caller's error passes through")
