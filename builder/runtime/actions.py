"""The cluster actions behind `sealer run/apply/join/delete/cluster status`.

Each action reads the saved state (`state.ClusterState`), decides which hosts it works on and
which phases they go through, and hands the plans to the runner (or, with dry-run, prints
them and stops: no connection, no state written).

    run     all phases on all hosts; a re-run resumes (journaled steps are skipped, delivery
            checks itself and moves only what is missing)
    apply   the wanted Clusterfile against the saved one: removed hosts leave (runtime leave,
            clean.sh, rootfs removed, forgotten), new hosts join (check, deliver, init.sh,
            runtime join). A changed image is refused: that is `upgrade`
    join    apply with hosts added to the saved cluster
    delete  hosts (or --all) leave: runtime leave/reset, clean.sh in reverse order (nodes,
            masters, master0 last), then the rootfs goes. Idempotent
    upgrade every host moves to a new image of the same runtime: deliver, init.sh, the
            plugin's upgrade (master0, masters one by one, workers in batches), kubeconfig
    status  the saved state: hosts, roles, image digest, last phase per host

The state is saved before the first host is changed (so an interrupted run can be finished or
deleted) and again, marked complete, at the end: that is the run's last phase, "save-state".
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from builder.errors import ClusterError, HostError, ImageNotFound, PhaseError
from builder.image import mediatypes
from builder.image.descriptor import Platform
from builder.image.extension import ImageExtension
from builder.image.metadata import METADATA_FILE, RootfsMetadata
from builder.runtime import delivery
from builder.runtime.cluster import Cluster, HostSpec, diff
from builder.runtime.facts import Facts
from builder.runtime.infra.base import InfraDriver
from builder.runtime.phases import (
    DEFAULT_ROOT,
    Check,
    ImageInfo,
    Phase,
    PlanState,
    Step,
    install_phases,
    removal_phases,
    upgrade_phases,
)
from builder.runtime.phases.scripts import INIT_REGISTRY_SCRIPT
from builder.runtime.phases.upgrade import kubeconfig_steps
from builder.runtime.plugins import RuntimePlugin, get_plugin, runtime_name, select_plugin
from builder.runtime.plugins.base import KUBECONFIG_OUTPUT, quorum_warnings
from builder.runtime.runner import (
    DeliveryOutcome,
    EventSink,
    HostBytes,
    Notice,
    Runner,
    RunOptions,
    format_plan,
    ignore,
    make_driver,
)
from builder.runtime.state import ClusterState, Journal, SavedMeta
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


def _image_file(store: Store, image: delivery.DeliveryImage, path: str) -> bytes | None:
    """The rootfs file `path` from the top-most layer that has it, None if none does (the
    layers are unpacked into the store's cache once; only small config files are read)."""
    from builder.rootfs import ensure_diff_dir

    for plan in reversed(image.layers):
        candidate = ensure_diff_dir(store, plan.descriptor) / path
        if candidate.is_file():
            return candidate.read_bytes()
    return None


def _metadata_runtime(store: Store, image: delivery.DeliveryImage) -> str | None:
    """Metadata's ClusterRuntime (rare: only images without the runtime label need it)."""
    data = _image_file(store, image, METADATA_FILE)
    return RootfsMetadata.from_bytes(data).cluster_runtime if data is not None else None


def _with_plugin(
    store: Store, info: ImageInfo, image: delivery.DeliveryImage, override: str | None
) -> tuple[ImageInfo, RuntimePlugin]:
    """The image's runtime plugin, and `info` with the files the plans read: the plugin's
    config files, and init-registry.sh (planned only when the image has one)."""
    plugin = select_plugin(info.runtime_label, info.metadata_runtime, override)
    files: dict[str, str] = {}
    for path in (*plugin.config_files, INIT_REGISTRY_SCRIPT):
        data = _image_file(store, image, path)
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
        metadata_runtime=None if label else _metadata_runtime(store, dimg),
        kube_version=config.config.labels.get(mediatypes.LABEL_SUPPORTED_KUBE_VERSION) or None,
        compressed_bytes=sum(p.descriptor.size for p in dimg.layers),
        layer_count=len(dimg.layers),
    )
    return info, dimg


def _pick_platform(facts: Facts, available: Sequence[Platform] | None) -> Platform:
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


def _plan_all(
    phases: Sequence[Phase], cluster: Cluster, facts: Facts, state: PlanState
) -> list[tuple[Phase, list[Step]]]:
    return [(p, p.plan(cluster, facts, state)) for p in phases]


def _summaries(cluster: Cluster, runner: Runner, hosts: Sequence[str]) -> tuple[HostSummary, ...]:
    out = []
    for ip in hosts:
        stats = runner.host_stats(ip)
        role = "master0" if cluster.has_host(ip) and cluster.master0.ip == ip else ""
        if not role:
            role = str(cluster.host(ip).role) if cluster.has_host(ip) else "?"
        out.append(HostSummary(ip, role, tuple(stats.phases), stats.bytes_sent, stats.seconds, stats.failed))
    return tuple(out)


def _runner(
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


def _placeholder_image(name: str) -> ImageInfo:
    return ImageInfo(name=name, digest="", platform=Platform.host())


def _deliver_fn(
    driver: InfraDriver,
    store: Store,
    dimg: delivery.DeliveryImage,
    cluster: Cluster,
    state: PlanState,
    settings: Settings,
) -> Callable[[Sequence[str], EventSink], Any]:
    async def deliver(hosts: Sequence[str], emit: EventSink) -> Mapping[str, DeliveryOutcome]:
        host_env = {h: state.host_env(cluster, cluster.host(h)) for h in hosts}
        sent: dict[str, int] = {}

        def on_event(event: delivery.DeliveryEvent) -> None:
            if isinstance(event, delivery.BlobSent):
                sent[event.host] = sent.get(event.host, 0) + event.bytes
                emit(HostBytes(event.host, sent[event.host]))

        results = await delivery.deliver(
            driver,
            store,
            dimg,
            cluster.name,
            host_env,
            root=settings.root,
            max_parallel=settings.options.max_parallel,
            on_event=on_event,
        )
        return {h: DeliveryOutcome(h, r.bytes_sent, r.seconds) for h, r in results.items()}

    return deliver


def _remove_fn(driver: InfraDriver, cluster: Cluster, settings: Settings) -> Callable[[Sequence[str]], Any]:
    async def remove(hosts: Sequence[str]) -> None:
        await delivery.remove(driver, cluster.name, hosts, root=settings.root)

    return remove


def _require_store(settings: Settings) -> Store:
    if settings.store is None:
        raise ClusterError("this action needs the image store")
    return settings.store


# --- install: run, and the joining half of apply/join ------------------------------------------


@dataclass(frozen=True)
class _Install:
    """Hosts going through the install phases (run, join, apply) or, with `upgrade`, every
    host through the upgrade phases."""

    cluster: Cluster
    image: str
    targets: tuple[str, ...]
    cli_env: Mapping[str, str]
    runtime: str | None
    expect_digest: str | None = None  # apply/join: the saved cluster's image digest
    upgrade: bool = False
    upgrade_batch: int = 1
    current_digest: str | None = None  # upgrade: what the cluster runs (the same: nothing to do)
    current_kube_version: str = ""  # upgrade: its KUBEVERSION, checked against the new image's

    @property
    def phases(self) -> tuple[Phase, ...]:
        return upgrade_phases() if self.upgrade else install_phases()


def _version(text: str) -> tuple[int, int, int] | None:
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def check_upgrade_versions(current: str, new: str) -> None:
    """Refuse, before any host changes, what every runtime's own check would refuse on the
    first host: a downgrade, a major change, more than one minor version at a time. Unknown
    versions (an app image, a state saved before versions were kept) are left to the hosts."""
    old_v, new_v = _version(current), _version(new)
    if old_v is None or new_v is None:
        return
    if new_v[0] != old_v[0] or new_v < old_v:
        raise ClusterError(
            f"the cluster runs {current}, the image is {new}: a downgrade or a major change is not supported",
            hint="upgrade to a newer image of the same major version",
        )
    if new_v[1] > old_v[1] + 1:
        raise ClusterError(
            f"the cluster runs {current}, the image is {new}: upgrade one minor version at a time",
            hint=f"upgrade to a v{old_v[0]}.{old_v[1] + 1}.x image first",
        )


def _plugin_for(
    job: _Install, store: Store, info: ImageInfo, dimg: delivery.DeliveryImage
) -> tuple[ImageInfo, RuntimePlugin]:
    """The job's plugin; an upgrade keeps the cluster's runtime and refuses an image of another."""
    info, plugin = _with_plugin(store, info, dimg, job.runtime)
    if job.upgrade:
        wanted, source = runtime_name(info.runtime_label, info.metadata_runtime)
        if wanted not in ("none", plugin.name):
            raise ClusterError(
                f"{job.image} is a {wanted} image ({source}) but cluster {job.cluster.name} runs {plugin.name}",
                hint="an upgrade keeps the runtime: use an image of the same runtime at a newer version",
            )
    return info, plugin


def _state(job: _Install, info: ImageInfo, plugin: RuntimePlugin, settings: Settings) -> PlanState:
    return PlanState(info, plugin, job.targets, job.cli_env, settings.root, upgrade_batch=job.upgrade_batch)


def _dry_run_install(job: _Install, settings: Settings, title: str) -> Outcome:
    store = _require_store(settings)
    try:
        available = image_platforms(store, job.image)
    except ImageNotFound as err:
        raise ImageNotFound(
            f"{err.message} (a dry-run does not pull)", hint=f"sealer pull {job.image} first"
        ) from None
    host = Platform.host()
    platform = next((p for p in available if p.architecture == host.architecture), available[0])
    info, dimg = load_image(store, job.image, platform)
    info, plugin = _plugin_for(job, store, info, dimg)
    if job.upgrade:
        check_upgrade_versions(job.current_kube_version, info.kube_version or "")
    facts = Facts.assume(job.targets, platform)
    state = _state(job, info, plugin, settings)
    lines_by_host = {
        h.ip: tuple(
            delivery.plan_commands(
                dimg, job.cluster.name, h.ip, root=settings.root, env=state.host_env(job.cluster, h)
            )
        )
        for h in state.target_hosts(job.cluster)
    }
    state = replace(state, delivery_lines=lines_by_host)
    plans = _plan_all((Check(), *job.phases), job.cluster, facts, state)
    cs = ClusterState(job.cluster.name, settings.home)
    kubeconfig = any(kubeconfig_steps(steps) for _, steps in plans)
    lines = [
        f"# {title}: cluster {job.cluster.name}, image {job.image} ({info.digest}), runtime {plugin.name}",
        f"# dry-run: nothing is changed and no host is contacted; every host is assumed to be {platform}",
        *(f"# warning: {w}" for w in plugin.warnings(job.cluster)),
        *format_plan(job.cluster, plans),
        "== save-state: Save the cluster (this machine)",
        f"    write {cs.clusterfile_path} (0600), {cs.meta_path.name}, {cs.journal_path.name}"
        + (f", {cs.kubeconfig_path.name} (0600)" if kubeconfig else ""),
    ]
    return Outcome(job.cluster, "dry-run", tuple(lines), dry_run=True)


async def _install(job: _Install, settings: Settings, cs: ClusterState) -> Outcome:
    store = _require_store(settings)
    cluster = job.cluster
    try:
        available: list[Platform] | None = image_platforms(store, job.image)
    except ImageNotFound:
        if settings.pull is None:
            raise
        available = None
    journal = cs.journal()
    driver = settings.driver_factory(cluster)
    runner = _runner(driver, cs, journal, settings, digest="")
    try:
        # check: facts first, then the image for the hosts' platform
        probe_state = PlanState(
            _placeholder_image(job.image), get_plugin("none"), job.targets, job.cli_env, settings.root
        )
        check = Check()
        probes = await runner.run_phase(check, check.plan(cluster, Facts(), probe_state))
        facts = Check.facts(probes)
        platform = _pick_platform(facts, available)
        if available is None:
            assert settings.pull is not None
            settings.on_event(Notice(f"pulling {job.image} for {platform}"))
            await asyncio.to_thread(settings.pull, job.image, platform)
        info, dimg = await asyncio.to_thread(load_image, store, job.image, platform)
        if job.expect_digest and info.digest != job.expect_digest:
            raise ClusterError(
                f"image {job.image} is now {info.digest}, the cluster runs {job.expect_digest}",
                hint=f"sealer upgrade {job.image} moves the cluster to it",
            )
        if job.upgrade and info.digest == job.current_digest:
            return Outcome(cluster, f"cluster {cluster.name} already runs {job.image} ({info.digest})")
        if job.upgrade:
            check_upgrade_versions(job.current_kube_version, info.kube_version or "")
        info, plugin = await asyncio.to_thread(_plugin_for, job, store, info, dimg)
        for warning in plugin.warnings(cluster):
            settings.on_event(Notice(f"warning: {warning}"))
        state = _state(job, info, plugin, settings)
        Check.verify(facts, state)
        runner.digest = info.digest
        # save-state, first half: the cluster as wanted, not complete, before any host changes
        meta = SavedMeta(
            image=job.image,
            digest=info.digest,
            platform=str(platform),
            runtime=plugin.name,
            cli_env=dict(job.cli_env),
            image_env=dict(info.env),
            complete=False,
            kube_version=info.kube_version or "",
            previous_image=_previous_image(job, cs),
        )
        cs.save(cluster, meta)
        runner.deliver_fn = _deliver_fn(driver, store, dimg, cluster, state, settings)
        runner.keep_outputs.add(KUBECONFIG_OUTPUT)
        for phase in job.phases:
            steps = phase.plan(cluster, facts, state)
            if steps:
                await runner.run_phase(phase, steps)
        for host in job.targets:
            journal.record(info.digest, JOINED, host, "done", seconds=0)
        message = f"cluster {cluster.name}: {len(job.targets)} host(s) done"
        if KUBECONFIG_OUTPUT in runner.outputs:
            cs.save_kubeconfig(runner.outputs[KUBECONFIG_OUTPUT])
            message += f"; kubeconfig: {cs.kubeconfig_path}"
        cs.save(cluster, replace(meta, complete=True))
    finally:
        await driver.close()
    return Outcome(cluster, message, hosts=_summaries(cluster, runner, job.targets))


def _previous_image(job: _Install, cs: ClusterState) -> str:
    """What an upgrade may go back to if it fails: the image the cluster last ran whole."""
    if not job.upgrade:
        return ""
    saved = cs.load_meta()
    if saved is None:
        return ""
    return saved.image if saved.complete else saved.previous_image


def _unjoined(cluster: Cluster, journal: Journal, digest: str) -> tuple[str, ...]:
    return tuple(h.ip for h in cluster.hosts if not journal.done(digest, JOINED, h.ip, "done"))


def run(
    cluster: Cluster,
    settings: Settings,
    *,
    cli_env: Mapping[str, str] | None = None,
    runtime: str | None = None,
) -> Outcome:
    """`sealer run`: every phase on every host; resumes a run that stopped half-way."""
    if runtime:
        get_plugin(runtime)  # an unknown or unwritten runtime fails before anything else
    cs = ClusterState(cluster.name, settings.home)
    saved, meta = cs.load_cluster(), cs.load_meta()
    env = dict(cli_env or {})
    if saved is not None and meta is not None:
        _same_cluster_or_fail(cluster, saved, meta)
        runtime = runtime or meta.runtime
    job = _Install(
        cluster, cluster.image, cluster.ips, env, runtime, meta.digest if meta and meta.complete else None
    )
    if settings.options.dry_run:
        return _dry_run_install(job, settings, "run")
    with cs.lock():
        return asyncio.run(_install(job, settings, cs))


def _same_cluster_or_fail(wanted: Cluster, saved: Cluster, meta: SavedMeta) -> None:
    if wanted.image != saved.image:
        raise ClusterError(
            f"cluster {saved.name} already runs {saved.image}, not {wanted.image}",
            hint=f"sealer upgrade {wanted.image} --cluster {saved.name} moves the cluster to it",
        )
    hosts = {(h.ip, h.role) for h in wanted.hosts}
    saved_hosts = {(h.ip, h.role) for h in saved.hosts}
    if hosts != saved_hosts:
        raise ClusterError(
            f"cluster {saved.name} already exists with other hosts ({', '.join(saved.ips)})",
            hint="change its hosts with `sealer apply -f Clusterfile`, `sealer join` or `sealer delete`",
        )


# --- leaving: delete, and the removing half of apply ---------------------------------------------


def _saved_image(saved: Cluster, meta: SavedMeta) -> ImageInfo:
    return ImageInfo(
        name=meta.image,
        digest=meta.digest,
        platform=Platform.parse(meta.platform) if meta.platform else Platform.host(),
        env=dict(meta.image_env),
    )


def _removal_state(
    saved: Cluster, meta: SavedMeta, targets: Sequence[str], settings: Settings, *, all_: bool
) -> PlanState:
    return PlanState(
        _saved_image(saved, meta),
        get_plugin(meta.runtime, source="saved state"),
        tuple(targets),
        dict(meta.cli_env),
        settings.root,
        delete_all=all_,
    )


async def _unreachable(driver: InfraDriver, hosts: Sequence[str], settings: Settings) -> set[str]:
    """The hosts sealer cannot log in to (a connect or login failure; a command that fails on
    a reachable host is not this), each named in a warning."""

    async def probe(host: str) -> HostError | None:
        try:
            await driver.run(host, "true", timeout_s=30, check=False)
        except HostError as err:
            if err.step == "connect":
                return err
        return None

    errors = await asyncio.gather(*(probe(h) for h in hosts))
    out = set()
    for host, err in zip(hosts, errors, strict=True):
        if err is not None:
            out.add(host)
            settings.on_event(
                Notice(
                    f"warning: {err.message}: skipping {host}'s own steps (leave, clean.sh, rootfs); "
                    "clean it by hand if it comes back"
                )
            )
    return out


async def _remove(
    saved: Cluster,
    meta: SavedMeta,
    targets: Sequence[str],
    settings: Settings,
    cs: ClusterState,
    *,
    all_: bool,
    skip_unreachable: bool = False,
) -> Runner:
    state = _removal_state(saved, meta, targets, settings, all_=all_)
    journal = cs.journal()
    driver = settings.driver_factory(saved)
    runner = _runner(driver, cs, journal, settings, meta.digest)
    runner.remove_fn = _remove_fn(driver, saved, settings)
    try:
        skipped: set[str] = set()
        if skip_unreachable:
            involved = list(dict.fromkeys([saved.master0.ip, *targets]))
            skipped = await _unreachable(driver, involved, settings)
        for phase in removal_phases():
            steps = [s for s in phase.plan(saved, Facts(), state) if s.host not in skipped]
            if steps:
                await runner.run_phase(phase, steps)
    finally:
        await driver.close()
    return runner


def _removal_plan(
    saved: Cluster, meta: SavedMeta, targets: Sequence[str], settings: Settings, *, all_: bool
) -> list[str]:
    state = _removal_state(saved, meta, targets, settings, all_=all_)
    return format_plan(saved, _plan_all(removal_phases(), saved, Facts(), state))


def delete(
    name: str,
    settings: Settings,
    *,
    masters: Sequence[str] = (),
    nodes: Sequence[str] = (),
    all_: bool = False,
    skip_unreachable: bool = False,
) -> Outcome:
    """`sealer delete`: hosts (or the whole cluster) leave; the state forgets them. Idempotent.
    `skip_unreachable`: a host sealer cannot log in to (a dead worker) runs nothing, and is
    forgotten all the same; master0's steps for it (drain, delete node) still run when master0
    answers."""
    cs = ClusterState(name, settings.home)
    saved, meta = cs.load_cluster(), cs.load_meta()
    if saved is None or meta is None:
        return Outcome(None, f"cluster {name}: nothing saved, nothing to delete")
    if all_:
        targets = list(saved.ips)
    else:
        wanted = [*masters, *nodes]
        if not wanted:
            raise ClusterError("nothing to delete: give --masters, --nodes or --all")
        for ip in masters:
            if saved.has_host(ip) and not saved.host(ip).is_master:
                raise ClusterError(
                    f"{ip} is a node of cluster {name}, not a master", hint=f"use --nodes {ip}"
                )
        for ip in nodes:
            if saved.has_host(ip) and saved.host(ip).is_master:
                raise ClusterError(
                    f"{ip} is a master of cluster {name}, not a node", hint=f"use --masters {ip}"
                )
        targets = [h.ip for h in saved.hosts if h.ip in set(wanted)]
        leaving_masters = [h.ip for h in saved.masters if h.ip in targets]
        if leaving_masters and len(leaving_masters) == len(saved.masters):
            raise ClusterError(
                f"deleting {', '.join(leaving_masters)} would leave cluster {name} without a master",
                hint=f"sealer delete --all removes the whole cluster {name}",
            )
        if saved.master0.ip in targets:
            raise ClusterError(
                f"{saved.master0.ip} is master0 of cluster {name}: it leaves only with the whole cluster",
                hint="sealer delete --all",
            )
        missing = [ip for ip in wanted if not saved.has_host(ip)]
        for ip in missing:
            settings.on_event(Notice(f"{ip} is not a host of cluster {name}: nothing to do there"))
        if not targets:
            return Outcome(saved, f"cluster {name}: none of the hosts is in the cluster, nothing to delete")
        if leaving_masters and get_plugin(meta.runtime, source="saved state").etcd:
            left = len(saved.masters) - len(leaving_masters)
            for warning in quorum_warnings(left):
                settings.on_event(Notice(f"warning: after the delete, {warning}"))
    if settings.options.dry_run:
        lines = [
            f"# delete: cluster {name}, hosts {', '.join(targets)}",
            "# dry-run: nothing is changed and no host is contacted",
            *_removal_plan(saved, meta, targets, settings, all_=all_),
            f"== save-state: {'remove ' + str(cs.dir) if all_ else 'forget the hosts in ' + str(cs.clusterfile_path)}",
        ]
        return Outcome(saved, "dry-run", tuple(lines), dry_run=True)
    with cs.lock():
        runner = asyncio.run(
            _remove(saved, meta, targets, settings, cs, all_=all_, skip_unreachable=skip_unreachable)
        )
        summaries = _summaries(saved, runner, targets)
        if all_:
            cs.remove()
            return Outcome(None, f"cluster {name} deleted", hosts=summaries)
        cs.journal().forget_hosts(targets)
        remaining = saved.without_hosts(targets)
        cs.save(remaining, meta)
    return Outcome(remaining, f"removed {', '.join(targets)} from cluster {name}", hosts=summaries)


# --- apply and join ------------------------------------------------------------------------------


def apply(wanted: Cluster, settings: Settings, *, cli_env: Mapping[str, str] | None = None) -> Outcome:
    """`sealer apply -f Clusterfile`: scale the saved cluster to `wanted` (or run it, if new)."""
    cs = ClusterState(wanted.name, settings.home)
    saved, meta = cs.load_cluster(), cs.load_meta()
    if saved is None or meta is None:
        return run(wanted, settings, cli_env=cli_env)
    d = diff(wanted, saved)
    if d.image_changed:
        raise ClusterError(
            f"the image changes from {saved.image} to {wanted.image}: apply only adds and removes hosts",
            hint=f"sealer upgrade {wanted.image} --cluster {wanted.name}",
        )
    env = {**meta.cli_env, **(cli_env or {})}
    removed = [h.ip for h in (*d.remove_nodes, *d.remove_masters)]
    journal = Journal(cs.journal_path if cs.journal_path.exists() else None)
    joining = tuple(ip for ip in _unjoined(wanted, journal, meta.digest))
    if not removed and not joining:
        return Outcome(saved, f"cluster {wanted.name} already matches: nothing to do")
    job = _Install(wanted, wanted.image, joining, env, meta.runtime, meta.digest)
    if settings.options.dry_run:
        lines: list[str] = []
        if removed:
            lines += [
                f"# apply: {', '.join(removed)} leave",
                *_removal_plan(saved, meta, removed, settings, all_=False),
            ]
        if joining:
            lines += list(_dry_run_install(job, settings, f"apply: {', '.join(joining)} join").plan)
        return Outcome(wanted, "dry-run", tuple(lines), dry_run=True)
    summaries: list[HostSummary] = []
    with cs.lock():
        if removed:
            runner = asyncio.run(_remove(saved, meta, removed, settings, cs, all_=False))
            summaries += _summaries(saved, runner, removed)
            cs.journal().forget_hosts(removed)
            cs.save(saved.without_hosts(removed), meta)
        if joining:
            outcome = asyncio.run(_install(job, settings, cs))
            summaries += outcome.hosts
        else:
            cs.save(wanted, meta)
    parts = []
    if joining:
        parts.append(f"joined {', '.join(joining)}")
    if removed:
        parts.append(f"removed {', '.join(removed)}")
    return Outcome(wanted, f"cluster {wanted.name}: {'; '.join(parts)}", hosts=tuple(summaries))


def join(
    name: str, new_hosts: Sequence[HostSpec], settings: Settings, *, cli_env: Mapping[str, str] | None = None
) -> Outcome:
    """`sealer join --masters/--nodes`: add hosts to the saved cluster."""
    cs = ClusterState(name, settings.home)
    saved = cs.load_cluster()
    if saved is None:
        raise ClusterError(f"no saved cluster {name}", hint="sealer run IMAGE --masters ... first")
    fresh = [h for h in new_hosts if not saved.has_host(h.ip)]
    for h in new_hosts:
        if saved.has_host(h.ip) and saved.host(h.ip).role is not h.role:
            raise ClusterError(f"{h.ip} is already a {saved.host(h.ip).role} of cluster {name}")
    wanted = saved.with_hosts(fresh)
    return apply(wanted, settings, cli_env=cli_env)


# --- upgrade -------------------------------------------------------------------------------------

WORKER_DISRUPTION = 0.1  # share of the workers drained at once by default (k0sctl's default)


def default_upgrade_batch(cluster: Cluster) -> int:
    return max(1, math.ceil(len(cluster.nodes) * WORKER_DISRUPTION))


def upgrade(
    name: str,
    image: str,
    settings: Settings,
    *,
    batch: int | None = None,
    cli_env: Mapping[str, str] | None = None,
) -> Outcome:
    """`sealer upgrade IMAGE`: every host of the saved cluster moves to `image`, master0 first,
    then the other masters one by one, then the workers `batch` at a time (drained first).
    A downgrade, a major change or more than one minor version per step is refused: from the
    images' KUBEVERSIONs before any host changes, and by each host's own check of the binaries.
    The runtime stays. A failed upgrade resumes when run again with the same image, or goes
    back to the image the cluster ran before (`previous_image`), as an upgrade to it."""
    cs = ClusterState(name, settings.home)
    saved, meta = cs.load_cluster(), cs.load_meta()
    if saved is None or meta is None:
        raise ClusterError(f"no saved cluster {name}", hint="sealer run IMAGE --masters ... first")
    if not meta.complete and image not in (meta.image, meta.previous_image):
        back = f", or go back with `sealer upgrade {meta.previous_image}`" if meta.previous_image else ""
        raise ClusterError(
            f"cluster {name}: the last command on it (with {meta.image}) did not finish",
            hint=f"finish it first (`sealer upgrade {meta.image}` or the same command again){back}",
        )
    if batch is not None and batch < 1:
        raise ClusterError(f"--batch {batch}: at least one worker at a time")
    wanted = replace(saved, image=image)
    job = _Install(
        wanted,
        image,
        wanted.ips,
        {**meta.cli_env, **(cli_env or {})},
        meta.runtime,
        upgrade=True,
        upgrade_batch=batch or default_upgrade_batch(wanted),
        current_digest=meta.digest if meta.complete else None,
        current_kube_version=meta.kube_version if meta.complete else "",
    )
    if settings.options.dry_run:
        return _dry_run_install(job, settings, "upgrade")
    with cs.lock():
        outcome = asyncio.run(_install(job, settings, cs))
    if outcome.hosts:
        return replace(outcome, message=f"cluster {name} upgraded to {image}")
    return outcome


# --- status --------------------------------------------------------------------------------------


def status(name: str, home: Path | None = None) -> dict[str, Any]:
    """The saved state of cluster `name` as plain data (the CLI prints it as a table or JSON)."""
    cs = ClusterState(name, home)
    saved, meta = cs.load_cluster(), cs.load_meta()
    if saved is None or meta is None:
        raise ClusterError(f"no saved cluster {name} in {cs.home}", hint="sealer run IMAGE creates one")
    journal = Journal(cs.journal_path if cs.journal_path.exists() else None)
    hosts = []
    for h in saved.hosts:
        phases = [p for p in journal.phases_done(h.ip, meta.digest) if p != JOINED]
        hosts.append(
            {
                "ip": h.ip,
                "role": "master0" if h.ip == saved.master0.ip else str(h.role),
                "joined": journal.done(meta.digest, JOINED, h.ip, "done"),
                "last_phase": phases[-1] if phases else None,
                "phases": phases,
            }
        )
    return {
        "name": saved.name,
        "image": meta.image,
        "digest": meta.digest,
        "platform": meta.platform,
        "runtime": meta.runtime,
        "complete": meta.complete,
        "updated": meta.updated,
        "state_dir": str(cs.dir),
        "kubeconfig": str(cs.kubeconfig_path) if cs.kubeconfig_path.exists() else None,
        "hosts": hosts,
    }


def saved_clusters(home: Path | None = None) -> list[str]:
    from builder.runtime.state import state_home

    base = home or state_home()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "Clusterfile").is_file())


__all__ = [
    "HostSummary",
    "Outcome",
    "Settings",
    "apply",
    "delete",
    "image_platforms",
    "join",
    "load_image",
    "run",
    "saved_clusters",
    "status",
]
