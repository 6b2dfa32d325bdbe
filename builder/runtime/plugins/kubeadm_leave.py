"""A host leaving the kubeadm runtime, as `kubeadm reset`'s docs say: `kubeadm reset -f` (a
control-plane node removes its own etcd member while the cluster answers), then what the plugin
installed that reset leaves (binaries, the kubelet unit, its configs) and, on a worker, its local
API load balancer (kubeadm_endpoint.py). The drain before and the `kubectl delete node` after are
master0's (kubernetes.py)."""

from __future__ import annotations

from builder.runtime.cluster import HostSpec
from builder.runtime.plugins._kubeadm import (
    API_PORT,
    CONFIG_FILE,
    DROPIN_DIR,
    DROPIN_FILE,
    ENDPOINT,
    INIT_TIMEOUT_S,
    JOIN_CONFIG_FILE,
    KUBEADM,
    KUBECTL,
    KUBELET,
    UNIT_FILE,
)
from builder.runtime.plugins.base import PluginStep
from builder.runtime.plugins.kubeadm_config import AUDIT_POLICY_FILE
from builder.runtime.plugins.kubeadm_endpoint import lb_remove_step


def reset_step(*, best_effort: bool) -> PluginStep:
    """`kubeadm reset -f` (a control-plane node removes its own etcd member while the cluster
    answers); `best_effort` (deleting the whole cluster) goes on when it fails. A host without
    kubeadm has nothing to reset. `uninstall_step` then removes what reset leaves of ours."""
    reset = f"{KUBEADM} reset -f"
    if best_effort:
        reset = f"{{ {reset} || echo 'kubeadm reset failed: continuing' >&2; }}"
    command = f"if [ -x {KUBEADM} ]; then {reset}; else echo 'no {KUBEADM}: nothing to reset'; fi"
    return PluginStep("kubeadm-reset", "kubeadm reset -f", command, timeout_s=INIT_TIMEOUT_S)


def uninstall_step() -> PluginStep:
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


def leave_steps(host: HostSpec, *, best_effort: bool) -> tuple[PluginStep, ...]:
    """A host's own steps when it leaves: reset, uninstall and, on a worker, its load balancer."""
    steps = (reset_step(best_effort=best_effort), uninstall_step())
    return steps if host.is_master else (*steps, lb_remove_step())
