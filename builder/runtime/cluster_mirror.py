"""The cluster's state kept in the cluster: the ConfigMap kube-system/sealer-clusterfile.

sealer keeps the Clusterfile there (data key `Clusterfile`), so the cluster outlives the machine
that ran it. This implementation writes it after every run, apply, join, delete of some hosts,
upgrade and cert (phases/save_clusterfile.py), with every secret removed, and adds what an
importer needs besides (`sealer cluster import`, actions/import_state.py):

    Clusterfile          the saved Clusterfile without secrets (`public_clusterfile`): no SSH
                         passwd/pkPasswd (cluster and hosts), no registry password, no kubeadm
                         bootstrap tokens or certificate key. Key file paths (`pk`) stay: they
                         name files on the controller that wrote it
    state.json           image name and manifest digest, platform, runtime, KUBEVERSION, the
                         SANs `sealer cert` added, the -e env, the image ENV and plugins (what
                         delete needs once the image is gone)
    registry-ca.crt      the local registry's CA certificate and server certificate (public):
    registry-server.crt  hosts joined from an imported state trust the registry with them

What never leaves the controller that ran the cluster: the registry's CA key and server key
and its htpasswd (~/.sealer/<cluster>/registry/), the admin kubeconfig, SSH secrets, the
journal and host logs. A plain Clusterfile and env values are saved as they are (sealer does
the same): secrets do not belong in `env`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from builder.errors import ClusterError
from builder.image.digest import Digest
from builder.runtime.cluster import Cluster
from builder.runtime.clusterfile import dump_clusterfile
from builder.runtime.hooks import ShellHook
from builder.runtime.registry_pki import STATE_DIR as REGISTRY_DIR
from builder.runtime.registry_pki import RegistryMaterial

NAMESPACE = "kube-system"
NAME = "sealer-clusterfile"  # sealer's ClusterfileConfigMapName
CLUSTERFILE_KEY = "Clusterfile"  # sealer's ClusterfileConfigMapDataName
STATE_KEY = "state.json"
REGISTRY_CA_KEY = "registry-ca.crt"
REGISTRY_CERT_KEY = "registry-server.crt"
STATE_VERSION = 1
# The API server refuses a ConfigMap whose data is over 1 MiB (ValidateConfigMap checks the
# values' total against core.MaxSecretSize): said here, in the plan, not by master0 at the end.
MAX_CONFIGMAP_BYTES = 1 << 20

_SSH_SECRETS = ("passwd", "pkPasswd")
# Runtime documents' secrets, by kind: paths of keys removed (joins mint their own tokens).
_DOCUMENT_SECRETS: dict[str, tuple[tuple[str, ...], ...]] = {
    "InitConfiguration": (("bootstrapTokens",), ("certificateKey",)),
    "JoinConfiguration": (
        ("discovery", "bootstrapToken", "token"),
        ("discovery", "tlsBootstrapToken"),
        ("controlPlane", "certificateKey"),
    ),
}


@dataclass(frozen=True, slots=True)
class MirrorFacts:
    """What the ConfigMap keeps that neither the cluster nor the plan's image says: the SANs
    `sealer cert` added and the local registry's public certificates ("" when none)."""

    cert_sans: tuple[str, ...] = ()
    registry_ca_pem: str = ""
    registry_cert_pem: str = ""

    @classmethod
    def from_state_dir(cls, state_dir: Path, cert_sans: Sequence[str] = ()) -> MirrorFacts:
        """The facts of the cluster saved in `state_dir` (its registry/ certificates, if any)."""
        return cls(
            tuple(cert_sans),
            _read_text(state_dir / REGISTRY_DIR / "ca.crt"),
            _read_text(state_dir / REGISTRY_DIR / "server.crt"),
        )


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def _drop(mapping: Any, path: Sequence[str]) -> None:
    """Remove `path` from nested dicts, leaving no empty parent behind."""
    if not isinstance(mapping, dict) or not path:
        return
    if len(path) == 1:
        mapping.pop(path[0], None)
        return
    child = mapping.get(path[0])
    _drop(child, path[1:])
    if isinstance(child, dict) and not child:
        mapping.pop(path[0], None)


def imported_registry_material(
    state_dir: Path, cluster: Cluster, targets: Sequence[str]
) -> RegistryMaterial | None:
    """The registry material of a state made by `sealer cluster import`, which has the local
    registry's certificates but not the CA key (None: not such a state; registry_pki then
    loads or makes it). Hosts that only pull (every non-registry host) need no more: the CA
    to trust, and the credentials from the Clusterfile. A registry host among `targets` would
    need the server key, and a changed server certificate the CA key: both stay on the
    controller that ran the cluster, so that is a ClusterError before any host changes."""
    directory = state_dir / REGISTRY_DIR
    if cluster.registry.external or cluster.registry.insecure:
        return None
    if (directory / "ca.key").exists() or not (directory / "ca.crt").exists():
        return None
    serving = sorted(h.ip for h in cluster.registry_hosts if h.ip in set(targets))
    if serving:
        raise ClusterError(
            f"cluster {cluster.name} was imported: {', '.join(serving)} would serve its registry, "
            "whose keys stay on the controller that ran the cluster",
            hint=f"run this from that controller, or copy its ~/.sealer/{cluster.name}/registry/ to {directory}",
        )
    return RegistryMaterial(
        _read_text(directory / "ca.crt"), _read_text(directory / "server.crt"), "", None, changed=False
    )


def public_clusterfile(cluster: Cluster) -> str:
    """The Clusterfile of `cluster` with every secret removed (see the module docstring)."""
    docs = list(yaml.safe_load_all(dump_clusterfile(cluster)))
    spec = docs[0]["spec"]
    for key in _SSH_SECRETS:
        _drop(spec, ("ssh", key))
    for group in spec.get("hosts") or ():
        for key in _SSH_SECRETS:
            _drop(group, ("ssh", key))
    for kind in ("localRegistry", "externalRegistry"):
        _drop(spec, ("registry", kind, "password"))
    for doc in docs[1:]:
        for path in _DOCUMENT_SECRETS.get(str(doc.get("kind")), ()):
            _drop(doc, path)
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, default_flow_style=False)


@dataclass(frozen=True, slots=True)
class MirroredState:
    """state.json of the ConfigMap: what `sealer cluster import` puts in the local state.json."""

    image: str
    digest: Digest
    platform: str
    runtime: str
    kube_version: str = ""
    cert_sans: tuple[str, ...] = ()
    cli_env: Mapping[str, str] | None = None
    image_env: Mapping[str, str] | None = None
    image_hooks: tuple[ShellHook, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "image": self.image,
            "digest": str(self.digest),
            "platform": self.platform,
            "runtime": self.runtime,
            "kube_version": self.kube_version,
            "cert_sans": list(self.cert_sans),
            "cli_env": dict(self.cli_env or {}),
            "image_env": dict(self.image_env or {}),
            "image_hooks": [h.to_json() for h in self.image_hooks],
        }

    @classmethod
    def from_json(cls, obj: Any) -> MirroredState:
        """ValueError (with what is wrong) for anything this version did not write."""
        if not isinstance(obj, dict) or obj.get("version") != STATE_VERSION:
            raise ValueError(f"not a version {STATE_VERSION} state")
        if not Digest.is_valid(str(obj.get("digest"))):
            raise ValueError(f"invalid digest {obj.get('digest')!r}")
        return cls(
            image=str(obj["image"]),
            digest=Digest.parse(str(obj["digest"])),
            platform=str(obj.get("platform", "")),
            runtime=str(obj["runtime"]),
            kube_version=str(obj.get("kube_version", "")),
            cert_sans=tuple(str(s) for s in obj.get("cert_sans") or ()),
            cli_env={str(k): str(v) for k, v in dict(obj.get("cli_env") or {}).items()},
            image_env={str(k): str(v) for k, v in dict(obj.get("image_env") or {}).items()},
            image_hooks=tuple(ShellHook.from_json(h) for h in obj.get("image_hooks") or ()),
        )


def configmap(cluster: Cluster, state: MirroredState, facts: MirrorFacts) -> dict[str, Any]:
    """The ConfigMap object (as `kubectl create -f` and `replace -f` take it). ClusterError
    when it would be larger than the API server accepts."""
    data = {
        CLUSTERFILE_KEY: public_clusterfile(cluster),
        STATE_KEY: json.dumps(state.to_json(), indent=1, sort_keys=True) + "\n",
    }
    if facts.registry_ca_pem and not cluster.registry.external:
        data[REGISTRY_CA_KEY] = facts.registry_ca_pem
        data[REGISTRY_CERT_KEY] = facts.registry_cert_pem
    size = sum(len(k.encode()) + len(v.encode()) for k, v in data.items())
    if size > MAX_CONFIGMAP_BYTES:
        raise ClusterError(
            f"cluster {cluster.name}: its saved state is {size} bytes, more than the "
            f"{MAX_CONFIGMAP_BYTES} a ConfigMap may hold",
            hint="move large Plugin or Config documents into the image (plugins/, etc/)",
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "sealer"},
        },
        "data": data,
    }


def configmap_bytes(cluster: Cluster, state: MirroredState, facts: MirrorFacts) -> bytes:
    """`configmap` as the JSON sent to master0 (kubectl reads JSON as it reads YAML)."""
    return (json.dumps(configmap(cluster, state, facts), indent=1, sort_keys=True) + "\n").encode()


__all__ = [
    "CLUSTERFILE_KEY",
    "NAME",
    "NAMESPACE",
    "REGISTRY_CA_KEY",
    "REGISTRY_CERT_KEY",
    "STATE_KEY",
    "MirrorFacts",
    "MirroredState",
    "configmap",
    "configmap_bytes",
    "imported_registry_material",
    "public_clusterfile",
]
