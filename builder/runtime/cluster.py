"""The cluster model: the hosts a ClusterImage runs on, their roles, SSH settings and env.

Values only, no I/O. A `Cluster` is built by `clusterfile.load_clusterfile` (sealer's
Clusterfile v2) or `clusterfile.cluster_from_flags` (`sealer run IMAGE --masters ...`); both
check every field with its own location first, so the checks here (`InvalidCluster`) are the
last line for clusters derived in code (`with_hosts`, `without_hosts`).

Roles are sealer's two, `master` and `node`; `worker` is refused with a hint rather than kept
as an alias, so a saved Clusterfile always reads the way sealer writes it. master0 is the first
master in host order, as sealer's `GetMaster0IP`. An even number of masters is allowed here
(etcd quorum is the runtime's warning to give), IPv4 and IPv6 hosts may not be mixed (sealer's
`checkAllHostsSameFamily`).

Here: `Cluster`, the rules its host list keeps, and `diff` (what apply does). The model's
parts live beside it, and the names most callers use are re-exported from here:
cluster_hosts.py (`Role`, `SSHSpec`, `HostSpec`, `HostAlias`, label and taint checks),
cluster_addresses.py (addresses, ranges, `--masters` lists, placeholders),
cluster_registry.py (`RegistrySpec`), cluster_fields.py (name, dataRoot, distribution,
containerRuntime and provider checks).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from builder.errors import HostError, InvalidCluster
from builder.runtime.cluster_addresses import parse_ip, parse_ip_list
from builder.runtime.cluster_fields import (
    DEFAULT_CLUSTER_NAME,
    check_cluster_name,
    check_container_runtime,
    check_data_root,
    check_distribution,
    check_provider,
)
from builder.runtime.cluster_hosts import HostAlias, HostSpec, Role, SSHSpec
from builder.runtime.cluster_registry import RegistrySpec

__all__ = [
    "DEFAULT_CLUSTER_NAME",
    "MAX_HOST_LISTS_BYTES",
    "Cluster",
    "ClusterDiff",
    "HostAlias",
    "HostSpec",
    "RegistrySpec",
    "Role",
    "SSHSpec",
    "check_cluster_name",
    "diff",
    "find_host_problem",
    "parse_ip",
    "parse_ip_list",
]

# SEALER_MASTERS + SEALER_NODES reach every host's scripts in the one `sh -c` argument that
# exports them, and Linux refuses an argument over 128 KiB (MAX_ARG_STRLEN): past this the run
# would fail on every host at once, late. ~8,900 IPv4 hosts; the rest of the 128 KiB is for
# the other variables and the command.
MAX_HOST_LISTS_BYTES = 96 << 10


@dataclass(frozen=True, slots=True)
class Cluster:
    """A whole cluster: name, image, hosts in order, defaults and extra config documents.

    `documents` are the Clusterfile's other YAML documents (kubeadm InitConfiguration,
    ClusterConfiguration, KubeletConfiguration, k3s/k0s config, Plugin, Config, ...) as
    parsed, in file order; the runtime plugins read them.
    """

    name: str
    image: str
    hosts: tuple[HostSpec, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cmds: tuple[str, ...] = ()
    cmd_args: tuple[str, ...] = ()
    app_names: tuple[str, ...] = ()
    ssh: SSHSpec = field(default_factory=SSHSpec)
    host_aliases: tuple[HostAlias, ...] = ()
    documents: tuple[Mapping[str, object], ...] = ()
    registry: RegistrySpec = field(default_factory=RegistrySpec)
    # spec.dataRoot: where the hosts keep this cluster's rootfs and data ("": the hosts' sealer
    # root's data/, sealer's /var/lib/sealer/data); fixed once the cluster runs.
    data_root: str = ""
    # spec.containerRuntime.type ("": the image's); `container_runtime_at` names its Clusterfile
    # line for the refusal, which can only come once the image is known.
    container_runtime: str = ""
    container_runtime_at: str = field(default="", compare=False)
    # spec.distribution: how the layers reach the hosts, ssh | fanout | auto (fanout.py); "":
    # not given (auto, unless the command line says otherwise).
    distribution: str = ""
    # sealer's spec.provider: BAREMETAL (hosts reached over SSH, or this machine) or CONTAINER
    # (hosts are containers of a Docker engine, made for the cluster: container_hosts.py), and
    # the image those containers run (spec.nodeImage; "": container_hosts' default).
    provider: str = "BAREMETAL"
    node_image: str = ""
    # Derived once, in __post_init__: a plan asks for master0, the masters and a host by address
    # once per host and step, and recomputing them made a 5000-host dry-run quadratic.
    _masters: tuple[HostSpec, ...] = field(init=False, repr=False, compare=False)
    _nodes: tuple[HostSpec, ...] = field(init=False, repr=False, compare=False)
    _ips: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _by_ip: Mapping[str, HostSpec] = field(init=False, repr=False, compare=False)
    _ip_lists: Mapping[Role, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_cluster_name(self.name)
        check_provider(self.provider, self.node_image, self.hosts)
        if not self.image:
            raise InvalidCluster("the cluster has no image", field="image")
        if self.data_root:
            object.__setattr__(self, "data_root", check_data_root(self.data_root))
        if self.container_runtime:
            check_container_runtime(self.container_runtime)
        if self.distribution:
            check_distribution(self.distribution)
        problem = find_host_problem(self.hosts)
        if problem is not None:
            message, index = problem
            raise InvalidCluster(message, field=f"hosts[{index}]" if index is not None else "hosts")
        masters = tuple(h for h in self.hosts if h.role is Role.MASTER)
        nodes = tuple(h for h in self.hosts if h.role is Role.NODE)
        object.__setattr__(self, "_masters", masters)
        object.__setattr__(self, "_nodes", nodes)
        object.__setattr__(self, "_ips", tuple(h.ip for h in self.hosts))
        object.__setattr__(self, "_by_ip", {h.ip: h for h in self.hosts})
        lists = {Role.MASTER: ",".join(h.ip for h in masters), Role.NODE: ",".join(h.ip for h in nodes)}
        size = len(lists[Role.MASTER]) + len(lists[Role.NODE])
        if size > MAX_HOST_LISTS_BYTES:
            raise InvalidCluster(
                f"{len(self.hosts)} hosts: their addresses take {size >> 10} KiB in SEALER_MASTERS and "
                f"SEALER_NODES, over the {MAX_HOST_LISTS_BYTES >> 10} KiB a host's commands can carry",
                field="hosts",
                hint="Linux refuses a command argument over 128 KiB; split the cluster",
            )
        object.__setattr__(self, "_ip_lists", lists)

    @property
    def masters(self) -> tuple[HostSpec, ...]:
        return self._masters

    @property
    def nodes(self) -> tuple[HostSpec, ...]:
        return self._nodes

    @property
    def master0(self) -> HostSpec:
        """The first master: kubeadm init, CMDS and apps run there."""
        return self._masters[0]

    @property
    def ips(self) -> tuple[str, ...]:
        return self._ips

    @property
    def registry_hosts(self) -> tuple[HostSpec, ...]:
        """The hosts that serve the local registry: every master (`ha`), else master0; none for
        an external registry."""
        if self.registry.external:
            return ()
        return self._masters if self.registry.ha else self._masters[:1]

    def ip_list(self, role: Role) -> str:
        """The addresses of the hosts with `role`, comma-separated in host order; one string
        shared by every caller (SEALER_MASTERS/SEALER_NODES of each host's env)."""
        return self._ip_lists[role]

    def has_host(self, ip: str) -> bool:
        return parse_ip(ip) in self._by_ip

    def host(self, ip: str) -> HostSpec:
        """The host with address `ip`; HostError if the cluster has none."""
        wanted = parse_ip(ip)
        found = self._by_ip.get(wanted)
        if found is None:
            raise HostError(f"{wanted} is not a host of cluster {self.name}", host=wanted)
        return found

    def with_hosts(self, hosts: Iterable[HostSpec]) -> Cluster:
        """A new cluster with `hosts` appended (join); a repeated address is an error."""
        return replace(self, hosts=self.hosts + tuple(hosts))

    def without_hosts(self, ips: Iterable[str]) -> Cluster:
        """A new cluster without the hosts at `ips` (delete); unknown addresses are an error."""
        gone = {self.host(ip).ip for ip in ips}
        return replace(self, hosts=tuple(h for h in self.hosts if h.ip not in gone))


def find_host_problem(hosts: tuple[HostSpec, ...]) -> tuple[str, int | None] | None:
    """The first rule `hosts` breaks, with the index of the host at fault (None: the whole list)."""
    seen: dict[str, Role] = {}
    version: int | None = None
    local_seen = False
    for index, host in enumerate(hosts):
        if host.ip in seen:
            if seen[host.ip] is not host.role:
                return f"{host.ip} is both a master and a node", index
            return f"{host.ip} is listed twice", index
        seen[host.ip] = host.role
        ip_version = ipaddress.ip_address(host.ip).version
        if version is None:
            version = ip_version
        elif ip_version != version:
            return f"{host.ip}: all hosts must be IPv4 or all IPv6, not a mix", index
        if host.local:
            if local_seen:
                return f"{host.ip}: only one host can be the local machine", index
            local_seen = True
    if not any(h.role is Role.MASTER for h in hosts):
        return "the cluster has no master: at least one host needs role master", None
    return None


@dataclass(frozen=True, slots=True)
class ClusterDiff:
    """What `sealer apply` must do to turn the saved cluster into the wanted one."""

    join_masters: tuple[HostSpec, ...]
    join_nodes: tuple[HostSpec, ...]
    remove_masters: tuple[HostSpec, ...]
    remove_nodes: tuple[HostSpec, ...]
    image_changed: bool

    @property
    def is_empty(self) -> bool:
        return not (
            self.join_masters
            or self.join_nodes
            or self.remove_masters
            or self.remove_nodes
            or self.image_changed
        )


def diff(wanted: Cluster, saved: Cluster) -> ClusterDiff:
    """Hosts to join and to remove, in host order; refuses what apply cannot do.

    A host changing role, or master0 leaving or moving, cannot be done by scaling (the first
    control plane holds the cluster's PKI and join credentials): the user deletes the host first.
    """
    if wanted.name != saved.name:
        raise InvalidCluster(
            f"cluster name {wanted.name!r} differs from the saved {saved.name!r}", field="name"
        )
    saved_by_ip = {h.ip: h for h in saved.hosts}
    wanted_by_ip = {h.ip: h for h in wanted.hosts}
    for ip, host in wanted_by_ip.items():
        old = saved_by_ip.get(ip)
        if old is not None and old.role is not host.role:
            raise InvalidCluster(
                f"{ip} changes role from {old.role} to {host.role}",
                field="hosts",
                hint=f"delete {ip} from the cluster first, then apply",
            )
    if wanted.master0.ip != saved.master0.ip:
        if saved.master0.ip not in wanted_by_ip and saved.registry_hosts == (saved.master0,):
            message = (
                f"master0 {saved.master0.ip} cannot be removed by apply: it is the only registry host "
                "(spec.registry.localRegistry.ha: false), so the registry would go with it"
            )
        elif saved.master0.ip not in wanted_by_ip:
            message = f"master0 {saved.master0.ip} cannot be removed by apply"
        else:
            message = f"master0 would change from {saved.master0.ip} to {wanted.master0.ip}"
        raise InvalidCluster(
            message,
            field="hosts",
            hint=f"keep {saved.master0.ip} as the first master, or delete the whole cluster",
        )
    joins = [h for h in wanted.hosts if h.ip not in saved_by_ip]
    removes = [h for h in saved.hosts if h.ip not in wanted_by_ip]
    return ClusterDiff(
        join_masters=tuple(h for h in joins if h.is_master),
        join_nodes=tuple(h for h in joins if not h.is_master),
        remove_masters=tuple(h for h in removes if h.is_master),
        remove_nodes=tuple(h for h in removes if not h.is_master),
        image_changed=wanted.image != saved.image,
    )
