"""`sealer exec`: one shell command on a saved cluster's hosts, chosen by role or address, in
parallel (sealer's `alpha exec`, sealos's `exec`).

Each host runs the command with `sh -c` and the env its scripts get (the Clusterfile env, the
host's own, SEALER_ROLE, SEALER_HOST_IP, SEALER_MASTER0, ...), so `echo $SEALER_ROLE` answers
per host. Nothing is journaled and the cluster's state is neither read-locked nor written: exec
is for looking at hosts, also while a run works on them. A host that cannot be reached counts
as exit status 255, as with ssh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from builder.errors import ClusterError, InvalidCluster, SealerError
from builder.runtime import delivery
from builder.runtime.actions.settings import Settings
from builder.runtime.cluster import Cluster, HostSpec, Role, parse_ip_list
from builder.runtime.env import merge_env, reserved_env
from builder.runtime.infra.base import InfraDriver
from builder.runtime.state import ClusterState

UNREACHABLE_STATUS = 255  # what ssh exits with when it cannot reach the host
ROLES = ("master", "node")


@dataclass(frozen=True, slots=True)
class HostOutput:
    """What one host gave: its exit status (UNREACHABLE_STATUS when it could not run the
    command at all, `error` then saying why) and its output."""

    host: str
    exit_status: int
    stdout: str = ""
    stderr: str = ""
    error: str | None = None


def parse_roles(text: str) -> tuple[Role, ...]:
    """`master,node` -> the roles; an unknown one is a ClusterError naming the known ones."""
    roles: list[Role] = []
    for word in (w.strip() for w in text.split(",")):
        if word not in ROLES:
            raise ClusterError(
                f"--roles: unknown role {word!r}", hint=f"the roles are {', '.join(ROLES)}, comma-separated"
            )
        if Role(word) not in roles:
            roles.append(Role(word))
    return tuple(roles)


def chosen_hosts(
    cluster: Cluster, roles: Sequence[Role] = (), addresses: str | None = None
) -> tuple[HostSpec, ...]:
    """The hosts with one of `roles` (all roles when empty) and, when `addresses` is given, one
    of those addresses, in host order. An address that is not a host of the cluster, or a
    choice that leaves no host, is an error."""
    hosts = [h for h in cluster.hosts if not roles or h.role in roles]
    if addresses is not None:
        try:
            wanted = parse_ip_list(addresses)
        except InvalidCluster as err:
            raise ClusterError(f"--hosts: {err.message}", hint=err.hint) from None
        for ip in wanted:
            if not cluster.has_host(ip):
                raise ClusterError(
                    f"--hosts: {ip} is not a host of cluster {cluster.name}",
                    hint="sealer cluster status lists its hosts",
                )
        hosts = [h for h in hosts if h.ip in set(wanted)]
    if not hosts:
        raise ClusterError(f"no host of cluster {cluster.name} matches --roles and --hosts")
    return tuple(hosts)


def saved_cluster(name: str, settings: Settings) -> tuple[Cluster, Mapping[str, str]]:
    """The saved cluster `name` and the `-e` env its last run was given."""
    cs = ClusterState(name, settings.home)
    saved, meta = cs.load_cluster(), cs.load_meta()
    if saved is None or meta is None:
        raise ClusterError(f"no saved cluster {name} in {cs.home}", hint="sealer run IMAGE creates one")
    return saved, meta.cli_env


def host_env(cluster: Cluster, host: HostSpec, cli_env: Mapping[str, str], root: str) -> dict[str, str]:
    """The env of the host's scripts, without the image's ENV (exec does not read the image)."""
    env = merge_env({}, cluster.env, host.env, cli_env)
    rootfs = delivery.rootfs_path(cluster.name, root, data_root=cluster.data_root)
    env.update(reserved_env(cluster, host, rootfs))
    return env


def exec_on_hosts(
    cluster: Cluster,
    hosts: Sequence[HostSpec],
    command: str,
    settings: Settings,
    *,
    cli_env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
    on_output: Callable[[HostOutput], None] = lambda _: None,
) -> list[HostOutput]:
    """Run `command` on `hosts` at once (at most `settings.options.max_parallel` at a time);
    `on_output` gets each host's output as soon as it finishes. The outputs, in host order."""

    async def one(host: HostSpec, slots: asyncio.Semaphore, driver: InfraDriver) -> HostOutput:
        async with slots:
            try:
                result = await driver.run(
                    host.ip,
                    command,
                    env=host_env(cluster, host, cli_env or {}, settings.root),
                    timeout_s=timeout_s,
                    check=False,
                )
                out = HostOutput(host.ip, result.exit_status, result.stdout, result.stderr)
            except SealerError as err:  # the host could not run it (connection, timeout)
                out = HostOutput(host.ip, UNREACHABLE_STATUS, error=err.message)
        on_output(out)
        return out

    async def go() -> list[HostOutput]:
        driver = settings.driver_factory(cluster)
        slots = asyncio.Semaphore(max(1, settings.options.max_parallel))
        try:
            return list(await asyncio.gather(*(one(h, slots, driver) for h in hosts)))
        finally:
            await driver.close()

    return asyncio.run(go())


def worst_status(outputs: Sequence[HostOutput]) -> int:
    """The exit status `sealer exec` gives: the highest of the hosts' (0 when all succeeded)."""
    return max((o.exit_status for o in outputs), default=0)
