"""What every action shares: the settings, the outcome, loading the image, the runner and
the delivery callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from builder.errors import ClusterError, HostError, PhaseError
from builder.image import mediatypes
from builder.image.descriptor import Platform
from builder.image.extension import ImageExtension
from builder.image.metadata import METADATA_FILE, RootfsMetadata
from builder.runtime import delivery
from builder.runtime._stackcheck import KEPT_FILES
from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.infra.base import InfraDriver
from builder.runtime.infra.routing import make_driver
from builder.runtime.phases import (
    DEFAULT_ROOT,
    ImageInfo,
    Phase,
    PlanState,
    Step,
)
from builder.runtime.phases.scripts import INIT_REGISTRY_SCRIPT
from builder.runtime.plugins import RuntimePlugin, select_plugin
from builder.runtime.runner import (
    DeliveryOutcome,
    EventSink,
    HostBytes,
    Runner,
    RunOptions,
    combine_host_errors,
    ignore,
)
from builder.runtime.state import ClusterState, Journal
from builder.store.layout import Store

JOINED = "joined"  # journal phase marking a host that went through every install phase


@dataclass(frozen=True)
class Settings:
    """What every action needs besides its arguments."""

    store: Store | None = None
    home: Path | None = None  # the state home (None: $SEALER_STATE_HOME or ~/.sealer)
    options: RunOptions = field(default_factory=RunOptions)
    root: str = DEFAULT_ROOT
    on_event: EventSink = ignore
    driver_factory: Callable[[Cluster], InfraDriver] = make_driver
    pull: Callable[[str, Platform], None] | None = None  # fetch a missing image (the CLI's registry)


@dataclass(frozen=True, slots=True)
class HostSummary:
    host: str
    role: str
    phases: tuple[str, ...]
    bytes_sent: int
    seconds: float
    failed: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What an action did: a message, the dry-run plan, the per-host summary."""

    cluster: Cluster | None
    message: str
    plan: tuple[str, ...] = ()
    hosts: tuple[HostSummary, ...] = ()
    dry_run: bool = False


# --- the image ---------------------------------------------------------------------------------


def image_platforms(store: Store, name: str) -> list[Platform]:
    """The platforms the local store has `name` for; ImageNotFound when it is not there."""
    desc = store.resolve(name)
    if desc.media_type in mediatypes.INDEXES:
        return [m.platform for m in store.read_index(desc).manifests if m.platform is not None]
    return [store.read_config(store.read_manifest(desc).config).platform]


def _image_file(image: delivery.DeliveryImage, path: str) -> bytes | None:
    """The rootfs file `path` as the image has it (after every layer), None if absent: one of
    the small files the delivery's stack check keeps (`KEPT_FILES`), so nothing is unpacked."""
    if path not in KEPT_FILES:
        raise ValueError(f"{path} is not a file the stack check keeps (KEPT_FILES)")
    return image.files.get(path)


def _metadata_runtime(image: delivery.DeliveryImage) -> str | None:
    """Metadata's ClusterRuntime (rare: only images without the runtime label need it)."""
    data = _image_file(image, METADATA_FILE)
    return RootfsMetadata.from_bytes(data).cluster_runtime if data is not None else None


def with_plugin(
    store: Store, info: ImageInfo, image: delivery.DeliveryImage, override: str | None
) -> tuple[ImageInfo, RuntimePlugin]:
    """The image's runtime plugin, and `info` with the files the plans read: the plugin's
    config files, and init-registry.sh (planned only when the image has one)."""
    plugin = select_plugin(info.runtime_label, info.metadata_runtime, override)
    files: dict[str, str] = {}
    for path in (*plugin.config_files, INIT_REGISTRY_SCRIPT):
        data = _image_file(image, path)
        if data is not None:
            files[path] = data.decode("utf-8", errors="replace")
    return replace(info, files=files), plugin


def load_image(store: Store, name: str, platform: Platform) -> tuple[ImageInfo, delivery.DeliveryImage]:
    """Everything the phases read about `name` for `platform`, and the delivery's own view."""
    dimg = delivery.prepare_image(store, name, platform)
    manifest = store.read_manifest(dimg.manifest_digest)
    config = store.read_config(manifest.config)
    label = config.config.labels.get(mediatypes.LABEL_CLUSTER_RUNTIME) or None
    ext_text = manifest.annotations.get(mediatypes.ANNOTATION_SEALER_EXTENSION)
    ext = ImageExtension.from_json(ext_text) if ext_text else ImageExtension()
    info = ImageInfo(
        name=name,
        digest=str(dimg.manifest_digest),
        platform=dimg.platform,
        env=dict(dimg.env),
        launch_cmds=ext.launch.cmds,
        app_names=ext.launch.app_names,
        applications=ext.applications,
        runtime_label=label,
        metadata_runtime=None if label else _metadata_runtime(dimg),
        kube_version=config.config.labels.get(mediatypes.LABEL_SUPPORTED_KUBE_VERSION) or None,
        compressed_bytes=sum(p.descriptor.size for p in dimg.layers),
        layer_count=len(dimg.layers),
    )
    return info, dimg


def pick_platform(facts: Facts, available: Sequence[Platform] | None) -> Platform:
    """The one platform of the cluster: every host's architecture must be the same."""
    arches = {facts[h].platform.architecture: h for h in facts}
    if len(arches) > 1:
        (a1, h1), (a2, h2) = list(arches.items())[:2]
        raise PhaseError(
            f"hosts mix architectures ({h1} is {a1}, {h2} is {a2}): a cluster runs one image platform",
            phase="check",
        )
    first = facts[next(iter(facts))]
    if available:
        for p in available:
            if p.architecture == first.platform.architecture:
                return p
        raise PhaseError(
            f"{first.host}: architecture {first.platform.architecture} but the image is for "
            f"{', '.join(str(p) for p in available)}",
            phase="check",
            step=first.host,
        )
    return first.platform


# --- the parts every action shares -------------------------------------------------------------


def plan_all(
    phases: Sequence[Phase], cluster: Cluster, facts: Facts, state: PlanState
) -> list[tuple[Phase, list[Step]]]:
    return [(p, p.plan(cluster, facts, state)) for p in phases]


def host_summaries(cluster: Cluster, runner: Runner, hosts: Sequence[str]) -> tuple[HostSummary, ...]:
    out = []
    for ip in hosts:
        stats = runner.host_stats(ip)
        role = "master0" if cluster.has_host(ip) and cluster.master0.ip == ip else ""
        if not role:
            role = str(cluster.host(ip).role) if cluster.has_host(ip) else "?"
        out.append(HostSummary(ip, role, tuple(stats.phases), stats.bytes_sent, stats.seconds, stats.failed))
    return tuple(out)


def make_runner(
    driver: InfraDriver, cs: ClusterState, journal: Journal, settings: Settings, digest: str
) -> Runner:
    return Runner(
        driver,
        digest=digest,
        journal=journal,
        logs=cs.host_log,
        options=settings.options,
        on_event=settings.on_event,
        log_hint=str(cs.logs_dir / "{host}.log"),
    )


def placeholder_image(name: str) -> ImageInfo:
    return ImageInfo(name=name, digest="", platform=Platform.host())


def deliver_fn(
    driver: InfraDriver,
    store: Store,
    dimg: delivery.DeliveryImage,
    cluster: Cluster,
    state: PlanState,
    settings: Settings,
    *,
    target: str = "",
) -> Callable[[Sequence[str], EventSink], Any]:
    """The runner's delivery callback: `dimg` to the hosts it is given, each with its env for
    the templates; `target` a tree of its own under data/<cluster> (an app's), else the rootfs."""

    async def deliver(hosts: Sequence[str], emit: EventSink) -> Mapping[str, DeliveryOutcome]:
        host_env = {h: state.host_env(cluster, cluster.host(h)) for h in hosts}

        def on_event(event: delivery.DeliveryEvent) -> None:
            if isinstance(event, delivery.HostProgress):  # as the bytes stream, not per blob
                emit(HostBytes(event.host, event.bytes_sent, event.bytes_total))

        results = await delivery.deliver(
            driver,
            store,
            dimg,
            cluster.name,
            host_env,
            root=settings.root,
            max_parallel=settings.options.max_parallel,
            on_event=on_event,
            target=target,
        )
        return {h: DeliveryOutcome(h, r.bytes_sent, r.seconds) for h, r in results.items()}

    return deliver


def remove_fn(driver: InfraDriver, cluster: Cluster, settings: Settings) -> Callable[[Sequence[str]], Any]:
    """The runner's removal callback: each host's rootfs goes; every host that fails is named
    (one HostError for all of them), not only the first."""

    async def remove(hosts: Sequence[str]) -> None:
        slots = asyncio.Semaphore(max(1, settings.options.max_parallel))

        async def one(host: str) -> None:
            async with slots:
                await delivery.remove(driver, cluster.name, [host], root=settings.root)

        results = await asyncio.gather(*(one(h) for h in hosts), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        host_errors = [e for e in errors if isinstance(e, HostError)]
        if host_errors and len(host_errors) == len(errors):
            raise combine_host_errors(host_errors)
        if errors:
            raise errors[0]

    return remove


def require_store(settings: Settings) -> Store:
    if settings.store is None:
        raise ClusterError("this action needs the image store")
    return settings.store
