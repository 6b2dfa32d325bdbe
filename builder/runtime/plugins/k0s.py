"""The `k0s` runtime: the k0s air-gap and manual multi-node install (docs.k0sproject.io), phase
by phase.

What the basefs rootfs holds (the user supplies the upstream files; nothing is downloaded):

    bin/k0s                                  the k0s binary -> /usr/local/bin/k0s
    images/k0s-airgap-bundle-<ver>-<arch>    the release's image bundle -> /var/lib/k0s/images/
    etc/k0s.yaml                             ClusterConfig defaults, merged with the Clusterfile's

Each controller gets /etc/k0s/k0s.yaml: the image's etc/k0s.yaml with the Clusterfile's
`ClusterConfig` document deep-merged over it, `spec.api.address` set to the host and
`spec.api.sans` always holding apiserver.cluster.local (the stable endpoint the kubeconfig
names), every master's address and 127.0.0.1. master0 runs `k0s install controller`; the others
join with a token minted on master0 just before (`k0s token create --role=... --expiry=1h`, a
named output, written on the joining host to a 0600 file). A master leaves etcd first
(`k0s etcd leave --peer-address`, run on master0 while the leaving controller is still up, as
the k0s "remove a controller" guide does), then `k0s stop` and `k0s reset` on the host.

`--enable-worker --no-taints` on the controllers only when the cluster has no workers. sealer's
own k0s runtime never passed it (its controllers were control plane only), which leaves a
cluster of masters alone with no node to schedule anything on, not even the image's apps; with
workers present the controllers stay control plane only, as k0s recommends. The rule is read
from the cluster as planned, so a controller keeps what it was installed with.

No `spec.api.externalAddress` by default: k0s's HA guide means it for a TCP load balancer in
front of every controller (6443, 8132, 9443), and nothing here load-balances
apiserver.cluster.local; a user with a load balancer or VIP sets it in the Clusterfile.
Instead, with more than one controller, k0s's own node-local load balancing
(`spec.network.nodeLocalLoadBalancing: {enabled: true, type: EnvoyProxy}`, docs "Node-local load
balancing"): each worker's k0s runs a load balancer on its loopback in front of every
controller, so no worker depends on the controller it joined through. Not with an
externalAddress (the docs' condition: that balancer already does it), and a Clusterfile that
sets nodeLocalLoadBalancing keeps its own. The controllers' network config must match (the HA
guide), so a cluster meant to grow from one controller sets it in the Clusterfile from the start.

Resumable joins: the runner skips the steps a failed attempt finished and mints join tokens
afresh only for a step that still needs one, so a join is one step (`k0s-join`) that writes the
token, installs, starts and waits until the host has joined, then overwrites the token file
whatever happened (a step killed outright leaves that to the next attempt's write). A re-run
therefore always joins with a token minted for it, never with one an earlier attempt left
(expired after 1h). The file stays, holding no token: k0s reads the `--token-file` its unit
names at every start, and failed to start without it (k0sctl #256, whose fix #257 overwrites
the file as here), though a host that has joined ignores what it says. What a failed attempt
leaves is cleaned the upstream way: a unit that exists is stopped and replaced with
`k0s install --force` (added in 2022 for k0s #1458; k0sctl passes it from v1.27.4), and on
master0 a controller's etcd member that a dead join added but never started (the member list
names it "") is removed with `k0s etcd leave` before the next token, as etcd refuses to add a
peer URL twice (k0s's AddMember: "Peer URLs already exists"). A started member is never
touched: that controller joined, and its re-run only restarts it. (With master0 alone plus that
unstarted member, real etcd has no quorum left and the leave cannot commit: only the joining
controller coming up, or etcd's own disaster recovery, gets past that.)

About 500 lines: the ClusterConfig merge and the shell pieces of resumable joins live here, with
their only caller.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import yaml

from builder.errors import K0sConfigError
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
ETCD_PEER_PORT = 2380
BIN = "/usr/local/bin/k0s"
IMAGES_DIR = "/var/lib/k0s/images"
CONFIG_DIR = "/etc/k0s"
CONFIG_FILE = "/etc/k0s/k0s.yaml"
PKI_DIR = "/var/lib/k0s/pki"
AUDIT_POLICY_FILE = "/etc/k0s/audit-policy.yml"
AUDIT_LOG = "/var/log/kubernetes/audit.log"
ADMIN_KUBECONFIG = "/var/lib/k0s/pki/admin.conf"  # a controller's admin kubeconfig (k0s docs)
KUBECTL = f"{BIN} kubectl"  # k0s's embedded kubectl, admin on a controller
CONTROLLER_TOKEN_FILE = "/etc/k0s/controller-token"
WORKER_TOKEN_FILE = "/etc/k0s/worker-token"
UNIT_DIR = "/etc/systemd/system"
UNITS = {"controller": f"{UNIT_DIR}/k0scontroller.service", "worker": f"{UNIT_DIR}/k0sworker.service"}
# What a token file holds once its join step is over: no token, but a file k0s can open (its
# unit names it at every start), worded after k0sctl's (#257). It goes into a shell command as
# it is: no quotes, dollar signs, backquotes or backslashes.
TOKEN_SCRUBBED = "# already joined: sealer writes a fresh join token for each attempt"

ROOTFS_BIN = "bin/k0s"
ROOTFS_IMAGES = "images/k0s-airgap-bundle-*"
ROOTFS_CONFIG = "etc/k0s.yaml"

API_VERSION = "k0s.k0sproject.io/v1beta1"
KIND = "ClusterConfig"

CONTROLLER_PORTS = (6443, 2380, 8132, 9443, 10250)
WORKER_PORTS = (10250,)
# What another install leaves behind. /var/lib/k0s itself may exist empty (a mount point).
EXISTING = (
    "/var/lib/k0s/pki",
    "/var/lib/k0s/etcd",
    "/var/lib/k0s/kubelet.conf",
    UNITS["controller"],
    UNITS["worker"],
    "/usr/local/bin/k3s-uninstall.sh",
    "/usr/local/bin/k3s-agent-uninstall.sh",
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/kubelet.conf",
)

CONTROLLER_TOKEN = "controller-token"  # + "-<the joining master's address>", see controller_token()
WORKER_TOKEN = "worker-token"  # one per attempt for every worker joining in it

_READY_TIMEOUT_S = 300
_DRAIN_TIMEOUT_S = 360.0
_HEREDOC_END = "K0S_CONFIG_EOF"


# --- /etc/k0s/k0s.yaml -------------------------------------------------------------------------


def _default_config() -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "k0s"}, "spec": {}}


def _check_document(doc: Mapping[str, object], where: str) -> None:
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise K0sConfigError(
            f"{where}: expected apiVersion {API_VERSION}, kind {KIND}; "
            f"got {doc.get('apiVersion')!r}, {doc.get('kind')!r}",
            hint="k0s reads only ClusterConfig documents of k0s.k0sproject.io/v1beta1",
        )


def image_config(text: str | None) -> dict[str, Any]:
    """The image's etc/k0s.yaml as a dict (a minimal ClusterConfig when the image has none)."""
    if text is None:
        return _default_config()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise K0sConfigError(f"the image's {ROOTFS_CONFIG} is not YAML: {err}") from None
    if not isinstance(doc, dict):
        raise K0sConfigError(f"the image's {ROOTFS_CONFIG} is not a mapping")
    _check_document(doc, f"the image's {ROOTFS_CONFIG}")
    return doc


def clusterfile_config(cluster: Cluster) -> Mapping[str, object] | None:
    """The Clusterfile's k0s ClusterConfig document, if it has one (two are an error)."""
    found = [
        d
        for d in cluster.documents
        if d.get("kind") == KIND and str(d.get("apiVersion", "")).startswith("k0s.k0sproject.io/")
    ]
    if len(found) > 1:
        raise K0sConfigError(f"the Clusterfile has {len(found)} k0s ClusterConfig documents; at most one")
    if not found:
        return None
    _check_document(found[0], "the Clusterfile's ClusterConfig")
    return found[0]


def controller_config(
    cluster: Cluster, host: HostSpec, image_text: str | None, *, audit: bool = False
) -> dict[str, Any]:
    """The /etc/k0s/k0s.yaml of controller `host`: image defaults < Clusterfile, then the
    addresses and SANs this runtime relies on (api.address, api.sans, the etcd peerAddress).
    `audit`: the image ships statics/audit-policy.yml, so spec.api.extraArgs gets the audit
    flags the Clusterfile has not set (its values win)."""
    config = image_config(image_text)
    overlay = clusterfile_config(cluster)
    if overlay is not None:
        config = deep_merge(config, overlay)
    spec = child_mapping(config, "spec", "ClusterConfig", K0sConfigError)
    api = child_mapping(spec, "api", "spec", K0sConfigError)
    api["address"] = host.ip
    sans = api.get("sans") or []
    if not isinstance(sans, list):
        raise K0sConfigError("spec.api.sans must be a list")
    required = [ENDPOINT, *(m.ip for m in cluster.masters), "127.0.0.1"]
    api["sans"] = [*sans, *(s for s in required if s not in sans)]
    if audit:
        extra = api.get("extraArgs")
        if not isinstance(extra, Mapping | None):
            raise K0sConfigError("spec.api.extraArgs must be a mapping")
        args = dict(extra or {})
        for name, value in audit_args(AUDIT_POLICY_FILE, AUDIT_LOG):
            args.setdefault(name, value)
        api["extraArgs"] = args
    if len(cluster.masters) > 1 and not api.get("externalAddress"):
        network = child_mapping(spec, "network", "spec", K0sConfigError)
        if "nodeLocalLoadBalancing" not in network:
            network["nodeLocalLoadBalancing"] = {"enabled": True, "type": "EnvoyProxy"}
    storage = child_mapping(spec, "storage", "spec", K0sConfigError)
    if storage.get("type", "etcd") == "etcd":
        # k0s defaults the etcd peer address to the first non-loopback address, not
        # api.address: on a host with several interfaces etcd would advertise the wrong one
        child_mapping(storage, "etcd", "spec.storage", K0sConfigError)["peerAddress"] = host.ip
    return config


def render_config(config: Mapping[str, Any]) -> str:
    """YAML for a quoted here-document: the document is a mapping, so every line yaml writes
    starts with a key or is indented (multi-line strings are quoted and indented), and no line
    can be the bare end marker."""
    text: str = yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)
    return text


# --- shell pieces ------------------------------------------------------------------------------


def _path(ctx: HostContext, relative: str) -> str:
    return shlex.quote(f"{ctx.rootfs}/{relative}")


def _on_node(ip: str, action: str, command: str) -> str:
    """Shell: `command` with $name set to the node with address `ip` (`base.on_node`). An
    unreachable API fails the step; a missing node is nothing to do (a controller without
    --enable-worker is no Kubernetes node)."""
    return base.on_node(KUBECTL, ip, action, command)


def controller_token(ip: str) -> str:
    """The output name of the token minted for master `ip`: one name per master, because the
    runner mints an output again whenever a pending step needs that name, and a shared name
    would make a re-run of the third master mint a token for the second one too."""
    return f"{CONTROLLER_TOKEN}-{ip.lower().replace('.', '-').replace(':', '-')}"


def _peer_url(ip: str) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"https://{host}:{ETCD_PEER_PORT}"


def _drain(ip: str) -> PluginStep:
    drain = f'{BIN} kubectl drain "$name" --ignore-daemonsets --delete-emptydir-data --timeout=300s'
    return PluginStep("k0s-drain", f"drain {ip}", _on_node(ip, "drain", drain), timeout_s=_DRAIN_TIMEOUT_S)


def _version_check(ctx: HostContext) -> str:
    """Shell: refuse a downgrade, a major change or skipping a minor version (`k0s version`
    prints v1.29.4+k0s.0)."""
    v = "sed 's/^v//; s/[+-].*//'"
    return (
        f"old=$({BIN} version | {v}); new=$({_path(ctx, ROOTFS_BIN)} version | {v}); "
        "set -- $(echo \"$old.$new\" | tr . ' '); "
        "if [ $# -ne 6 ]; then echo \"k0s versions not understood: installed '$old', new '$new'\" >&2; exit 1; fi; "
        'if [ "$1" != "$4" ] || [ "$5" -lt "$2" ] || { [ "$5" -eq "$2" ] && [ "$6" -lt "$3" ]; }; '
        'then echo "k0s $old -> $new: a downgrade or a major change is not supported" >&2; exit 1; fi; '
        'if [ "$5" -gt $(($2 + 1)) ]; then echo "k0s $old -> $new: upgrade one minor version at a time" >&2; exit 1; fi; '
        'echo "k0s $old -> $new"'
    )


def _wait_command(controller: bool) -> str:
    """Shell: wait until `k0s status` names a process (what sealer's k0s runtime waited for; a
    worker serves its status only once its kubelet is bootstrapped) and, on a controller, the
    API server answers /readyz (token create and joins need it, and a joining controller's
    answers only once its etcd member runs). Exits 1 after the timeout."""
    check = f"{BIN} status 2>/dev/null | grep -q '^Process ID:'"
    if controller:
        check += f" && {BIN} kubectl get --raw=/readyz >/dev/null 2>&1"
    return (
        f"i=0; until {check}; do i=$((i + 1)); if [ $i -ge {_READY_TIMEOUT_S} ]; then "
        f"echo 'k0s is not ready after {_READY_TIMEOUT_S}s' >&2; {BIN} status >&2; exit 1; fi; sleep 1; done; "
        f"{BIN} status"
    )


def _wait_ready(controller: bool) -> PluginStep:
    what = "k0s is running and the API server is ready" if controller else "k0s is running"
    return PluginStep("k0s-ready", what, _wait_command(controller), timeout_s=_READY_TIMEOUT_S + 30)


def _install_service(role: str, args: str) -> str:
    """Shell: `k0s install ROLE ARGS`, or, where a failed attempt left the unit (which plain
    `k0s install` refuses to overwrite), stop it and replace it with `--force`."""
    unit = UNITS[role]
    return (
        f"if [ -e {unit} ]; then {BIN} stop && {BIN} install {role} --force {args}; "
        f"else {BIN} install {role} {args}; fi"
    )


def _forget_unstarted_member(ip: str) -> str:
    """Shell, on master0: remove the etcd member with `ip`'s peer URL if it never started (etcd
    lists such a member with an empty name): what a controller join that died after the member
    was added leaves, and what makes etcd refuse that peer URL on the next join. Output goes to
    stderr: this runs before the token is printed."""
    url = _peer_url(ip)
    return (
        f'if {BIN} etcd member-list 2>&1 | grep -qF \'"":"{url}"\'; then '
        f"echo 'removing the etcd member {url}: an earlier join added it, it never started' >&2; "
        f"{BIN} etcd leave --peer-address {ip} >&2 || exit 1; fi"
    )


def _stop_reset(*, best_effort: bool) -> str:
    """Shell: `k0s stop` then `k0s reset` (which refuses while k0s runs, so a failed stop shows
    there), then the binary and /etc/k0s go. A host without k0s has nothing to do."""
    if best_effort:
        body = (
            f"{BIN} stop; if {BIN} reset; then rm -rf {CONFIG_DIR} && rm -f {BIN}; "
            "else echo 'k0s reset failed: continuing' >&2; fi"
        )
    else:
        body = f"{BIN} stop; {BIN} reset && rm -rf {CONFIG_DIR} && rm -f {BIN}"
    return f"if [ -x {BIN} ]; then {body}; else echo 'no {BIN}: nothing to reset'; fi"


class K0sRuntime(RuntimePlugin):
    name: ClassVar[str] = "k0s"
    label: ClassVar[str | None] = "k0s"
    metadata_runtime: ClassVar[str | None] = "k0s"
    kubectl: ClassVar[str | None] = KUBECTL
    config_files: ClassVar[tuple[str, ...]] = (ROOTFS_CONFIG, AUDIT_POLICY)
    launch_env: ClassVar[Mapping[str, str]] = {"KUBECONFIG": ADMIN_KUBECONFIG}  # for an image's own kubectl

    def commands(self, phase: str, ctx: HostContext) -> Sequence[PluginStep]:
        host = ctx.host
        if phase == base.PREFLIGHT:
            return self._preflight(ctx)
        if phase == base.INIT:
            if not ctx.is_master0:
                return ()
            return self._install(ctx, token_file=None)
        if phase == base.JOIN_CREDENTIALS:
            return self._credentials(ctx)
        if phase == base.JOIN_MASTER:
            if ctx.is_master0 or not host.is_master:
                return ()
            return self._install(ctx, token_file=CONTROLLER_TOKEN_FILE)
        if phase == base.JOIN_WORKER:
            if host.is_master:
                return ()
            return self._install(ctx, token_file=WORKER_TOKEN_FILE)
        if phase in (base.DELETE_MASTER, base.DELETE_WORKER):
            return self._delete(ctx)
        if phase == base.NODE_CONFIG:
            subject = ctx.subject
            if subject is not None and not self.is_node(ctx.cluster, subject):
                return ()  # labels and taints of a controller that is no node: see warnings()
            return base.node_config(ctx, KUBECTL, "k0s")
        if phase == base.RESET:
            return (PluginStep("k0s-reset", "k0s stop; k0s reset", _stop_reset(best_effort=True)),)
        if phase == base.UPGRADE:
            return self._upgrade(ctx)
        if phase == base.UPGRADE_DONE:
            subject = ctx.subject
            if not ctx.is_master0 or subject is None or subject.ip == host.ip:
                return ()
            uncordon = _on_node(subject.ip, "uncordon", f'{BIN} kubectl uncordon "$name"')
            return (PluginStep("k0s-uncordon", f"uncordon {subject.ip}", uncordon),)
        if phase == base.CERT:
            return self._cert(ctx)
        if phase == base.CERT_RENEW:
            if not host.is_master:
                return ()
            # k0s renews the certificates of its PKI that are near expiry when it starts
            return (
                PluginStep(
                    "k0s-cert-restart",
                    "restart k0s (it renews certificates at start)",
                    f"{BIN} stop && {BIN} start",
                ),
                _wait_ready(True),
            )
        if phase == base.CERT_CHECK:
            if not host.is_master:
                return ()
            check = base.openssl_expiry(f"{PKI_DIR}/*.crt {PKI_DIR}/etcd/*.crt")
            return (
                PluginStep(
                    "k0s-cert-check",
                    f"expiry of {PKI_DIR}/*.crt",
                    check,
                    output=base.cert_check_output(host.ip),
                ),
            )
        if phase == base.KUBECONFIG:
            if not ctx.is_master0:
                return ()
            sed = f"sed -E 's#(server:) https://[^[:space:]]+#\\1 https://{ENDPOINT}:{API_PORT}#'"
            return (
                PluginStep(
                    "k0s-kubeconfig",
                    f"admin kubeconfig for https://{ENDPOINT}:{API_PORT}",
                    f"{BIN} kubeconfig admin | {sed}",
                    output=base.KUBECONFIG_OUTPUT,
                ),
            )
        return ()

    @staticmethod
    def controllers_run_workloads(cluster: Cluster) -> bool:
        """Whether controllers get `--enable-worker --no-taints`: only with no worker at all."""
        return not cluster.nodes

    @classmethod
    def is_node(cls, cluster: Cluster, host: HostSpec) -> bool:
        """Whether `host` is a Kubernetes node: a worker, or a controller running workloads."""
        return not host.is_master or cls.controllers_run_workloads(cluster)

    def warnings(self, cluster: Cluster) -> Sequence[str]:
        """The quorum warning, and labels or taints given to controllers that are no nodes (a
        cluster with workers: k0s controllers are then control plane only, no kubelet)."""
        out = list(super().warnings(cluster))
        ignored = [h.ip for h in cluster.masters if (h.labels or h.taints) and not self.is_node(cluster, h)]
        if ignored:
            out.append(
                f"masters {', '.join(ignored)} have labels or taints, but k0s controllers are no "
                "Kubernetes nodes in a cluster with workers: they are not applied"
            )
        return tuple(out)

    def _preflight(self, ctx: HostContext) -> Sequence[PluginStep]:
        files = f"test -x {_path(ctx, ROOTFS_BIN)} && ls {shlex.quote(ctx.rootfs)}/{ROOTFS_IMAGES} >/dev/null"
        existing = (
            f"for f in {' '.join(EXISTING)}; do "
            'if [ -e "$f" ]; then echo "$f exists: another cluster runtime is installed here" >&2; exit 1; fi; done'
        )
        ports = " ".join(str(p) for p in (CONTROLLER_PORTS if ctx.host.is_master else WORKER_PORTS))
        free = (
            f"for p in {ports}; do "
            'if ss -Hltn "sport = :$p" | grep -q .; then echo "port $p is in use" >&2; exit 1; fi; done'
        )
        return (
            PluginStep("k0s-preflight-files", "the basefs holds bin/k0s and the image bundle", files),
            PluginStep("k0s-preflight-existing", "no k0s, k3s or kubeadm install on the host", existing),
            PluginStep("k0s-preflight-ports", f"ports {ports} are free", free),
        )

    def _binary(self, ctx: HostContext) -> PluginStep:
        return PluginStep(
            "k0s-binary", f"k0s binary into {BIN}", f"install -D -m 0755 {_path(ctx, ROOTFS_BIN)} {BIN}"
        )

    def _images(self, ctx: HostContext) -> PluginStep:
        # Every host: a controller installed with --enable-worker runs a kubelet too, and a
        # bundle a controller does not need costs only disk. An older release's bundle goes, so
        # an upgrade does not leave both for k0s to import.
        return PluginStep(
            "k0s-images",
            f"image bundle into {IMAGES_DIR}",
            f"mkdir -p {IMAGES_DIR} && rm -f {IMAGES_DIR}/k0s-airgap-bundle-* && "
            f"cp {shlex.quote(ctx.rootfs)}/{ROOTFS_IMAGES} {IMAGES_DIR}/",
        )

    def _config(self, ctx: HostContext) -> PluginStep:
        audit = has_audit_policy(ctx.image_files)
        config = controller_config(ctx.cluster, ctx.host, ctx.image_files.get(ROOTFS_CONFIG), audit=audit)
        # the policy sits beside k0s.yaml, so `k0s reset`'s `rm -rf /etc/k0s` takes it too
        policy = f"install -m 0600 {_path(ctx, AUDIT_POLICY)} {AUDIT_POLICY_FILE} && " if audit else ""
        command = (
            f"mkdir -p {CONFIG_DIR} && {policy}umask 077 && cat > {CONFIG_FILE}.tmp <<'{_HEREDOC_END}' && "
            f"mv {CONFIG_FILE}.tmp {CONFIG_FILE}\n{render_config(config)}{_HEREDOC_END}"
        )
        return PluginStep("k0s-config", f"{CONFIG_FILE}: image defaults < Clusterfile ClusterConfig", command)

    def _install(self, ctx: HostContext, *, token_file: str | None) -> Sequence[PluginStep]:
        host = ctx.host
        role = "controller" if host.is_master else "worker"
        steps = [self._binary(ctx), self._images(ctx)]
        if host.is_master:
            steps.append(self._config(ctx))
        kubelet = f"--kubelet-extra-args=--node-ip={host.ip}"
        args = f"--token-file {token_file}" if token_file is not None else ""
        if host.is_master:
            args = f"{args} -c {CONFIG_FILE}".lstrip()
            if self.controllers_run_workloads(ctx.cluster):
                args += f" --enable-worker --no-taints {kubelet}"
        else:
            args += f" {kubelet}"
        install = _install_service(role, args)
        if token_file is None:
            return (
                *steps,
                PluginStep("k0s-install", f"k0s install {role}", install),
                PluginStep("k0s-start", "k0s start", f"{BIN} start"),
                _wait_ready(host.is_master),
            )
        return (*steps, self._join(ctx, role, install, token_file))

    def _join(self, ctx: HostContext, role: str, install: str, token_file: str) -> PluginStep:
        """One step from token to joined host: the token is minted for this step only when it
        still has to run, and the file never outlives it holding a token (the EXIT trap)."""
        name = controller_token(ctx.host.ip) if ctx.host.is_master else WORKER_TOKEN
        scrub = f"\"printf '%s\\n' '{TOKEN_SCRUBBED}' > {token_file}\""
        write = (
            f"mkdir -p {CONFIG_DIR} && (umask 077 && printf '%s\\n' {output_ref(name)} > {token_file}.tmp "
            f"&& mv {token_file}.tmp {token_file})"
        )
        command = (
            f"trap {scrub} EXIT; {write} && {install} && {BIN} start && "
            f"{{ {_wait_command(ctx.host.is_master)}; }}"
        )
        return PluginStep(
            "k0s-join",
            f"join token into {token_file} (0600), k0s install {role}, start, wait until joined; "
            "the file then holds no token",
            command,
            timeout_s=_READY_TIMEOUT_S + 60,
        )

    def _credentials(self, ctx: HostContext) -> Sequence[PluginStep]:
        if not ctx.is_master0:
            return ()
        subject = ctx.subject
        role, output = ("worker", WORKER_TOKEN)
        if subject is not None and subject.is_master:
            role, output = ("controller", controller_token(subject.ip))
        mint = f"{BIN} token create --role={role} --expiry=1h"
        what = f"mint a {role} join token (1h)"
        if subject is not None and subject.is_master and self._has_etcd(ctx, subject):
            # in the minting step, which runs on every attempt that still has to join: a
            # journaled step of its own would be skipped on the attempt after the one that died
            mint = f"{_forget_unstarted_member(subject.ip)}; {mint}"
            what += f", after removing an etcd member of {subject.ip} that never started"
        return (PluginStep(f"k0s-{role}-token", what, mint, output),)

    @staticmethod
    def _has_etcd(ctx: HostContext, subject: HostSpec) -> bool:
        """Whether `subject` keeps the cluster state in etcd (k0s's default; not with kine)."""
        config = controller_config(ctx.cluster, subject, ctx.image_files.get(ROOTFS_CONFIG))
        return bool(config["spec"]["storage"].get("type", "etcd") == "etcd")

    def _delete(self, ctx: HostContext) -> Sequence[PluginStep]:
        subject = ctx.subject or ctx.host
        if ctx.host.ip == subject.ip:
            return (PluginStep("k0s-reset", "k0s stop && k0s reset", _stop_reset(best_effort=False)),)
        if not ctx.is_master0:
            return ()
        ip = subject.ip
        delete = f'{BIN} kubectl delete node "$name"'
        steps = [
            _drain(ip),
            PluginStep("k0s-delete-node", f"delete node {ip}", _on_node(ip, "delete", delete)),
        ]
        if subject.is_master:
            url = _peer_url(ip)
            controlnode = (
                f"name=$({BIN} etcd member-list | tr '{{}},' '\\n\\n\\n' | "
                f"awk -F'\"' '$4 == \"{url}\" {{print $2}}'); "
                f'if [ -n "$name" ]; then {BIN} kubectl delete controlnode.autopilot.k0sproject.io "$name" '
                "--ignore-not-found; fi"
            )
            leave = (
                f"if {BIN} etcd member-list | grep -qF '\"{url}\"'; then {BIN} etcd leave --peer-address {ip}; "
                f"else echo '{ip} is no etcd member: nothing to leave'; fi"
            )
            steps += [
                PluginStep("k0s-delete-controlnode", f"delete autopilot's ControlNode of {ip}", controlnode),
                PluginStep("k0s-etcd-leave", f"remove {ip} from etcd while it still runs", leave),
            ]
        return tuple(steps)

    def _upgrade(self, ctx: HostContext) -> Sequence[PluginStep]:
        subject = ctx.subject
        if subject is not None and subject.ip != ctx.host.ip:
            # master0, for another host about to be upgraded: drain it (nothing for a
            # controller that is no node)
            return (_drain(subject.ip),) if ctx.is_master0 else ()
        # k0s's manual upgrade: stop the service, replace the binary, start it again
        steps = [
            PluginStep("k0s-upgrade-check", "no downgrade, at most one minor version", _version_check(ctx)),
            self._images(ctx),
        ]
        if ctx.host.is_master:
            steps.append(self._config(ctx))
        steps += [
            PluginStep("k0s-stop", "k0s stop", f"{BIN} stop"),
            self._binary(ctx),
            PluginStep("k0s-start", "k0s start", f"{BIN} start"),
            _wait_ready(ctx.host.is_master),
        ]
        return tuple(steps)

    # --- cert: SANs added to the API server certificate (`sealer cert`) ---------------------------

    def with_cert_sans(
        self, cluster: Cluster, sans: Sequence[str], image_files: Mapping[str, str]
    ) -> Cluster:
        """The Clusterfile's ClusterConfig with `sans` in spec.api.sans (after the image's and
        the Clusterfile's own), so every later controller config carries them."""
        config = image_config(image_files.get(ROOTFS_CONFIG))
        overlay = clusterfile_config(cluster)
        if overlay is not None:
            config = deep_merge(config, overlay)
        api = dict(config.get("spec") or {}).get("api") or {}
        old = api.get("sans") if isinstance(api, Mapping) else None
        if old is not None and not isinstance(old, list):
            raise K0sConfigError("spec.api.sans must be a list")
        kept = [str(s) for s in old or ()]
        wanted = [*kept, *(s for s in sans if s not in kept)]
        docs: list[Mapping[str, object]] = []
        for doc in cluster.documents:
            if doc is overlay:
                new = dict(doc)
                spec = child_mapping(new, "spec", "ClusterConfig", K0sConfigError)
                child_mapping(spec, "api", "spec", K0sConfigError)["sans"] = wanted
                docs.append(new)
            else:
                docs.append(doc)
        if overlay is None:
            new_doc = {**_default_config(), "spec": {"api": {"sans": wanted}}}
            docs.append(new_doc)
        return replace(cluster, documents=tuple(docs))

    def _cert(self, ctx: HostContext) -> Sequence[PluginStep]:
        """On each controller (one at a time): k0s.yaml rewritten with the saved spec.api.sans,
        then k0s restarted; k0s writes the API server certificate anew from it at start."""
        if not ctx.host.is_master:
            return ()
        return (
            self._config(ctx),
            PluginStep(
                "k0s-cert-restart",
                "restart k0s (the API server certificate is made at start)",
                f"{BIN} stop && {BIN} start",
            ),
            _wait_ready(True),
        )
