"""What the kubeadm runtime's modules share (kubernetes.py, kubeadm_config.py, kubeadm_cert.py,
kubeadm_lb.py): where kubeadm, the kubelet and their files live on a host, the rootfs paths of the
basefs, the named outputs, and the small shell pieces every one of them writes (a here-document,
kubectl as the cluster admin, the admin kubeconfig copy, the kubeadm version step)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from builder.runtime.plugins import base
from builder.runtime.plugins._config import has_audit_policy
from builder.runtime.plugins.base import AUDIT_POLICY, STABLE_ENDPOINT, HostContext, PluginStep, output_ref

ENDPOINT = STABLE_ENDPOINT  # kubeadm's controlPlaneEndpoint host: every kubeconfig names it
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
UNIT_FILE = "/etc/systemd/system/kubelet.service"
DROPIN_DIR = "/etc/systemd/system/kubelet.service.d"
DROPIN_FILE = f"{DROPIN_DIR}/10-kubeadm.conf"
CONFIG_FILE = "/etc/kubernetes/kubeadm.yaml"
JOIN_CONFIG_FILE = "/etc/kubernetes/kubeadm-join.yaml"

ROOTFS_BINS = ("bin/kubeadm", "bin/kubelet", "bin/kubectl")
ROOTFS_CONFIG = "etc/kubeadm.yaml"

# Named outputs.
JOIN_TOKEN = "join-token"
CA_CERT_HASH = "ca-cert-hash"
CERTIFICATE_KEY = "certificate-key"
KUBE_VERSION = "kube-version"

CONTAINERD_NAMESPACE = "k8s.io"  # the namespace the CRI plugin (and so the kubelet) sees
ROOTFS_IMAGES = "images/*.tar"

INIT_TIMEOUT_S = 600.0  # kubeadm init, upgrade, reset and the static pods' restarts
_DRAIN_TIMEOUT_S = 360.0
_HEREDOC_END = "SEALER_KUBEADM_EOF"


def rootfs_path(ctx: HostContext, relative: str) -> str:
    """Shell: the quoted path of `relative` in the host's rootfs."""
    return shlex.quote(f"{ctx.rootfs}/{relative}")


def admin_kubectl(args: str) -> str:
    """Shell: kubectl `args` as the cluster admin (on a master)."""
    return f"{ADMIN_KUBECTL} {args}"


def heredoc(path: str, text: str, *, private: bool) -> str:
    """Shell: write `text` to `path`; `private`: created 0600 (the umask is the subshell's only)."""
    write = f"( umask 077 && cat > {path} )" if private else f"cat > {path}"
    return f"mkdir -p {path.rsplit('/', 1)[0]} && {write} <<'{_HEREDOC_END}'\n{text}{_HEREDOC_END}"


def admin_kubeconfig_step() -> PluginStep:
    """kubectl on a master works as after `kubeadm init` by hand (the image's launch commands
    run `kubectl` there)."""
    command = (
        f'mkdir -p "$HOME/.kube" && cp {ADMIN_CONF} "$HOME/.kube/config" && chmod 0600 "$HOME/.kube/config"'
    )
    return PluginStep("kubeadm-admin-kubeconfig", "admin kubeconfig into $HOME/.kube/config", command)


def version_step(
    docs: Sequence[Mapping[str, Any]], step_id: str, whose: str, command: str
) -> tuple[PluginStep, ...]:
    """The step printing kubeadm's version into KUBE_VERSION, when a document waits for it."""
    if not any(d.get("kubernetesVersion") == output_ref(KUBE_VERSION) for d in docs):
        return ()
    return (PluginStep(step_id, f"{whose} version (kubernetesVersion)", command, output=KUBE_VERSION),)


def on_node(ip: str, action: str, command: str) -> str:
    """Shell, on master0: `command` with $name set to the node with address `ip`
    (`base.on_node`); an unreachable API fails, a missing node is nothing to do."""
    return base.on_node(ADMIN_KUBECTL, ip, action, command)


def drain_step(ip: str, *, force: bool) -> PluginStep:
    # `--force` only when the node leaves for good (kubeadm reset's guide); an upgrade's drain
    # (the upgrade guide's) stops at pods no controller would recreate.
    flags = "--ignore-daemonsets --delete-emptydir-data" + (" --force" if force else "") + " --timeout=300s"
    command = on_node(ip, "drain", admin_kubectl(f'drain "$name" {flags}'))
    return PluginStep("kubeadm-drain", f"drain {ip}", command, timeout_s=_DRAIN_TIMEOUT_S)


def install_binaries(ctx: HostContext, names: Sequence[str]) -> str:
    sources = " ".join(rootfs_path(ctx, f"bin/{n}") for n in names)
    return f"install -m 0755 {sources} {BIN_DIR}/"


def binaries_step(ctx: HostContext) -> PluginStep:
    return PluginStep(
        "kubeadm-binaries",
        f"kubeadm, kubelet and kubectl into {BIN_DIR}",
        install_binaries(ctx, ("kubeadm", "kubelet", "kubectl")),
    )


def audit_policy_steps(ctx: HostContext, policy_file: str) -> tuple[PluginStep, ...]:
    """On a master of an image with an audit policy: it into `policy_file`. Every control-plane
    node's API server mounts it (the ClusterConfiguration is the cluster's, so a joining
    master's static pod names it too)."""
    if not (ctx.host.is_master and has_audit_policy(ctx.image_files)):
        return ()
    return (
        PluginStep(
            "kubeadm-audit-policy",
            f"the image's audit policy into {policy_file}",
            f"install -D -m 0600 {rootfs_path(ctx, AUDIT_POLICY)} {policy_file}",
        ),
    )


def images_step(ctx: HostContext) -> PluginStep:
    """`ctr import` of the image's container image tarballs, where the kubelet's CRI sees them."""
    command = (
        f"for f in {shlex.quote(ctx.rootfs)}/{ROOTFS_IMAGES}; do "
        f'ctr -n {CONTAINERD_NAMESPACE} images import "$f" || exit 1; done'
    )
    return PluginStep("kubeadm-images", "import the image tarballs into containerd", command)
