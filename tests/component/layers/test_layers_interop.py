"""umoci and skopeo read the layers we write (gzip and zstd), as a minimal OCI layout."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.image import mediatypes
from builder.layers.compression import Compression
from builder.layers.onepass import LayerWriter
from builder.layers.tarwriter import TarEntry, walk_tree

pytestmark = pytest.mark.component


def _blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"sha256:{digest}"


def _layout(tmp_path: Path, layers: list[tuple[bytes, str, str]]) -> Path:
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [d for _, d, _ in layers]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": {
                "mediaType": mediatypes.OCI_CONFIG,
                "digest": _blob(layout, config),
                "size": len(config),
            },
            "layers": [{"mediaType": mt, "digest": _blob(layout, b), "size": len(b)} for b, _, mt in layers],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mediatypes.OCI_MANIFEST,
                "digest": _blob(layout, manifest),
                "size": len(manifest),
                "annotations": {mediatypes.ANNOTATION_REF_NAME: "t"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    return layout


def _layer(entries: list[TarEntry], kind: Compression) -> tuple[bytes, str, str]:
    sink = io.BytesIO()
    with LayerWriter(sink, compression=kind) as lw:
        lw.add_all(entries)
        stats = lw.finish()
    return sink.getvalue(), str(stats.diff_id), stats.media_type


@pytest.mark.parametrize("kind", [Compression.GZIP, Compression.ZSTD])
def test_umoci_unpacks_and_skopeo_inspects(tmp_path: Path, kind: Compression) -> None:
    umoci, skopeo = shutil.which("umoci"), shutil.which("skopeo")
    assert umoci and skopeo, "umoci and skopeo are required"
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc/config").write_text("a=1\n")
    (src / "etc/old").write_text("deleted by layer 2\n")
    (src / "bin").mkdir()
    (src / "bin/tool").write_bytes(b"\x7fELF" * 1000)
    base = _layer(list(walk_tree(src)), kind)
    top = _layer([TarEntry("etc", "dir", 0o755), TarEntry("etc/old", "whiteout")], kind)
    layout = _layout(tmp_path, [base, top])
    inspect = subprocess.run(
        [skopeo, "inspect", f"oci:{layout}:t"], check=True, capture_output=True, text=True
    )
    assert json.loads(inspect.stdout)["Layers"] == [
        f"sha256:{hashlib.sha256(b).hexdigest()}" for b, _, _ in (base, top)
    ]
    if kind is Compression.ZSTD:
        # Debian 12's umoci 0.4.7 refuses +zstd layers ("blob is not correct mediatype"):
        # skopeo decompresses ours (Go's zstd decoder) into gzip, and umoci unpacks that.
        converted = tmp_path / "converted"
        subprocess.run(
            [skopeo, "copy", "--dest-compress-format", "gzip", f"oci:{layout}:t", f"oci:{converted}:t"],
            check=True,
            capture_output=True,
        )
        layout = converted
    bundle = tmp_path / "bundle"
    subprocess.run([umoci, "unpack", "--image", f"{layout}:t", bundle], check=True, capture_output=True)
    rootfs = bundle / "rootfs"
    assert (rootfs / "etc/config").read_text() == "a=1\n"
    assert not (rootfs / "etc/old").exists()
    assert (rootfs / "bin/tool").read_bytes() == b"\x7fELF" * 1000
