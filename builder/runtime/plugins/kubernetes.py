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
on master0 (phase `delete-done`).

This module maps the phases to steps and holds install, join and leave; the rest is one module
per concept: kubeadm_config.py (the kubeadm.yaml and JoinConfiguration merge), kubeadm_cert.py
(`sealer cert`), kubeadm_upgrade.py ("Upgrading kubeadm clusters") and _kubeadm.py (the paths,
outputs and shell pieces they share).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import ClassVar

from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.plugins import base
from builder.runtime.plugins._config import has_audit_policy
from builder.runtime.plugins._kubeadm import (
    ADMIN_CONF,
    ADMIN_KUBECTL,
    API_PORT,
    BOOTSTRAP_CONF,
    CA_CERT,
    CA_CERT_HASH,
    CERTIFICATE_KEY,
    CONFIG_FILE,
    DROPIN_DIR,
    DROPIN_FILE,
    ENDPOINT,
    INIT_TIMEOUT_S,
    JOIN_CONFIG_FILE,
    JOIN_TOKEN,
    KUBEADM,
    KUBECTL,
    KUBELET_CONF,
    KUBELET_CONFIG,
    MANIFESTS_DIR,
    ROOTFS_BINS,
    ROOTFS_CONFIG,
    ROOTFS_IMAGES,
    UNIT_FILE,
    admin_kubeconfig_step,
    admin_kubectl,
    audit_policy_steps,
    binaries_step,
    drain_step,
    heredoc,
    images_step,
    on_node,
    rootfs_path,
    version_step,
)
from builder.runtime.plugins.base import AUDIT_POLICY, HostContext, PluginStep, RuntimePlugin
from builder.runtime.plugins.kubeadm_cert import cert_check_steps, cert_renew_steps, cert_steps
from builder.runtime.plugins.kubeadm_config import (
    AUDIT_POLICY_FILE,
    cluster_with_cert_sans,
    init_documents,
    join_document,
    render_documents,
)
from builder.runtime.plugins.kubeadm_endpoint import (
    ROOTFS_HAPROXY,
    endpoint_self_step,
    haproxy_problems,
    lb_preflight_step,
    lb_steps,
)
from builder.runtime.plugins.kubeadm_leave import leave_steps
from builder.runtime.plugins.kubeadm_sealer import (
    init_documents_sealer,
    join_document_sealer,
    preflight_files,
    registry_url,
    stage_steps,
)
from builder.runtime.plugins.kubeadm_upgrade import uncordon_steps, upgrade_steps
from builder.runtime.plugins.sealer_image import (
    KUBEADM_YML,
    KUBEADM_YML_TEMPLATE,
    PRESENT_SCRIPTS,
    is_sealer_image,
)

ROOTFS_UNIT = "etc/systemd/kubelet.service"
ROOTFS_DROPIN = "etc/systemd/10-kubeadm.conf"

# kubeadm's own preflight checks these too, but only once init or join has begun.
MASTER_PORTS = (6443, 2379, 2380, 10250, 10257, 10259)
WORKER_PORTS = (10250, 6443)  # 6443: the local API load balancer (kubeadm_endpoint.py)
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


TOKEN_TTL = "1h"  # one token serves a whole batch of workers, each importing images first

_JOIN_TIMEOUT_S = 600.0


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


class KubernetesRuntime(RuntimePlugin):
    name: ClassVar[str] = "kubernetes"
    label: ClassVar[str | None] = "kubernetes"
    metadata_runtime: ClassVar[str | None] = "k8s"
    kubectl: ClassVar[str | None] = ADMIN_KUBECTL
    # bin/haproxy: its presence only (the check phase's haproxy_problems)
    # and what recognises an image of sealer's contract, run in its mode (kubeadm_sealer.py)
    config_files: ClassVar[tuple[str, ...]] = (
        ROOTFS_CONFIG, AUDIT_POLICY, ROOTFS_HAPROXY, KUBEADM_YML, KUBEADM_YML_TEMPLATE, *PRESENT_SCRIPTS,
    )  # fmt: skip
    launch_env: ClassVar[Mapping[str, str]] = {"KUBECONFIG": ADMIN_CONF}

    def host_problems(
        self, cluster: Cluster, host: HostSpec, tools: frozenset[str], image_files: Mapping[str, str]
    ) -> list[str]:
        return haproxy_problems(host, tools, image_files)

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
            return (*self._stage(ctx), self._join(ctx), endpoint_self_step(ctx), admin_kubeconfig_step())
        if phase == base.JOIN_WORKER:
            return () if host.is_master else (*self._stage(ctx), self._join(ctx))
        if phase in (base.DELETE_MASTER, base.DELETE_WORKER):
            return self._delete(ctx)
        if phase == base.DELETE_DONE:
            subject = ctx.subject
            if not ctx.is_master0 or subject is None or subject.ip == host.ip:
                return ()
            delete = on_node(subject.ip, "delete", admin_kubectl('delete node "$name"'))
            return (PluginStep("kubeadm-delete-node", f"delete node {subject.ip}", delete),)
        if phase == base.NODE_CONFIG:
            return base.node_config(ctx, ADMIN_KUBECTL, "kubeadm")
        if phase == base.RESET:
            return leave_steps(host, best_effort=True)
        if phase == base.API_ENDPOINT:
            return lb_steps(ctx)
        if phase == base.UPGRADE:
            return upgrade_steps(ctx)
        if phase == base.UPGRADE_DONE:
            return uncordon_steps(ctx)
        if phase == base.CERT:
            return cert_steps(ctx)
        if phase == base.CERT_RENEW:
            return cert_renew_steps(ctx)
        if phase == base.CERT_CHECK:
            return cert_check_steps(ctx)
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
                *(f"test -x {rootfs_path(ctx, b)}" for b in ROOTFS_BINS),
                f"test -f {rootfs_path(ctx, ROOTFS_UNIT)}",
                f"test -f {rootfs_path(ctx, ROOTFS_DROPIN)}",
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
            preflight_files(ctx)
            if is_sealer_image(ctx.image_files)
            else PluginStep(
                "kubeadm-preflight-files",
                "the basefs holds kubeadm, kubelet, kubectl, the kubelet unit and the images",
                files,
            ),
            PluginStep("kubeadm-preflight-existing", "no kubeadm, k3s or k0s install on the host", existing),
            PluginStep("kubeadm-preflight-ports", f"ports {ports} are free", free),
            *(() if ctx.host.is_master else (lb_preflight_step(ctx),)),
        )

    def _stage(self, ctx: HostContext) -> Sequence[PluginStep]:
        """Binaries, the kubelet unit (enabled, not started: kubeadm starts it once its config
        exists, as the guide's crash-looping kubelet would) and the images, on any joining host;
        a sealer image's init-kube.sh instead (kubeadm_sealer.py)."""
        if is_sealer_image(ctx.image_files):
            return stage_steps(ctx, registry_url(ctx))
        unit = " && ".join(
            (
                f"install -D -m 0644 {rootfs_path(ctx, ROOTFS_UNIT)} {UNIT_FILE}",
                f"install -D -m 0644 {rootfs_path(ctx, ROOTFS_DROPIN)} {DROPIN_FILE}",
                "systemctl daemon-reload",
                "systemctl enable kubelet",
            )
        )
        return (
            binaries_step(ctx),
            PluginStep("kubelet-unit", f"kubelet unit and kubeadm drop-in into {DROPIN_DIR}", unit),
            images_step(ctx),
            *audit_policy_steps(ctx, AUDIT_POLICY_FILE),
        )

    def _init(self, ctx: HostContext) -> Sequence[PluginStep]:
        audit = has_audit_policy(ctx.image_files)
        docs = (
            init_documents_sealer(ctx, audit=audit)
            if is_sealer_image(ctx.image_files)
            else init_documents(ctx.cluster, ctx.host, ctx.image_files.get(ROOTFS_CONFIG), audit=audit)
        )
        version = version_step(
            docs,
            "kubeadm-version",
            "the image's kubeadm",
            f"{rootfs_path(ctx, ROOTFS_BINS[0])} version -o short",
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
                heredoc(CONFIG_FILE, render_documents(docs), private=False),
            ),
            PluginStep("kubeadm-init", init, resumable, timeout_s=INIT_TIMEOUT_S),
            admin_kubeconfig_step(),
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
        doc = (
            join_document_sealer(ctx, host)
            if is_sealer_image(ctx.image_files)
            else join_document(ctx.cluster, host, ctx.image_files.get(ROOTFS_CONFIG))
        )
        write = heredoc(JOIN_CONFIG_FILE, render_documents((doc,)), private=True)
        first, _, body = write.partition("\n")
        join = f"{first} && {KUBEADM} join --config {JOIN_CONFIG_FILE}; status=$?; rm -f {JOIN_CONFIG_FILE}; exit $status"
        if host.is_master:
            # the admin.conf of the earlier attempt (kubeadm writes it before the kubelet starts,
            # so it is there whenever a Node is) reaches the cluster through the stable endpoint
            delete = on_node(host.ip, "delete", admin_kubectl('delete node "$name"') + " || exit 1")
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
            return leave_steps(ctx.host, best_effort=False)
        if not ctx.is_master0:
            return ()
        return (drain_step(subject.ip, force=True),)

    def with_cert_sans(
        self, cluster: Cluster, sans: Sequence[str], image_files: Mapping[str, str]
    ) -> Cluster:
        """The saved ClusterConfiguration with `sans` added (kubeadm_config.py)."""
        return cluster_with_cert_sans(cluster, sans, image_files)
