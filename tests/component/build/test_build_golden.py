"""A fixed small context builds to one manifest digest, in every version of sealer, not only
twice within one run: the golden digest below pins the whole chain (tar entries and their
order, modes, mtimes, zstd frames, config and manifest JSON, annotations).

If this fails after a change that is meant to change the image format (a new annotation, a new
compression level, a new tar header field), the change breaks reproducibility across versions:
say so in the change's note and docs, then put the new digests here. Any other failure is a bug.
The manifest's sealer.image.extension annotation carries buildClient.sealerVersion ("0.1.0"
here), so a release that bumps the version changes MANIFEST, and only it: check that LAYERS and
CONFIG still hold before updating MANIFEST. COPY/LABEL/ENV only: RUN depends on the machine."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.image.descriptor import Platform
from builder.store.layout import Store
from tests.conftest import Link
from tests.validate import validate_image

MANIFEST = "sha256:ff193d9aafaacb59595e7c4dbce19cdbd4fe57d3fa6ed86d0d5c1589fec5867b"
CONFIG = "sha256:d279698d3462e107c07e9e47225162198e7657505d4ab17c46b18aee12fd3340"
LAYERS = [  # COPY bin, COPY etc, COPY app.yaml, the Metadata layer
    "sha256:6c3b2509bcddae1d272530b4780d0e7b461a6f8798a9b707657407dbed27946a",
    "sha256:a5361851f945340a489dab46459109a3b1aa54089dfecd1e4de651e0ad33eced",
    "sha256:8de90d8f214b91e67fe34c24bc284d9866c4ecf6c4356bd6b1ddfd040a511eba",
    "sha256:406c7d63a74d629dc9e77dd92b99c3cd3a2ca8dc12caf93bf1ab3e3c94872095",
]

KUBEFILE = """\
FROM scratch
LABEL cluster.alpha.sealer.io/cluster-runtime-type=kubernetes
ENV VERSION=1.0 MODE=golden
COPY bin bin/
COPY etc etc/
COPY app.yaml apps/
LABEL org.example.purpose=golden
"""


def test_a_fixed_context_builds_to_the_golden_digest(
    tmp_path: Path, make_context: Callable[..., Path]
) -> None:
    ctx = make_context(
        {
            "bin/tool": b"#!/bin/sh\necho tool\n" + bytes(range(256)) * 8,
            "etc/conf.yaml": "key: value\n",
            "etc/secret": "s3cret\n",
            "etc/link": Link("conf.yaml"),
            "app.yaml": "kind: Deployment\n",
        },
        kubefile=KUBEFILE,
    )
    for path, mode in (("bin", 0o755), ("etc", 0o750), ("bin/tool", 0o755), ("etc/secret", 0o600)):
        os.chmod(ctx / path, mode)
    for path in ("etc/conf.yaml", "app.yaml"):
        os.chmod(ctx / path, 0o644)
    os.utime(ctx / "bin" / "tool", (1_234_567, 1_234_567))  # mtimes do not reach the image

    store = Store.open(tmp_path / "root")
    result = build_image(
        store, BuildOptions(context=ctx, tags=("golden:1",), platforms=(Platform("linux", "amd64"),))
    )
    validate_image(store, "golden:1")
    manifest = store.read_manifest(result.descriptor)
    assert [str(layer.digest) for layer in manifest.layers] == LAYERS
    assert str(manifest.config.digest) == CONFIG
    assert str(result.descriptor.digest) == MANIFEST
