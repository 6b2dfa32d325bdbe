"""Image identity in the local store, as podman has it: one IMAGE ID per image, every name of it.

An image's ID is the config digest of its platform's manifest: for an index, of this host's
platform manifest, else of the first one present locally. So `images`, `inspect`, `rmi` and a
short ID (12+ hex digits) agree whether a name points at an index or at one of its manifests.
`ImageRecord` is one line of `sealer images`: `created` is the config's (reproducible,
SOURCE_DATE_EPOCH, default 0) and `stored` when the image entered this store (refs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from builder.errors import BlobNotFound, ImageError, ImageInUse, ImageNotFound, StoreError
from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.manifest import Manifest
from builder.image.mediatypes import MANIFESTS
from builder.store.blobs import BlobStore
from builder.store.refs import RefStore


class StoreView(Protocol):
    """What this module needs of `layout.Store`, which calls it back (`images`, ID prefixes):
    stated here so that this module does not import layout.py and the two form no cycle."""

    @property
    def blobs(self) -> BlobStore: ...
    @property
    def refs(self) -> RefStore: ...
    def read_manifest(self, target: Descriptor) -> Manifest: ...
    def read_config(self, target: Descriptor) -> ImageConfig: ...
    def manifests_for(
        self, desc: Descriptor, platform: Platform | None = None
    ) -> list[tuple[Descriptor, Manifest]]: ...
    def resolve(self, ref: str) -> Descriptor: ...
    def untag(self, name: str) -> str: ...


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One line of `sealer images`."""

    name: str
    digest: Digest  # manifest (or index) digest
    image_id: Digest  # config digest of the platform's manifest (the host's, for an index)
    size: int  # bytes of every blob the image holds locally
    created: str | None  # the config's `created` (reproducible: SOURCE_DATE_EPOCH)
    platforms: tuple[Platform, ...]
    problem: str | None = None  # why the image cannot be used (missing or unreadable blobs)
    stored: str | None = None  # when the image entered this store (RFC 3339, UTC)
    labels: tuple[tuple[str, str], ...] = ()  # the platform config's labels


def platform_manifest(
    store: StoreView, desc: Descriptor, platform: Platform | None = None
) -> tuple[Descriptor, Manifest]:
    """The manifest `desc` stands for: itself, or for an index the one for `platform` (strict),
    or with no platform this host's, else the first present locally."""
    if desc.media_type in MANIFESTS:
        return desc, store.read_manifest(desc)
    if platform is not None:
        return store.manifests_for(desc, platform)[0]
    return _pick(store.manifests_for(desc), desc)


def _pick(pairs: list[tuple[Descriptor, Manifest]], desc: Descriptor) -> tuple[Descriptor, Manifest]:
    if not pairs:
        raise BlobNotFound(f"none of the platform manifests of index {desc.digest} is in the store")
    host = Platform.host()
    return next((p for p in pairs if p[0].platform is not None and p[0].platform.matches(host)), pairs[0])


def image_id(store: StoreView, desc: Descriptor) -> Digest:
    """The IMAGE ID of the image `desc` names; its own digest when its blobs are unreadable."""
    try:
        return platform_manifest(store, desc)[1].config.digest
    except (StoreError, ImageError):
        return desc.digest


def image_records(store: StoreView) -> list[ImageRecord]:
    """Every named image, in index order; one that is broken (a blob missing, a manifest or
    config unreadable) is listed with its `problem`, so it never hides the others."""
    records = []
    for name, desc, stored in store.refs.entries():
        try:
            records.append(_record(store, name, desc, stored))
        except (StoreError, ImageError) as err:
            records.append(ImageRecord(name, desc.digest, desc.digest, desc.size, None, (), str(err), stored))
    return records


def _record(store: StoreView, name: str, desc: Descriptor, stored: str | None) -> ImageRecord:
    pairs = store.manifests_for(desc)
    main = _pick(pairs, desc)
    blobs: dict[Digest, int] = {desc.digest: desc.size}
    platforms: list[Platform] = []
    created: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    for child, manifest in pairs:
        blobs[child.digest] = child.size
        blobs[manifest.config.digest] = manifest.config.size
        for layer in manifest.layers:
            blobs[layer.digest] = layer.size
            if not store.blobs.has(layer.digest):
                raise BlobNotFound(f"layer {layer.digest} is missing")
        config = store.read_config(manifest.config)
        platforms.append(child.platform or config.platform)
        if child is main[0]:
            created, labels = config.created, tuple(sorted(config.config.labels.items()))
    return ImageRecord(
        name,
        desc.digest,
        main[1].config.digest,
        sum(blobs.values()),
        created,
        tuple(platforms),
        None,
        stored,
        labels,
    )


def names_of(store: StoreView, image: Digest) -> list[str]:
    """Every name whose image ID is `image`, in index order."""
    return [name for name, desc in store.refs.list() if image_id(store, desc) == image]


def remove_image(store: StoreView, text: str, *, force: bool) -> list[str]:
    """`rmi TEXT`, as docker does it: a name loses only that name; an image ID (12+ hex digits)
    or digest loses every name of that image, which needs `force` when there are several
    (ImageInUse otherwise). Returns the names removed; ImageNotFound when nothing matches.
    Blobs stay until gc."""
    try:
        return [store.untag(text)]
    except ImageNotFound:
        pass
    target = image_id(store, store.resolve(text))
    names = names_of(store, target)
    if len(names) > 1 and not force:
        raise ImageInUse(
            f"conflict: unable to delete {target.hex[:12]} (must be forced) - image is referenced "
            f"in multiple repositories ({len(names)} names)",
            hint=f"remove one name (sealer rmi NAME), or all of them: sealer rmi -f {text}",
        )
    for name in names:
        store.refs.remove(name)
    return names
