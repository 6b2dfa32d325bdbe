"""The files that make a host a client of the cluster registry, as text (no I/O): containerd's
hosts.toml mirrors, k3s's registries.yaml, k0s's containerd drop-in, the kubelet's config.json;
and `write_file_command`, the shell that puts one on a host atomically.

Who reads what:
- containerd (kubernetes, k0s, plain `ctr --hosts-dir`) reads
  /etc/containerd/certs.d/<registry>/hosts.toml on every pull (containerd's docs/hosts.md), so a
  rewrite needs no restart. Each mirrored registry lists every registry host by address, its own
  first on a registry host: containerd tries the hosts in order and falls back to the next one
  on a connection error, then to `server` (the upstream). The server certificate carries every
  registry host's address as a SAN, so TLS verifies against the cluster's CA per address.
- Credentials: containerd 1.6's hosts.toml has no auth field; a `[host."...".header]`
  Authorization "Basic <base64 user:pass>" is sent on every request to that host (and only to
  it, never to the upstream `server`). distribution's htpasswd check reads exactly that header,
  so `ctr` and the CRI plugin both pull with it, whatever the kubelet passes. The CRI plugin's
  `registry.configs.<host>.auth` would reach CRI pulls only (not `ctr`, not the k0s drop-in's
  merge), and would need the password in containerd's main config.
- k3s reads /etc/rancher/k3s/registries.yaml at start only (docs.k3s.io private-registry):
  `mirrors.<registry>.endpoint` and `configs.<endpoint host>.tls.ca_file` / `.auth.auth`.
- k0s (>= 1.27.1) merges CRI settings from /etc/k0s/containerd.d/*.toml into the containerd
  config it generates: the drop-in only sets `config_path` to the same certs.d.
- kubelets pass /var/lib/kubelet/config.json credentials (docker's `auths`) with CRI pulls of
  DOMAIN:PORT images.

Secrets never enter a command: texts hold `SECRET_PLACEHOLDER`, which `write_file_command`
fills from the step's env (`SECRET_ENV`, the base64 of user:password).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from builder.runtime.cluster import RegistrySpec

SECRET_ENV = "SEALER_REGISTRY_AUTH"
SECRET_PLACEHOLDER = "${" + SECRET_ENV + "}"
CERTS_D = "/etc/containerd/certs.d"
DOCKER_CERTS_D = "/etc/docker/certs.d"
K3S_REGISTRIES = "/etc/rancher/k3s/registries.yaml"
K0S_DROPIN = "/etc/k0s/containerd.d/sealer-registry.toml"
# The upstream of each registry the cluster registry mirrors (containerd's `server`).
UPSTREAMS = (
    ("docker.io", "https://registry-1.docker.io"),
    ("registry.k8s.io", "https://registry.k8s.io"),
    ("quay.io", "https://quay.io"),
    ("ghcr.io", "https://ghcr.io"),
)


@dataclass(frozen=True, slots=True)
class MirrorSet:
    """What one host's mirrors say: the registry `spec`, the endpoints (`host:port`, in the order
    this host tries them) and the cluster, named in each file's first line."""

    spec: RegistrySpec
    endpoints: tuple[str, ...]
    cluster: str

    @property
    def scheme(self) -> str:
        return "http" if self.spec.insecure else "https"

    @property
    def ca_file(self) -> str | None:
        """The CA the hosts verify with: the local registry's (not for an external registry,
        which the system's CAs verify, nor for plain HTTP)."""
        if self.spec.insecure or self.spec.external:
            return None
        return f"{CERTS_D}/{self.spec.endpoint}/ca.crt"

    @property
    def registries(self) -> tuple[tuple[str, str], ...]:
        """(registry, upstream server) for every hosts.toml: the four public ones and the
        cluster registry itself (whose upstream is its own name)."""
        return (*UPSTREAMS, (self.spec.endpoint, f"{self.scheme}://{self.spec.endpoint}"))

    @property
    def marker(self) -> str:
        return f"# written by sealer for cluster {self.cluster}: the cluster registry {self.spec.endpoint}"


def hosts_toml(mirrors: MirrorSet, registry: str, server: str) -> str:
    """containerd's hosts.toml for `registry`: every endpoint with pull and resolve, then `server`."""
    lines = [mirrors.marker, f'server = "{server}"']
    if registry == mirrors.spec.endpoint:  # the fallback is the cluster registry by its name
        lines += _host_settings(mirrors, "")
    for endpoint in mirrors.endpoints:
        url = f"{mirrors.scheme}://{endpoint}"
        lines += ["", f'[host."{url}"]', '  capabilities = ["pull", "resolve"]']
        lines += _host_settings(mirrors, f'host."{url}".', indent="  ")
    return "\n".join(lines) + "\n"


def _host_settings(mirrors: MirrorSet, table: str, indent: str = "") -> list[str]:
    out = []
    if mirrors.ca_file:
        out.append(f'{indent}ca = "{mirrors.ca_file}"')
    if mirrors.spec.insecure:
        out.append(f"{indent}skip_verify = true")  # containerd's docs pair it with http hosts
    if mirrors.spec.has_auth:
        out += [f"{indent}[{table}header]", f'{indent}  Authorization = ["Basic {SECRET_PLACEHOLDER}"]']
    return out


def k3s_registries(mirrors: MirrorSet) -> str:
    """/etc/rancher/k3s/registries.yaml: each registry mirrored to every endpoint; per endpoint
    (and the cluster registry's name) the CA and the credentials."""
    urls = [f"{mirrors.scheme}://{e}" for e in mirrors.endpoints]
    lines = [mirrors.marker, "mirrors:"]
    for registry, _ in mirrors.registries:
        lines += [f"  {json.dumps(registry)}:", f"    endpoint: {json.dumps(urls)}"]
    settings = []
    if mirrors.ca_file:
        settings += ["    tls:", f"      ca_file: {json.dumps(mirrors.ca_file)}"]
    if mirrors.spec.has_auth:
        settings += ["    auth:", f'      auth: "{SECRET_PLACEHOLDER}"']
    if settings:
        lines.append("configs:")
        for host in dict.fromkeys((*mirrors.endpoints, mirrors.spec.endpoint)):
            lines += [f"  {json.dumps(host)}:", *settings]
    return "\n".join(lines) + "\n"


def k0s_dropin(mirrors: MirrorSet) -> str:
    """/etc/k0s/containerd.d/sealer-registry.toml: k0s's containerd reads the same certs.d."""
    return "\n".join(
        [
            mirrors.marker,
            "version = 2",
            "",
            '[plugins."io.containerd.grpc.v1.cri".registry]',
            f'  config_path = "{CERTS_D}"',
            "",
        ]
    )


def kubelet_config_json(spec: RegistrySpec) -> str:
    """The kubelet's config.json: the cluster registry's credentials, for its name only (never
    for docker.io and the other mirrored names: a kubelet would send them upstream too)."""
    return json.dumps({"auths": {spec.endpoint: {"auth": SECRET_PLACEHOLDER}}}, indent=2) + "\n"


def write_file_command(path: str, text: str, mode: int) -> str:
    """Shell: `text` into `path` with `mode`, through a temp file in the same directory and a
    rename (containerd reads hosts.toml on every pull: never a half-written one). The
    SECRET_PLACEHOLDER in `text` becomes the step's $SEALER_REGISTRY_AUTH, never a literal."""
    parts = []
    for i, piece in enumerate(text.split(SECRET_PLACEHOLDER)):
        if i:
            parts.append(f'printf %s "${SECRET_ENV}"')
        if piece:
            parts.append(f"printf %s {shlex.quote(piece)}")
    q = shlex.quote(path)
    directory = shlex.quote(path.rsplit("/", 1)[0])
    return (
        f"mkdir -p {directory} && tmp=$(mktemp {q}.XXXXXX) && "
        f'{{ {{ {"; ".join(parts)}; }} > "$tmp" && chmod {mode:04o} "$tmp" && mv -f "$tmp" {q}; }} '
        f'|| {{ rm -f "$tmp"; exit 1; }}'
    )


def shown_file(path: str, text: str, mode: int) -> list[str]:
    """A dry-run's view of `write_file_command`: the path, the mode and the text as written
    (the secret still a placeholder)."""
    return [f"write {path} ({mode:04o}):", *(f"    {line}" for line in text.rstrip("\n").split("\n"))]


def shown_ca(paths: Sequence[str]) -> str:
    """A dry-run's view of the CA's writes (the PEM is kept in the cluster's state)."""
    return f"write {' and '.join(paths)} (0644): the cluster registry's CA"
