"""The opening every action that delivers an image shares (`run`, `apply`/`join`, `upgrade`,
`run_app`), and its dry-run twin:

    prepare   probe the hosts (the check phase's facts), pick the cluster's one platform, pull
              the image when it is not local, load it, let the action check it, choose its
              plugin and build its plan state (`Request.decide`), verify the facts against
              that state, and build the Runner with everything it needs (journal digest,
              delivery callback, outputs the action reads, the check's host stats)
    assume    the same without a host or a pull: the local image for the assumed platform
              (`with_delivery_shown` then adds the delivery each host would get)

Also the image facts the phases read (`load_image`) and the plugin choice (`with_plugin`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from builder.errors import ImageNotFound, PhaseError
from builder.image import mediatypes
from builder.image.descriptor import Platform
from builder.image.extension import ImageExtension
from builder.image.metadata import METADATA_FILE, RootfsMetadata
from builder.runtime import delivery, fanout
from builder.runtime._stackcheck import KEPT_FILES, TEMPLATE_SUFFIX, is_plugin_path
from builder.runtime.actions.runners import deliver_fn, make_runner
from builder.runtime.actions.settings import Outcome, Settings, require_store
from builder.runtime.cluster import Cluster
from builder.runtime.clusterfile import parse_plugin_file
from builder.runtime.clusterfile_application import application_of_documents
from builder.runtime.clusterfile_configs import configs_of_documents
from builder.runtime.configs import ConfigFile
from builder.runtime.facts import Facts
from builder.runtime.hooks import ShellHook
from builder.runtime.image_configs import with_configs
from builder.runtime.infra.base import InfraDriver
from builder.runtime.phases import Check, ImageInfo, PlanState
from builder.runtime.phases.launch import check_apps
from builder.runtime.phases.registry_service import REGISTRY_BINARY
from builder.runtime.phases.scripts import INIT_REGISTRY_SCRIPT
from builder.runtime.plugins import RuntimePlugin, get_plugin, select_plugin
from builder.runtime.plugins.base import AUDIT_POLICY
from builder.runtime.plugins.sealer_image import check_sealer_image
from builder.runtime.runner import Notice, Runner
from builder.runtime.state import ClusterState, Journal
from builder.store.layout import Store

_State = TypeVar("_State", bound=PlanState)

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
    for path in (*plugin.config_files, INIT_REGISTRY_SCRIPT, REGISTRY_BINARY):
        # a template the plugin renders itself, with a host's env (sealer's etc/kubeadm.yml.tmpl)
        data = image.templates.get(path) if path.endswith(TEMPLATE_SUFFIX) else _image_file(image, path)
        if data is None and path == AUDIT_POLICY:  # or its template: the plan needs its presence only
            data = image.templates.get(path + TEMPLATE_SUFFIX)
        if data is not None:
            files[path] = data.decode("utf-8", errors="replace")
    check_sealer_image(info.name, files, info.container_runtime_label)
    return replace(info, files=files, hooks=image_hooks(image)), plugin


def rootfs_configs(cluster: Cluster) -> tuple[ConfigFile, ...]:
    """What changes files of the cluster's rootfs: its Configs, then its Application's app files."""
    application = application_of_documents(cluster.documents)
    return configs_of_documents(cluster.documents) + (application.files if application else ())


def image_hooks(image: delivery.DeliveryImage) -> tuple[ShellHook, ...]:
    """The Plugin documents of the image's plugins/*.yaml, files in name order (sealer reads
    the directory so); an error names the file and line in the image."""
    hooks: list[ShellHook] = []
    for path in sorted(p for p in image.files if is_plugin_path(p)):
        text = image.files[path].decode("utf-8", errors="replace")
        hooks += parse_plugin_file(text, path=f"{image.name}: {path}")
    return tuple(hooks)


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
        digest=dimg.manifest_digest,
        platform=dimg.platform,
        env=dict(dimg.env),
        launch_cmds=ext.launch.cmds,
        app_names=ext.launch.app_names,
        applications=ext.applications,
        runtime_label=label,
        container_runtime_label=config.config.labels.get(mediatypes.LABEL_CONTAINER_RUNTIME) or None,
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


# --- the opening ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What an action makes of the loaded image: the plan state its phases read, and the
    delivery target (an app's tree; "" for the cluster's rootfs)."""

    state: PlanState
    target: str = ""


# decide(info, dimg, platform): the action's checks and plugin choice; an Outcome when there
# is nothing to do (an upgrade to the image the cluster already runs).
Decide = Callable[[ImageInfo, delivery.DeliveryImage, Platform], "Decision | Outcome"]


@dataclass(frozen=True)
class Request:
    """What an action asks `prepare` for: `image` on `targets` of `cluster`."""

    cluster: Cluster
    image: str
    targets: tuple[str, ...]
    cli_env: Mapping[str, str]
    decide: Decide
    keep_outputs: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Prepared:
    """What `prepare` found, and the runner built for it."""

    facts: Facts
    platform: Platform
    info: ImageInfo
    image: delivery.DeliveryImage
    decision: Decision
    runner: Runner

    @property
    def state(self) -> PlanState:
        return self.decision.state


async def prepare(
    request: Request, settings: Settings, cs: ClusterState, journal: Journal, driver: InfraDriver
) -> Prepared | Outcome:
    """The opening, before any host changes (see the module docstring)."""
    store = require_store(settings)
    try:
        available: list[Platform] | None = image_platforms(store, request.image)
    except ImageNotFound:
        if settings.pull is None:
            raise
        available = None
    # check: facts first (no digest yet: probes are never journaled), then the image for them
    probe = make_runner(driver, cs, journal, settings, digest=None)
    probe_state = PlanState(
        ImageInfo(name=request.image, digest=None, platform=Platform.host()),
        get_plugin("none"),
        request.targets,
        request.cli_env,
        settings.root,
    )
    check = Check()
    facts = Check.facts(await probe.run_phase(check, check.plan(request.cluster, Facts(), probe_state)))
    platform = pick_platform(facts, available)
    if available is None:
        assert settings.pull is not None
        settings.on_event(Notice(f"pulling {request.image} for {platform}"))
        await asyncio.to_thread(settings.pull, request.image, platform)
    info, dimg = await asyncio.to_thread(load_image, store, request.image, platform)
    decision = request.decide(info, dimg, platform)  # small reads: the manifest, kept files
    if isinstance(decision, Outcome):
        return decision
    Check.verify(facts, decision.state, request.cluster)
    if not decision.target:  # the Clusterfile's Configs change the cluster's rootfs, not an app's
        check_apps(request.cluster, decision.state.image)
        dimg = await asyncio.to_thread(with_configs, store, dimg, rootfs_configs(request.cluster))
    runner = make_runner(
        driver,
        cs,
        journal,
        settings,
        decision.state.image.digest,
        deliver=deliver_fn(driver, dimg, request.cluster, decision.state, settings, target=decision.target),
        keep_outputs=request.keep_outputs,
        stats=probe.stats,
    )
    return Prepared(facts, platform, decision.state.image, dimg, decision, runner)


def assume(
    settings: Settings, image: str, wanted: Platform
) -> tuple[Platform, ImageInfo, delivery.DeliveryImage]:
    """The dry-run's opening: the local image (a dry-run does not pull) for the platform of
    `wanted`'s architecture, else its first."""
    store = require_store(settings)
    try:
        available = image_platforms(store, image)
    except ImageNotFound as err:
        raise ImageNotFound(
            f"{err.message} (a dry-run does not pull)", hint=f"sealer pull {image} first"
        ) from None
    platform = next((p for p in available if p.architecture == wanted.architecture), available[0])
    info, dimg = load_image(store, image, platform)
    return platform, info, dimg


def with_delivery_shown(
    state: _State, cluster: Cluster, dimg: delivery.DeliveryImage, settings: Settings, *, target: str = ""
) -> _State:
    """`state` with the delivery each target host would get (`delivery.plan_commands`, its
    templates rendered with its env and the Clusterfile's Configs applied), for the dry-run's
    deliver step."""
    if not target:
        check_apps(cluster, state.image)
        dimg = with_configs(require_store(settings), dimg, rootfs_configs(cluster))
    shown = {
        h.ip: tuple(
            delivery.plan_commands(
                dimg,
                cluster.name,
                h.ip,
                root=settings.root,
                env=state.host_env(cluster, h),
                target=target,
                data_root=cluster.data_root,
            )
        )
        for h in state.target_hosts(cluster)
    }
    if state.fanout is not None and not target:  # who fetches what from whom
        shown = {
            h.ip: tuple(
                fanout.dry_run_lines(
                    state.fanout,
                    dimg,
                    cluster.name,
                    h.ip,
                    state.host_env(cluster, h),
                    settings.root,
                    cluster.data_root,
                )
            )
            for h in state.target_hosts(cluster)
        }
    return replace(state, delivery_lines=shown)
