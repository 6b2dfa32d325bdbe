"""Golden dry-run plans of the kubernetes (kubeadm) runtime plugin (pure: no hosts), against the
commands the kubeadm install ("without a package manager"), HA ("stacked etcd", upload-certs),
join, reset and upgrade docs give; what a re-run after a failure at any step runs; and the
kubeadm configuration merge (image defaults from basefs/kubernetes/etc/kubeadm.yaml < the
Clusterfile's documents < what the runtime needs)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.errors import KubeadmConfigError, PhaseError
from builder.image.descriptor import Platform
from builder.image.digest import Digest
from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts, HostFacts, parse_probe, probe_command
from builder.runtime.phases import (
    ApiEndpoint,
    ApiEndpointLeave,
    Check,
    ImageInfo,
    JoinMasters,
    JoinNodes,
    Kubeconfig,
    NodeConfig,
    PlanState,
    RuntimeInit,
    RuntimeLeave,
    RuntimeReset,
    Upgrade,
)
from builder.runtime.plugins import base as phases
from builder.runtime.plugins import select_plugin
from builder.runtime.plugins.base import output_refs, resolve_outputs
from builder.runtime.plugins.kubernetes import KubernetesRuntime, init_documents, join_document
from tests.unit.runtime._plugin_golden import INSTALL_PHASES, PluginGolden, R, Row

BASEFS = Path(__file__).resolve().parents[3] / "basefs" / "kubernetes"
DEFAULTS = (BASEFS / "etc" / "kubeadm.yaml").read_text()
AUDIT_POLICY = (BASEFS / "statics" / "audit-policy.yml").read_text()
# the basefs image: its kubeadm defaults and the audit policy it ships (statics/audit-policy.yml)
FILES = {"etc/kubeadm.yaml": DEFAULTS, "statics/audit-policy.yml": AUDIT_POLICY}
IMAGE = ImageInfo(
    name="kubernetes:v1.30.14",
    digest=Digest("sha256", "ab" * 32),
    platform=Platform("linux", "amd64"),
    files=FILES,
)
GOLDEN = PluginGolden(KubernetesRuntime, IMAGE)
cluster, plan, ctx = GOLDEN.cluster, GOLDEN.plan, GOLDEN.ctx  # rows: below, with the subject's prefix
rerun_after_failure = GOLDEN.rerun_after_failure
KUBECTL = "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf"

# The commands, written out as the upstream docs give them.
FILES_CHECK = (
    f"test -x {R}/bin/kubeadm && test -x {R}/bin/kubelet && test -x {R}/bin/kubectl"
    f" && test -f {R}/etc/systemd/kubelet.service && test -f {R}/etc/systemd/10-kubeadm.conf"
    f" && ls {R}/images/*.tar >/dev/null"
)
# What a kubeadm init or join leaves, which the next one's preflight refuses: refused before the
# first attempt, so that a retry's `kubeadm reset -f` only ever undoes sealer's own attempt.
KUBEADM_FILES = (
    "/etc/kubernetes/admin.conf /etc/kubernetes/kubelet.conf /etc/kubernetes/bootstrap-kubelet.conf"
    " /etc/kubernetes/pki/ca.crt /var/lib/kubelet/config.yaml"
)
EXISTING = (
    f"for f in {KUBEADM_FILES} /usr/local/bin/k3s-uninstall.sh"
    " /usr/local/bin/k3s-agent-uninstall.sh /etc/systemd/system/k0scontroller.service"
    ' /etc/systemd/system/k0sworker.service; do if [ -e "$f" ]; then'
    ' echo "$f exists: another cluster runtime is installed here" >&2; exit 1; fi; done;'
    ' if [ -n "$(ls -A /etc/kubernetes/manifests 2>/dev/null)" ]; then'
    ' echo "/etc/kubernetes/manifests is not empty: another cluster runtime is installed here" >&2; exit 1; fi'
)


def ports(numbers: str) -> str:
    return (
        f'for p in {numbers}; do if ss -Hltn "sport = :$p" | grep -q .; then'
        ' echo "port $p is in use" >&2; exit 1; fi; done'
    )


BINARIES = f"install -m 0755 {R}/bin/kubeadm {R}/bin/kubelet {R}/bin/kubectl /usr/local/bin/"
UNIT = (
    f"install -D -m 0644 {R}/etc/systemd/kubelet.service /etc/systemd/system/kubelet.service"
    f" && install -D -m 0644 {R}/etc/systemd/10-kubeadm.conf"
    " /etc/systemd/system/kubelet.service.d/10-kubeadm.conf"
    " && systemctl daemon-reload && systemctl enable kubelet"
)
IMAGES = f'for f in {R}/images/*.tar; do ctr -n k8s.io images import "$f" || exit 1; done'
VERSION = f"{R}/bin/kubeadm version -o short"
LEFTOVERS = (
    "{ [ -e /etc/kubernetes/admin.conf ] || [ -e /etc/kubernetes/kubelet.conf ]"
    " || [ -e /etc/kubernetes/bootstrap-kubelet.conf ] || [ -e /etc/kubernetes/pki/ca.crt ]"
    ' || [ -e /var/lib/kubelet/config.yaml ] || [ -n "$(ls -A /etc/kubernetes/manifests 2>/dev/null)" ]; }'
)


def undo(what: str, first: str = "") -> str:
    """A retry after a failed attempt: `kubeadm reset -f`, as kubeadm's docs revert init or join."""
    return (
        f"if {LEFTOVERS}; then echo 'an earlier {what} did not finish: kubeadm reset -f';"
        f" {first}/usr/local/bin/kubeadm reset -f || exit 1; fi"
    )


INIT = "/usr/local/bin/kubeadm init --config /etc/kubernetes/kubeadm.yaml --upload-certs"
ADMIN = (
    'mkdir -p "$HOME/.kube" && cp /etc/kubernetes/admin.conf "$HOME/.kube/config"'
    ' && chmod 0600 "$HOME/.kube/config"'
)
TOKEN = "/usr/local/bin/kubeadm token create --ttl 1h"
CA_HASH = (
    "pub=$(openssl x509 -pubkey -noout -in /etc/kubernetes/pki/ca.crt) && printf '%s\\n' \"$pub\""
    " | openssl pkey -pubin -outform der | openssl dgst -sha256 -hex | sed 's/^.* /sha256:/'"
)
CERT_KEY = (
    "out=$(/usr/local/bin/kubeadm init phase upload-certs --upload-certs"
    " --config /etc/kubernetes/kubeadm.yaml) && printf '%s\\n' \"$out\" | tail -n 1"
)


# --- the local API endpoint (kubeadm's HA guide: haproxy in front of every API server, checked
# with GET /healthz over TLS; here on each worker's loopback, as kubespray's localhost load balancing)

NO_HAPROXY = (
    "no haproxy: the kubernetes runtime runs it on every worker as the local API load balancer;"
    " install the haproxy package, or ship bin/haproxy in the image"
)
LB_UNIT_FILE = (
    "[Unit]\n"
    "Description=sealer: local load balancer in front of every master's API server\n"
    "After=network-online.target\n"
    "Wants=network-online.target\n"
    "[Service]\n"
    "Type=notify\n"
    "ExecStartPre=/bin/mkdir -p /run/sealer-apiserver-lb/empty\n"
    "ExecStartPre=${bin} -c -q -f /etc/sealer/apiserver-lb/haproxy.cfg\n"
    "ExecStart=${bin} -Ws -f /etc/sealer/apiserver-lb/haproxy.cfg\n"
    "ExecReload=${bin} -c -q -f /etc/sealer/apiserver-lb/haproxy.cfg\n"
    "ExecReload=/bin/kill -USR2 \\$MAINPID\n"
    "KillMode=mixed\n"
    "Restart=always\n"
    "RestartSec=2s\n"
    "SuccessExitStatus=143\n"
    "[Install]\n"
    "WantedBy=multi-user.target\n"
)
LB_UNIT = (
    f"if [ -x {R}/bin/haproxy ]; then bin={R}/bin/haproxy; elif bin=$(command -v haproxy); then :;"
    f" else echo '{NO_HAPROXY}' >&2; exit 1; fi;"
    " mkdir -p /etc/sealer/apiserver-lb && cat > /etc/systemd/system/sealer-apiserver-lb.service"
    f" <<SEALER_LB_UNIT_EOF\n{LB_UNIT_FILE}SEALER_LB_UNIT_EOF\n"
    "systemctl daemon-reload && systemctl enable sealer-apiserver-lb"
)


def haproxy_cfg(masters: tuple[str, ...]) -> str:
    servers = "".join(f"    server master-{m} {m}:6443\n" for m in masters)
    return (
        "# written by sealer (cluster c1): the API servers of every master, rewritten\n"
        "# when masters join or leave; edits here are lost\n"
        "global\n    maxconn 4000\n    uid 65534\n    gid 65534\n    chroot /run/sealer-apiserver-lb/empty\n"
        "    stats socket /run/sealer-apiserver-lb/admin.sock mode 600 level admin\n"
        "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 10m\n    timeout server 10m\n"
        "    timeout check 5s\n    retries 3\n    option redispatch\n"
        "frontend apiserver\n    bind 127.0.0.1:6443\n    default_backend apiserver\n"
        "backend apiserver\n    balance roundrobin\n    option httpchk GET /healthz\n"
        "    http-check expect status 200\n"
        "    default-server check check-ssl verify none inter 2s fall 2 rise 2\n"
        f"{servers}"
    )


def lb_backends(masters: tuple[str, ...]) -> str:
    return (
        "mkdir -p /etc/sealer/apiserver-lb && cat > /etc/sealer/apiserver-lb/haproxy.cfg.new <<'SEALER_KUBEADM_EOF'\n"
        f"{haproxy_cfg(masters)}SEALER_KUBEADM_EOF\n"
        "bin=$(sed -n 's/^ExecStart=\\([^ ]*\\) .*/\\1/p' /etc/systemd/system/sealer-apiserver-lb.service)"
        ' && "$bin" -c -q -f /etc/sealer/apiserver-lb/haproxy.cfg.new'
        " && mv /etc/sealer/apiserver-lb/haproxy.cfg.new /etc/sealer/apiserver-lb/haproxy.cfg"
        " && if systemctl is-active --quiet sealer-apiserver-lb; then systemctl reload sealer-apiserver-lb;"
        " else systemctl start sealer-apiserver-lb; fi"
        " && { i=0; until ss -Hltn 'sport = :6443' | grep -q '127.0.0.1:6443'; do i=$((i + 1));"
        " if [ $i -ge 300 ]; then echo 'haproxy does not listen on 127.0.0.1:6443 after 30s:"
        " see systemctl status sealer-apiserver-lb' >&2; exit 1; fi; sleep 0.1; done; }"
    )


def endpoint(ip: str, masters: tuple[str, ...]) -> list[Row]:
    """The `api-endpoint` steps of worker `ip`: the unit, then the backend list of `masters`
    (its id: the digest of the list, so each new list runs once)."""
    digest = hashlib.sha256(",".join(masters).encode()).hexdigest()[:12]
    return [(ip, "apiserver-lb-unit", LB_UNIT), (ip, f"apiserver-lb-backends-{digest}", lb_backends(masters))]


LB_REMOVE = (
    "{ systemctl disable --now sealer-apiserver-lb 2>/dev/null || true; }"
    " && rm -f /etc/systemd/system/sealer-apiserver-lb.service /etc/sealer/apiserver-lb/haproxy.cfg"
    " /etc/sealer/apiserver-lb/haproxy.cfg.new && { rmdir /etc/sealer/apiserver-lb /etc/sealer 2>/dev/null || true; }"
    " && rm -rf /run/sealer-apiserver-lb && systemctl daemon-reload"
)


def endpoint_self(ip: str) -> str:
    """A joined master's stable name: its own API server (init.sh's /etc/hosts block)."""
    return (
        "tmp=$(mktemp /etc/.hosts.sealer-kubernetes.XXXXXX) && trap 'rm -f \"$tmp\"' EXIT &&"
        " awk -v b='# BEGIN sealer kubernetes: apiserver.cluster.local' -v e='# END sealer kubernetes:"
        " apiserver.cluster.local' '$0 == b {skip = 1; next} $0 == e {skip = 0; next} !skip' /etc/hosts > \"$tmp\""
        " && printf '%s\\n%s apiserver.cluster.local\\n%s\\n' '# BEGIN sealer kubernetes: apiserver.cluster.local'"
        f' {ip} \'# END sealer kubernetes: apiserver.cluster.local\' >> "$tmp" && cat "$tmp" > /etc/hosts'
    )


def init_config(masters: tuple[str, ...]) -> str:
    """master0's /etc/kubernetes/kubeadm.yaml from the basefs defaults, written by a heredoc."""
    sans = "".join(f"  - {ip}\n" for ip in masters)
    return (
        "mkdir -p /etc/kubernetes && cat > /etc/kubernetes/kubeadm.yaml <<'SEALER_KUBEADM_EOF'\n"
        "apiVersion: kubeadm.k8s.io/v1beta3\n"
        "kind: InitConfiguration\n"
        "localAPIEndpoint:\n"
        "  bindPort: 6443\n"
        f"  advertiseAddress: {masters[0]}\n"
        "nodeRegistration:\n"
        "  criSocket: unix:///run/containerd/containerd.sock\n"
        "  imagePullPolicy: IfNotPresent\n"
        "  kubeletExtraArgs:\n"
        f"    node-ip: {masters[0]}\n"
        "---\n"
        "apiVersion: kubeadm.k8s.io/v1beta3\n"
        "kind: ClusterConfiguration\n"
        "kubernetesVersion: '{{output:kube-version}}'\n"
        "controlPlaneEndpoint: apiserver.cluster.local:6443\n"
        "imageRepository: registry.k8s.io\n"
        "clusterName: kubernetes\n"
        "networking:\n"
        "  dnsDomain: cluster.local\n"
        "  podSubnet: 100.64.0.0/10\n"
        "  serviceSubnet: 10.96.0.0/22\n"
        "apiServer:\n"
        "  certSANs:\n"
        "  - apiserver.cluster.local\n"
        "  - 127.0.0.1\n"
        f"{sans}"
        "  extraArgs:\n"
        "    audit-policy-file: /etc/kubernetes/audit-policy.yml\n"
        "    audit-log-path: /var/log/kubernetes/audit.log\n"
        "    audit-log-maxage: '7'\n"
        "    audit-log-maxbackup: '10'\n"
        "    audit-log-maxsize: '100'\n"
        "  extraVolumes:\n"
        "  - name: audit-policy\n"
        "    hostPath: /etc/kubernetes/audit-policy.yml\n"
        "    mountPath: /etc/kubernetes/audit-policy.yml\n"
        "    readOnly: true\n"
        "    pathType: File\n"
        "  - name: audit-log\n"
        "    hostPath: /var/log/kubernetes\n"
        "    mountPath: /var/log/kubernetes\n"
        "    pathType: DirectoryOrCreate\n"
        "etcd:\n"
        "  local:\n"
        "    dataDir: /var/lib/etcd\n"
        "---\n"
        "apiVersion: kubelet.config.k8s.io/v1beta1\n"
        "kind: KubeletConfiguration\n"
        "cgroupDriver: systemd\n"
        "failSwapOn: false\n"
        "SEALER_KUBEADM_EOF"
    )


def join(ip: str, *, master: bool) -> str:
    """The one-step write-the-JoinConfiguration-and-join of the kubeadm join docs, after what
    resumes an earlier attempt: a registered worker is done; else `kubeadm reset -f`, a master
    deleting the Node its attempt registered first (kubeadm join refuses a Ready one)."""
    if master:
        delete = on_node(ip, "delete", f'{KUBECTL} delete node "$name" || exit 1')
        resume = undo("kubeadm join", f"if [ -f /etc/kubernetes/admin.conf ]; then {delete}; fi; ")
    else:
        registered = (
            "[ -f /etc/kubernetes/kubelet.conf ] && nodes=$(/usr/local/bin/kubectl --kubeconfig"
            " /etc/kubernetes/kubelet.conf get nodes -o wide --no-headers)"
            f" && printf '%s\\n' \"$nodes\" | awk '$6 == \"{ip}\" {{found = 1}} END {{exit !found}}'"
        )
        resume = (
            f"if {registered}; then echo 'joined by an earlier attempt: the kubelet is registered';"
            " rm -f /etc/kubernetes/bootstrap-kubelet.conf /etc/kubernetes/kubeadm-join.yaml"
            f" && systemctl start kubelet; exit $?; fi; {undo('kubeadm join')}"
        )
    plane = (
        "controlPlane:\n"
        "  localAPIEndpoint:\n"
        f"    advertiseAddress: {ip}\n"
        "    bindPort: 6443\n"
        "  certificateKey: '{{output:certificate-key}}'\n"
        if master
        else ""
    )
    return (
        f"{resume}; mkdir -p /etc/kubernetes && ( umask 077 && cat > /etc/kubernetes/kubeadm-join.yaml )"
        " <<'SEALER_KUBEADM_EOF' && /usr/local/bin/kubeadm join --config /etc/kubernetes/kubeadm-join.yaml;"
        " status=$?; rm -f /etc/kubernetes/kubeadm-join.yaml; exit $status\n"
        "apiVersion: kubeadm.k8s.io/v1beta3\n"
        "kind: JoinConfiguration\n"
        "nodeRegistration:\n"
        "  criSocket: unix:///run/containerd/containerd.sock\n"
        "  imagePullPolicy: IfNotPresent\n"
        "  kubeletExtraArgs:\n"
        f"    node-ip: {ip}\n"
        "discovery:\n"
        "  bootstrapToken:\n"
        "    apiServerEndpoint: apiserver.cluster.local:6443\n"
        "    token: '{{output:join-token}}'\n"
        "    caCertHashes:\n"
        "    - '{{output:ca-cert-hash}}'\n"
        f"{plane}"
        "SEALER_KUBEADM_EOF"
    )


def on_node(ip: str, action: str, command: str) -> str:
    return (
        f"nodes=$({KUBECTL} get nodes -o wide --no-headers) || exit 1;"
        f" name=$(printf '%s\\n' \"$nodes\" | awk '$6 == \"{ip}\" {{print $1}}');"
        f' if [ -z "$name" ]; then echo "no node with address {ip}: nothing to {action}"; else {command}; fi'
    )


def drain(ip: str, *, force: bool) -> str:
    flags = "--ignore-daemonsets --delete-emptydir-data" + (" --force" if force else "")
    return on_node(ip, "drain", f'{KUBECTL} drain "$name" {flags} --timeout=300s')


RESET = (
    "if [ -x /usr/local/bin/kubeadm ]; then /usr/local/bin/kubeadm reset -f;"
    " else echo 'no /usr/local/bin/kubeadm: nothing to reset'; fi"
)
RESET_BEST_EFFORT = (
    "if [ -x /usr/local/bin/kubeadm ]; then { /usr/local/bin/kubeadm reset -f"
    " || echo 'kubeadm reset failed: continuing' >&2; };"
    " else echo 'no /usr/local/bin/kubeadm: nothing to reset'; fi"
)
UNINSTALL = (
    "{ systemctl disable --now kubelet 2>/dev/null || true; }"
    " && rm -f /usr/local/bin/kubeadm /usr/local/bin/kubelet /usr/local/bin/kubectl"
    " /etc/systemd/system/kubelet.service /etc/systemd/system/kubelet.service.d/10-kubeadm.conf"
    " /etc/kubernetes/kubeadm.yaml /etc/kubernetes/kubeadm-join.yaml /etc/kubernetes/audit-policy.yml"
    " && { rmdir /etc/systemd/system/kubelet.service.d 2>/dev/null || true; }"
    " && { if grep -qs 'server: https://apiserver.cluster.local:6443' \"$HOME/.kube/config\";"
    ' then rm -f "$HOME/.kube/config"; fi; }'
    " && systemctl daemon-reload"
)
VERSION_CHECK = (
    "old=$(/usr/local/bin/kubeadm version -o short | sed 's/^v//; s/[+-].*//');"
    f" new=$({R}/bin/kubeadm version -o short | sed 's/^v//; s/[+-].*//');"
    " set -- $(echo \"$old.$new\" | tr . ' ');"
    " if [ $# -ne 6 ]; then echo \"kubeadm versions not understood: installed '$old', new '$new'\" >&2; exit 1; fi;"
    ' if [ "$1" != "$4" ] || [ "$5" -lt "$2" ] || { [ "$5" -eq "$2" ] && [ "$6" -lt "$3" ]; };'
    ' then echo "kubernetes $old -> $new: a downgrade or a major change is not supported" >&2; exit 1; fi;'
    ' if [ "$5" -gt $(($2 + 1)) ]; then echo "kubernetes $old -> $new: upgrade one minor version at a time" >&2;'
    ' exit 1; fi; echo "kubernetes $old -> $new"'
)


HAPROXY_CHECK = (
    f"if [ -x {R}/bin/haproxy ] || command -v haproxy >/dev/null; then :;"
    f" else echo '{NO_HAPROXY}' >&2; exit 1; fi"
)


def preflight(ip: str, *, master: bool) -> list[Row]:
    return [
        (ip, "kubeadm-preflight-files", FILES_CHECK),
        (ip, "kubeadm-preflight-existing", EXISTING),
        (
            ip,
            "kubeadm-preflight-ports",
            ports("6443 2379 2380 10250 10257 10259" if master else "10250 6443"),
        ),
        # a worker needs haproxy for its local API endpoint: the image's, else the host's
        *([] if master else [(ip, "kubeadm-preflight-haproxy", HAPROXY_CHECK)]),
    ]


AUDIT = f"install -D -m 0600 {R}/statics/audit-policy.yml /etc/kubernetes/audit-policy.yml"


def staged(ip: str, *, master: bool = False) -> list[Row]:
    """Binaries, unit, images; on a master also the image's audit policy, which every API server
    mounts (the ClusterConfiguration names it)."""
    rows = [(ip, "kubeadm-binaries", BINARIES), (ip, "kubelet-unit", UNIT), (ip, "kubeadm-images", IMAGES)]
    return [*rows, (ip, "kubeadm-audit-policy", AUDIT)] if master else rows


def initialised(masters: tuple[str, ...]) -> list[Row]:
    m0 = masters[0]
    return [
        *staged(m0, master=True),
        (m0, "kubeadm-version", VERSION),
        (m0, "kubeadm-config", init_config(masters)),
        (m0, "kubeadm-init", f"{undo('kubeadm init')}; {INIT}"),
        (m0, "kubeadm-admin-kubeconfig", ADMIN),
    ]


def credentials(subject: str | None) -> list[Row]:
    prefix = f"{subject}/" if subject else ""
    rows = [("10.0.0.1", f"{prefix}kubeadm-token", TOKEN), ("10.0.0.1", f"{prefix}kubeadm-ca-hash", CA_HASH)]
    if subject:
        rows.append(("10.0.0.1", f"{prefix}kubeadm-certificate-key", CERT_KEY))
    return rows


def rows(c: Cluster, phase: str, ip: str, subject: str | None = None) -> list[Row]:
    prefix = f"{subject}/" if subject and subject != ip else ""
    return [
        (ip, prefix + st.id, st.command) for st in KubernetesRuntime().commands(phase, ctx(c, ip, subject))
    ]


# --- golden plans --------------------------------------------------------------------------------


def test_one_master() -> None:
    c = cluster("10.0.0.1")
    assert plan(c, INSTALL_PHASES, c.ips) == [
        *preflight("10.0.0.1", master=True),
        *initialised(("10.0.0.1",)),
    ]
    s = PlanState(image=IMAGE, plugin=KubernetesRuntime(), targets=c.ips)
    (step,) = Kubeconfig().plan(c, Facts(), s)
    assert (step.host, step.id, step.command, step.output) == (
        "10.0.0.1",
        "kubeadm-kubeconfig",
        "sed -E 's#^([[:space:]]*server:).*#\\1 https://apiserver.cluster.local:6443#'"
        " /etc/kubernetes/admin.conf",
        "kubeconfig",
    )
    assert KubernetesRuntime().warnings(c) == ()


def test_three_masters_and_two_workers() -> None:
    masters = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    c = cluster(",".join(masters), "10.0.0.4,10.0.0.5")
    assert plan(c, INSTALL_PHASES, c.ips) == [
        *preflight("10.0.0.1", master=True),
        *preflight("10.0.0.2", master=True),
        *preflight("10.0.0.3", master=True),
        *preflight("10.0.0.4", master=False),
        *preflight("10.0.0.5", master=False),
        *initialised(masters),
        # a fresh token, the CA hash and a fresh certificate key just before each master joins
        *credentials("10.0.0.2"),
        *staged("10.0.0.2", master=True),
        ("10.0.0.2", "kubeadm-join", join("10.0.0.2", master=True)),
        ("10.0.0.2", "kubeadm-endpoint-self", endpoint_self("10.0.0.2")),
        ("10.0.0.2", "kubeadm-admin-kubeconfig", ADMIN),
        *credentials("10.0.0.3"),
        *staged("10.0.0.3", master=True),
        ("10.0.0.3", "kubeadm-join", join("10.0.0.3", master=True)),
        ("10.0.0.3", "kubeadm-endpoint-self", endpoint_self("10.0.0.3")),
        ("10.0.0.3", "kubeadm-admin-kubeconfig", ADMIN),
        # each worker's local haproxy in front of the three API servers, before it joins through it
        *endpoint("10.0.0.4", masters),
        *endpoint("10.0.0.5", masters),
        # one token and the CA hash for the workers, then every worker
        *credentials(None),
        *staged("10.0.0.4"),
        ("10.0.0.4", "kubeadm-join", join("10.0.0.4", master=False)),
        *staged("10.0.0.5"),
        ("10.0.0.5", "kubeadm-join", join("10.0.0.5", master=False)),
    ]
    s = PlanState(image=IMAGE, plugin=KubernetesRuntime(), targets=c.ips)
    minted = [(st.output, st.journal) for p in INSTALL_PHASES for st in p.plan(c, Facts(), s) if st.output]
    assert minted == [
        ("kube-version", False),
        *[("join-token", False), ("ca-cert-hash", False), ("certificate-key", False)] * 2,
        ("join-token", False),
        ("ca-cert-hash", False),
    ]
    assert KubernetesRuntime().warnings(c) == ()
    (warning,) = KubernetesRuntime().warnings(cluster("10.0.0.1,10.0.0.2"))
    assert warning.startswith("2 masters: etcd needs a majority")


def test_adding_a_worker() -> None:
    c = cluster("10.0.0.1", "10.0.0.2,10.0.0.3")
    assert plan(c, INSTALL_PHASES, ("10.0.0.3",)) == [
        *preflight("10.0.0.3", master=False),
        *endpoint("10.0.0.3", ("10.0.0.1",)),  # one master: the balancer all the same (docs/runtimes.md)
        *credentials(None),
        *staged("10.0.0.3"),
        ("10.0.0.3", "kubeadm-join", join("10.0.0.3", master=False)),
    ]


def test_adding_a_master_rewrites_every_workers_backends() -> None:
    """A master joining (sealer join --masters): after its join, every worker of the cluster,
    not only joining ones, gets the new backend list (a new step id: the journal ran the old
    list's); the unit step is the install's (journaled, skipped on a real run)."""
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3,10.0.0.4")
    s = PlanState(image=IMAGE, plugin=KubernetesRuntime(), targets=("10.0.0.2",))
    got = [(st.host, st.id, st.command) for st in ApiEndpoint().plan(c, Facts(), s)]
    assert got == [
        *endpoint("10.0.0.3", ("10.0.0.1", "10.0.0.2")),
        *endpoint("10.0.0.4", ("10.0.0.1", "10.0.0.2")),
    ]
    assert endpoint("10.0.0.3", ("10.0.0.1",))[1][1] != got[1][1]
    # a worker joining touches no other worker
    s = PlanState(image=IMAGE, plugin=KubernetesRuntime(), targets=("10.0.0.4",))
    assert [st.host for st in ApiEndpoint().plan(c, Facts(), s)] == ["10.0.0.4", "10.0.0.4"]


def test_removing_a_master() -> None:
    """kubeadm reset's order: drain (master0), `kubeadm reset -f` on the host while the cluster
    is healthy (it removes its own etcd member), then delete the Node (master0, delete-done)."""
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4")
    delete = on_node("10.0.0.3", "delete", f'{KUBECTL} delete node "$name"')
    got = [
        *rows(c, phases.DELETE_MASTER, "10.0.0.1", "10.0.0.3"),
        *rows(c, phases.DELETE_MASTER, "10.0.0.3", "10.0.0.3"),
        *rows(c, phases.DELETE_DONE, "10.0.0.1", "10.0.0.3"),
    ]
    assert got == [
        ("10.0.0.1", "10.0.0.3/kubeadm-drain", drain("10.0.0.3", force=True)),
        ("10.0.0.3", "kubeadm-reset", RESET),
        ("10.0.0.3", "kubeadm-uninstall", UNINSTALL),
        ("10.0.0.1", "10.0.0.3/kubeadm-delete-node", delete),
    ]
    # the staying worker's balancer forgets the leaving master first (its backend list rewritten
    # and haproxy reloaded: the unit step is journaled from the install); then runtime-leave plans
    # master0's steps, then the host's, then master0's delete-done
    assert plan(c, (ApiEndpointLeave(), RuntimeLeave(), RuntimeReset()), ("10.0.0.3",)) == [
        *endpoint("10.0.0.4", ("10.0.0.1", "10.0.0.2")),
        *got,
    ]
    # a worker leaving changes no other worker's balancer
    assert plan(c, (ApiEndpointLeave(),), ("10.0.0.4",)) == []
    # a worker leaves the same way
    assert rows(c, phases.DELETE_WORKER, "10.0.0.1", "10.0.0.4") == [
        ("10.0.0.1", "10.0.0.4/kubeadm-drain", drain("10.0.0.4", force=True))
    ]
    assert rows(c, phases.DELETE_WORKER, "10.0.0.4", "10.0.0.4") == [
        ("10.0.0.4", "kubeadm-reset", RESET),
        ("10.0.0.4", "kubeadm-uninstall", UNINSTALL),
        ("10.0.0.4", "apiserver-lb-remove", LB_REMOVE),
    ]
    assert rows(c, phases.DELETE_DONE, "10.0.0.4", "10.0.0.4") == []  # only master0 deletes nodes


def test_reset() -> None:
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4,10.0.0.5")
    assert plan(c, (RuntimeLeave(), RuntimeReset()), c.ips, delete_all=True) == [
        row
        for ip in ("10.0.0.4", "10.0.0.5", "10.0.0.2", "10.0.0.3", "10.0.0.1")
        for row in [
            (ip, "kubeadm-reset", RESET_BEST_EFFORT),
            (ip, "kubeadm-uninstall", UNINSTALL),
            *([(ip, "apiserver-lb-remove", LB_REMOVE)] if ip in ("10.0.0.4", "10.0.0.5") else []),
        ]
    ]
    # the whole cluster goes: no worker's balancer is rewritten first
    assert plan(c, (ApiEndpointLeave(),), c.ips, delete_all=True) == []


def test_upgrade() -> None:
    """The kubeadm upgrade guide: master0 `upgrade apply`, the others `upgrade node`; each node
    drained before its kubelet is replaced and uncordoned after (master0 drains itself)."""
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3")
    s = PlanState(image=IMAGE, plugin=KubernetesRuntime(), targets=c.ips)

    def upgraded(ip: str, upgrade: str, *, drain_self: bool = False) -> list[Row]:
        return [
            (ip, "kubeadm-upgrade-check", VERSION_CHECK),
            (ip, "kubeadm-binary", f"install -m 0755 {R}/bin/kubeadm /usr/local/bin/"),
            (ip, "kubeadm-images", IMAGES),
            (ip, "kubeadm-upgrade", upgrade),
            *([(ip, "kubeadm-drain", drain(ip, force=False))] if drain_self else []),
            (ip, "kubelet-binaries", f"install -m 0755 {R}/bin/kubelet {R}/bin/kubectl /usr/local/bin/"),
            (ip, "kubelet-restart", "systemctl daemon-reload && systemctl restart kubelet"),
        ]

    def uncordon(ip: str) -> Row:
        prefix = "" if ip == "10.0.0.1" else f"{ip}/"
        return (
            "10.0.0.1",
            f"{prefix}kubeadm-uncordon",
            on_node(ip, "uncordon", f'{KUBECTL} uncordon "$name"'),
        )

    apply = "/usr/local/bin/kubeadm upgrade apply -y $(/usr/local/bin/kubeadm version -o short)"
    assert [(st.host, st.id, st.command) for st in Upgrade().plan(c, Facts(), s)] == [
        *upgraded("10.0.0.1", apply, drain_self=True),
        uncordon("10.0.0.1"),
        ("10.0.0.1", "10.0.0.2/kubeadm-drain", drain("10.0.0.2", force=False)),
        *upgraded("10.0.0.2", "/usr/local/bin/kubeadm upgrade node"),
        uncordon("10.0.0.2"),
        ("10.0.0.1", "10.0.0.3/kubeadm-drain", drain("10.0.0.3", force=False)),
        *upgraded("10.0.0.3", "/usr/local/bin/kubeadm upgrade node"),
        uncordon("10.0.0.3"),
    ]


def test_init_or_a_join_that_failed_at_any_step_resumes_with_fresh_credentials() -> None:
    """The resumable shape: whichever step failed, the re-run starts at that step; the
    credentials are minted on master0 again right before the one step that uses them, and that
    step (like init's) first deals with what the failed attempt left (see `join`)."""
    masters = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    c = cluster(",".join(masters), "10.0.0.4,10.0.0.5")
    # the second worker failed: one token and the CA hash again, then its steps from there on
    worker = [*staged("10.0.0.5"), ("10.0.0.5", "kubeadm-join", join("10.0.0.5", master=False))]
    for i, (_, step, _) in enumerate(worker):
        assert rerun_after_failure(c, JoinNodes(), ("10.0.0.5", step)) == [*credentials(None), *worker[i:]]
    # the third master failed: only its credentials are minted (the second's are skipped, as
    # they are minted again before anything pending uses them), the certificate key included
    third = [*staged("10.0.0.3", master=True), ("10.0.0.3", "kubeadm-join", join("10.0.0.3", master=True))]
    for i, (_, step, _) in enumerate(third):
        assert rerun_after_failure(c, JoinMasters(), ("10.0.0.3", step)) == [
            *credentials("10.0.0.3"),
            *third[i:],
            ("10.0.0.3", "kubeadm-endpoint-self", endpoint_self("10.0.0.3")),
            ("10.0.0.3", "kubeadm-admin-kubeconfig", ADMIN),
        ]
    # once a join is done nothing needs credentials: none are minted
    assert rerun_after_failure(c, JoinMasters(), ("10.0.0.3", "kubeadm-admin-kubeconfig")) == [
        ("10.0.0.3", "kubeadm-admin-kubeconfig", ADMIN)
    ]
    assert rerun_after_failure(c, JoinNodes(), None) == []
    assert rerun_after_failure(c, JoinMasters(), None) == []
    # init (which resets first): the version is asked again only while the config is to write
    assert rerun_after_failure(c, RuntimeInit(), ("10.0.0.1", "kubeadm-init")) == initialised(masters)[-2:]
    assert rerun_after_failure(c, RuntimeInit(), ("10.0.0.1", "kubeadm-config")) == initialised(masters)[-4:]

    # the one step that consumes credentials also acts on them, after dealing with the leftovers
    s = PlanState(image=IMAGE, plugin=KubernetesRuntime(), targets=c.ips)
    secrets = {"join-token", "ca-cert-hash", "certificate-key"}
    consumers = {
        st.id
        for p in INSTALL_PHASES
        for st in p.plan(c, Facts(), s)
        if secrets & set(output_refs(st.command))
    }
    assert consumers == {"kubeadm-join"}
    m, w = join("10.0.0.3", master=True), join("10.0.0.5", master=False)
    write = "cat > /etc/kubernetes/kubeadm-join.yaml"
    assert (
        m.index("delete node")
        < m.index("bin/kubeadm reset -f")
        < m.index(write)
        < m.index("bin/kubeadm join --config")
    )
    assert w.index("--kubeconfig /etc/kubernetes/kubelet.conf get nodes") < w.index("bin/kubeadm reset -f")
    assert w.index("bin/kubeadm reset -f") < w.index(write) < w.index("bin/kubeadm join --config")
    assert "reset" not in INIT and initialised(masters)[-2][2].endswith(f"fi; {INIT}")


def test_secrets_are_only_placeholders_and_each_is_minted_before_use() -> None:
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3")
    s = PlanState(image=IMAGE, plugin=KubernetesRuntime(), targets=c.ips)
    minted: set[str] = set()
    joins = {}
    for p in INSTALL_PHASES:
        for st in p.plan(c, Facts(), s):
            assert set(output_refs(st.command)) <= minted, st.id
            if st.output:
                minted.add(st.output)
            if st.id == "kubeadm-join":
                joins[st.host] = st.command
    assert minted == {"kube-version", "join-token", "ca-cert-hash", "certificate-key"}
    values = {
        "join-token": "abcdef.0123456789abcdef",
        "ca-cert-hash": "sha256:" + "0" * 64,
        "certificate-key": "1" * 64,  # all digits: still a string in the file
    }
    body = resolve_outputs(joins["10.0.0.2"], values).split("\n", 1)[1].rsplit("\n", 1)[0]
    doc = yaml.safe_load(body)
    assert doc["discovery"]["bootstrapToken"] == {
        "apiServerEndpoint": "apiserver.cluster.local:6443",
        "token": "abcdef.0123456789abcdef",
        "caCertHashes": ["sha256:" + "0" * 64],
    }
    assert doc["controlPlane"]["certificateKey"] == "1" * 64
    worker = yaml.safe_load(resolve_outputs(joins["10.0.0.3"], values).split("\n", 1)[1].rsplit("\n", 1)[0])
    assert "controlPlane" not in worker


def test_nothing_for_hosts_outside_their_role() -> None:
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3")
    plugin = KubernetesRuntime()
    assert plugin.commands(phases.INIT, ctx(c, "10.0.0.2")) == ()
    assert plugin.commands(phases.JOIN_MASTER, ctx(c, "10.0.0.1")) == ()
    assert plugin.commands(phases.JOIN_MASTER, ctx(c, "10.0.0.3")) == ()
    assert plugin.commands(phases.JOIN_WORKER, ctx(c, "10.0.0.2")) == ()
    assert plugin.commands(phases.JOIN_CREDENTIALS, ctx(c, "10.0.0.2")) == ()
    assert plugin.commands(phases.KUBECONFIG, ctx(c, "10.0.0.3")) == ()
    assert plugin.commands(phases.UPGRADE_DONE, ctx(c, "10.0.0.3", "10.0.0.3")) == ()
    assert plugin.commands(phases.UPGRADE, ctx(c, "10.0.0.2", "10.0.0.3")) == ()
    assert plugin.commands("no-such-phase", ctx(c, "10.0.0.1")) == ()


def test_the_check_says_which_worker_lacks_haproxy() -> None:
    """The check phase, before any host changes: a worker needs haproxy (its own, or the
    image's bin/haproxy) for its local API endpoint; a master does not; every unfit worker is
    named in one error."""
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4,10.0.0.5")
    bare = frozenset({"sh", "tar", "sha256sum", "gzip"})
    facts = Facts(
        {
            ip: HostFacts(ip, IMAGE.platform, tools=bare | ({"haproxy"} if ip == "10.0.0.5" else set()))
            for ip in c.ips
        }
    )
    s = PlanState(image=IMAGE, plugin=KubernetesRuntime(), targets=c.ips)
    with pytest.raises(PhaseError) as caught:
        Check.verify(facts, s, c)
    assert caught.value.message == (
        "10.0.0.4: no haproxy: the kubernetes runtime runs it on every worker as the local API load balancer;"
        " install the haproxy package, or ship bin/haproxy in the image"
    )
    # the image ships its own: nothing to say
    shipped = replace(IMAGE, files={**IMAGE.files, "bin/haproxy": ""})
    Check.verify(facts, replace(s, image=shipped), c)
    # the probe finds it as the host's own tool
    assert "tool=$t" in probe_command("/var/lib/sealer") and "haproxy" in probe_command("/var/lib/sealer")
    assert "haproxy" in parse_probe("10.0.0.4", "arch=x86_64\ntool=haproxy\n").tools


def test_selected_by_label_and_metadata() -> None:
    assert KubernetesRuntime.label == "kubernetes" and KubernetesRuntime.metadata_runtime == "k8s"
    # bin/haproxy: only whether the image has it (the check phase's question, below)
    # then what tells an image of sealer's contract (test_runtime_sealer_image.py)
    assert KubernetesRuntime.config_files[:3] == (
        "etc/kubeadm.yaml",
        "statics/audit-policy.yml",
        "bin/haproxy",
    )
    assert isinstance(select_plugin("kubernetes", None), KubernetesRuntime)
    assert isinstance(select_plugin(None, "k8s"), KubernetesRuntime)


# --- the configuration merge ---------------------------------------------------------------------


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


def test_clusterfile_documents_merge_over_the_image_defaults() -> None:
    user: tuple[dict[str, Any], ...] = (
        {
            "apiVersion": "kubeadm.k8s.io/v1beta3",
            "kind": "ClusterConfiguration",
            "networking": {"podSubnet": "10.244.0.0/16"},
            "apiServer": {"certSANs": ["vip.example.com"], "extraArgs": {"audit-log-maxage": "7"}},
        },
        {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "maxPods": 200},
        {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration", "mode": "ipvs"},
        {
            "apiVersion": "kubeadm.k8s.io/v1beta3",
            "kind": "InitConfiguration",
            "nodeRegistration": {"kubeletExtraArgs": {"node-ip": "192.168.1.1", "v": "2"}},
        },
        {"apiVersion": "k0s.k0sproject.io/v1beta1", "kind": "ClusterConfig", "spec": {}},  # not ours
        {"apiVersion": "sealer.io/v2", "kind": "Plugin", "spec": {"type": "SHELL"}},
    )
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3", user)
    before = yaml.safe_dump(list(c.documents))
    docs = init_documents(c, c.master0, DEFAULTS)
    assert [d["kind"] for d in docs] == [
        "InitConfiguration",
        "ClusterConfiguration",
        "KubeletConfiguration",
        "KubeProxyConfiguration",
    ]
    got = by_kind(docs)
    conf = got["ClusterConfiguration"]
    assert conf["networking"] == {
        "dnsDomain": "cluster.local",
        "podSubnet": "10.244.0.0/16",
        "serviceSubnet": "10.96.0.0/22",
    }
    # the user's list replaces the image's; the names the runtime relies on come back
    assert conf["apiServer"] == {
        "certSANs": ["vip.example.com", "apiserver.cluster.local", "10.0.0.1", "10.0.0.2", "127.0.0.1"],
        "extraArgs": {"audit-log-maxage": "7"},
    }
    assert conf["controlPlaneEndpoint"] == "apiserver.cluster.local:6443"
    assert conf["etcd"] == {"local": {"dataDir": "/var/lib/etcd"}}
    assert got["KubeletConfiguration"] == {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
        "failSwapOn": False,
        "maxPods": 200,
    }
    assert got["KubeProxyConfiguration"]["mode"] == "ipvs"
    # the user's node-ip stays; the advertise address is always the host's
    init = got["InitConfiguration"]
    assert init["nodeRegistration"]["kubeletExtraArgs"] == {"node-ip": "192.168.1.1", "v": "2"}
    assert init["nodeRegistration"]["criSocket"] == "unix:///run/containerd/containerd.sock"
    assert init["localAPIEndpoint"] == {"bindPort": 6443, "advertiseAddress": "10.0.0.1"}
    assert yaml.safe_dump(list(c.documents)) == before  # the cluster's documents are untouched


def test_a_set_kubernetes_version_needs_no_version_step() -> None:
    user = (
        {
            "apiVersion": "kubeadm.k8s.io/v1beta3",
            "kind": "ClusterConfiguration",
            "kubernetesVersion": "v1.30.2",
        },
    )
    c = cluster("10.0.0.1", None, user)
    steps = KubernetesRuntime().commands(phases.INIT, ctx(c, "10.0.0.1"))
    assert "kubeadm-version" not in [st.id for st in steps]
    config = next(st.command for st in steps if st.id == "kubeadm-config")
    assert "kubernetesVersion: v1.30.2\n" in config and "{{output:" not in config


def test_join_configuration_keeps_the_users_fields_but_not_its_discovery() -> None:
    user = (
        {
            "apiVersion": "kubeadm.k8s.io/v1beta3",
            "kind": "JoinConfiguration",
            "nodeRegistration": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]},
            "discovery": {"file": {"kubeConfigPath": "/tmp/x"}, "timeout": "10m"},
            "controlPlane": {"localAPIEndpoint": {"bindPort": 7443}},
        },
    )
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3", user)
    master = join_document(c, c.host("10.0.0.2"), DEFAULTS)
    assert master["discovery"] == {
        "timeout": "10m",
        "bootstrapToken": {
            "apiServerEndpoint": "apiserver.cluster.local:6443",
            "token": "{{output:join-token}}",
            "caCertHashes": ["{{output:ca-cert-hash}}"],
        },
    }
    assert master["nodeRegistration"]["taints"] == [
        {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    ]
    assert master["controlPlane"] == {
        "localAPIEndpoint": {"bindPort": 7443, "advertiseAddress": "10.0.0.2"},
        "certificateKey": "{{output:certificate-key}}",
    }
    worker = join_document(c, c.host("10.0.0.3"), DEFAULTS)
    assert "controlPlane" not in worker
    assert worker["nodeRegistration"]["kubeletExtraArgs"] == {"node-ip": "10.0.0.3"}


def test_v1beta4_documents_and_no_image_defaults() -> None:
    """Without etc/kubeadm.yaml the Clusterfile's documents (or bare ones) are the config; in
    v1beta4 kubeletExtraArgs is a list of name/value pairs."""
    user = (
        {
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "InitConfiguration",
            "nodeRegistration": {"kubeletExtraArgs": [{"name": "v", "value": "2"}]},
        },
    )
    c = cluster("10.0.0.1", None, user)
    got = by_kind(init_documents(c, c.master0, None))
    assert got["InitConfiguration"]["nodeRegistration"]["kubeletExtraArgs"] == [
        {"name": "v", "value": "2"},
        {"name": "node-ip", "value": "10.0.0.1"},
    ]
    assert got["ClusterConfiguration"] == {
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "kubernetesVersion": "{{output:kube-version}}",
        "controlPlaneEndpoint": "apiserver.cluster.local:6443",
        "apiServer": {"certSANs": ["apiserver.cluster.local", "10.0.0.1", "127.0.0.1"]},
    }
    bare = by_kind(init_documents(cluster("10.0.0.1"), cluster("10.0.0.1").master0, None))
    assert bare["InitConfiguration"]["apiVersion"] == "kubeadm.k8s.io/v1beta3"
    assert join_document(c, c.master0, None)["apiVersion"] == "kubeadm.k8s.io/v1beta4"


# --- the audit policy (statics/audit-policy.yml) -------------------------------------------------

AUDIT_ARGS = {
    "audit-policy-file": "/etc/kubernetes/audit-policy.yml",
    "audit-log-path": "/var/log/kubernetes/audit.log",
    "audit-log-maxage": "7",
    "audit-log-maxbackup": "10",
    "audit-log-maxsize": "100",
}
AUDIT_VOLUMES = [
    {
        "name": "audit-policy",
        "hostPath": "/etc/kubernetes/audit-policy.yml",
        "mountPath": "/etc/kubernetes/audit-policy.yml",
        "readOnly": True,
        "pathType": "File",
    },
    {
        "name": "audit-log",
        "hostPath": "/var/log/kubernetes",
        "mountPath": "/var/log/kubernetes",
        "pathType": "DirectoryOrCreate",
    },
]


def test_an_image_without_the_audit_policy_gets_no_audit_flags() -> None:
    """The real kube-apiserver refuses to start when --audit-policy-file names a missing file,
    so the flags, the volumes and the copy come only with the image's statics/audit-policy.yml."""
    c = cluster("10.0.0.1,10.0.0.2")
    bare = {"etc/kubeadm.yaml": DEFAULTS}
    for phase, ip in ((phases.INIT, "10.0.0.1"), (phases.JOIN_MASTER, "10.0.0.2")):
        steps = KubernetesRuntime().commands(phase, ctx(c, ip, files=bare))
        assert steps and not any("audit" in st.command or "audit" in st.id for st in steps)
    api_server = by_kind(init_documents(c, c.master0, DEFAULTS))["ClusterConfiguration"]["apiServer"]
    assert set(api_server) == {"certSANs"}
    # a template counts as shipping it: the planner records it under the rendered name
    with_policy = {**bare, "statics/audit-policy.yml": "{{ .AnyEnv }}"}
    ids = [st.id for st in KubernetesRuntime().commands(phases.INIT, ctx(c, "10.0.0.1", files=with_policy))]
    assert "kubeadm-audit-policy" in ids


def test_the_clusterfiles_api_server_flags_and_volumes_win_over_the_audit_defaults() -> None:
    """As the merge documents: the Clusterfile's apiServer.extraArgs deep-merge over the image's,
    the audit flags fill only what neither set, and a volume of the same name or mount path is
    the user's (its hostPath is then theirs to provide)."""
    user = (
        {
            "apiVersion": "kubeadm.k8s.io/v1beta3",
            "kind": "ClusterConfiguration",
            "apiServer": {
                "extraArgs": {"audit-log-maxage": "30", "audit-log-path": "/data/audit.log", "v": "2"},
                "extraVolumes": [
                    {"name": "audit-log", "hostPath": "/data", "mountPath": "/data", "pathType": "Directory"}
                ],
            },
        },
    )
    c = cluster("10.0.0.1", None, user)
    api_server = by_kind(init_documents(c, c.master0, DEFAULTS, audit=True))["ClusterConfiguration"][
        "apiServer"
    ]
    assert api_server["extraArgs"] == {
        **AUDIT_ARGS,
        "audit-log-maxage": "30",
        "audit-log-path": "/data/audit.log",
        "v": "2",
    }
    assert api_server["extraVolumes"] == [*user[0]["apiServer"]["extraVolumes"], AUDIT_VOLUMES[0]]
    # the defaults alone: every flag and both volumes
    plain = by_kind(init_documents(cluster("10.0.0.1"), cluster("10.0.0.1").master0, DEFAULTS, audit=True))
    assert plain["ClusterConfiguration"]["apiServer"]["extraArgs"] == AUDIT_ARGS
    assert plain["ClusterConfiguration"]["apiServer"]["extraVolumes"] == AUDIT_VOLUMES
    # v1beta4: extraArgs is a list of name/value pairs; a name the user gave is left to them
    v4 = (
        {
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "ClusterConfiguration",
            "apiServer": {"extraArgs": [{"name": "audit-log-maxsize", "value": "500"}]},
        },
    )
    c4 = cluster("10.0.0.1", None, v4)
    args = by_kind(init_documents(c4, c4.master0, None, audit=True))["ClusterConfiguration"]["apiServer"][
        "extraArgs"
    ]
    assert args == [
        {"name": "audit-log-maxsize", "value": "500"},
        *({"name": n, "value": v} for n, v in AUDIT_ARGS.items() if n != "audit-log-maxsize"),
    ]


@pytest.mark.parametrize(
    ("documents", "image", "message"),
    [
        (
            ({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration"},),
            DEFAULTS,
            "ClusterConfiguration: the Clusterfile's apiVersion kubeadm.k8s.io/v1beta4 differs from "
            "kubeadm.k8s.io/v1beta3 in the image's etc/kubeadm.yaml",
        ),
        (
            ({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfiguration"},),
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\n",
            "kubeadm documents of several API versions: kubeadm.k8s.io/v1beta3, kubeadm.k8s.io/v1beta4",
        ),
        (
            (
                {"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration"},
                {"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration"},
            ),
            DEFAULTS,
            "the Clusterfile has two ClusterConfiguration documents; at most one",
        ),
        ((), "kind: [unclosed", "the image's etc/kubeadm.yaml is not YAML"),
        (
            (),
            "apiVersion: v1\nkind: ConfigMap\n",
            "the image's etc/kubeadm.yaml: document 1 is v1/ConfigMap, which kubeadm does not read",
        ),
        (
            ({"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration", "apiServer": "x"},),
            DEFAULTS,
            "ClusterConfiguration.apiServer must be a mapping, not str",
        ),
    ],
)
def test_unusable_configurations_are_refused(
    documents: tuple[dict[str, Any], ...], image: str, message: str
) -> None:
    c = cluster("10.0.0.1", None, documents)
    with pytest.raises(KubeadmConfigError) as info:
        KubernetesRuntime().commands(phases.INIT, ctx(c, "10.0.0.1", files={"etc/kubeadm.yaml": image}))
    assert str(info.value).startswith(message)


# --- node-config: the Clusterfile's labels and taints ------------------------------------------------


def on_joined(ip: str, command: str) -> str:
    return (
        f"i=0; while nodes=$({KUBECTL} get nodes -o wide --no-headers) || exit 1;"
        f' name=$(printf \'%s\\n\' "$nodes" | awk \'$6 == "{ip}" {{print $1}}\'); [ -z "$name" ];'
        f" do i=$((i + 1)); if [ $i -ge 60 ]; then echo 'no node with address {ip} after 60s' >&2; exit 1; fi;"
        f" sleep 1; done; {command}"
    )


def test_node_config_labels_and_taints_through_the_admin_kubeconfig() -> None:
    """kubectl with admin.conf on master0, after every join. master0 gives up kubeadm's
    control-plane taint (mark-control-plane put it there) to run workloads; a worker gets labels
    and a taint. Hosts without either have no step."""
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3,10.0.0.4")
    hosts = list(c.hosts)
    hosts[0] = replace(
        hosts[0], labels={"ingress": "yes"}, taints=("node-role.kubernetes.io/control-plane:NoSchedule-",)
    )
    hosts[2] = replace(hosts[2], labels={"disk": "ssd"}, taints=("dedicated=db:NoSchedule",))
    c = replace(c, hosts=tuple(hosts))
    untaint = (
        f'if out=$({KUBECTL} taint node "$name" node-role.kubernetes.io/control-plane:NoSchedule- 2>&1);'
        ' then echo "$out"; else case "$out" in *"not found"*)'
        " echo 'no taint node-role.kubernetes.io/control-plane:NoSchedule: nothing to remove' ;;"
        ' *) echo "$out" >&2; exit 1 ;; esac; fi'
    )
    assert plan(c, (NodeConfig(),), c.ips) == [
        (
            "10.0.0.1",
            "kubeadm-node-labels",
            on_joined("10.0.0.1", f'{KUBECTL} label node "$name" ingress=yes --overwrite'),
        ),
        ("10.0.0.1", "kubeadm-node-taints", on_joined("10.0.0.1", untaint)),
        (
            "10.0.0.1",
            "10.0.0.3/kubeadm-node-labels",
            on_joined("10.0.0.3", f'{KUBECTL} label node "$name" disk=ssd --overwrite'),
        ),
        (
            "10.0.0.1",
            "10.0.0.3/kubeadm-node-taints",
            on_joined(
                "10.0.0.3", f'{KUBECTL} taint node "$name" dedicated=db:NoSchedule --overwrite || exit 1'
            ),
        ),
    ]
    assert plan(c, (NodeConfig(),), ("10.0.0.2", "10.0.0.4")) == []
    assert KubernetesRuntime().commands(phases.NODE_CONFIG, ctx(c, "10.0.0.2", "10.0.0.3")) == ()
    assert KubernetesRuntime().commands(phases.NODE_CONFIG, ctx(c, "10.0.0.1", "10.0.0.2")) == ()
