"""`sealer cert` on the kubeadm runtime, on each master (one at a time): SANs added to the API
server certificate ("Reconfiguring a kubeadm cluster"), every certificate renewed ("Manual
certificate renewal") and the expiry listed (`kubeadm certs check-expiration`). The API server
reads its certificates only at start, so each change ends with its static pod restarted the way
kubeadm's docs do it and this master's own API server awaited."""

from __future__ import annotations

import re
from collections.abc import Sequence

from builder.runtime.plugins import base
from builder.runtime.plugins._config import has_audit_policy
from builder.runtime.plugins._kubeadm import (
    ADMIN_CONF,
    API_PORT,
    INIT_TIMEOUT_S,
    KUBEADM,
    KUBECTL,
    MANIFESTS_DIR,
    ROOTFS_CONFIG,
    admin_kubeconfig_step,
    heredoc,
    version_step,
)
from builder.runtime.plugins.base import HostContext, PluginStep
from builder.runtime.plugins.kubeadm_config import init_documents, merged_documents, render_documents
from builder.runtime.plugins.kubeadm_sealer import image_config, init_documents_sealer
from builder.runtime.plugins.sealer_image import is_sealer_image

CERT_CONFIG_FILE = "/etc/kubernetes/kubeadm-cert.yaml"  # `sealer cert`'s configuration
PKI_DIR = "/etc/kubernetes/pki"
CONTROL_PLANE_PODS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
STATIC_POD_CHECK_S = 20  # the kubelet's fileCheckFrequency: how long it takes to notice a manifest change
API_WAIT_S = 120  # how long a restarted API server has to answer /readyz


def cert_steps(ctx: HostContext) -> Sequence[PluginStep]:
    """On each master (one at a time), as "Reconfiguring a kubeadm cluster" does it: the
    cluster's configuration with the saved certSANs into CERT_CONFIG_FILE, the old
    apiserver.crt/key moved aside, `kubeadm init phase certs apiserver`, then the API server
    static pod restarted (its manifest moved out until the kubelet stops it, then back) and
    awaited. master0 first uploads the configuration (kubeadm-config), which `kubeadm
    upgrade` reads when it renews the certificate."""
    if not ctx.host.is_master:
        return ()
    audit = has_audit_policy(ctx.image_files)  # as init wrote it: upload-config replaces it
    written = (
        init_documents_sealer(ctx, audit=audit)
        if is_sealer_image(ctx.image_files)
        else init_documents(ctx.cluster, ctx.host, ctx.image_files.get(ROOTFS_CONFIG), audit=audit)
    )
    docs = [d for d in written if d.get("kind") in ("InitConfiguration", "ClusterConfiguration")]
    version = version_step(
        docs, "kubeadm-cert-version", "the installed kubeadm's", f"{KUBEADM} version -o short"
    )
    sans = ", ".join(str(s) for s in docs[-1].get("apiServer", {}).get("certSANs", ()))
    steps = [
        *version,
        PluginStep(
            "kubeadm-cert-config",
            f"{CERT_CONFIG_FILE}: the cluster's configuration, certSANs {sans}",
            heredoc(CERT_CONFIG_FILE, render_documents(docs), private=True),
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
            timeout_s=INIT_TIMEOUT_S,
        ),
    )


def cert_renew_steps(ctx: HostContext) -> Sequence[PluginStep]:
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
            timeout_s=INIT_TIMEOUT_S,
        ),
        admin_kubeconfig_step(),
    )


def cert_check_steps(ctx: HostContext) -> Sequence[PluginStep]:
    """`kubeadm certs check-expiration` on each master, its output named after the master."""
    host = ctx.host
    if not host.is_master:
        return ()
    check = f"{KUBEADM} certs check-expiration"
    return (PluginStep("kubeadm-cert-check", check, check, output=base.cert_check_output(host.ip)),)


def _file_check_s(ctx: HostContext) -> int:
    """The kubelet's fileCheckFrequency (KubeletConfiguration; default 20s) in whole seconds:
    how long it takes to notice a static pod manifest come or go."""
    kubelet = merged_documents(ctx.cluster, *image_config(ctx)).get("KubeletConfiguration")
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
