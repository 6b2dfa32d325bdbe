"""The `kubernetes` runtime: kubeadm, as its docs give an air-gapped install, phase by phase
(kubernetes.io/docs/setup/production-environment/tools/kubeadm/, "without a package manager").

What the basefs rootfs holds (the user supplies the upstream files; nothing is downloaded):

    bin/kubeadm, bin/kubelet, bin/kubectl     -> /usr/local/bin/
    etc/systemd/kubelet.service               -> /etc/systemd/system/kubelet.service
    etc/systemd/10-kubeadm.conf               -> /etc/systemd/system/kubelet.service.d/
    images/*.tar                              `ctr -n k8s.io images import`, on every host
    etc/kubeadm.yaml                          kubeadm defaults, merged with the Clusterfile's

The container runtime (containerd, runc, crictl, CNI plugins) and the /etc/hosts entry for
apiserver.cluster.local are the basefs `scripts/init.sh`'s, which runs before this plugin.

The binaries go to /usr/local/bin, as the kubeadm guide does without a package manager
(DOWNLOAD_DIR=/usr/local/bin, with the unit files' /usr/bin rewritten): /usr/bin belongs to the
distribution's packages, and on the test hosts /usr/local/bin is the one private bin dir.

master0 runs `kubeadm init --config /etc/kubernetes/kubeadm.yaml --upload-certs`; that file is
the image's etc/kubeadm.yaml with the Clusterfile's kubeadm, kubelet and kube-proxy documents
deep-merged over it, then the fields this runtime relies on: the host's advertise address,
certSANs with apiserver.cluster.local, every master and 127.0.0.1, controlPlaneEndpoint
apiserver.cluster.local:6443 unless set. Just before each join, master0 mints a one-hour token,
prints the CA public key hash and, for a master, re-uploads the control-plane certificates with
a fresh certificate key; all three are named outputs that reach the joining host only inside its
JoinConfiguration (a 0600 file, removed after the join).

Resumable at any point of failure (a re-run skips journaled steps; credentials are never
journaled, so each attempt mints its own). `kubeadm init` and `kubeadm join` each run in one step
that first looks at what an earlier attempt of it left: kubeadm's preflight refuses a second try
over its own files (kubelet.conf, bootstrap-kubelet.conf, pki/ca.crt, manifests, the kubelet's
port), so those are undone the upstream way, `kubeadm reset -f`. Before that, a master deletes
the Node its attempt registered, through the admin.conf that attempt got: kubeadm join refuses a
name whose Node is still Ready, and reset keeps the Node (it does remove the etcd member). A
worker whose kubelet already registered is joined (kubeadm had only bootstrap-kubelet.conf left to
remove); a master is not (its etcd member and control-plane mark come after), so it starts over.
Preflight refuses those same files on the first attempt, so a reset only undoes sealer's own work.

A host leaves as `kubeadm reset` says: drain on master0, `kubeadm reset -f` on the host while
the cluster is up (a control-plane node removes its own etcd member), then `kubectl delete node`
on master0 (phase `delete-done`). Upgrades follow "Upgrading kubeadm clusters".

Over the house ~400 lines: the kubeadm configuration merge lives here with its only caller.
"""

from __future__ import annotations

import copy
import functools
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import yaml

from builder.errors import KubeadmConfigError
from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.plugins import base
from builder.runtime.plugins._config import (
    audit_args,
    child_mapping,
    deep_merge,
    has_audit_policy,
)
from builder.runtime.plugins.base import AUDIT_POLICY, HostContext, PluginStep, RuntimePlugin, output_ref

ENDPOINT = "apiserver.cluster.local"
API_PORT = 6443
BIN_DIR = "/usr/local/bin"
KUBEADM = f"{BIN_DIR}/kubeadm"
KUBELET = f"{BIN_DIR}/kubelet"
KUBECTL = f"{BIN_DIR}/kubectl"
ADMIN_CONF = "/etc/kubernetes/admin.conf"
ADMIN_KUBECTL = f"{KUBECTL} --kubeconfig {ADMIN_CONF}"  # kubectl as the cluster admin, on master0
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
BOOTSTRAP_CONF = "/etc/kubernetes/bootstrap-kubelet.conf"
CA_CERT = "/etc/kubernetes/pki/ca.crt"
MANIFESTS_DIR = "/etc/kubernetes/manifests"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
CONFIG_FILE = "/etc/kubernetes/kubeadm.yaml"
JOIN_CONFIG_FILE = "/etc/kubernetes/kubeadm-join.yaml"
CERT_CONFIG_FILE = "/etc/kubernetes/kubeadm-cert.yaml"  # `sealer cert`'s configuration
PKI_DIR = "/etc/kubernetes/pki"
CONTROL_PLANE_PODS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
STATIC_POD_CHECK_S = 20  # the kubelet's fileCheckFrequency: how long it takes to notice a manifest change
API_WAIT_S = 120  # how long a restarted API server has to answer /readyz
UNIT_FILE = "/etc/systemd/system/kubelet.service"
DROPIN_DIR = "/etc/systemd/system/kubelet.service.d"
DROPIN_FILE = f"{DROPIN_DIR}/10-kubeadm.conf"
AUDIT_POLICY_FILE = "/etc/kubernetes/audit-policy.yml"  # where sealer's kubeadm.yml mounts it
AUDIT_LOG_DIR = "/var/log/kubernetes"
AUDIT_LOG = f"{AUDIT_LOG_DIR}/audit.log"
CONTAINERD_NAMESPACE = "k8s.io"  # the namespace the CRI plugin (and so the kubelet) sees

ROOTFS_BINS = ("bin/kubeadm", "bin/kubelet", "bin/kubectl")
ROOTFS_UNIT = "etc/systemd/kubelet.service"
ROOTFS_DROPIN = "etc/systemd/10-kubeadm.conf"
ROOTFS_IMAGES = "images/*.tar"
ROOTFS_CONFIG = "etc/kubeadm.yaml"

# kubeadm's own preflight checks these too, but only once init or join has begun.
MASTER_PORTS = (6443, 2379, 2380, 10250, 10257, 10259)
WORKER_PORTS = (10250,)
# What `kubeadm init` or `kubeadm join` writes that its next run's preflight refuses (besides a
# non-empty manifests dir): files of an attempt that did not finish (FileAvailable checks; the
# kubelet, holding port 10250, runs only once its config.yaml exists).
KUBEADM_FILES = (ADMIN_CONF, KUBELET_CONF, BOOTSTRAP_CONF, CA_CERT, KUBELET_CONFIG)
# What another install leaves behind (the data dirs themselves are mount points on test hosts).
EXISTING = (
    *KUBEADM_FILES,
    "/usr/local/bin/k3s-uninstall.sh",
    "/usr/local/bin/k3s-agent-uninstall.sh",
    "/etc/systemd/system/k0scontroller.service",
    "/etc/systemd/system/k0sworker.service",
)

# Named outputs.
JOIN_TOKEN = "join-token"
CA_CERT_HASH = "ca-cert-hash"
CERTIFICATE_KEY = "certificate-key"
KUBE_VERSION = "kube-version"

TOKEN_TTL = "1h"  # one token serves a whole batch of workers, each importing images first
KUBEADM_GROUP = "kubeadm.k8s.io"
DEFAULT_KUBEADM_VERSION = "kubeadm.k8s.io/v1beta3"  # understood by kubeadm 1.22 to 1.34
KUBEADM_KINDS = ("InitConfiguration", "ClusterConfiguration", "JoinConfiguration")
COMPONENT_KINDS = {
    "KubeletConfiguration": "kubelet.config.k8s.io",
    "KubeProxyConfiguration": "kubeproxy.config.k8s.io",
}
INIT_KINDS = ("InitConfiguration", "ClusterConfiguration", *COMPONENT_KINDS)

_INIT_TIMEOUT_S = 600.0
_JOIN_TIMEOUT_S = 600.0
_DRAIN_TIMEOUT_S = 360.0
_HEREDOC_END = "SEALER_KUBEADM_EOF"


# --- /etc/kubernetes/kubeadm.yaml and the JoinConfiguration --------------------------------------


def _group(api_version: object) -> str:
    return str(api_version).partition("/")[0]


def _is_ours(doc: Mapping[str, object]) -> bool:
    """A kubeadm, kubelet or kube-proxy document (the Clusterfile also holds others')."""
    kind, group = doc.get("kind"), _group(doc.get("apiVersion"))
    if group == KUBEADM_GROUP:
        return kind in KUBEADM_KINDS
    return isinstance(kind, str) and COMPONENT_KINDS.get(kind) == group


def _image_documents(text: str | None) -> list[dict[str, Any]]:
    # A copy of one parse per text: the plan asks once per joining host, and parsing the same
    # file 5000 times was 80% of a 5000-host dry-run; callers merge into what they get.
    return copy.deepcopy(_parse_image_documents(text)) if text is not None else []


@functools.lru_cache(maxsize=4)
def _parse_image_documents(text: str) -> list[dict[str, Any]]:
    where = f"the image's {ROOTFS_CONFIG}"
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


def merged_documents(cluster: Cluster, image_text: str | None) -> dict[str, dict[str, Any]]:
    """kind -> document: the image's defaults with the Clusterfile's documents of the same kind
    deep-merged over them, in the image's order, then kinds only the Clusterfile has.

    A kind given twice on one side is an error, and so are kubeadm documents of two API
    versions: v1beta3 and v1beta4 spell fields differently (extraArgs is a map in one and a list
    in the other), so merging across them would write a file kubeadm rejects."""
    out: dict[str, dict[str, Any]] = {}
    for where, docs in (
        (f"the image's {ROOTFS_CONFIG}", _image_documents(image_text)),
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
                    f"{old.get('apiVersion')} in the image's {ROOTFS_CONFIG}",
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


def _kubeadm_version(docs: Mapping[str, Mapping[str, Any]]) -> str:
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
    cluster: Cluster, host: HostSpec, image_text: str | None, *, audit: bool = False
) -> list[dict[str, Any]]:
    """The documents of master0's /etc/kubernetes/kubeadm.yaml, in the order kubeadm prints them.
    `audit`: the image ships statics/audit-policy.yml, so the API server audits with it.

    kubernetesVersion, when neither the image nor the Clusterfile sets it, is the placeholder of
    the output `kube-version` (the image's kubeadm's own version): unset, kubeadm would try to
    look up the latest release on the internet before falling back to it."""
    docs = merged_documents(cluster, image_text)
    version = _kubeadm_version(docs)
    v1beta3 = version.endswith("/v1beta3")
    init = docs.get("InitConfiguration") or {"apiVersion": version, "kind": "InitConfiguration"}
    endpoint = child_mapping(init, "localAPIEndpoint", "InitConfiguration", KubeadmConfigError)
    endpoint["advertiseAddress"] = host.ip
    endpoint.setdefault("bindPort", API_PORT)
    _node_registration(init, host, v1beta3)
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


def join_document(cluster: Cluster, host: HostSpec, image_text: str | None) -> dict[str, Any]:
    """The JoinConfiguration of `host`: discovery by the minted token and CA hash through the
    stable endpoint and, for a master, the control plane with the minted certificate key.
    Discovery is always ours (a user's discovery.file would conflict with the token)."""
    docs = merged_documents(cluster, image_text)
    version = _kubeadm_version(docs)
    join = docs.get("JoinConfiguration") or {"apiVersion": version, "kind": "JoinConfiguration"}
    join["discovery"] = {
        **{k: v for k, v in dict(join.get("discovery") or {}).items() if k not in ("file", "bootstrapToken")},
        "bootstrapToken": {
            "apiServerEndpoint": f"{ENDPOINT}:{API_PORT}",
            "token": output_ref(JOIN_TOKEN),
            "caCertHashes": [output_ref(CA_CERT_HASH)],
        },
    }
    _node_registration(join, host, version.endswith("/v1beta3"))
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


def _heredoc(path: str, text: str, *, private: bool) -> str:
    """Shell: write `text` to `path`; `private`: created 0600 (the umask is the subshell's only)."""
    write = f"( umask 077 && cat > {path} )" if private else f"cat > {path}"
    return f"mkdir -p {path.rsplit('/', 1)[0]} && {write} <<'{_HEREDOC_END}'\n{text}{_HEREDOC_END}"


# --- shell pieces ------------------------------------------------------------------------------


def _path(ctx: HostContext, relative: str) -> str:
    return shlex.quote(f"{ctx.rootfs}/{relative}")


def _kubectl(args: str) -> str:
    return f"{ADMIN_KUBECTL} {args}"


def _on_node(ip: str, action: str, command: str) -> str:
    """Shell, on master0: `command` with $name set to the node with address `ip`
    (`base.on_node`); an unreachable API fails, a missing node is nothing to do."""
    return base.on_node(ADMIN_KUBECTL, ip, action, command)


def _drain(ip: str, *, force: bool) -> PluginStep:
    # `--force` only when the node leaves for good (kubeadm reset's guide); an upgrade's drain
    # (the upgrade guide's) stops at pods no controller would recreate.
    flags = "--ignore-daemonsets --delete-emptydir-data" + (" --force" if force else "") + " --timeout=300s"
    command = _on_node(ip, "drain", _kubectl(f'drain "$name" {flags}'))
    return PluginStep("kubeadm-drain", f"drain {ip}", command, timeout_s=_DRAIN_TIMEOUT_S)


def _version_check(ctx: HostContext) -> str:
    """Shell: refuse a downgrade, a major change or skipping a minor version, comparing the
    installed kubeadm with the image's (`kubeadm version -o short` prints v1.30.14)."""
    v = "sed 's/^v//; s/[+-].*//'"
    return (
        f"old=$({KUBEADM} version -o short | {v}); new=$({_path(ctx, ROOTFS_BINS[0])} version -o short | {v}); "
        "set -- $(echo \"$old.$new\" | tr . ' '); "
        "if [ $# -ne 6 ]; then echo \"kubeadm versions not understood: installed '$old', new '$new'\" >&2; exit 1; fi; "
        'if [ "$1" != "$4" ] || [ "$5" -lt "$2" ] || { [ "$5" -eq "$2" ] && [ "$6" -lt "$3" ]; }; '
        'then echo "kubernetes $old -> $new: a downgrade or a major change is not supported" >&2; exit 1; fi; '
        'if [ "$5" -gt $(($2 + 1)) ]; then echo "kubernetes $old -> $new: upgrade one minor version at a time" >&2; exit 1; fi; '
        'echo "kubernetes $old -> $new"'
    )


def _has_leftovers() -> str:
    """Shell condition: an earlier `kubeadm init` or `join` here did not finish, and left files
    that the next one's preflight refuses."""
    files = " || ".join(f"[ -e {f} ]" for f in KUBEADM_FILES)
    return f'{{ {files} || [ -n "$(ls -A {MANIFESTS_DIR} 2>/dev/null)" ]; }}'


def _undo_attempt(what: str, *, first: str = "") -> str:
    """Shell: when an earlier `what` left files, `first` (if any), then `kubeadm reset -f`, which
    kubeadm's docs give to revert a failed init or join (the files, the static pods, the
    kubelet's state; on a control plane its etcd member, while the cluster answers)."""
    return (
        f"if {_has_leftovers()}; then echo 'an earlier {what} did not finish: kubeadm reset -f'; "
        f"{first}{KUBEADM} reset -f || exit 1; fi"
    )


def _is_registered(ip: str) -> str:
    """Shell condition: the kubelet here has registered its Node, so the host has joined: its own
    kubelet.conf (a node may list nodes) finds a node with INTERNAL-IP `ip`."""
    return (
        f"[ -f {KUBELET_CONF} ] && nodes=$({KUBECTL} --kubeconfig {KUBELET_CONF} get nodes -o wide --no-headers)"
        f" && printf '%s\\n' \"$nodes\" | awk '$6 == \"{ip}\" {{found = 1}} END {{exit !found}}'"
    )


def _install_binaries(ctx: HostContext, names: Sequence[str]) -> str:
    sources = " ".join(_path(ctx, f"bin/{n}") for n in names)
    return f"install -m 0755 {sources} {BIN_DIR}/"


def _reset(*, best_effort: bool) -> PluginStep:
    """`kubeadm reset -f` (a control-plane node removes its own etcd member while the cluster
    answers); `best_effort` (deleting the whole cluster) goes on when it fails. A host without
    kubeadm has nothing to reset. `_uninstall` then removes what reset leaves of ours."""
    reset = f"{KUBEADM} reset -f"
    if best_effort:
        reset = f"{{ {reset} || echo 'kubeadm reset failed: continuing' >&2; }}"
    command = f"if [ -x {KUBEADM} ]; then {reset}; else echo 'no {KUBEADM}: nothing to reset'; fi"
    return PluginStep("kubeadm-reset", "kubeadm reset -f", command, timeout_s=_INIT_TIMEOUT_S)


def _uninstall() -> PluginStep:
    # The admin kubeconfig copy goes only when it is ours: it names the stable endpoint.
    kube_config = '"$HOME/.kube/config"'
    command = " && ".join(
        (
            "{ systemctl disable --now kubelet 2>/dev/null || true; }",
            f"rm -f {KUBEADM} {KUBELET} {KUBECTL} {UNIT_FILE} {DROPIN_FILE} {CONFIG_FILE} {JOIN_CONFIG_FILE}"
            f" {AUDIT_POLICY_FILE}",
            f"{{ rmdir {DROPIN_DIR} 2>/dev/null || true; }}",
            f"{{ if grep -qs 'server: https://{ENDPOINT}:{API_PORT}' {kube_config}; then rm -f {kube_config}; fi; }}",
            "systemctl daemon-reload",
        )
    )
    return PluginStep(
        "kubeadm-uninstall", "remove the kubeadm binaries, the kubelet unit and configs", command
    )


class KubernetesRuntime(RuntimePlugin):
    name: ClassVar[str] = "kubernetes"
    label: ClassVar[str | None] = "kubernetes"
    metadata_runtime: ClassVar[str | None] = "k8s"
    config_files: ClassVar[tuple[str, ...]] = (ROOTFS_CONFIG, AUDIT_POLICY)

    def commands(self, phase: str, ctx: HostContext) -> Sequence[PluginStep]:
        host = ctx.host
        if phase == base.PREFLIGHT:
            return self._preflight(ctx)
        if phase == base.INIT:
            return self._init(ctx) if ctx.is_master0 else ()
        if phase == base.JOIN_CREDENTIALS:
            return self._credentials(ctx)
        if phase == base.JOIN_MASTER:
            if ctx.is_master0 or not host.is_master:
                return ()
            return (*self._stage(ctx), self._join(ctx), self._admin_kubeconfig())
        if phase == base.JOIN_WORKER:
            return () if host.is_master else (*self._stage(ctx), self._join(ctx))
        if phase in (base.DELETE_MASTER, base.DELETE_WORKER):
            return self._delete(ctx)
        if phase == base.DELETE_DONE:
            subject = ctx.subject
            if not ctx.is_master0 or subject is None or subject.ip == host.ip:
                return ()
            delete = _on_node(subject.ip, "delete", _kubectl('delete node "$name"'))
            return (PluginStep("kubeadm-delete-node", f"delete node {subject.ip}", delete),)
        if phase == base.NODE_CONFIG:
            return base.node_config(ctx, ADMIN_KUBECTL, "kubeadm")
        if phase == base.RESET:
            return (_reset(best_effort=True), _uninstall())
        if phase == base.UPGRADE:
            return self._upgrade(ctx)
        if phase == base.UPGRADE_DONE:
            subject = ctx.subject or host
            if not ctx.is_master0:
                return ()
            uncordon = _on_node(subject.ip, "uncordon", _kubectl('uncordon "$name"'))
            return (PluginStep("kubeadm-uncordon", f"uncordon {subject.ip}", uncordon),)
        if phase == base.CERT:
            return self._cert(ctx)
        if phase == base.CERT_RENEW:
            return self._cert_renew(ctx)
        if phase == base.CERT_CHECK:
            if not host.is_master:
                return ()
            check = f"{KUBEADM} certs check-expiration"
            return (PluginStep("kubeadm-cert-check", check, check, output=base.cert_check_output(host.ip)),)
        if phase == base.KUBECONFIG:
            if not ctx.is_master0:
                return ()
            sed = f"sed -E 's#^([[:space:]]*server:).*#\\1 https://{ENDPOINT}:{API_PORT}#' {ADMIN_CONF}"
            return (
                PluginStep(
                    "kubeadm-kubeconfig",
                    f"admin kubeconfig for https://{ENDPOINT}:{API_PORT}",
                    sed,
                    output=base.KUBECONFIG_OUTPUT,
                ),
            )
        return ()

    def _preflight(self, ctx: HostContext) -> Sequence[PluginStep]:
        files = " && ".join(
            (
                *(f"test -x {_path(ctx, b)}" for b in ROOTFS_BINS),
                f"test -f {_path(ctx, ROOTFS_UNIT)}",
                f"test -f {_path(ctx, ROOTFS_DROPIN)}",
                f"ls {shlex.quote(ctx.rootfs)}/{ROOTFS_IMAGES} >/dev/null",
            )
        )
        existing = (
            f"for f in {' '.join(EXISTING)}; do "
            'if [ -e "$f" ]; then echo "$f exists: another cluster runtime is installed here" >&2; exit 1; fi; done; '
            f'if [ -n "$(ls -A {MANIFESTS_DIR} 2>/dev/null)" ]; then '
            f'echo "{MANIFESTS_DIR} is not empty: another cluster runtime is installed here" >&2; exit 1; fi'
        )
        ports = " ".join(str(p) for p in (MASTER_PORTS if ctx.host.is_master else WORKER_PORTS))
        free = (
            f"for p in {ports}; do "
            'if ss -Hltn "sport = :$p" | grep -q .; then echo "port $p is in use" >&2; exit 1; fi; done'
        )
        return (
            PluginStep(
                "kubeadm-preflight-files",
                "the basefs holds kubeadm, kubelet, kubectl, the kubelet unit and the images",
                files,
            ),
            PluginStep("kubeadm-preflight-existing", "no kubeadm, k3s or k0s install on the host", existing),
            PluginStep("kubeadm-preflight-ports", f"ports {ports} are free", free),
        )

    def _stage(self, ctx: HostContext) -> Sequence[PluginStep]:
        """Binaries, the kubelet unit (enabled, not started: kubeadm starts it once its config
        exists, as the guide's crash-looping kubelet would) and the images, on any joining host."""
        unit = " && ".join(
            (
                f"install -D -m 0644 {_path(ctx, ROOTFS_UNIT)} {UNIT_FILE}",
                f"install -D -m 0644 {_path(ctx, ROOTFS_DROPIN)} {DROPIN_FILE}",
                "systemctl daemon-reload",
                "systemctl enable kubelet",
            )
        )
        steps = [
            PluginStep(
                "kubeadm-binaries",
                f"kubeadm, kubelet and kubectl into {BIN_DIR}",
                _install_binaries(ctx, ("kubeadm", "kubelet", "kubectl")),
            ),
            PluginStep("kubelet-unit", f"kubelet unit and kubeadm drop-in into {DROPIN_DIR}", unit),
            self._images(ctx),
        ]
        if ctx.host.is_master and has_audit_policy(ctx.image_files):
            # every control-plane node's API server mounts it (the ClusterConfiguration is the
            # cluster's, so a joining master's static pod names it too)
            steps.append(
                PluginStep(
                    "kubeadm-audit-policy",
                    f"the image's audit policy into {AUDIT_POLICY_FILE}",
                    f"install -D -m 0600 {_path(ctx, AUDIT_POLICY)} {AUDIT_POLICY_FILE}",
                )
            )
        return tuple(steps)

    def _images(self, ctx: HostContext) -> PluginStep:
        command = (
            f"for f in {shlex.quote(ctx.rootfs)}/{ROOTFS_IMAGES}; do "
            f'ctr -n {CONTAINERD_NAMESPACE} images import "$f" || exit 1; done'
        )
        return PluginStep("kubeadm-images", "import the image tarballs into containerd", command)

    def _admin_kubeconfig(self) -> PluginStep:
        """kubectl on a master works as after `kubeadm init` by hand (the image's launch
        commands run `kubectl` there)."""
        command = f'mkdir -p "$HOME/.kube" && cp {ADMIN_CONF} "$HOME/.kube/config" && chmod 0600 "$HOME/.kube/config"'
        return PluginStep("kubeadm-admin-kubeconfig", "admin kubeconfig into $HOME/.kube/config", command)

    def _init(self, ctx: HostContext) -> Sequence[PluginStep]:
        docs = init_documents(
            ctx.cluster, ctx.host, ctx.image_files.get(ROOTFS_CONFIG), audit=has_audit_policy(ctx.image_files)
        )
        version = _version_step(
            docs, "kubeadm-version", "the image's kubeadm", f"{_path(ctx, ROOTFS_BINS[0])} version -o short"
        )
        init = f"{KUBEADM} init --config {CONFIG_FILE} --upload-certs"
        # a retry after a failed init resets first: nothing has joined yet (joins come after it)
        resumable = f"{_undo_attempt('kubeadm init')}; {init}"
        return (
            *self._stage(ctx),
            *version,
            PluginStep(
                "kubeadm-config",
                f"{CONFIG_FILE}: the image's defaults with the Clusterfile's documents",
                _heredoc(CONFIG_FILE, render_documents(docs), private=False),
            ),
            PluginStep("kubeadm-init", init, resumable, timeout_s=_INIT_TIMEOUT_S),
            self._admin_kubeconfig(),
        )

    def _credentials(self, ctx: HostContext) -> Sequence[PluginStep]:
        if not ctx.is_master0:
            return ()
        # The CA hash as the kubeadm join docs compute it (pkey, not rsa: an ECDSA CA works too).
        ca_hash = (
            f"pub=$(openssl x509 -pubkey -noout -in {CA_CERT}) && printf '%s\\n' \"$pub\""
            " | openssl pkey -pubin -outform der | openssl dgst -sha256 -hex | sed 's/^.* /sha256:/'"
        )
        steps = [
            PluginStep(
                "kubeadm-token",
                f"a bootstrap token valid {TOKEN_TTL}",
                f"{KUBEADM} token create --ttl {TOKEN_TTL}",
                output=JOIN_TOKEN,
            ),
            PluginStep("kubeadm-ca-hash", "the cluster CA's public key hash", ca_hash, output=CA_CERT_HASH),
        ]
        subject = ctx.subject
        if subject is not None and subject.is_master:
            upload = (
                f"out=$({KUBEADM} init phase upload-certs --upload-certs --config {CONFIG_FILE}) && "
                "printf '%s\\n' \"$out\" | tail -n 1"
            )
            steps.append(
                PluginStep(
                    "kubeadm-certificate-key",
                    "upload the control-plane certificates under a new certificate key",
                    upload,
                    output=CERTIFICATE_KEY,
                )
            )
        return tuple(steps)

    def _join(self, ctx: HostContext) -> PluginStep:
        """One step: write the JoinConfiguration and join, so that a retry re-mints the
        credentials (a journaled file-writing step would keep stale ones); the file holds
        secrets, so it is 0600 and goes once kubeadm has read it. The same step first resumes
        whatever an earlier attempt left (see the module docstring): a worker already registered
        is done; otherwise `kubeadm reset -f`, a master deleting its Node before."""
        host = ctx.host
        doc = join_document(ctx.cluster, host, ctx.image_files.get(ROOTFS_CONFIG))
        write = _heredoc(JOIN_CONFIG_FILE, render_documents((doc,)), private=True)
        first, _, body = write.partition("\n")
        join = f"{first} && {KUBEADM} join --config {JOIN_CONFIG_FILE}; status=$?; rm -f {JOIN_CONFIG_FILE}; exit $status"
        if host.is_master:
            # the admin.conf of the earlier attempt (kubeadm writes it before the kubelet starts,
            # so it is there whenever a Node is) reaches the cluster through the stable endpoint
            delete = _on_node(host.ip, "delete", _kubectl('delete node "$name"') + " || exit 1")
            parts = [_undo_attempt("kubeadm join", first=f"if [ -f {ADMIN_CONF} ]; then {delete}; fi; ")]
        else:
            # kubeadm removes the bootstrap kubeconfig (the token) once the kubelet has registered
            joined = (
                f"if {_is_registered(host.ip)}; then echo 'joined by an earlier attempt: the kubelet is registered'; "
                f"rm -f {BOOTSTRAP_CONF} {JOIN_CONFIG_FILE} && systemctl start kubelet; exit $?; fi"
            )
            parts = [joined, _undo_attempt("kubeadm join")]
        command = "; ".join((*parts, join)) + "\n" + body
        what = "as a control-plane node" if host.is_master else "as a worker"
        return PluginStep(
            "kubeadm-join", f"kubeadm join {ENDPOINT}:{API_PORT} {what}", command, timeout_s=_JOIN_TIMEOUT_S
        )

    def _delete(self, ctx: HostContext) -> Sequence[PluginStep]:
        subject = ctx.subject or ctx.host
        if ctx.host.ip == subject.ip:
            return (_reset(best_effort=False), _uninstall())
        if not ctx.is_master0:
            return ()
        return (_drain(subject.ip, force=True),)

    def _upgrade(self, ctx: HostContext) -> Sequence[PluginStep]:
        host, subject = ctx.host, ctx.subject
        if subject is not None and subject.ip != host.ip:
            # master0, for another host about to be upgraded: drain it first
            return (_drain(subject.ip, force=False),) if ctx.is_master0 else ()
        if ctx.is_master0:
            apply = f"{KUBEADM} upgrade apply -y $({KUBEADM} version -o short)"
            upgrade = PluginStep("kubeadm-upgrade", "kubeadm upgrade apply", apply, timeout_s=_INIT_TIMEOUT_S)
        else:
            upgrade = PluginStep(
                "kubeadm-upgrade",
                "kubeadm upgrade node",
                f"{KUBEADM} upgrade node",
                timeout_s=_INIT_TIMEOUT_S,
            )
        steps = [
            PluginStep(
                "kubeadm-upgrade-check", "no downgrade, at most one minor version", _version_check(ctx)
            ),
            PluginStep(
                "kubeadm-binary", f"the new kubeadm into {BIN_DIR}", _install_binaries(ctx, ("kubeadm",))
            ),
            self._images(ctx),
            upgrade,
        ]
        if ctx.is_master0:  # the others were drained by master0 before this
            steps.append(_drain(host.ip, force=False))
        steps += [
            PluginStep(
                "kubelet-binaries",
                f"the new kubelet and kubectl into {BIN_DIR}",
                _install_binaries(ctx, ("kubelet", "kubectl")),
            ),
            PluginStep(
                "kubelet-restart",
                "restart the kubelet",
                "systemctl daemon-reload && systemctl restart kubelet",
                timeout_s=_INIT_TIMEOUT_S,
            ),
        ]
        return tuple(steps)

    # --- cert: SANs added to the API server certificate (`sealer cert`) ---------------------------

    def with_cert_sans(
        self, cluster: Cluster, sans: Sequence[str], image_files: Mapping[str, str]
    ) -> Cluster:
        """The Clusterfile's ClusterConfiguration with `sans` in apiServer.certSANs (after the
        image's and the Clusterfile's own): every later init, join and upgrade writes them."""
        merged = merged_documents(cluster, image_files.get(ROOTFS_CONFIG))
        conf = merged.get("ClusterConfiguration") or {}
        old = child_mapping(dict(conf), "apiServer", "ClusterConfiguration", KubeadmConfigError).get(
            "certSANs"
        )
        if old is not None and not isinstance(old, list):
            raise KubeadmConfigError("ClusterConfiguration.apiServer.certSANs must be a list")
        kept = [str(s) for s in old or ()]
        wanted = [*kept, *(s for s in sans if s not in kept)]
        version = _kubeadm_version(merged)
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

    def _cert(self, ctx: HostContext) -> Sequence[PluginStep]:
        """On each master (one at a time), as "Reconfiguring a kubeadm cluster" does it: the
        cluster's configuration with the saved certSANs into CERT_CONFIG_FILE, the old
        apiserver.crt/key moved aside, `kubeadm init phase certs apiserver`, then the API server
        static pod restarted (its manifest moved out until the kubelet stops it, then back) and
        awaited. master0 first uploads the configuration (kubeadm-config), which `kubeadm
        upgrade` reads when it renews the certificate."""
        if not ctx.host.is_master:
            return ()
        docs = [
            d
            for d in init_documents(
                ctx.cluster,
                ctx.host,
                ctx.image_files.get(ROOTFS_CONFIG),
                audit=has_audit_policy(ctx.image_files),  # as init wrote it: upload-config replaces it
            )
            if d.get("kind") in ("InitConfiguration", "ClusterConfiguration")
        ]
        version = _version_step(
            docs, "kubeadm-cert-version", "the installed kubeadm's", f"{KUBEADM} version -o short"
        )
        sans = ", ".join(str(s) for s in docs[-1].get("apiServer", {}).get("certSANs", ()))
        steps = [
            *version,
            PluginStep(
                "kubeadm-cert-config",
                f"{CERT_CONFIG_FILE}: the cluster's configuration, certSANs {sans}",
                _heredoc(CERT_CONFIG_FILE, render_documents(docs), private=True),
            ),
        ]
        if ctx.is_master0:
            steps.append(
                PluginStep(
                    "kubeadm-cert-upload-config",
                    "upload the configuration with the new certSANs (kubeadm-config)",
                    f"{KUBEADM} init phase upload-config kubeadm --config {CERT_CONFIG_FILE}",
                )
            )
        old = " ".join(f"{PKI_DIR}/apiserver.{ext}" for ext in ("crt", "key"))
        regenerate = (
            f'for f in {old}; do if [ -f "$f" ]; then mv "$f" "$f.old" || exit 1; fi; done; '
            f"{KUBEADM} init phase certs apiserver --config {CERT_CONFIG_FILE}"
        )
        restart = _restart_static_pods(("kube-apiserver",), _file_check_s(ctx), ctx.host.ip)
        return (
            *steps,
            PluginStep(
                "kubeadm-cert-apiserver",
                "old apiserver.crt/key aside (*.old); kubeadm init phase certs apiserver",
                regenerate,
            ),
            PluginStep(
                "kubeadm-cert-restart",
                "restart the kube-apiserver static pod (manifest out, back) and wait until it is ready",
                restart,
                timeout_s=_INIT_TIMEOUT_S,
            ),
        )

    def _cert_renew(self, ctx: HostContext) -> Sequence[PluginStep]:
        """ "Manual certificate renewal": `kubeadm certs renew all`, then the control plane's
        static pods restarted (they read certificates only at start) and the admin kubeconfig
        copied again."""
        if not ctx.host.is_master:
            return ()
        return (
            PluginStep("kubeadm-cert-renew", "kubeadm certs renew all", f"{KUBEADM} certs renew all"),
            PluginStep(
                "kubeadm-cert-renew-restart",
                f"restart the static pods {', '.join(CONTROL_PLANE_PODS)} and wait for the API server",
                _restart_static_pods(CONTROL_PLANE_PODS, _file_check_s(ctx), ctx.host.ip),
                timeout_s=_INIT_TIMEOUT_S,
            ),
            self._admin_kubeconfig(),
        )


def _file_check_s(ctx: HostContext) -> int:
    """The kubelet's fileCheckFrequency (KubeletConfiguration; default 20s) in whole seconds:
    how long it takes to notice a static pod manifest come or go."""
    kubelet = merged_documents(ctx.cluster, ctx.image_files.get(ROOTFS_CONFIG)).get("KubeletConfiguration")
    text = str((kubelet or {}).get("fileCheckFrequency") or "")
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?", text) if text else None
    if parts is None or not any(parts.groups()):
        return STATIC_POD_CHECK_S
    minutes, seconds, millis = (int(g or 0) for g in parts.groups())
    return max(1, minutes * 60 + seconds + (millis + 999) // 1000)


def _restart_static_pods(names: Sequence[str], wait_s: int, ip: str) -> str:
    """Shell: the static pods `names` restarted as kubeadm's docs do it: their manifests moved
    out of manifests/ for the kubelet's file check period `wait_s` (it stops the pods), then
    back (it starts them again); then this master's own API server awaited (/readyz at its
    advertise address `ip`, which its certificate names; admin.conf's stable endpoint may be
    another master's)."""
    parked = "/etc/kubernetes/sealer-cert-parked"
    manifests = " ".join(f"{n}.yaml" for n in names)
    return (
        f"mkdir -p {parked} && for m in {manifests}; do "
        f'if [ -f {MANIFESTS_DIR}/"$m" ]; then mv {MANIFESTS_DIR}/"$m" {parked}/ || exit 1; fi; done; '
        f"sleep {wait_s}; for m in {manifests}; do "
        f'if [ -f {parked}/"$m" ]; then mv {parked}/"$m" {MANIFESTS_DIR}/ || exit 1; fi; done; '
        f"i=0; until {KUBECTL} --kubeconfig {ADMIN_CONF} --server https://{ip}:{API_PORT} get --raw /readyz "
        f">/dev/null 2>&1; do i=$((i + 1)); if [ $i -ge {API_WAIT_S} ]; then "
        f"echo 'the API server at {ip} is not ready after {API_WAIT_S}s' >&2; exit 1; fi; "
        "sleep 1; done"
    )


def _version_step(
    docs: Sequence[Mapping[str, Any]], step_id: str, whose: str, command: str
) -> tuple[PluginStep, ...]:
    """The step printing kubeadm's version into KUBE_VERSION, when a document waits for it."""
    if not any(d.get("kubernetesVersion") == output_ref(KUBE_VERSION) for d in docs):
        return ()
    return (PluginStep(step_id, f"{whose} version (kubernetesVersion)", command, output=KUBE_VERSION),)
