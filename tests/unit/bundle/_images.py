"""Small images in a store for the bundle tests: one single-platform image, one two-platform index."""

from __future__ import annotations

from builder.image.descriptor import Descriptor, Platform
from builder.image.index import Index
from builder.image.reference import Reference
from builder.store.layout import Store
from tests.unit.store._tiny import add_image

PLATFORMS = (Platform("linux", "amd64"), Platform("linux", "arm64", "v8"))


def add_index(store: Store, name: str) -> tuple[Descriptor, list[Descriptor]]:
    """A two-platform OCI index named `name`; returns it and its per-platform manifests."""
    children = []
    for platform in PLATFORMS:
        desc = add_image(
            store,
            f"{name}-{platform.architecture}",
            [{"arch.txt": str(platform).encode()}, {"app/data": b"shared layer"}],
            platform=platform,
        )
        children.append(desc.with_platform(platform))
    index_desc = store.put_index(Index(tuple(children)))
    store.refs.set(str(Reference.parse(name)), index_desc)
    return index_desc, children
