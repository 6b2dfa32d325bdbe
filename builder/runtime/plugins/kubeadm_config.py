"""The kubeadm configuration: master0's /etc/kubernetes/kubeadm.yaml (InitConfiguration,
ClusterConfiguration, KubeletConfiguration, KubeProxyConfiguration) and each joining host's
JoinConfiguration, made from the image's etc/kubeadm.yaml with the Clusterfile's documents of
the same kinds deep-merged over it, then the fields the runtime relies on: the host's advertise
address and node IP, certSANs with apiserver.cluster.local, every master and 127.0.0.1,
controlPlaneEndpoint apiserver.cluster.local:6443 unless set, the audit flags and volumes when
the image ships an audit policy, and discovery through the minted token. Pure: no shell runs here
but the here-document that writes a file."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import yaml

from builder.errors import KubeadmConfigError
from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.container_runtime import DOCKER, DOCKERSHIM_SOCKET, cri_socket
from builder.runtime.plugins._config import audit_args, child_mapping, deep_merge
from builder.runtime.plugins._kubeadm import (
    API_PORT,
    CA_CERT_HASH,
    CERTIFICATE_KEY,
    ENDPOINT,
    JOIN_TOKEN,
    KUBE_VERSION,
    ROOTFS_CONFIG,
)
from builder.runtime.plugins.base import output_ref

AUDIT_POLICY_FILE = "/etc/kubernetes/audit-policy.yml"  # where sealer's kubeadm.yml mounts it
AUDIT_LOG_DIR = "/var/log/kubernetes"
AUDIT_LOG = f"{AUDIT_LOG_DIR}/audit.log"

KUBEADM_GROUP = "kubeadm.k8s.io"
DEFAULT_KUBEADM_VERSION = "kubeadm.k8s.io/v1beta3"  # understood by kubeadm 1.22 to 1.34
KUBEADM_KINDS = ("InitConfiguration", "ClusterConfiguration", "JoinConfiguration")
COMPONENT_KINDS = {
    "KubeletConfiguration": "kubelet.config.k8s.io",
    "KubeProxyConfiguration": "kubeproxy.config.k8s.io",
}
INIT_KINDS = ("InitConfiguration", "ClusterConfiguration", *COMPONENT_KINDS)


def _group(api_version: object) -> str:
    return str(api_version).partition("/")[0]


def _is_ours(doc: Mapping[str, object]) -> bool:
    """A kubeadm, kubelet or kube-proxy document (the Clusterfile also holds others')."""
    kind, group = doc.get("kind"), _group(doc.get("apiVersion"))
    if group == KUBEADM_GROUP:
        return kind in KUBEADM_KINDS
    return isinstance(kind, str) and COMPONENT_KINDS.get(kind) == group


def _image_documents(text: str | None, source: str = ROOTFS_CONFIG) -> list[dict[str, Any]]:
    # A copy of one parse per text: the plan asks once per joining host, and parsing the same
    # file 5000 times was 80% of a 5000-host dry-run; callers merge into what they get.
    return copy.deepcopy(_parse_image_documents(text, source)) if text is not None else []


@functools.lru_cache(maxsize=4)
def _parse_image_documents(text: str, source: str = ROOTFS_CONFIG) -> list[dict[str, Any]]:
    where = f"the image's {source}"
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise KubeadmConfigError(f"{where} is not YAML: {err}") from None
    for i, doc in enumerate(docs, 1):
        if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
            raise KubeadmConfigError(f"{where}: document {i} is not a mapping with apiVersion and kind")
        if not _is_ours(doc):
            raise KubeadmConfigError(
                f"{where}: document {i} is {doc.get('apiVersion')}/{doc['kind']}, which kubeadm does not read",
                hint="it may hold InitConfiguration, ClusterConfiguration, JoinConfiguration, "
                "KubeletConfiguration and KubeProxyConfiguration",
            )
    return docs


def merged_documents(
    cluster: Cluster, image_text: str | None, source: str = ROOTFS_CONFIG
) -> dict[str, dict[str, Any]]:
    """kind -> document: the image's defaults with the Clusterfile's documents of the same kind
    deep-merged over them, in the image's order, then kinds only the Clusterfile has.

    A kind given twice on one side is an error, and so are kubeadm documents of two API
    versions: v1beta3 and v1beta4 spell fields differently (extraArgs is a map in one and a list
    in the other), so merging across them would write a file kubeadm rejects."""
    out: dict[str, dict[str, Any]] = {}
    for where, docs in (
        (f"the image's {source}", _image_documents(image_text, source)),
        ("the Clusterfile", [dict(d) for d in cluster.documents if _is_ours(d)]),
    ):
        seen: set[str] = set()
        for doc in docs:
            kind = str(doc["kind"])
            if kind in seen:
                raise KubeadmConfigError(f"{where} has two {kind} documents; at most one")
            seen.add(kind)
            old = out.get(kind)
            if old is not None and old.get("apiVersion") != doc.get("apiVersion"):
                raise KubeadmConfigError(
                    f"{kind}: the Clusterfile's apiVersion {doc.get('apiVersion')} differs from "
                    f"{old.get('apiVersion')} in the image's {source}",
                    hint="write the Clusterfile's kubeadm documents in the image's apiVersion",
                )
            out[kind] = deep_merge(old, doc) if old is not None else doc
    versions = {d["apiVersion"] for d in out.values() if _group(d.get("apiVersion")) == KUBEADM_GROUP}
    if len(versions) > 1:
        raise KubeadmConfigError(
            f"kubeadm documents of several API versions: {', '.join(sorted(versions))}",
            hint="kubeadm reads one version at a time; use the one of the image's etc/kubeadm.yaml",
        )
    return out


def kubeadm_version(docs: Mapping[str, Mapping[str, Any]]) -> str:
    for doc in docs.values():
        if _group(doc.get("apiVersion")) == KUBEADM_GROUP:
            return str(doc["apiVersion"])
    return DEFAULT_KUBEADM_VERSION


def _node_registration(doc: dict[str, Any], host: HostSpec, v1beta3: bool) -> None:
    """The kubelet's --node-ip is the host's address unless the user set it: the default-route
    interface is not always the cluster's, and nodes are found by INTERNAL-IP below."""
    kind = doc["kind"]
    reg = child_mapping(doc, "nodeRegistration", kind, KubeadmConfigError)
    args = reg.get("kubeletExtraArgs")
    if v1beta3:  # a map of flag -> value
        extra = dict(args or {})
        if not isinstance(args, Mapping | None):
            raise KubeadmConfigError(f"{kind}.nodeRegistration.kubeletExtraArgs must be a mapping in v1beta3")
        extra.setdefault("node-ip", host.ip)
        reg["kubeletExtraArgs"] = extra
    else:  # v1beta4: a list of {name, value}
        if not isinstance(args, list | None):
            raise KubeadmConfigError(f"{kind}.nodeRegistration.kubeletExtraArgs must be a list in v1beta4")
        listed = list(args or [])
        if not any(isinstance(a, Mapping) and a.get("name") == "node-ip" for a in listed):
            listed.append({"name": "node-ip", "value": host.ip})
        reg["kubeletExtraArgs"] = listed


def _cri_socket(doc: dict[str, Any], cluster: Cluster) -> None:
    """spec.containerRuntime.type, when the Clusterfile gives one, decides the kubelet's CRI
    socket over the image's and the user's criSocket (container_runtime.check_container_runtime
    has checked the image runs it); kubeadm passes it on as --container-runtime-endpoint."""
    socket = cri_socket(cluster)
    if socket is None:
        return
    registration = child_mapping(doc, "nodeRegistration", doc["kind"], KubeadmConfigError)
    own = str(registration.get("criSocket", ""))
    if cluster.container_runtime == DOCKER and own.endswith(DOCKERSHIM_SOCKET):
        return  # an image of Kubernetes < 1.24: its kubelet's own dockershim serves Docker Engine
    registration["criSocket"] = socket


def _audit(api_server: dict[str, Any], v1beta3: bool) -> None:
    """The audit flags and the two hostPath volumes of sealer's kubeadm.yml (the policy file,
    read-only; the log dir, created if missing), each only where the user's merged
    ClusterConfiguration has not set that flag or a volume of that name or mount path: the
    Clusterfile's values win, as everywhere in the merge."""
    where = "ClusterConfiguration.apiServer"
    args = api_server.get("extraArgs")
    wanted = audit_args(AUDIT_POLICY_FILE, AUDIT_LOG)
    if v1beta3:  # a map of flag -> value
        if not isinstance(args, Mapping | None):
            raise KubeadmConfigError(f"{where}.extraArgs must be a mapping in v1beta3")
        extra = dict(args or {})
        for name, value in wanted:
            extra.setdefault(name, value)
        api_server["extraArgs"] = extra
    else:  # v1beta4: a list of {name, value}
        if not isinstance(args, list | None):
            raise KubeadmConfigError(f"{where}.extraArgs must be a list in v1beta4")
        listed = list(args or [])
        named = {a.get("name") for a in listed if isinstance(a, Mapping)}
        listed += [{"name": n, "value": v} for n, v in wanted if n not in named]
        api_server["extraArgs"] = listed
    volumes = api_server.get("extraVolumes")
    if not isinstance(volumes, list | None):
        raise KubeadmConfigError(f"{where}.extraVolumes must be a list")
    mounts = list(volumes or [])
    taken = {v.get(k) for v in mounts if isinstance(v, Mapping) for k in ("name", "mountPath")}
    for volume in (
        {"name": "audit-policy", "hostPath": AUDIT_POLICY_FILE, "mountPath": AUDIT_POLICY_FILE,
         "readOnly": True, "pathType": "File"},
        {"name": "audit-log", "hostPath": AUDIT_LOG_DIR, "mountPath": AUDIT_LOG_DIR,
         "pathType": "DirectoryOrCreate"},
    ):  # fmt: skip
        if volume["name"] not in taken and volume["mountPath"] not in taken:
            mounts.append(volume)
    api_server["extraVolumes"] = mounts


def init_documents(
    cluster: Cluster,
    host: HostSpec,
    image_text: str | None,
    *,
    audit: bool = False,
    source: str = ROOTFS_CONFIG,
) -> list[dict[str, Any]]:
    """The documents of master0's /etc/kubernetes/kubeadm.yaml, in the order kubeadm prints them.
    `audit`: the image ships statics/audit-policy.yml, so the API server audits with it.

    kubernetesVersion, when neither the image nor the Clusterfile sets it, is the placeholder of
    the output `kube-version` (the image's kubeadm's own version): unset, kubeadm would try to
    look up the latest release on the internet before falling back to it."""
    docs = merged_documents(cluster, image_text, source)
    version = kubeadm_version(docs)
    v1beta3 = not version.endswith("/v1beta4")  # v1beta2 (sealer's images) spells maps as v1beta3
    init = docs.get("InitConfiguration") or {"apiVersion": version, "kind": "InitConfiguration"}
    endpoint = child_mapping(init, "localAPIEndpoint", "InitConfiguration", KubeadmConfigError)
    endpoint["advertiseAddress"] = host.ip
    endpoint.setdefault("bindPort", API_PORT)
    _node_registration(init, host, v1beta3)
    _cri_socket(init, cluster)
    docs["InitConfiguration"] = init

    conf = docs.get("ClusterConfiguration") or {"apiVersion": version, "kind": "ClusterConfiguration"}
    if "kubernetesVersion" not in conf:  # shown beside apiVersion and kind, where kubeadm prints it
        head: dict[str, Any] = {k: conf[k] for k in ("apiVersion", "kind") if k in conf}
        conf = {**head, "kubernetesVersion": output_ref(KUBE_VERSION), **conf}
    conf.setdefault("controlPlaneEndpoint", f"{ENDPOINT}:{API_PORT}")
    api_server = child_mapping(conf, "apiServer", "ClusterConfiguration", KubeadmConfigError)
    sans = api_server.get("certSANs") or []
    if not isinstance(sans, list):
        raise KubeadmConfigError("ClusterConfiguration.apiServer.certSANs must be a list")
    required = [ENDPOINT, *(m.ip for m in cluster.masters), "127.0.0.1"]
    api_server["certSANs"] = [*sans, *(s for s in required if s not in sans)]
    if audit:
        _audit(api_server, v1beta3)
    docs["ClusterConfiguration"] = conf
    return [docs[kind] for kind in INIT_KINDS if kind in docs]


def join_document(
    cluster: Cluster, host: HostSpec, image_text: str | None, source: str = ROOTFS_CONFIG
) -> dict[str, Any]:
    """The JoinConfiguration of `host`: discovery by the minted token and CA hash through the
    stable endpoint and, for a master, the control plane with the minted certificate key.
    Discovery is always ours (a user's discovery.file would conflict with the token)."""
    docs = merged_documents(cluster, image_text, source)
    version = kubeadm_version(docs)
    join = docs.get("JoinConfiguration") or {"apiVersion": version, "kind": "JoinConfiguration"}
    join["discovery"] = {
        **{k: v for k, v in dict(join.get("discovery") or {}).items() if k not in ("file", "bootstrapToken")},
        "bootstrapToken": {
            "apiServerEndpoint": f"{ENDPOINT}:{API_PORT}",
            "token": output_ref(JOIN_TOKEN),
            "caCertHashes": [output_ref(CA_CERT_HASH)],
        },
    }
    _node_registration(join, host, not version.endswith("/v1beta4"))
    _cri_socket(join, cluster)
    if host.is_master:
        plane = child_mapping(join, "controlPlane", "JoinConfiguration", KubeadmConfigError)
        endpoint = child_mapping(
            plane, "localAPIEndpoint", "JoinConfiguration.controlPlane", KubeadmConfigError
        )
        endpoint["advertiseAddress"] = host.ip
        endpoint.setdefault("bindPort", API_PORT)
        plane["certificateKey"] = output_ref(CERTIFICATE_KEY)
    else:
        join.pop("controlPlane", None)
    return join


def render_documents(docs: Iterable[Mapping[str, Any]]) -> str:
    """YAML for a quoted here-document. Every line yaml writes for a mapping starts with a key
    or is indented, so none can be the bare end marker; placeholders stay single-quoted YAML
    strings, and the values put there (token, sha256:hash, hex key, version) need no escaping."""
    return "---\n".join(
        yaml.safe_dump(dict(d), sort_keys=False, default_flow_style=False, width=float("inf")) for d in docs
    )


def cluster_with_cert_sans(cluster: Cluster, sans: Sequence[str], image_files: Mapping[str, str]) -> Cluster:
    """The Clusterfile's ClusterConfiguration with `sans` in apiServer.certSANs (after the
    image's and the Clusterfile's own): every later init, join and upgrade writes them."""
    merged = merged_documents(cluster, image_files.get(ROOTFS_CONFIG))
    conf = merged.get("ClusterConfiguration") or {}
    old = child_mapping(dict(conf), "apiServer", "ClusterConfiguration", KubeadmConfigError).get("certSANs")
    if old is not None and not isinstance(old, list):
        raise KubeadmConfigError("ClusterConfiguration.apiServer.certSANs must be a list")
    kept = [str(s) for s in old or ()]
    wanted = [*kept, *(s for s in sans if s not in kept)]
    version = kubeadm_version(merged)
    docs: list[Mapping[str, object]] = []
    found = False
    for doc in cluster.documents:
        if _is_ours(doc) and doc.get("kind") == "ClusterConfiguration":
            new = dict(doc)
            api = child_mapping(new, "apiServer", "ClusterConfiguration", KubeadmConfigError)
            api["certSANs"] = wanted
            docs.append(new)
            found = True
        else:
            docs.append(doc)
    if not found:
        docs.append(
            {"apiVersion": version, "kind": "ClusterConfiguration", "apiServer": {"certSANs": wanted}}
        )
    return replace(cluster, documents=tuple(docs))
