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
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from builder.errors import HostError, InvalidCluster

DEFAULT_CLUSTER_NAME = "my-cluster"  # sealer's `--cluster-name` default
# sealer's default spec.dataRoot (common.DefaultSealerDataDir): a Clusterfile naming it means
# the default, so it is kept as "" (the hosts' sealer root's data/, delivery.DEFAULT_ROOT).
DEFAULT_DATA_ROOT = "/var/lib/sealer/data"
# spec.containerRuntime.type values: what the ClusterImages run with (sealer's common.Containerd
# and common.Docker; docker only through cri-dockerd, see container_runtime.py).
CONTAINER_RUNTIMES = ("containerd", "docker")
# A data root lands unquoted in some plugin commands and in systemd units: plain characters only.
_DATA_ROOT = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
# Kernel and boot file systems, and the system's own trees: a cluster's data never goes there
# (remove-rootfs deletes the cluster's directory under it).
_SYSTEM_DIRS = (
    "/proc", "/sys", "/dev", "/run", "/var/run", "/boot", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64",
)  # fmt: skip
# Shared directories a data root may be below but not be: the cluster's directory DATAROOT/<name>
# (removed whole by delete) would sit among other software's (/var/lib/<name>), and /var/lib/sealer
# holds the default clusters' data/ and blobs/ beside what would be cluster names.
_SHARED_DIRS = (
    "/var", "/var/lib", "/var/tmp", "/tmp", "/opt", "/srv", "/home", "/root", "/mnt", "/media", "/var/lib/sealer",
)  # fmt: skip
MAX_RANGE_ADDRESSES = 4096
# SEALER_MASTERS + SEALER_NODES reach every host's scripts in the one `sh -c` argument that
# exports them, and Linux refuses an argument over 128 KiB (MAX_ARG_STRLEN): past this the run
# would fail on every host at once, late. ~8,900 IPv4 hosts; the rest of the 128 KiB is for
# the other variables and the command.
MAX_HOST_LISTS_BYTES = 96 << 10

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TAINT = re.compile(r"^[^\s=:]+(=[^\s:]*)?:(NoSchedule|PreferNoSchedule|NoExecute)-?$")
_HOSTNAME = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class Role(enum.StrEnum):
    MASTER = "master"
    NODE = "node"

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls(text)
        except ValueError:
            hint = "sealer calls worker hosts `node`" if text == "worker" else None
            raise InvalidCluster(f"unknown role {text!r}: expected master or node", hint=hint) from None


def parse_ip(text: str) -> str:
    """One IPv4 or IPv6 address in canonical form (`ipaddress`'s spelling)."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        hint = None
        if text.count(":") == 1 and "." in text:
            hint = "per-host SSH ports go in a Clusterfile (hosts[].ssh.port), or --port for all"
        elif text.strip().isdigit():
            hint = "a count of hosts goes with --provider docker (containers); SSH hosts are given by address"
        raise InvalidCluster(f"{text!r} is not an IP address", hint=hint) from None


_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_BROADCAST = ipaddress.ip_address("255.255.255.255")


def _not_a_host(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why `address` cannot be a host (None: it can). Unspecified, broadcast and multicast
    addresses name no machine: SSH to them fails late (or reaches this machine, for 0.0.0.0)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        if address.is_unspecified:
            return "the unspecified address"
        if address in _THIS_NETWORK:
            return "in 0.0.0.0/8 ('this network', RFC 1122)"
        if address == _BROADCAST:
            return "the broadcast address"
        if address.is_multicast:
            return "a multicast address (224.0.0.0/4)"
    elif address.is_unspecified:
        return "the unspecified address"
    elif address.is_multicast:
        return "a multicast address (ff00::/8)"
    return None


def parse_host_ip(text: str) -> str:
    """`parse_ip` for a host's address: unspecified, broadcast and multicast are refused."""
    ip = parse_ip(text)
    problem = _not_a_host(ipaddress.ip_address(ip))
    if problem is not None:
        raise InvalidCluster(f"{ip} is {problem}, not a host", hint="give the host's own address")
    return ip


def expand_ip_range(text: str, *, limit: int = MAX_RANGE_ADDRESSES) -> tuple[str, ...]:
    """`a-b` with two full addresses, inclusive, as sealer's `TransferToIPList`; at most `limit`."""
    start_text, sep, end_text = text.partition("-")
    if not sep or "-" in end_text:
        raise InvalidCluster(f"{text!r} is not an IP range: expected FIRST-LAST")
    start = ipaddress.ip_address(parse_ip(start_text))
    try:
        end = ipaddress.ip_address(parse_ip(end_text))
    except InvalidCluster:
        if end_text.strip().isdigit():
            raise InvalidCluster(
                f"{text!r}: the end of a range is a full address",
                hint=f"write {start_text.strip()}-<full address>, e.g. 10.0.0.1-10.0.0.3",
            ) from None
        raise
    if start.version != end.version:
        raise InvalidCluster(f"{text!r} mixes IPv4 and IPv6")
    count = int(end) - int(start) + 1
    if count < 1:
        raise InvalidCluster(f"{text!r}: the range ends before it starts")
    if count > limit:
        raise InvalidCluster(f"{text!r} spans {count} addresses; at most {limit} are allowed")
    return tuple(str(start + i) for i in range(count))


def parse_ip_list(text: str, *, limit: int = MAX_RANGE_ADDRESSES) -> tuple[str, ...]:
    """A `--masters`/`--nodes` value: comma-separated addresses and `a-b` ranges, in order.

    sealer accepts either a list or one range; this accepts any mix of both. Duplicates,
    unspecified, broadcast and multicast addresses are refused; the whole expansion is
    bounded by `limit` addresses.
    """
    out: list[str] = []
    seen: set[str] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise InvalidCluster(f"{text!r} has an empty item")
        ips = expand_ip_range(item, limit=limit) if "-" in item else (parse_ip(item),)
        for ip in ips:
            parse_host_ip(ip)
            if ip in seen:
                raise InvalidCluster(f"{ip} is listed twice")
            seen.add(ip)
            out.append(ip)
            if len(out) > limit:
                raise InvalidCluster(f"{text!r} names more than {limit} addresses")
    return tuple(out)


DISTRIBUTIONS = ("ssh", "fanout", "auto")  # spec.distribution, --distribution (fanout.choose)


def _one_of(value: str, allowed: tuple[str, ...], what: str, field: str, hint: str) -> str:
    """`value` when it is one of `allowed`; InvalidCluster naming `what` and `field` otherwise."""
    if value not in allowed:
        raise InvalidCluster(f"{what} {value!r} is not one of {', '.join(allowed)}", field=field, hint=hint)
    return value


def check_distribution(mode: str) -> str:
    """spec.distribution: how the layers reach the hosts (docs/delivery.md, Fan-out)."""
    return _one_of(
        mode, DISTRIBUTIONS, "distribution", "distribution",
        "ssh: every host from this machine; fanout: from the registry hosts; auto: by host count",
    )  # fmt: skip


def check_data_root(path: str) -> str:
    """spec.dataRoot: an absolute, normalized path of plain characters (letters, digits, '.',
    '_', '-'), not `/` and not in a kernel or system tree; DEFAULT_DATA_ROOT reads as ""."""
    hint = "an absolute directory such as /data/sealer (sealer's default is /var/lib/sealer/data)"
    if not path.startswith("/"):
        raise InvalidCluster(f"dataRoot {path!r} is not an absolute path", field="dataRoot", hint=hint)
    if path == "/" or not _DATA_ROOT.match(path):
        raise InvalidCluster(
            f"dataRoot {path!r} is not a plain directory path", field="dataRoot",
            hint=hint + "; letters, digits, '.', '_' and '-' in each component",
        )  # fmt: skip
    parts = path.split("/")[1:]
    if any(p in (".", "..") for p in parts):
        raise InvalidCluster(f"dataRoot {path!r} has a '.' or '..' component", field="dataRoot", hint=hint)
    for system in _SYSTEM_DIRS:
        if path == system or path.startswith(system + "/"):
            raise InvalidCluster(
                f"dataRoot {path!r} is in {system}, a system tree", field="dataRoot", hint=hint
            )
    if path in _SHARED_DIRS:
        raise InvalidCluster(
            f"dataRoot {path!r} is shared with other software: the cluster would be {path}/<name>, "
            "which delete removes",
            field="dataRoot",
            hint=f"a directory of its own, such as {path.rstrip('/')}/sealer-data",
        )
    return "" if path == DEFAULT_DATA_ROOT else path


def check_container_runtime(name: str) -> str:
    return _one_of(
        name, CONTAINER_RUNTIMES, "container runtime", "containerRuntime.type",
        "containerd (what the images install), or docker where the image ships cri-dockerd",
    )  # fmt: skip


PROVIDERS = ("BAREMETAL", "CONTAINER")
# A CONTAINER cluster's hosts that do not exist yet (a Clusterfile's hosts[].count, a dry-run)
# stand at addresses of TEST-NET-1 (RFC 5737, never a real host) until the engine gives theirs.
PLACEHOLDER_NET = ipaddress.ip_network("192.0.2.0/24")
_PLACEHOLDER_FIRST = 10


def placeholder_ip(index: int) -> str:
    """The `index`th placeholder address (192.0.2.10, .11, ...)."""
    if not 0 <= index < 240:
        raise InvalidCluster(f"at most 240 containers at once, not {index + 1}", field="hosts")
    return str(PLACEHOLDER_NET[_PLACEHOLDER_FIRST + index])


def is_placeholder(ip: str) -> bool:
    return ipaddress.ip_address(ip) in PLACEHOLDER_NET


def check_provider(provider: str, node_image: str, hosts: Iterable[HostSpec]) -> None:
    """spec.provider is one of PROVIDERS; a node image and container hosts go together."""
    _one_of(
        provider, PROVIDERS, "provider", "provider",
        "CONTAINER runs the hosts as Docker containers (sealer run --provider docker)",
    )  # fmt: skip
    if node_image and provider != "CONTAINER":
        raise InvalidCluster("a node image is for CONTAINER clusters", field="nodeImage")
    if provider == "CONTAINER" and any(h.local for h in hosts):
        raise InvalidCluster("a CONTAINER cluster's hosts are containers, not this machine", field="hosts")


def check_cluster_name(name: str) -> str:
    """A DNS-1123 label: the name becomes a directory on every host and under ~/.sealer."""
    if len(name) > 63 or not _DNS1123_LABEL.match(name):
        raise InvalidCluster(
            f"cluster name {name!r} is not a DNS-1123 label",
            field="name",
            hint="lower-case letters, digits and '-', starting and ending alphanumeric, at most 63",
        )
    return name


_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_label(key: str, value: str) -> tuple[str, str]:
    """A Kubernetes label: key `[prefix/]name` (prefix a DNS subdomain of at most 253, name at
    most 63 alphanumerics, '-', '_', '.'), value empty or like a name: kubectl's own rules,
    checked here so a bad one fails on loading, not on master0 after every join."""
    prefix, _, name = key.rpartition("/")
    if not _LABEL_NAME.match(name) or (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))):
        raise InvalidCluster(
            f"label key {key!r} is not [prefix/]name",
            hint="name: at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends; "
            "prefix: a DNS subdomain",
        )
    if value and not _LABEL_NAME.match(value):
        raise InvalidCluster(
            f"label {key}={value!r}: the value must be empty or at most 63 letters, digits, '-', '_' "
            "or '.', alphanumeric at both ends"
        )
    return key, value


def check_taint(taint: str) -> str:
    """`key[=value]:Effect[-]` as kubectl taint spells it."""
    if not _TAINT.match(taint):
        raise InvalidCluster(
            f"taint {taint!r} is not key[=value]:Effect",
            hint="Effect is NoSchedule, PreferNoSchedule or NoExecute",
        )
    return taint


@dataclass(frozen=True, slots=True)
class SSHSpec:
    """How to reach a host; the fields of the SSH driver's `SSHCredentials`, in the same order.

    `user`/`port` None leave them to ~/.ssh/config, else root and 22 (the driver's rule).
    Clusterfile spelling (sealer's `v1.SSH`): user, passwd, pk, pkPasswd, port (a string in
    sealer); the rest are this implementation's: useAgent, knownHosts, verifyHostKeys,
    proxyJump, connectTimeout.
    """

    user: str | None = None
    port: int | None = None
    password: str | None = field(default=None, repr=False)
    key_files: tuple[str, ...] = ()
    passphrase: str | None = field(default=None, repr=False)
    use_agent: bool = True
    known_hosts: str | None = None
    verify_host_keys: bool = True
    proxy_jump: str | None = None
    connect_timeout_s: float = 10

    def __post_init__(self) -> None:
        if self.user == "":
            raise InvalidCluster("ssh user is empty", field="ssh.user")
        if self.port is not None and (isinstance(self.port, bool) or not 1 <= self.port <= 65535):
            raise InvalidCluster(f"ssh port {self.port} is outside 1-65535", field="ssh.port")
        if not self.connect_timeout_s > 0:
            raise InvalidCluster("ssh connect timeout must be positive", field="ssh.connectTimeout")

    # The driver's SSHCredentials has the same fields, in the same order (a test holds them
    # together); `infra.routing.ssh_credentials` converts, so that this model needs no driver code.


@dataclass(frozen=True, slots=True)
class HostAlias:
    """An /etc/hosts entry put on every host (sealer's spec.hostAliases)."""

    ip: str
    hostnames: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ip", parse_ip(self.ip))
        if not self.hostnames:
            raise InvalidCluster(f"host alias {self.ip} has no hostnames", field="hostAliases")
        for name in self.hostnames:
            if len(name) > 253 or not _HOSTNAME.match(name):
                raise InvalidCluster(
                    f"host alias {self.ip}: {name!r} is not a host name",
                    field="hostAliases",
                    hint="letters, digits and '-' in dot-separated labels, as /etc/hosts takes them",
                )


@dataclass(frozen=True, slots=True)
class HostSpec:
    """One host: its address, its role, resolved SSH settings and its own env.

    `ssh` is already merged (host fields over the cluster's, as sealer's mergo.Merge);
    `env` is the host's own layer only (see `env.merge_env`). `local` marks this machine,
    reached without SSH (the single master of `sealer run IMAGE` with no --masters).
    """

    ip: str
    roles: tuple[Role, ...]
    ssh: SSHSpec = field(default_factory=SSHSpec)
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()
    local: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "ip", parse_host_ip(self.ip))
        roles = tuple(Role.parse(r) for r in self.roles)
        if len(roles) != 1:
            raise InvalidCluster(
                f"host {self.ip} must have exactly one role (master or node), has {len(roles)}",
                field="roles",
            )
        object.__setattr__(self, "roles", roles)
        for taint in self.taints:
            check_taint(taint)
        for key, value in self.labels.items():
            check_label(key, value)

    @property
    def role(self) -> Role:
        return self.roles[0]

    @property
    def is_master(self) -> bool:
        return self.role is Role.MASTER


def _is_dns_name(name: str) -> bool:
    """Dot-separated labels of letters, digits and '-', at most 253, and not an IPv4 address."""
    return len(name) <= 253 and bool(_HOSTNAME.match(name)) and not name.replace(".", "").isdigit()


def check_registry_domain(domain: str) -> str:
    """A DNS name: the registry's domain goes into /etc/hosts, certs.d directory names and the
    server certificate."""
    if not _is_dns_name(domain):
        raise InvalidCluster(
            f"registry domain {domain!r} is not a DNS name",
            field="registry.domain",
            hint="letters, digits and '-' in dot-separated labels, e.g. sea.hub",
        )
    return domain.lower()


def check_registry_port(port: int) -> int:
    if isinstance(port, bool) or not 1 <= port <= 65535:
        raise InvalidCluster(f"registry port {port} is outside 1-65535", field="registry.port")
    return port


def check_san_dns(name: str) -> str:
    """A DNS name for a certificate's subjectAltName; a leading `*.` (wildcard) is allowed."""
    if not _is_dns_name(name[2:] if name.startswith("*.") else name):
        raise InvalidCluster(
            f"{name!r} is neither a DNS name nor an IP address",
            field="registry.cert",
            hint="dnsNames take names such as registry.example.com; ips take addresses",
        )
    return name.lower()


DEFAULT_REGISTRY_DOMAIN = "sea.hub"  # sealer's defaults for spec.registry.localRegistry
DEFAULT_REGISTRY_PORT = 5000
MAX_REGISTRY_PASSWORD_BYTES = 72  # bcrypt's limit: distribution refuses longer ones
EXTERNAL_REGISTRY_PORT = 443  # an externalRegistry without a port: HTTPS's, named by the bare domain


@dataclass(frozen=True, slots=True)
class RegistrySpec:
    """The cluster registry, sealer's `spec.registry`: `localRegistry` (the default when the
    Clusterfile has none) serves the image's bundled container images from the masters (`ha`:
    every master; else master0 only), over TLS with a CA made on the controller unless
    `insecure`; `externalRegistry` (`external`) is a registry the user runs, which the hosts'
    mirrors and credentials point at. `san_dns`/`san_ips`: extra names and addresses of the
    local registry's server certificate (`cert.subjectAltName`). The password never reaches a
    plan or a log."""

    domain: str = DEFAULT_REGISTRY_DOMAIN
    port: int = DEFAULT_REGISTRY_PORT
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    external: bool = False
    ha: bool = True
    insecure: bool = False
    san_dns: tuple[str, ...] = ()
    san_ips: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "domain", check_registry_domain(self.domain))
        check_registry_port(self.port)
        if (self.username is None) != (self.password is None):
            given, missing = (
                ("username", "password") if self.username is not None else ("password", "username")
            )
            raise InvalidCluster(
                f"the registry has a {given} but no {missing}",
                field=f"registry.{missing}",
                hint="give both username and password, or neither (no auth)",
            )
        if self.username is not None and (not self.username or ":" in self.username):
            raise InvalidCluster(
                f"registry username {self.username!r} is empty or has ':'",
                field="registry.username",
                hint="htpasswd and the CRI's credentials keep USER:PASSWORD: a ':' in the name breaks both",
            )
        if self.password == "":
            raise InvalidCluster("the registry password is empty", field="registry.password")
        if not self.external and len((self.password or "").encode()) > MAX_REGISTRY_PASSWORD_BYTES:
            raise InvalidCluster(
                f"the registry password is longer than {MAX_REGISTRY_PASSWORD_BYTES} bytes",
                field="registry.password",
                hint="bcrypt (the registry's htpasswd) uses only the first 72 bytes; give a shorter one",
            )
        object.__setattr__(self, "san_dns", tuple(check_san_dns(n) for n in self.san_dns))
        object.__setattr__(self, "san_ips", tuple(parse_ip(ip) for ip in self.san_ips))

    @property
    def endpoint(self) -> str:
        """DOMAIN:PORT, the name images and containerd's certs.d directory use; the bare domain
        for an external registry on 443 (an image named DOMAIN/... is looked up as DOMAIN)."""
        if self.external and self.port == EXTERNAL_REGISTRY_PORT:
            return self.domain
        return f"{self.domain}:{self.port}"

    @property
    def has_auth(self) -> bool:
        return self.username is not None


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
