"""The BUNDLE step of a build: the container images its files reference, pulled (through the
build's injected puller) and written as one `registry/` layer after the Kubefile's steps.

Discovery (discover.py) reads the manifests, charts and imageList files the build added, from
the context and from the build's RUN layers; its result is cached by the content of those files.
"""

from __future__ import annotations

import os
import posixpath
import time
from pathlib import Path

from builder.build import cache as cache_mod
from builder.build.draft import Draft
from builder.build.events import BuildWarning, EventSink, StepFinished, StepStarted
from builder.build.layer import StepLayers
from builder.build.pull import Pulls
from builder.diffdirs import ensure_diff_dir
from builder.image.descriptor import Descriptor, Platform
from builder.image.extension import ContainerImage
from builder.layers.tarwriter import walk_tree
from builder.store.layout import Store

# Where discovery looks for container images in the files a build adds.
BUNDLE_SOURCES = ("manifests/", "charts/", "application/apps/")


def is_bundle_source(name: str) -> bool:
    return name.startswith(BUNDLE_SOURCES) or posixpath.basename(name) == "imageList"


def bundle_images(
    draft: Draft,
    *,
    store: Store,
    platform: Platform,
    layers: StepLayers,
    pulls: Pulls,
    stat_cache: cache_mod.StatCache,
    on_event: EventSink,
    created: str,
    settings: str,
    scratch: Path,
    index: int,
) -> None:
    """Pull the container images this build's files reference into a `registry/` layer: step
    `index` of `index`, after the Kubefile's (known only now: it exists only when the files
    name images), so progress shows `STEP 8/8: BUNDLE ...` rather than `STEP 0/0`."""
    found = _discover(draft, store, stat_cache, on_event)
    inherited = {c.image for c in draft.container_images}
    wanted: dict[str, str] = {}
    for image, app in found:
        if image not in inherited:
            wanted.setdefault(image, app)
    if not wanted:
        return
    from builder.build.bundle.distribution import write_distribution

    label = str(platform)
    text = "BUNDLE " + " ".join(sorted(wanted))
    on_event(StepStarted(label, index, index, text))
    started = time.monotonic()
    key = cache_mod.bundle_key(draft.key, text, platform, settings)
    layer = layers.cached(key)
    cached = layer is not None
    if layer is None:
        pulled = Store.open(scratch / "bundle-store")
        try:
            for image in sorted(wanted):
                pulls.pull(pulled, image, platform, tag_as=image)
            registry_dir = scratch / "bundle-registry"
            write_distribution(pulled, [(image, image) for image in sorted(wanted)], registry_dir)
        finally:
            pulled.close()
        layer = layers.write(walk_tree(registry_dir, dest="registry"), index, None, text)
        layers.remember(key, layer)
    draft.add_layer(layer, created)
    draft.container_images = (
        *draft.container_images,
        *(ContainerImage(image, app, platform) for image, app in sorted(wanted.items())),
    )
    on_event(
        StepFinished(
            label,
            index,
            cached,
            str(layer.descriptor.digest),
            layer.descriptor.size,
            None,
            time.monotonic() - started,
        )
    )


def _discover(
    draft: Draft, store: Store, stat_cache: cache_mod.StatCache, on_event: EventSink
) -> list[tuple[str, str]]:
    """(image, app) pairs the build's manifests, charts and imageList files reference.

    The result is cached by the content of those files (their hashes come from the stat
    cache), so a rebuild does not parse thousands of YAML files again.
    """
    sources = {name: src for name, src in draft.files.items() if is_bundle_source(name)}
    if not sources and not draft.run_layers:
        return []
    known = draft.file_hashes
    hashes = {src: known.get(src) or stat_cache.hash_file(src) for _, src in sorted(sources.items())}
    key = cache_mod.discover_key(sources, hashes, (desc.digest for desc in draft.run_layers))
    cache = cache_mod.JsonCache(store.cache_dir, "discover")
    hit = cache.get(key)
    if hit is None:
        from builder.build.bundle.discover import discover_files

        result = discover_files(_bundle_files(store, sources, draft.run_layers))
        hit = {
            "images": [[i.image, i.app_name] for i in result.images],
            "warnings": list(result.warnings),
        }
        cache.put(key, hit)
    for warning in hit.get("warnings", []):
        on_event(BuildWarning(str(warning)))
    return [(str(image), str(app)) for image, app in hit.get("images", [])]


def _bundle_files(store: Store, sources: dict[str, str], run_layers: list[Descriptor]) -> dict[str, Path]:
    """Image path -> real file for discovery: context files, then unpacked RUN layers."""
    files = {name: Path(src) for name, src in sources.items()}
    for desc in run_layers:
        diff = ensure_diff_dir(store, desc, None)  # a RUN layer this machine wrote
        for dirpath, _, filenames in os.walk(diff):
            for filename in filenames:
                full = os.path.join(dirpath, filename)
                name = os.path.relpath(full, diff)
                if is_bundle_source(name) and os.path.isfile(full) and not os.path.islink(full):
                    files[name] = Path(full)
    return files
