"""The `k3s` runtime: the k3s air-gap install (docs.k3s.io/installation/airgap), phase by phase.

What the basefs rootfs holds (the user supplies the upstream files; nothing is downloaded):

    bin/k3s                                   the k3s binary -> /usr/local/bin/k3s
    images/k3s-airgap-images-<arch>.tar.zst   -> /var/lib/rancher/k3s/agent/images/
    scripts/k3s-install.sh                    upstream install.sh, run with INSTALL_K3S_SKIP_DOWNLOAD=true
    etc/k3s/config.yaml, etc/k3s/registries.yaml (optional) -> /etc/rancher/k3s/

master0 starts the embedded etcd (`server --cluster-init`); the other servers join with
`server --server https://MASTER0:6443` and the server token; agents with the agent token and
K3S_URL=https://apiserver.cluster.local:6443, the stable endpoint (every server carries
`--tls-san apiserver.cluster.local`; the kubeconfig names it too). Both tokens are read on master0
just before use (named outputs, never literal).

HA for the agents is k3s's own: an agent's client load balancer (127.0.0.1:6444, which its
kubelet and kube-proxy use) learns every server from the cluster's `kubernetes` endpoints and
fails over between them; K3S_URL is only where it starts and what it falls back to. So no
haproxy here: the stable name in K3S_URL (not master0's address) keeps that fallback valid when
master0 is replaced or the name is pointed at a VIP.

Resumable at any point of failure (the runner journals finished steps and re-runs the rest):
the staging steps are plain copies, and the one step that takes a token is the one that acts
on it (install.sh writes it into the unit's env file and starts the service), so a re-run reads
the token on master0 again and rewrites the file. install.sh skips the start when the unit and
env file it writes equal what is there ("No change detected"): after install.sh was killed
having written them, or after k3s died before it was up, a plain re-run would journal the step
as done without (re)starting k3s: a master0 that never wrote its token file then fails every
re-run at the next join, and a joining host counts as joined without being. So every install
runs with INSTALL_K3S_FORCE_RESTART=true, upstream's switch for always restarting. k3s itself
takes such a host back: a server keeps its datastore and recovers its token from
server/cred/passwd, a server already added as an etcd member finds itself in the member list,
and a node keeps /etc/rancher/node/password, so the cluster accepts its name again.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import ClassVar

import yaml

from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.plugins import base
from builder.runtime.plugins._config import audit_args, has_audit_policy
from builder.runtime.plugins.base import AUDIT_POLICY, HostContext, PluginStep, RuntimePlugin, output_ref

ENDPOINT = base.STABLE_ENDPOINT
API_PORT = 6443
BIN = "/usr/local/bin/k3s"
IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
CONFIG_DIR = "/etc/rancher/k3s"
SERVER_TOKEN_FILE = "/var/lib/rancher/k3s/server/token"
AGENT_TOKEN_FILE = "/var/lib/rancher/k3s/server/agent-token"
KUBECONFIG_FILE = "/etc/rancher/k3s/k3s.yaml"
# `sealer cert`'s tls-san: a drop-in k3s merges into config.yaml (list values are replaced), so
# the image's config.yaml, copied over config.yaml by every upgrade, does not lose them
TLS_DIR = "/var/lib/rancher/k3s/server/tls"
CERT_DROPIN = "/etc/rancher/k3s/config.yaml.d/90-sealer-cert.yaml"
KUBECTL = f"{BIN} kubectl"  # k3s's embedded kubectl, admin through k3s.yaml on a server
SERVER_UNINSTALL = "/usr/local/bin/k3s-uninstall.sh"
AGENT_UNINSTALL = "/usr/local/bin/k3s-agent-uninstall.sh"

# k3s's CIS hardening guide's paths (k3s-uninstall.sh removes both with /var/lib/rancher/k3s)
AUDIT_POLICY_FILE = "/var/lib/rancher/k3s/server/audit.yaml"
AUDIT_LOG = "/var/lib/rancher/k3s/server/logs/audit.log"

ROOTFS_BIN = "bin/k3s"
ROOTFS_IMAGES = "images/k3s-airgap-images-*.tar*"
ROOTFS_INSTALL = "scripts/k3s-install.sh"
ROOTFS_CONFIG = "etc/k3s/config.yaml"
ROOTFS_REGISTRIES = "etc/k3s/registries.yaml"

# What another install leaves behind: the marker files of an installed k3s, kubeadm (on masters
# and workers) or k0s, never bare data dirs (/var/lib/k0s may exist empty: a mount point, or
# left by a reset).
EXISTING = (
    SERVER_UNINSTALL,
    AGENT_UNINSTALL,
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/kubelet.conf",
    "/etc/systemd/system/k0scontroller.service",
    "/etc/systemd/system/k0sworker.service",
)
SERVER_PORTS = (6443, 2379, 2380, 10250)
AGENT_PORTS = (10250,)

SERVER_TOKEN = "server-token"
AGENT_TOKEN = "agent-token"

_INSTALL_TIMEOUT_S = 600.0
_DRAIN_TIMEOUT_S = 360.0


def _path(ctx: HostContext, relative: str) -> str:
    return shlex.quote(f"{ctx.rootfs}/{relative}")


def _on_node(ip: str, action: str, command: str) -> str:
    """Shell: `command` with $name set to the node with address `ip` (`base.on_node`). An
    unreachable API fails the step (a k3s server whose node seems gone must not be uninstalled
    while still an etcd member); a missing node is nothing to do."""
    return base.on_node(KUBECTL, ip, action, command)


def _version_check(ctx: HostContext) -> str:
    """Shell: refuse a downgrade, a major change or skipping a minor version."""
    v = "awk 'NR == 1 {print $3}' | sed 's/^v//; s/[+-].*//'"
    return (
        f"old=$({BIN} --version | {v}); new=$({_path(ctx, ROOTFS_BIN)} --version | {v}); "
        "set -- $(echo \"$old.$new\" | tr . ' '); "
        "if [ $# -ne 6 ]; then echo \"k3s versions not understood: installed '$old', new '$new'\" >&2; exit 1; fi; "
        'if [ "$1" != "$4" ] || [ "$5" -lt "$2" ] || { [ "$5" -eq "$2" ] && [ "$6" -lt "$3" ]; }; '
        'then echo "k3s $old -> $new: a downgrade or a major change is not supported" >&2; exit 1; fi; '
        'if [ "$5" -gt $(($2 + 1)) ]; then echo "k3s $old -> $new: upgrade one minor version at a time" >&2; exit 1; fi; '
        'echo "k3s $old -> $new"'
    )


class K3sRuntime(RuntimePlugin):
    name: ClassVar[str] = "k3s"
    label: ClassVar[str | None] = "k3s"
    metadata_runtime: ClassVar[str | None] = "k3s"
    kubectl: ClassVar[str | None] = KUBECTL
    config_files: ClassVar[tuple[str, ...]] = (AUDIT_POLICY,)
    launch_env: ClassVar[Mapping[str, str]] = {"KUBECONFIG": KUBECONFIG_FILE}

    def commands(self, phase: str, ctx: HostContext) -> Sequence[PluginStep]:
        host = ctx.host
        if phase == base.PREFLIGHT:
            return self._preflight(ctx)
        if phase == base.INIT:
            if not ctx.is_master0:
                return ()
            return (*self._stage_files(ctx), self._install(ctx, "server --cluster-init", server=True))
        if phase == base.JOIN_CREDENTIALS:
            return self._credentials(ctx)
        if phase == base.JOIN_MASTER:
            if ctx.is_master0 or not host.is_master:
                return ()
            url = f"https://{ctx.cluster.master0.ip}:{API_PORT}"
            env = f"K3S_TOKEN={output_ref(SERVER_TOKEN)}"
            return (*self._stage_files(ctx), self._install(ctx, f"server --server {url}", True, env))
        if phase == base.JOIN_WORKER:
            if host.is_master:
                return ()
            url = f"https://{ENDPOINT}:{API_PORT}"  # the agent's load balancer learns every server
            env = f"K3S_URL={url} K3S_TOKEN={output_ref(AGENT_TOKEN)}"
            return (*self._stage_files(ctx), self._install(ctx, "agent", False, env))
        if phase in (base.DELETE_MASTER, base.DELETE_WORKER):
            return self._delete(ctx)
        if phase == base.RESET:
            return (self._uninstall(ctx, host, best_effort=True),)
        if phase == base.NODE_CONFIG:
            return base.node_config(ctx, KUBECTL, "k3s")
        if phase == base.UPGRADE:
            return self._upgrade(ctx)
        if phase == base.UPGRADE_DONE:
            subject = ctx.subject
            if not ctx.is_master0 or subject is None or subject.is_master:
                return ()
            uncordon = _on_node(subject.ip, "uncordon", f'{BIN} kubectl uncordon "$name"')
            return (PluginStep("k3s-uncordon", f"uncordon {subject.ip}", uncordon),)
        if phase == base.CERT:
            return self._cert(ctx)
        if phase == base.CERT_RENEW:
            if not host.is_master:
                return ()
            # upstream: `k3s certificate rotate` while k3s is stopped, then start it again
            rotate = f"systemctl stop k3s && {BIN} certificate rotate && systemctl start k3s"
            return (
                PluginStep(
                    "k3s-cert-rotate",
                    "stop k3s, k3s certificate rotate, start k3s",
                    rotate,
                    timeout_s=_INSTALL_TIMEOUT_S,
                ),
            )
        if phase == base.CERT_CHECK:
            if not host.is_master:
                return ()
            check = base.openssl_expiry(f"{TLS_DIR}/*.crt")
            return (
                PluginStep(
                    "k3s-cert-check",
                    f"expiry of {TLS_DIR}/*.crt",
                    check,
                    output=base.cert_check_output(host.ip),
                ),
            )
        if phase == base.KUBECONFIG:
            if not ctx.is_master0:
                return ()
            sed = f"sed 's#server: https://127.0.0.1:{API_PORT}#server: https://{ENDPOINT}:{API_PORT}#'"
            return (
                PluginStep(
                    "k3s-kubeconfig",
                    f"admin kubeconfig for https://{ENDPOINT}:{API_PORT}",
                    f"{sed} {KUBECONFIG_FILE}",
                    output=base.KUBECONFIG_OUTPUT,
                ),
            )
        return ()

    def _preflight(self, ctx: HostContext) -> Sequence[PluginStep]:
        files = " && ".join(
            (
                f"test -x {_path(ctx, ROOTFS_BIN)}",
                f"test -f {_path(ctx, ROOTFS_INSTALL)}",
                f"ls {shlex.quote(ctx.rootfs)}/{ROOTFS_IMAGES} >/dev/null",
            )
        )
        existing = (
            f"for f in {' '.join(EXISTING)}; do "
            'if [ -e "$f" ]; then echo "$f exists: another cluster runtime is installed here" >&2; exit 1; fi; done'
        )
        ports = " ".join(str(p) for p in (SERVER_PORTS if ctx.host.is_master else AGENT_PORTS))
        free = (
            f"for p in {ports}; do "
            'if ss -Hltn "sport = :$p" | grep -q .; then echo "port $p is in use" >&2; exit 1; fi; done'
        )
        return (
            PluginStep(
                "k3s-preflight-files", "the basefs holds bin/k3s, the images and k3s-install.sh", files
            ),
            PluginStep("k3s-preflight-existing", "no k3s, kubeadm or k0s install on the host", existing),
            PluginStep("k3s-preflight-ports", f"ports {ports} are free", free),
        )

    def _stage_files(self, ctx: HostContext) -> Sequence[PluginStep]:
        config = " && ".join(
            (
                f"mkdir -p {CONFIG_DIR}",
                f"if [ -f {_path(ctx, ROOTFS_CONFIG)} ]; then cp {_path(ctx, ROOTFS_CONFIG)} {CONFIG_DIR}/config.yaml; fi",
                f"if [ -f {_path(ctx, ROOTFS_REGISTRIES)} ]; then "
                f"cp {_path(ctx, ROOTFS_REGISTRIES)} {CONFIG_DIR}/registries.yaml; fi",
            )
        )
        if ctx.host.is_master and has_audit_policy(ctx.image_files):
            config += f" && install -D -m 0600 {_path(ctx, AUDIT_POLICY)} {AUDIT_POLICY_FILE}"
        return (
            PluginStep(
                "k3s-binary", f"k3s binary into {BIN}", f"install -D -m 0755 {_path(ctx, ROOTFS_BIN)} {BIN}"
            ),
            PluginStep(
                "k3s-images",
                f"air-gap images into {IMAGES_DIR}",
                f"mkdir -p {IMAGES_DIR} && cp {shlex.quote(ctx.rootfs)}/{ROOTFS_IMAGES} {IMAGES_DIR}/",
            ),
            PluginStep("k3s-config", f"config.yaml and registries.yaml into {CONFIG_DIR}", config),
        )

    def _install(self, ctx: HostContext, args: str, server: bool, env: str = "") -> PluginStep:
        # a server joining after `sealer cert` serves the saved SANs too (the cert drop-in is the
        # cert phase's, on the servers of that time)
        sans = dict.fromkeys((ENDPOINT, *ctx.cert_sans)) if server else {}
        flags = "".join(f" --tls-san {shlex.quote(s)}" for s in sans)
        if server and has_audit_policy(ctx.image_files):
            # server-only flags go on the command line (config.yaml is the agents' too)
            flags += "".join(
                f" --kube-apiserver-arg {n}={v}" for n, v in audit_args(AUDIT_POLICY_FILE, AUDIT_LOG)
            )
        # FORCE_RESTART: a re-run after a failed attempt must start k3s even when install.sh
        # writes the same unit and env file again (see the module docstring)
        prefix = f"INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_FORCE_RESTART=true {env}".rstrip()
        command = f"{prefix} sh {_path(ctx, ROOTFS_INSTALL)} {args}{flags} --node-ip {ctx.host.ip}"
        what = "k3s server" if server else "k3s agent"
        return PluginStep("k3s-install", f"install.sh: {what} {args}", command, timeout_s=_INSTALL_TIMEOUT_S)

    def _credentials(self, ctx: HostContext) -> Sequence[PluginStep]:
        if not ctx.is_master0:
            return ()
        subject = ctx.subject
        if subject is not None and subject.is_master:
            return (
                PluginStep(
                    "k3s-server-token", "read the server token", f"cat {SERVER_TOKEN_FILE}", SERVER_TOKEN
                ),
            )
        return (
            PluginStep("k3s-agent-token", "read the agent token", f"cat {AGENT_TOKEN_FILE}", AGENT_TOKEN),
        )

    def _delete(self, ctx: HostContext) -> Sequence[PluginStep]:
        subject = ctx.subject or ctx.host
        if ctx.host.ip == subject.ip:
            return (self._uninstall(ctx, subject, best_effort=False),)
        if not ctx.is_master0:
            return ()
        ip = subject.ip
        drain = f'{BIN} kubectl drain "$name" --ignore-daemonsets --delete-emptydir-data --timeout=300s'
        delete = f'{BIN} kubectl delete node "$name"'
        return (
            PluginStep("k3s-drain", f"drain {ip}", _on_node(ip, "drain", drain), timeout_s=_DRAIN_TIMEOUT_S),
            PluginStep("k3s-delete-node", f"delete node {ip}", _on_node(ip, "delete", delete)),
        )

    def _uninstall(self, ctx: HostContext, host: HostSpec, *, best_effort: bool) -> PluginStep:
        script = SERVER_UNINSTALL if host.is_master else AGENT_UNINSTALL
        name = script.rsplit("/", 1)[1]
        if best_effort:
            command = (
                f"if [ -x {script} ]; then {script} || echo '{name} failed: continuing' >&2; "
                f"else echo 'no {script}: nothing to reset'; fi"
            )
        else:
            command = f"if [ -x {script} ]; then {script}; else echo 'no {script}: nothing to uninstall'; fi"
        return PluginStep("k3s-uninstall", f"{name}", command)

    def _upgrade(self, ctx: HostContext) -> Sequence[PluginStep]:
        subject = ctx.subject
        if subject is not None and subject.ip != ctx.host.ip:
            # master0, for a worker about to be upgraded: drain it first
            if not ctx.is_master0 or subject.is_master:
                return ()
            drain = f'{BIN} kubectl drain "$name" --ignore-daemonsets --delete-emptydir-data --timeout=300s'
            return (
                PluginStep(
                    "k3s-drain",
                    f"drain {subject.ip}",
                    _on_node(subject.ip, "drain", drain),
                    timeout_s=_DRAIN_TIMEOUT_S,
                ),
            )
        service = "k3s" if ctx.host.is_master else "k3s-agent"
        binary, images, config = self._stage_files(ctx)
        return (
            PluginStep("k3s-upgrade-check", "no downgrade, at most one minor version", _version_check(ctx)),
            images,
            config,  # the new image's config.yaml and registries.yaml, read on restart
            binary,
            PluginStep(
                "k3s-restart",
                f"restart {service}",
                f"systemctl restart {service}",
                timeout_s=_INSTALL_TIMEOUT_S,
            ),
        )

    # --- cert: SANs added to the API server certificate (`sealer cert`) ---------------------------

    def with_cert_sans(
        self, cluster: Cluster, sans: Sequence[str], image_files: Mapping[str, str]
    ) -> Cluster:
        """k3s keeps no Clusterfile document: the SANs are saved in the cluster's state and
        written by the `cert` phase (`CERT_DROPIN`)."""
        return cluster

    def _cert(self, ctx: HostContext) -> Sequence[PluginStep]:
        """On each server (one at a time): `tls-san` with every SAN (apiserver.cluster.local,
        every master, the saved ones) in `CERT_DROPIN`, then `systemctl restart k3s`; k3s adds
        the new names to its serving certificate at start (upstream's "tls-san" option)."""
        if not ctx.host.is_master:
            return ()
        sans = [ENDPOINT, *(m.ip for m in ctx.cluster.masters), *ctx.cert_sans]
        wanted = list(dict.fromkeys(sans))
        text = yaml.safe_dump({"tls-san": wanted}, default_flow_style=False)
        write = (
            f"mkdir -p {CERT_DROPIN.rsplit('/', 1)[0]} && cat > {CERT_DROPIN}.tmp <<'SEALER_K3S_EOF' && "
            f"mv {CERT_DROPIN}.tmp {CERT_DROPIN}\n{text}SEALER_K3S_EOF"
        )
        return (
            PluginStep("k3s-cert-config", f"{CERT_DROPIN}: tls-san {', '.join(wanted)}", write),
            PluginStep(
                "k3s-cert-restart", "restart k3s", "systemctl restart k3s", timeout_s=_INSTALL_TIMEOUT_S
            ),
        )
