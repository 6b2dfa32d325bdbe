"""Hosts joining: `run`, and the joining half of `apply`/`join` (the install machinery is also
`upgrade`'s: the same check, delivery and journal, with the upgrade phases)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from builder.errors import ClusterError
from builder.image.descriptor import Platform
from builder.image.digest import Digest
from builder.runtime import cluster_mirror, container_runtime, delivery, fanout, fanout_waves, registry_pki
from builder.runtime.actions.prepare import (
    Decide,
    Decision,
    Request,
    assume,
    prepare,
    with_delivery_shown,
    with_plugin,
)
from builder.runtime.actions.registry_refresh import refresh_registry
from builder.runtime.actions.remove import removal_plan, remove_hosts
from builder.runtime.actions.settings import HostSummary, Outcome, Settings, host_summaries, require_store
from builder.runtime.cluster import Cluster, HostSpec, RegistrySpec, diff
from builder.runtime.facts import Facts
from builder.runtime.phases import (
    Check,
    ImageInfo,
    Phase,
    PlanState,
    install_phases,
    plan_all,
    registry_service,
    upgrade_phases,
)
from builder.runtime.phases.kubeconfig import kubeconfig_steps
from builder.runtime.plugins import RuntimePlugin, get_plugin, runtime_name
from builder.runtime.plugins.base import KUBECONFIG_OUTPUT
from builder.runtime.plugins.none import NoneRuntime
from builder.runtime.runner import Notice, format_plan
from builder.runtime.state import JOINED, ClusterState, Journal, SavedMeta
from builder.store.layout import Store


@dataclass(frozen=True)
class InstallJob:
    """Hosts going through the install phases (run, join, apply) or, with `upgrade`, every
    host through the upgrade phases."""

    cluster: Cluster
    image: str
    targets: tuple[str, ...]
    cli_env: Mapping[str, str]
    runtime: str | None
    expect_digest: Digest | None = None  # apply/join: the saved cluster's image digest
    upgrade: bool = False
    upgrade_batch: int = 1
    current_digest: Digest | None = None  # upgrade: what the cluster runs (the same: nothing to do)
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
    job: InstallJob, store: Store, info: ImageInfo, dimg: delivery.DeliveryImage
) -> tuple[ImageInfo, RuntimePlugin]:
    """The job's plugin; an upgrade keeps the cluster's runtime (an image of another is
    refused) and its versions are checked (`check_upgrade_versions`)."""
    info, plugin = with_plugin(store, info, dimg, job.runtime)
    container_runtime.check_container_runtime(
        job.cluster,
        job.image,
        container_runtime.image_label(store, job.image, dimg.manifest_digest),
        runtime=plugin.name,
        ships_cri_dockerd=container_runtime.CRI_DOCKERD in dimg.files,
        kube_version=info.kube_version,
    )
    if job.upgrade:
        check_upgrade_versions(job.current_kube_version, info.kube_version or "")
        wanted, source = runtime_name(info.runtime_label, info.metadata_runtime)
        if wanted not in ("none", plugin.name):
            raise ClusterError(
                f"{job.image} is a {wanted} image ({source}) but cluster {job.cluster.name} runs {plugin.name}",
                hint="an upgrade keeps the runtime: use an image of the same runtime at a newer version",
            )
    return info, plugin


def _state(
    job: InstallJob, info: ImageInfo, plugin: RuntimePlugin, settings: Settings, *, dry_run: bool = False
) -> PlanState:
    """The plan state; with the registry's material made or renewed in the cluster's state
    (before any host changes), or, for a dry-run, its placeholders (nothing written)."""
    cs = ClusterState(job.cluster.name, settings.home)
    if plugin.name == NoneRuntime.name:  # no container runtime pulls from a cluster registry
        material = None
    elif dry_run:
        material = registry_pki.planned(job.cluster)
    else:
        material = cluster_mirror.imported_registry_material(
            cs.dir, job.cluster, job.targets
        ) or registry_pki.load_or_make(cs.dir, job.cluster)
    meta = cs.load_meta()
    plan = fanout.choose(
        settings.distribution or job.cluster.distribution or "auto",
        settings.fanout,
        job.cluster,
        job.targets,
        material,
        registry_service.storage_dir(job.cluster.name, settings.root, job.cluster.data_root),
    )
    if plan is not None and plan.wave_width and material is not None and not dry_run:
        plan = fanout_waves.with_wave_material(plan, cs.dir, material)
    return PlanState(
        info,
        plugin,
        job.targets,
        job.cli_env,
        settings.root,
        upgrade_batch=job.upgrade_batch,
        registry=material,
        mirror=cluster_mirror.MirrorFacts.from_state_dir(cs.dir, meta.cert_sans if meta else ()),
        fanout=plan,
    )


def _decide(job: InstallJob, settings: Settings) -> Decide:
    """The install's checks of the loaded image and its plugin choice."""
    store = require_store(settings)

    def decide(info: ImageInfo, dimg: delivery.DeliveryImage, platform: Platform) -> Decision | Outcome:
        if job.expect_digest and info.digest != job.expect_digest:
            raise ClusterError(
                f"image {job.image} is now {info.digest}, the cluster runs {job.expect_digest}",
                hint=f"sealer upgrade {job.image} moves the cluster to it",
            )
        if job.upgrade and info.digest == job.current_digest:
            return Outcome(
                job.cluster, f"cluster {job.cluster.name} already runs {job.image} ({info.digest})"
            )
        info, plugin = _plugin_for(job, store, info, dimg)
        for warning in plugin.warnings(job.cluster):
            settings.on_event(Notice(f"warning: {warning}"))
        return Decision(_state(job, info, plugin, settings))

    return decide


_NO_API = "runtime {runtime} has no API server: the cluster is saved on this machine only"


def dry_run_install(job: InstallJob, settings: Settings, title: str) -> Outcome:
    store = require_store(settings)
    platform, info, dimg = assume(settings, job.image, Platform.host())
    info, plugin = _plugin_for(job, store, info, dimg)
    facts = Facts.assume(job.targets, platform)
    state = with_delivery_shown(
        _state(job, info, plugin, settings, dry_run=True), job.cluster, dimg, settings
    )
    plans = plan_all((Check(), *job.phases), job.cluster, facts, state)
    cs = ClusterState(job.cluster.name, settings.home)
    kubeconfig = any(kubeconfig_steps(steps) for _, steps in plans)
    lines = [
        f"# {title}: cluster {job.cluster.name}, image {job.image} ({info.digest}), runtime {plugin.name}",
        f"# dry-run: nothing is changed and no host is contacted; every host is assumed to be {platform}",
        *(f"# warning: {w}" for w in plugin.warnings(job.cluster)),
        *format_plan(job.cluster, plans, verbose=settings.options.verbose),
        *([] if plugin.kubectl else [f"# save-clusterfile: {_NO_API.format(runtime=plugin.name)}"]),
        "== save-state: Save the cluster (this machine)",
        f"    write {cs.clusterfile_path} (0600), {cs.meta_path.name}, {cs.journal_path.name}"
        + (f", {cs.kubeconfig_path.name} (0600)" if kubeconfig else ""),
    ]
    return Outcome(job.cluster, "dry-run", tuple(lines), dry_run=True)


async def install_hosts(job: InstallJob, settings: Settings, cs: ClusterState) -> Outcome:
    cluster = job.cluster
    request = Request(
        cluster, job.image, job.targets, job.cli_env, _decide(job, settings), frozenset({KUBECONFIG_OUTPUT})
    )
    journal = cs.journal()
    driver = settings.driver_factory(cluster)
    try:
        prepared = await prepare(request, settings, cs, journal, driver)
        if isinstance(prepared, Outcome):
            return prepared
        info, state, runner = prepared.info, prepared.state, prepared.runner
        # save-state, first half: the cluster as wanted, not complete, before any host changes
        meta = SavedMeta(
            image=job.image,
            digest=prepared.image.manifest_digest,
            platform=str(prepared.platform),
            runtime=state.plugin.name,
            cli_env=dict(job.cli_env),
            image_env=dict(info.env),
            image_hooks=info.hooks,
            complete=False,
            kube_version=info.kube_version or "",
            previous_image=_previous_image(job, cs),
        )
        cs.save(cluster, meta)
        for phase in job.phases:
            steps = phase.plan(cluster, prepared.facts, state)
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
    return Outcome(cluster, message, hosts=host_summaries(cluster, runner, job.targets))


def _previous_image(job: InstallJob, cs: ClusterState) -> str:
    """What an upgrade may go back to if it fails: the image the cluster last ran whole."""
    if not job.upgrade:
        return ""
    saved = cs.load_meta()
    if saved is None:
        return ""
    return saved.image if saved.complete else saved.previous_image


def _unjoined(cluster: Cluster, journal: Journal, digest: Digest) -> tuple[str, ...]:
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
    if settings.store is not None:  # before any host is contacted, when the image is here
        container_runtime.check_local_image(cluster, settings.store)
    cs = ClusterState(cluster.name, settings.home)
    saved, meta = cs.load_cluster(), cs.load_meta()
    env = dict(cli_env or {})
    if saved is not None and meta is not None:
        _same_cluster_or_fail(cluster, saved, meta)
        runtime = runtime or meta.runtime
    job = InstallJob(
        cluster, cluster.image, cluster.ips, env, runtime, meta.digest if meta and meta.complete else None
    )
    if settings.options.dry_run:
        return dry_run_install(job, settings, "run")
    with cs.lock():
        return asyncio.run(install_hosts(job, settings, cs))


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
    _refuse_changes_to_joined_hosts(wanted, saved)


# --- apply and join ------------------------------------------------------------------------------


def leaving_hosts(wanted: Cluster, home: Path | None = None) -> tuple[str, ...]:
    """The hosts `apply(wanted)` would remove from the saved cluster (none when it is not saved
    or its image changes, which apply refuses): what the CLI asks about before anything starts."""
    cs = ClusterState(wanted.name, home)
    saved = cs.load_cluster()
    if saved is None or cs.load_meta() is None:
        return ()
    d = diff(wanted, saved)
    return () if d.image_changed else tuple(h.ip for h in (*d.remove_nodes, *d.remove_masters))


def apply(wanted: Cluster, settings: Settings, *, cli_env: Mapping[str, str] | None = None) -> Outcome:
    """`sealer apply -f Clusterfile`: scale the saved cluster to `wanted` (or run it, if new).
    Hosts leave without a question: the CLI asks first (`leaving_hosts`), as for `delete`."""
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
    _refuse_changes_to_joined_hosts(wanted, saved)
    env = {**meta.cli_env, **(cli_env or {})}
    removed = [h.ip for h in (*d.remove_nodes, *d.remove_masters)]
    journal = Journal(cs.journal_path if cs.journal_path.exists() else None)
    joining = tuple(ip for ip in _unjoined(wanted, journal, meta.digest))
    if not removed and not joining:
        if wanted.registry != saved.registry:  # new credentials or SANs: every registry host takes them
            return run(wanted, settings, cli_env=cli_env)
        return Outcome(saved, f"cluster {wanted.name} already matches: nothing to do")
    job = InstallJob(wanted, wanted.image, joining, env, meta.runtime, meta.digest)
    if settings.options.dry_run:
        lines: list[str] = []
        if removed:
            lines += [
                f"# apply: {', '.join(removed)} leave",
                *removal_plan(saved, meta, removed, settings, all_=False),
            ]
        if joining:
            lines += list(dry_run_install(job, settings, f"apply: {', '.join(joining)} join").plan)
        return Outcome(wanted, "dry-run", tuple(lines), dry_run=True)
    summaries: list[HostSummary] = []
    with cs.lock():
        if removed:
            runner = asyncio.run(remove_hosts(saved, meta, removed, settings, cs, all_=False))
            summaries += host_summaries(saved, runner, removed)
            cs.journal().forget_hosts(removed)
            cs.save(saved.without_hosts(removed), meta)
        if joining:
            outcome = asyncio.run(install_hosts(job, settings, cs))
            summaries += outcome.hosts
        else:
            cs.save(wanted, meta)
            if removed:
                refresh_registry(wanted, meta, settings, cs)  # the leaving masters out of its certificate
    parts = []
    if joining:
        parts.append(f"joined {', '.join(joining)}")
    if removed:
        parts.append(f"removed {', '.join(removed)}")
    return Outcome(wanted, f"cluster {wanted.name}: {'; '.join(parts)}", hosts=tuple(summaries))


def _refuse_changes_to_joined_hosts(wanted: Cluster, saved: Cluster) -> None:
    """run and apply add and remove hosts; what a host got when it joined (its node's labels
    and taints, the hostAliases in /etc/hosts) they do not change. Saying so beats saving a
    Clusterfile the hosts do not match."""
    _refuse_registry_changes(wanted.registry, saved.registry, saved.name)
    _refuse_host_layout_changes(wanted, saved)
    changes = []
    for host in wanted.hosts:
        if not saved.has_host(host.ip):
            continue
        old = saved.host(host.ip)
        what = [
            n
            for n, a, b in (("labels", host.labels, old.labels), ("taints", host.taints, old.taints))
            if a != b
        ]
        if what:
            changes.append(f"{host.ip} {' and '.join(what)}")
    if wanted.host_aliases != saved.host_aliases:
        changes.append("spec.hostAliases")
    if changes:
        raise ClusterError(
            f"hosts already in cluster {saved.name} keep what they got when they joined; "
            f"changed: {', '.join(changes)}",
            hint="kubectl label/taint the nodes yourself, or delete and join the hosts again; "
            "put the Clusterfile back to apply the rest",
        )


def _refuse_registry_changes(wanted: RegistrySpec, saved: RegistrySpec, name: str) -> None:
    """What the hosts' trust and mirrors are built on (the endpoint, the registry hosts, TLS or
    not, local or external) stays; credentials and SANs may change (the registry hosts take
    them on the next run, apply or join)."""
    fixed = ("domain", "port", "external", "ha", "insecure")
    changed = [f for f in fixed if getattr(wanted, f) != getattr(saved, f)]
    if changed:
        names = {"external": "localRegistry/externalRegistry"}
        raise ClusterError(
            f"cluster {name} already has its registry; changed in spec.registry: "
            f"{', '.join(names.get(f, f) for f in changed)}",
            hint="put those fields back (credentials and cert.subjectAltName may change), "
            "or delete the cluster and run it again",
        )


def _refuse_host_layout_changes(wanted: Cluster, saved: Cluster) -> None:
    """spec.dataRoot and spec.containerRuntime are where the hosts keep the cluster and what
    its kubelets run on: a running cluster keeps both (the saved rootfs, registry and scripts'
    SEALER_ROOTFS are there; every node's CRI socket is fixed at its join)."""
    changed = [
        f"{name} {old or '(the default)'} -> {new or '(the default)'}"
        for name, new, old in (
            ("dataRoot", wanted.data_root, saved.data_root),
            ("containerRuntime.type", wanted.container_runtime, saved.container_runtime),
        )
        if new != old
    ]
    if changed:
        raise ClusterError(
            f"cluster {saved.name} already runs; changed in spec: {', '.join(changed)}",
            hint="put those fields back, or delete the cluster and run it again",
        )


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
