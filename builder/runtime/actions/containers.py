"""The actions on CONTAINER clusters (`--provider docker`, `spec.provider: CONTAINER`): the
hosts are made before the phases and removed after them; the phases in between are the ones
SSH hosts go through, on the containers' addresses.

    run     the cluster's network and containers (container_hosts.py) for the wanted hosts,
            then `install.run`; a re-run reuses them (same counts). A run that fails before
            the cluster is saved removes what it made: nothing is left
    apply   the wanted counts against the saved hosts: more containers joined, the last ones
            of a role removed (`install.apply`, then their containers go)
    join    `masters`/`nodes` more containers, then `install.join`; removed again when the
            join fails before the state names them
    delete  `remove.delete`, then the leaving hosts' containers; `--all` also the network
    status  each host's container and its engine status (`cluster status`)

Hosts not made yet stand at placeholder addresses (`cluster.placeholder_ip`, TEST-NET-1): a
Clusterfile's `hosts[].count` reads so, and a dry-run shows them so, making nothing. Each
placeholder host takes the next container of its role, keeping its entry's env, labels and
taints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from builder.errors import ClusterError, DockerEngineUnavailable
from builder.registry.docker_daemon import connect_engine
from builder.runtime.actions.install import apply, join, run
from builder.runtime.actions.remove import delete
from builder.runtime.actions.settings import Outcome, Settings
from builder.runtime.cluster import Cluster, HostSpec, Role
from builder.runtime.cluster_addresses import is_placeholder, placeholder_ip
from builder.runtime.container_hosts import ContainerHost, ContainerHosts
from builder.runtime.infra.node_image import DEFAULT_NODE_IMAGE
from builder.runtime.runner import Notice
from builder.runtime.state import ClusterState

CONTAINER = "CONTAINER"
_DRY_RUN_NOTE = "dry-run: containers not made yet are shown at placeholder addresses (192.0.2.x)"


def container_cluster(
    name: str,
    image: str,
    masters: int,
    nodes: int,
    *,
    node_image: str = "",
    cmds: Sequence[str] = (),
    app_names: Sequence[str] = (),
) -> Cluster:
    """`sealer run IMAGE --provider docker --masters N --nodes M`: N + M placeholder hosts."""
    if masters < 1:
        raise ClusterError("a cluster needs at least one master", hint="--masters 1")
    roles = [Role.MASTER] * masters + [Role.NODE] * nodes
    return Cluster(
        name=name,
        image=image,
        hosts=tuple(HostSpec(placeholder_ip(i), (role,)) for i, role in enumerate(roles)),
        cmds=tuple(cmds),
        app_names=tuple(app_names),
        provider=CONTAINER,
        node_image=node_image,
    )


def _counts(roles: Sequence[Role]) -> dict[Role, int]:
    return {r: sum(1 for x in roles if x is r) for r in Role}


def _saved_container_cluster(name: str, home: Path | None) -> Cluster | None:
    saved = ClusterState(name, home).load_cluster()
    if saved is not None and saved.provider != CONTAINER:
        raise ClusterError(
            f"cluster {name} already runs on SSH hosts ({', '.join(saved.ips)}), not on containers",
            hint="give another cluster name for a cluster on docker",
        )
    return saved


def _materialize(cluster: Cluster, containers: Sequence[ContainerHost]) -> Cluster:
    """`cluster` with each placeholder host at the address of the next unused container of its
    role (containers in index order); hosts with real addresses stay."""
    taken = {h.ip for h in cluster.hosts}
    free = {r: [c for c in containers if c.role is r and c.ip not in taken] for r in Role}
    hosts = []
    for h in cluster.hosts:
        if is_placeholder(h.ip):
            if not free[h.role]:
                raise ClusterError(f"cluster {cluster.name}: no {h.role} container left for {h.ip}")
            h = replace(h, ip=free[h.role].pop(0).ip)
        hosts.append(h)
    return replace(cluster, hosts=tuple(hosts))


def run_containers(
    cluster: Cluster,
    settings: Settings,
    *,
    cli_env: Mapping[str, str] | None = None,
    runtime: str | None = None,
) -> Outcome:
    """`sealer run` of a CONTAINER cluster: make (or reuse) its containers, then the run."""
    saved = _saved_container_cluster(cluster.name, settings.home)
    node_image = cluster.node_image or (saved.node_image if saved else "") or DEFAULT_NODE_IMAGE
    cluster = replace(cluster, node_image=node_image)
    if saved is not None and all(is_placeholder(h.ip) for h in cluster.hosts):
        want = _counts([h.role for h in cluster.hosts])
        have = _counts([h.role for h in saved.hosts])
        if want != have:
            raise ClusterError(
                f"cluster {cluster.name} has {have[Role.MASTER]} master and {have[Role.NODE]} node "
                f"containers, not {want[Role.MASTER]} and {want[Role.NODE]}",
                hint="sealer join/delete (or apply with new counts) change a cluster's hosts",
            )
        cluster = replace(saved, image=cluster.image)  # a re-run: the saved hosts, as run expects
    if settings.options.dry_run:
        if any(is_placeholder(h.ip) for h in cluster.hosts):
            settings.on_event(Notice(_DRY_RUN_NOTE))
        return run(cluster, settings, cli_env=cli_env, runtime=runtime)
    client: Any = connect_engine()
    made: list[ContainerHost] = []
    try:
        engine = ContainerHosts(client, cluster.name)
        existing = [c for c in engine.hosts() if c.ip]
        placeholders = [h.role for h in cluster.hosts if is_placeholder(h.ip)]
        known = {h.ip for h in cluster.hosts}
        spare = _counts([c.role for c in existing if c.ip not in known])
        missing = {r: max(0, n - spare[r]) for r, n in _counts(placeholders).items()}
        if any(spare[r] > n for r, n in _counts(placeholders).items()):
            raise ClusterError(
                f"cluster {cluster.name} has containers this run does not name: "
                + ", ".join(c.name for c in existing if c.ip not in known),
                hint="sealer delete --all removes them",
            )
        if any(missing.values()):
            made = engine.create(missing, node_image)
        cluster = _materialize(cluster, engine.hosts())
        try:
            return run(cluster, settings, cli_env=cli_env, runtime=runtime)
        except BaseException:
            if made and not ClusterState(cluster.name, settings.home).exists():
                # Nothing saved names them: leave nothing behind (only what this run made,
                # and the network once no container is on it).
                engine.remove([c.ip for c in made])
                engine.remove_network_if_unused()
            raise
    finally:
        client.close()


def _apply_plan(wanted: Cluster, saved: Cluster) -> tuple[list[HostSpec], list[str], dict[Role, int]]:
    """Which saved hosts stay (in order), which leave (the last of their role), and how many
    containers per role to add, for wanted hosts that are counts (placeholders)."""
    if not all(is_placeholder(h.ip) for h in wanted.hosts):
        return list(wanted.hosts), [h.ip for h in saved.hosts if not wanted.has_host(h.ip)], {}
    want = _counts([h.role for h in wanted.hosts])
    keep: list[HostSpec] = []
    leave: list[str] = []
    for role in Role:
        of_role = [h for h in saved.hosts if h.role is role]
        keep += of_role[: want[role]]
        leave += [h.ip for h in of_role[want[role] :]]
    have = _counts([h.role for h in keep])
    return [h for h in saved.hosts if h in keep], leave, {r: want[r] - have[r] for r in Role}


def leaving_containers(wanted: Cluster, home: Path | None = None) -> tuple[str, ...]:
    """The hosts `apply_containers(wanted)` would remove (the CLI asks before)."""
    saved = _saved_container_cluster(wanted.name, home)
    return () if saved is None else tuple(_apply_plan(wanted, saved)[1])


def apply_containers(
    wanted: Cluster, settings: Settings, *, cli_env: Mapping[str, str] | None = None
) -> Outcome:
    """`sealer apply -f Clusterfile` of a CONTAINER cluster: the saved one scaled to the counts."""
    saved = _saved_container_cluster(wanted.name, settings.home)
    if saved is None:
        return run_containers(wanted, settings, cli_env=cli_env)
    keep, leave, add = _apply_plan(wanted, saved)
    extra = [h for h in wanted.hosts if is_placeholder(h.ip) and h.role is Role.MASTER][
        sum(1 for h in keep if h.is_master) :
    ] + [h for h in wanted.hosts if is_placeholder(h.ip) and h.role is Role.NODE][
        sum(1 for h in keep if not h.is_master) :
    ]
    target = replace(saved, hosts=tuple(keep) + tuple(extra), image=wanted.image)
    if settings.options.dry_run:
        if extra:
            settings.on_event(Notice(_DRY_RUN_NOTE))
        return apply(target, settings, cli_env=cli_env)
    client: Any = connect_engine()
    try:
        engine = ContainerHosts(client, wanted.name)
        made = engine.create(add, saved.node_image or DEFAULT_NODE_IMAGE) if any(add.values()) else []
        try:
            outcome = apply(_materialize(target, made), settings, cli_env=cli_env)
        except BaseException:
            now = ClusterState(wanted.name, settings.home).load_cluster()
            engine.remove([c.ip for c in made if now is None or not now.has_host(c.ip)])
            raise
        removed = engine.remove(leave)
    finally:
        client.close()
    suffix = f"; containers removed: {', '.join(removed)}" if removed else ""
    return replace(outcome, message=outcome.message + suffix)


def join_containers(
    name: str, masters: int, nodes: int, settings: Settings, *, cli_env: Mapping[str, str] | None = None
) -> Outcome:
    """`sealer join --masters N --nodes M` on a CONTAINER cluster: N + M more containers."""
    saved = _saved_container_cluster(name, settings.home)
    if saved is None:
        raise ClusterError(f"no saved cluster {name}", hint="sealer run IMAGE --provider docker first")
    roles = [Role.MASTER] * masters + [Role.NODE] * nodes
    if settings.options.dry_run:
        settings.on_event(Notice(_DRY_RUN_NOTE))
        return join(
            name, [HostSpec(placeholder_ip(i), (r,)) for i, r in enumerate(roles)], settings, cli_env=cli_env
        )
    client: Any = connect_engine()
    try:
        engine = ContainerHosts(client, name)
        made = engine.create(_counts(roles), saved.node_image or DEFAULT_NODE_IMAGE)
        try:
            return join(name, [HostSpec(c.ip, (c.role,)) for c in made], settings, cli_env=cli_env)
        except BaseException:
            now = ClusterState(name, settings.home).load_cluster()
            engine.remove([c.ip for c in made if now is None or not now.has_host(c.ip)])
            raise
    finally:
        client.close()


def delete_containers(
    name: str,
    settings: Settings,
    *,
    masters: Sequence[str] = (),
    nodes: Sequence[str] = (),
    all_: bool = False,
    skip_unreachable: bool = False,
) -> Outcome:
    """`sealer delete`: the hosts leave (the usual phases), then their containers go; with
    `all_` every container of the cluster and its network. For a cluster that is not a
    CONTAINER cluster this is `remove.delete`."""
    saved = ClusterState(name, settings.home).load_cluster()
    outcome = delete(
        name, settings, masters=masters, nodes=nodes, all_=all_, skip_unreachable=skip_unreachable
    )
    if saved is None or saved.provider != CONTAINER:
        return outcome
    if outcome.dry_run:
        what = (
            f"every container of cluster {name}, and its network" if all_ else "the leaving hosts' containers"
        )
        return replace(outcome, plan=(*outcome.plan, f"== remove-containers: {what}"))
    client: Any = connect_engine()
    try:
        engine = ContainerHosts(client, name)
        if all_:
            removed = engine.remove_all()
        else:
            gone = set(saved.ips) - set(outcome.cluster.ips if outcome.cluster else ())
            removed = engine.remove(sorted(gone))
    finally:
        client.close()
    suffix = f"; containers removed: {', '.join(removed)}" if removed else ""
    return replace(outcome, message=outcome.message + suffix)


def container_status(name: str, home: Path | None = None) -> dict[str, dict[str, str]]:
    """Each host's container and engine status, by address; {} for a cluster on SSH hosts.
    Without an engine each host says so: the saved state is still worth showing."""
    saved = ClusterState(name, home).load_cluster()
    if saved is None or saved.provider != CONTAINER:
        return {}
    try:
        client: Any = connect_engine()
    except DockerEngineUnavailable as err:
        return {ip: {"container": "?", "status": err.message} for ip in saved.ips}
    try:
        found = {c.ip: c for c in ContainerHosts(client, name).hosts()}
    finally:
        client.close()
    missing = {"container": "-", "status": "missing"}
    return {
        ip: {"container": found[ip].name, "status": found[ip].status} if ip in found else missing
        for ip in saved.ips
    }
