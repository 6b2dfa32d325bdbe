"""The BUNDLE step of a build: the container images its files reference, pulled (through the
build's injected puller) and written as one `registry/` layer after the Kubefile's steps.

Discovery (discover.py) reads the manifests, charts and imageList files the build added, from
the context and from the build's RUN layers; its result is cached by the content of those files.
Images marked `docker-daemon:` (or all of them, with image_source="docker-daemon") are exported
from the injected Docker engine instead of pulled; their image IDs are part of the step's cache
key, so a rebuild exports nothing unless the daemon's image changed.
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
from builder.build.pull import DAEMON_TRANSPORT, DaemonImage, Pulls
from builder.diffdirs import ensure_diff_dir
from builder.errors import ImageNotInDaemon
from builder.image.descriptor import Descriptor, Platform
from builder.image.extension import ContainerImage
from builder.image.reference import Reference
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
    image_source: str = "registry",
) -> None:
    """Pull the container images this build's files reference into a `registry/` layer: step
    `index` of `index`, after the Kubefile's (known only now: it exists only when the files
    name images), so progress shows `STEP 8/8: BUNDLE ...` rather than `STEP 0/0`.
    `image_source` "docker-daemon" takes every image from the Docker engine, not registries."""
    found = _discover(draft, store, stat_cache, on_event)
    inherited = {c.image for c in draft.container_images}
    wanted: dict[str, str] = {}
    from_daemon: dict[str, str] = {}  # image -> where it was named (FILE:LINE for an imageList)
    for image, app, transport, source in found:
        if image in inherited:
            continue
        wanted.setdefault(image, app)
        if transport == DAEMON_TRANSPORT or image_source == DAEMON_TRANSPORT:
            from_daemon.setdefault(image, source)
    if not wanted:
        return
    from builder.build.bundle.distribution import write_distribution

    label = str(platform)
    text = "BUNDLE " + " ".join(
        sorted(f"{DAEMON_TRANSPORT}:{image}" if image in from_daemon else image for image in wanted)
    )
    on_event(StepStarted(label, index, index, text))
    started = time.monotonic()
    daemon_images = _inspect_daemon(pulls, from_daemon, platform)
    # The daemon's image IDs join the key: `docker build -t app:v1` again invalidates the step.
    key_text = text + "".join(f"\n{image}@{d.image_id}" for image, d in sorted(daemon_images.items()))
    key = cache_mod.bundle_key(draft.key, key_text, platform, settings)
    layer = layers.cached(key)
    cached = layer is not None
    if layer is None:
        pulled = Store.open(scratch / "bundle-store")
        try:
            for image in sorted(wanted):
                if image in daemon_images:
                    on_event(BuildWarning(f"exporting {DAEMON_TRANSPORT}:{_familiar(image)}"))
                    pulls.docker_daemon(image).export(pulled, daemon_images[image].image_id, image)
                else:
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


def _familiar(image: str) -> str:
    return Reference.parse(image).familiar


def _inspect_daemon(pulls: Pulls, wanted: dict[str, str], platform: Platform) -> dict[str, DaemonImage]:
    """Each image of `wanted` (image -> where it was named) as the Docker daemon holds it;
    ImageNotInDaemon, naming that place, for one it lacks or holds for another platform."""
    out: dict[str, DaemonImage] = {}
    for image, source in sorted(wanted.items()):
        held = pulls.docker_daemon(image).inspect(image)
        name = _familiar(image)
        if held is None:
            raise ImageNotInDaemon(
                f"{source}: {name} is not in the Docker daemon",
                hint=f"`docker images {name}` shows what it holds: docker build, pull or load it first",
            )
        if not held.platform.matches(platform):
            raise ImageNotInDaemon(
                f"{source}: {name} in the Docker daemon is {held.platform}, this build is for {platform}",
                hint="build for the image's platform (--platform), or put that platform's image in the daemon",
            )
        out[image] = held
    return out


def _discover(
    draft: Draft, store: Store, stat_cache: cache_mod.StatCache, on_event: EventSink
) -> list[tuple[str, str, str, str]]:
    """(image, app, transport, source) of what the build's manifests, charts and imageList
    files reference.

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
    # Entries of 2 items were cached before images had a transport and a source: read again.
    if hit is None or any(len(entry) != 4 for entry in hit.get("images", [])):
        from builder.build.bundle.discover import discover_files

        result = discover_files(_bundle_files(store, sources, draft.run_layers))
        hit = {
            "images": [[i.image, i.app_name, i.transport, i.source] for i in result.images],
            "warnings": list(result.warnings),
        }
        cache.put(key, hit)
    for warning in hit.get("warnings", []):
        on_event(BuildWarning(str(warning)))
    return [(str(i), str(a), str(t), str(s)) for i, a, t, s in hit.get("images", [])]


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
