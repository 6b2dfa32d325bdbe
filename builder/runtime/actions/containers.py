"""The actions on CONTAINER clusters (`--provider docker`): the hosts are made before the
phases and removed after them, the phases in between are the ones SSH hosts go through.

    run     the cluster's network and `masters` + `nodes` containers (container_hosts.py),
            then `install.run` on their addresses; a re-run reuses them (same counts). A run
            that fails before the cluster is saved removes what it made: nothing is left
    join    `masters`/`nodes` more containers, then `install.join`; removed again when the
            join fails before the state names them
    delete  `remove.delete`, then the leaving hosts' containers; `--all` also the network
    status  each host's container and its engine status (`cluster status`)

A dry-run makes nothing: containers that do not exist yet are shown at placeholder addresses
(TEST-NET-1, RFC 5737), since the engine assigns the real ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from builder.errors import ClusterError
from builder.runtime.actions.install import join, run
from builder.runtime.actions.remove import delete
from builder.runtime.actions.settings import Outcome, Settings
from builder.runtime.cluster import Cluster, HostSpec, Role
from builder.runtime.container_hosts import ContainerHost, ContainerHosts
from builder.runtime.infra.docker_engine import connect_engine
from builder.runtime.infra.node_image import DEFAULT_NODE_IMAGE
from builder.runtime.runner import Notice
from builder.runtime.state import ClusterState

CONTAINER = "CONTAINER"
_PLACEHOLDER_NET = "192.0.2."  # TEST-NET-1: addresses a dry-run shows for containers not made yet


@dataclass(frozen=True)
class ContainerCluster:
    """`sealer run IMAGE --provider docker --masters N --nodes M`: a cluster of containers."""

    name: str
    image: str
    masters: int
    nodes: int
    node_image: str = ""
    cmds: tuple[str, ...] = ()
    app_names: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.masters < 1:
            raise ClusterError("a cluster needs at least one master", hint="--masters 1")
        if self.nodes < 0:
            raise ClusterError("--nodes is a count of containers, at least 0")

    def cluster(self, hosts: Sequence[tuple[str, Role]]) -> Cluster:
        return Cluster(
            name=self.name,
            image=self.image,
            hosts=tuple(HostSpec(ip, (role,)) for ip, role in hosts),
            env=dict(self.env or {}),
            cmds=self.cmds,
            app_names=self.app_names,
            provider=CONTAINER,
            node_image=self.node_image,
        )


def _counts(hosts: Sequence[ContainerHost]) -> dict[Role, int]:
    return {r: sum(1 for h in hosts if h.role is r) for r in Role}


def _placeholders(counts: Mapping[Role, int], start: int = 10) -> list[tuple[str, Role]]:
    out: list[tuple[str, Role]] = []
    for role in (Role.MASTER, Role.NODE):
        for _ in range(counts.get(role, 0)):
            out.append((f"{_PLACEHOLDER_NET}{start + len(out)}", role))
    return out


def _saved_container_cluster(name: str, settings: Settings) -> Cluster | None:
    saved = ClusterState(name, settings.home).load_cluster()
    if saved is not None and saved.provider != CONTAINER:
        raise ClusterError(
            f"cluster {name} already runs on SSH hosts ({', '.join(saved.ips)}), not on containers",
            hint="give another --cluster name for a cluster on docker",
        )
    return saved


def run_containers(
    want: ContainerCluster,
    settings: Settings,
    *,
    cli_env: Mapping[str, str] | None = None,
    runtime: str | None = None,
) -> Outcome:
    """`sealer run --provider docker`: make (or reuse) the containers, then the run's phases."""
    saved = _saved_container_cluster(want.name, settings)
    node_image = want.node_image or (saved.node_image if saved else "") or DEFAULT_NODE_IMAGE
    client: Any = connect_engine()
    try:
        hosts = ContainerHosts(client, want.name)
        existing = [h for h in hosts.hosts() if h.ip]
        have = _counts(existing)
        wanted = {Role.MASTER: want.masters, Role.NODE: want.nodes}
        if any(have[r] > wanted[r] for r in Role) or (saved is not None and have != wanted):
            raise ClusterError(
                f"cluster {want.name} has {have[Role.MASTER]} master and {have[Role.NODE]} node "
                f"containers, not {want.masters} and {want.nodes}",
                hint="sealer join/delete change a cluster's hosts; sealer delete --all removes it",
            )
        missing = {r: wanted[r] - have[r] for r in Role}
        if settings.options.dry_run:
            made: list[ContainerHost] = []
            planned = [(h.ip, h.role) for h in existing] + _placeholders(missing)
            if any(missing.values()):
                settings.on_event(
                    Notice(f"dry-run: containers not made yet are shown at {_PLACEHOLDER_NET}x")
                )
        else:
            made = hosts.create(missing, node_image) if any(missing.values()) else []
            planned = [(h.ip, h.role) for h in hosts.hosts() if h.ip]
        cluster = want.cluster(planned)
        if want.node_image or saved is None:
            cluster = _with_node_image(cluster, node_image)
        try:
            return run(cluster, settings, cli_env=cli_env, runtime=runtime)
        except BaseException:
            if made and not ClusterState(want.name, settings.home).exists():
                hosts.remove_all()  # nothing saved names them: leave nothing behind
            raise
    finally:
        client.close()


def _with_node_image(cluster: Cluster, node_image: str) -> Cluster:
    from dataclasses import replace

    return replace(cluster, node_image=node_image)


def join_containers(
    name: str,
    masters: int,
    nodes: int,
    settings: Settings,
    *,
    cli_env: Mapping[str, str] | None = None,
) -> Outcome:
    """`sealer join --masters N --nodes M` on a CONTAINER cluster: N + M more containers."""
    saved = _saved_container_cluster(name, settings)
    if saved is None:
        raise ClusterError(f"no saved cluster {name}", hint="sealer run IMAGE --provider docker first")
    counts = {Role.MASTER: masters, Role.NODE: nodes}
    if settings.options.dry_run:
        last = max(
            (int(ip.rsplit(".", 1)[1]) for ip in saved.ips if ip.startswith(_PLACEHOLDER_NET)), default=9
        )
        new = [HostSpec(ip, (role,)) for ip, role in _placeholders(counts, last + 1)]
        settings.on_event(Notice(f"dry-run: containers not made yet are shown at {_PLACEHOLDER_NET}x"))
        return join(name, new, settings, cli_env=cli_env)
    client: Any = connect_engine()
    try:
        hosts = ContainerHosts(client, name)
        made = hosts.create(counts, saved.node_image or DEFAULT_NODE_IMAGE)
        try:
            return join(name, [HostSpec(h.ip, (h.role,)) for h in made], settings, cli_env=cli_env)
        except BaseException:
            now = ClusterState(name, settings.home).load_cluster()
            unsaved = [h.ip for h in made if now is None or not now.has_host(h.ip)]
            hosts.remove(unsaved)
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
    `all_` every container of the cluster and its network. For clusters that are not
    CONTAINER clusters this is `remove.delete`."""
    saved = ClusterState(name, settings.home).load_cluster()
    outcome = delete(
        name, settings, masters=masters, nodes=nodes, all_=all_, skip_unreachable=skip_unreachable
    )
    if saved is None or saved.provider != CONTAINER:
        return outcome
    if outcome.dry_run:
        what = f"every container of cluster {name} and network" if all_ else "the leaving hosts' containers"
        return Outcome(
            outcome.cluster, outcome.message, (*outcome.plan, f"== remove-containers: {what}"), dry_run=True
        )
    client: Any = connect_engine()
    try:
        hosts = ContainerHosts(client, name)
        if all_:
            removed = hosts.remove_all()
        else:
            gone = set(saved.ips) - set(outcome.cluster.ips if outcome.cluster else ())
            removed = hosts.remove(sorted(gone))
    finally:
        client.close()
    message = outcome.message + (f"; containers removed: {', '.join(removed)}" if removed else "")
    return Outcome(outcome.cluster, message, outcome.plan, outcome.hosts, outcome.dry_run)


def container_status(name: str, home: Any = None) -> dict[str, dict[str, str]]:
    """Each host's container and engine status, by address; {} for a cluster on SSH hosts.
    An engine that does not answer is EngineUnavailable (status says so in one line)."""
    saved = ClusterState(name, home).load_cluster()
    if saved is None or saved.provider != CONTAINER:
        return {}
    client: Any = connect_engine()
    try:
        found = {h.ip: h for h in ContainerHosts(client, name).hosts()}
    finally:
        client.close()
    return {
        ip: {"container": found[ip].name, "status": found[ip].status}
        if ip in found
        else {"container": "-", "status": "missing"}
        for ip in saved.ips
    }
