"""Hosts leaving: `delete`, and the removing half of `apply`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from builder.errors import ClusterError, HostError
from builder.image.descriptor import Platform
from builder.runtime.actions.registry_refresh import refresh_registry
from builder.runtime.actions.runners import make_runner, remove_fn
from builder.runtime.actions.settings import Outcome, Settings, host_summaries
from builder.runtime.actions.status import saved_clusters
from builder.runtime.cluster import Cluster
from builder.runtime.cluster_mirror import MirrorFacts
from builder.runtime.facts import Facts
from builder.runtime.infra.base import InfraDriver
from builder.runtime.phases import (
    ImageInfo,
    PlanState,
    plan_all,
    removal_phases,
)
from builder.runtime.plugins import get_plugin
from builder.runtime.plugins.base import quorum_warnings
from builder.runtime.runner import (
    Notice,
    Runner,
    format_plan,
)
from builder.runtime.state import ClusterState, SavedMeta


def _saved_image(saved: Cluster, meta: SavedMeta) -> ImageInfo:
    return ImageInfo(
        name=meta.image,
        digest=meta.digest,
        platform=Platform.parse(meta.platform) if meta.platform else Platform.host(),
        env=dict(meta.image_env),
        kube_version=meta.kube_version or None,
        hooks=meta.image_hooks,
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
        mirror=MirrorFacts.from_state_dir(ClusterState(saved.name, settings.home).dir, meta.cert_sans),
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


async def remove_hosts(
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
    runner = make_runner(
        driver, cs, journal, settings, meta.digest, remove=remove_fn(driver, saved, settings)
    )
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


def removal_plan(
    saved: Cluster, meta: SavedMeta, targets: Sequence[str], settings: Settings, *, all_: bool
) -> list[str]:
    state = _removal_state(saved, meta, targets, settings, all_=all_)
    return format_plan(
        saved, plan_all(removal_phases(), saved, Facts(), state), verbose=settings.options.verbose
    )


def delete(
    name: str,
    settings: Settings,
    *,
    masters: Sequence[str] = (),
    nodes: Sequence[str] = (),
    all_: bool = False,
    skip_unreachable: bool = False,
) -> Outcome:
    """`sealer delete`: hosts (or the whole cluster) leave; the state forgets them. Idempotent
    while the cluster is saved; a cluster not saved (any more) is a ClusterError.
    `skip_unreachable`: a host sealer cannot log in to (a dead worker) runs nothing, and is
    forgotten all the same; master0's steps for it (drain, delete node) still run when master0
    answers."""
    cs = ClusterState(name, settings.home)
    saved, meta = cs.load_cluster(), cs.load_meta()
    if saved is None:
        # Never a success for a cluster that is not there: a mistyped or defaulted name
        # reported "nothing to delete" and exit 0 while the real cluster kept running.
        others = saved_clusters(cs.home)
        raise ClusterError(
            f"no saved cluster {name} in {cs.home}: nothing deleted",
            hint=f"saved clusters: {', '.join(others)}" if others else "SEALER_STATE_HOME moves the state",
        )
    if meta is None:
        raise ClusterError(
            f"cluster {name}: {cs.meta_path} is missing, so the runtime to remove is unknown",
            hint=f"it is written before any host is changed: remove {cs.dir} if the run never started",
        )
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
        if saved.master0.ip in targets and saved.registry_hosts == (saved.master0,):
            raise ClusterError(
                f"{saved.master0.ip} is master0 of cluster {name} and its only registry host "
                "(spec.registry.localRegistry.ha: false): deleting it would take the registry with it",
                hint="sealer delete --all removes the whole cluster",
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
            *removal_plan(saved, meta, targets, settings, all_=all_),
            f"== save-state: {'remove ' + str(cs.dir) if all_ else 'forget the hosts in ' + str(cs.clusterfile_path)}",
        ]
        return Outcome(saved, "dry-run", tuple(lines), dry_run=True)
    with cs.lock():
        runner = asyncio.run(
            remove_hosts(saved, meta, targets, settings, cs, all_=all_, skip_unreachable=skip_unreachable)
        )
        summaries = host_summaries(saved, runner, targets)
        if all_:
            cs.remove()
            return Outcome(None, f"cluster {name} deleted", hosts=summaries)
        cs.journal().forget_hosts(targets)
        remaining = saved.without_hosts(targets)
        cs.save(remaining, meta)
        refresh_registry(remaining, meta, settings, cs)  # the leaving masters out of its certificate
    return Outcome(remaining, f"removed {', '.join(targets)} from cluster {name}", hosts=summaries)
