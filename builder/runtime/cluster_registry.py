"""The cluster registry of the cluster model: `RegistrySpec` (sealer's spec.registry) and the
checks of its domain, port and certificate names. Values only, no I/O; cluster.py re-exports
`RegistrySpec`, clusterfile_registry.py reads it from a Clusterfile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from builder.errors import InvalidCluster
from builder.runtime.cluster_addresses import is_host_name, parse_ip


def _is_dns_name(name: str) -> bool:
    """Dot-separated labels of letters, digits and '-', at most 253, and not an IPv4 address."""
    return is_host_name(name) and not name.replace(".", "").isdigit()


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
