"""The hosts of the cluster model: `Role`, `SSHSpec` (how a host is reached), `HostSpec` (one
host) and `HostAlias` (an /etc/hosts entry), with the label and taint checks of a host's fields.
Values only, no I/O; cluster.py re-exports these names with `Cluster`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from builder.errors import InvalidCluster
from builder.runtime.cluster_addresses import is_host_name, parse_host_ip, parse_ip

_TAINT = re.compile(r"^[^\s=:]+(=[^\s:]*)?:(NoSchedule|PreferNoSchedule|NoExecute)-?$")


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
            if not is_host_name(name):
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
