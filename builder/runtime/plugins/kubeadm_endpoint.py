"""The stable API endpoint of the kubeadm runtime, so that no host depends on master0 alone to
reach an API server (what sealer's lvscare does with IPVS on every worker).

`apiserver.cluster.local:6443` is kubeadm's controlPlaneEndpoint: every kubeconfig, the kubelet's,
kube-proxy's and the join's discovery name it. Where it leads, per host (the /etc/hosts block
that basefs/kubernetes/scripts/init.sh writes, "# BEGIN sealer kubernetes: apiserver.cluster.local"):

    master0          itself
    another master   master0 while it joins (kubeadm join needs a running API server), itself
                     once its own API server is up (`kubeadm-endpoint-self`, after the join), as
                     sealer does: its kubelet then never waits on another master
    worker           127.0.0.1, where a local haproxy (`sealer-apiserver-lb.service`) listens and
                     balances over every master's API server, each health-checked over HTTPS
                     (GET /healthz, the check kubeadm's HA guide gives haproxy) and skipped
                     while down; connections to a master that refuses are redispatched

haproxy rather than IPVS: IPVS may be missing from a kernel, and a TCP proxy on the loopback
needs no VIP. Debian's `haproxy` package, or the image's `bin/haproxy` when it ships one (the
unit names whichever was found on the host at install). It runs on every worker, one master or
several: adding a master later then only rewrites the backend list, and the kubelet,
kube-proxy and every pod using the stable name keep their address.

The backend list is rendered from the cluster's masters: the `api-endpoint` phase rewrites it on
every worker when a master joins or leaves (its step id carries the list's digest, so the
journal re-runs it for each new list, and skips it for one already written) and reloads haproxy
(a seamless reload: `haproxy -Ws` starts new workers and lets the old ones finish).
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping, Sequence

from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.plugins._kubeadm import API_PORT, ENDPOINT, heredoc, rootfs_path
from builder.runtime.plugins.base import HostContext, PluginStep

LB_UNIT = "sealer-apiserver-lb"
LB_UNIT_FILE = f"/etc/systemd/system/{LB_UNIT}.service"
LB_DIR = "/etc/sealer/apiserver-lb"
LB_CONFIG = f"{LB_DIR}/haproxy.cfg"
LB_RUN_DIR = f"/run/{LB_UNIT}"
LB_SOCKET = f"{LB_RUN_DIR}/admin.sock"  # haproxy's runtime API: `show servers state` lists the backends
# The workers (the processes that proxy) run as nobody, in an empty root: only the master, which
# binds and reloads, stays root. 65534 is nobody on Debian, Ubuntu, RHEL and SUSE alike, and a
# number needs no user entry in the host's passwd (or the image's haproxy's).
LB_USER_ID = 65534
LB_CHROOT = f"{LB_RUN_DIR}/empty"
LB_ADDRESS = f"127.0.0.1:{API_PORT}"
ROOTFS_HAPROXY = "bin/haproxy"
HOSTS_BEGIN = f"# BEGIN sealer kubernetes: {ENDPOINT}"  # init.sh's block
HOSTS_END = f"# END sealer kubernetes: {ENDPOINT}"
LB_WAIT_S = 30  # how long haproxy has to listen after a start or reload


def haproxy_config(cluster: Cluster) -> str:
    """haproxy.cfg of a worker's local API endpoint: TCP on 127.0.0.1:6443 to every master's
    6443, each checked with GET /healthz over TLS (not verified: the check only asks "up?").

    Timeouts: kubelet and kube-proxy hold watches open for minutes without a byte, so client
    and server timeouts are 10 minutes (kubespray's local haproxy uses 5 and 15); a master that
    stops answering is marked down after 2 failed checks 2 s apart, up after 2 good ones."""
    servers = "".join(f"    server master-{m.ip} {m.ip}:{API_PORT}\n" for m in cluster.masters)
    return (
        f"# written by sealer (cluster {cluster.name}): the API servers of every master, rewritten\n"
        "# when masters join or leave; edits here are lost\n"
        "global\n"
        "    maxconn 4000\n"
        f"    uid {LB_USER_ID}\n"
        f"    gid {LB_USER_ID}\n"
        f"    chroot {LB_CHROOT}\n"
        f"    stats socket {LB_SOCKET} mode 600 level admin\n"
        "defaults\n"
        "    mode tcp\n"
        "    timeout connect 5s\n"
        "    timeout client 10m\n"
        "    timeout server 10m\n"
        "    timeout check 5s\n"
        "    retries 3\n"
        "    option redispatch\n"
        "frontend apiserver\n"
        f"    bind {LB_ADDRESS}\n"
        "    default_backend apiserver\n"
        "backend apiserver\n"
        "    balance roundrobin\n"
        "    option httpchk GET /healthz\n"
        "    http-check expect status 200\n"
        "    default-server check check-ssl verify none inter 2s fall 2 rise 2\n"
        f"{servers}"
    )


def backends_id(cluster: Cluster) -> str:
    """The step id of a backend list: the same masters, the same id (the journal skips a list
    already written), another list, another id."""
    listed = ",".join(m.ip for m in cluster.masters)
    return "apiserver-lb-backends-" + hashlib.sha256(listed.encode()).hexdigest()[:12]


def _unit(binary: str) -> str:
    """The unit, as Debian's haproxy.service runs it: master-worker mode with systemd's notify
    protocol (-Ws), the config checked before a reload, reload = SIGUSR2 to the master."""
    return (
        "[Unit]\n"
        "Description=sealer: local load balancer in front of every master's API server\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "[Service]\n"
        "Type=notify\n"
        f"ExecStartPre=/bin/mkdir -p {LB_CHROOT}\n"
        f"ExecStartPre={binary} -c -q -f {LB_CONFIG}\n"
        f"ExecStart={binary} -Ws -f {LB_CONFIG}\n"
        f"ExecReload={binary} -c -q -f {LB_CONFIG}\n"
        "ExecReload=/bin/kill -USR2 $MAINPID\n"
        "KillMode=mixed\n"
        "Restart=always\n"
        "RestartSec=2s\n"
        "SuccessExitStatus=143\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def _listening() -> str:
    """Shell: wait until haproxy listens on 127.0.0.1:6443, or fail naming its unit."""
    return (
        f"i=0; until ss -Hltn 'sport = :{API_PORT}' | grep -q '127.0.0.1:{API_PORT}'; do i=$((i + 1)); "
        f"if [ $i -ge {LB_WAIT_S * 10} ]; then echo 'haproxy does not listen on {LB_ADDRESS} "
        f"after {LB_WAIT_S}s: see systemctl status {LB_UNIT}' >&2; exit 1; fi; sleep 0.1; done"
    )


NO_HAPROXY = (
    "no haproxy: the kubernetes runtime runs it on every worker as the local API load balancer; "
    "install the haproxy package, or ship bin/haproxy in the image"
)


def haproxy_problems(host: HostSpec, tools: frozenset[str], image_files: Mapping[str, str]) -> list[str]:
    """The check phase's word on a worker: it needs haproxy, the image's or its own."""
    if host.is_master or "haproxy" in tools or ROOTFS_HAPROXY in image_files:
        return []
    return [NO_HAPROXY]


def lb_preflight_step(ctx: HostContext) -> PluginStep:
    """runtime-preflight on a worker, once the rootfs is there: the same question, asked on it."""
    image_binary = rootfs_path(ctx, ROOTFS_HAPROXY)
    command = f"if [ -x {image_binary} ] || command -v haproxy >/dev/null; then :; else echo '{NO_HAPROXY}' >&2; exit 1; fi"
    return PluginStep("kubeadm-preflight-haproxy", "haproxy for the local API load balancer", command)


def lb_steps(ctx: HostContext) -> Sequence[PluginStep]:
    """The `api-endpoint` phase on a worker: the unit (once), then this cluster's backend list
    (validated by haproxy before it replaces the old one), started or reloaded, and listening."""
    if ctx.host.is_master:
        return ()
    image_binary = rootfs_path(ctx, ROOTFS_HAPROXY)
    pick = (
        f"if [ -x {image_binary} ]; then bin={image_binary}; "
        "elif bin=$(command -v haproxy); then :; "
        f"else echo '{NO_HAPROXY}' >&2; exit 1; fi"
    )
    # the unit is rendered on the host, where the binary is found: ${bin} below is the shell's
    unit = _unit("${bin}").replace("$MAINPID", "\\$MAINPID")
    install = (
        f"{pick}; mkdir -p {LB_DIR} && cat > {LB_UNIT_FILE} <<SEALER_LB_UNIT_EOF\n"
        f"{unit}SEALER_LB_UNIT_EOF\n"
        f"systemctl daemon-reload && systemctl enable {LB_UNIT}"
    )
    config = heredoc(f"{LB_CONFIG}.new", haproxy_config(ctx.cluster), private=False)
    apply = (
        f"{config}\n"
        f"bin=$(sed -n 's/^ExecStart=\\([^ ]*\\) .*/\\1/p' {LB_UNIT_FILE}) && "
        f'"$bin" -c -q -f {LB_CONFIG}.new && mv {LB_CONFIG}.new {LB_CONFIG} && '
        f"if systemctl is-active --quiet {LB_UNIT}; then systemctl reload {LB_UNIT}; "
        f"else systemctl start {LB_UNIT}; fi && {{ {_listening()}; }}"
    )
    masters = ", ".join(m.ip for m in ctx.cluster.masters)
    return (
        PluginStep(
            "apiserver-lb-unit",
            f"{LB_UNIT}.service: haproxy (the image's bin/haproxy, else the host's) on {LB_ADDRESS}",
            install,
        ),
        PluginStep(backends_id(ctx.cluster), f"{LB_CONFIG}: backends {masters}; start or reload", apply),
    )


def lb_remove_step() -> PluginStep:
    """A leaving worker (or every host of a deleted cluster): the load balancer stopped, its
    unit and config removed. Nothing there is nothing to do."""
    command = (
        f"{{ systemctl disable --now {LB_UNIT} 2>/dev/null || true; }} && "
        f"rm -f {LB_UNIT_FILE} {LB_CONFIG} {LB_CONFIG}.new && "
        f"{{ rmdir {LB_DIR} /etc/sealer 2>/dev/null || true; }} && rm -rf {LB_RUN_DIR} && "
        "systemctl daemon-reload"
    )
    return PluginStep("apiserver-lb-remove", f"stop and remove {LB_UNIT}.service and its config", command)


def endpoint_block_command(ip: str | None) -> str:
    """Shell: init.sh's /etc/hosts block rewritten in place (/etc/hosts may be a bind mount) to
    lead the stable name to `ip`; None: the block removed."""
    begin, end = shlex.quote(HOSTS_BEGIN), shlex.quote(HOSTS_END)
    block = f" && printf '%s\\n%s {ENDPOINT}\\n%s\\n' {begin} {ip} {end} >> \"$tmp\"" if ip else ""
    return (
        "tmp=$(mktemp /etc/.hosts.sealer-kubernetes.XXXXXX) && trap 'rm -f \"$tmp\"' EXIT && "
        f"awk -v b={begin} -v e={end} '$0 == b {{skip = 1; next}} $0 == e {{skip = 0; next}} !skip' "
        f'/etc/hosts > "$tmp"{block} && cat "$tmp" > /etc/hosts'
    )


def endpoint_self_step(ctx: HostContext) -> PluginStep:
    """A master that has just joined: the stable name leads to its own API server from now on."""
    ip = ctx.host.ip
    command = endpoint_block_command(ip)
    return PluginStep("kubeadm-endpoint-self", f"{ENDPOINT} -> {ip} (this master's own API server)", command)
