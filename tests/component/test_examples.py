"""Every Kubefile under examples/ builds, and its image is valid; the docs point at them."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.image.descriptor import Platform
from builder.store.layout import Store
from tests.validate import validate_image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("example", sorted(p.parent.name for p in EXAMPLES.glob("*/Kubefile")))
def test_example_builds(store: Store, example: str) -> None:
    platforms = (Platform("linux", "amd64"), Platform("linux", "arm64"))
    # The examples' manifests name public images, which cannot be pulled here: bundling is
    # tested against a local registry in tests/component/registry.
    options = BuildOptions(
        context=EXAMPLES / example, tags=(f"examples/{example}:v1",), platforms=platforms, bundle_images=False
    )
    build_image(store, options)
    validate_image(store, f"examples/{example}:v1")


def test_there_are_examples() -> None:
    assert {p.parent.name for p in EXAMPLES.glob("*/Kubefile")} >= {"app", "apps", "rootfs"}
