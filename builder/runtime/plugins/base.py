"""The runtime plugin interface: what a cluster runtime (kubeadm, k3s, k0s, none) runs where.

A plugin maps a *runtime phase* name to the ordered commands one host runs in it, given that
host's role and context. It never connects, never sequences hosts and keeps no state: the
phases in `builder/runtime/phases/` (plugin_steps.py and a module per phase) decide which hosts take part and in what order
(init on master0; join masters one at a time; join workers in parallel; leave and reset in
reverse order), and the runner executes and journals. So a plugin's whole behaviour can be
compared with the upstream docs in a golden dry-run test.

Values known only at run time (a join token printed on master0) are *named outputs*: a step
with `output="join-token"` has its stdout (stripped) kept under that name, and a later command
refers to it as `output_ref("join-token")`, replaced (shell-quoted) when the command runs and
shown as the placeholder in a dry-run. Steps that produce outputs run on every attempt (join
credentials expire), never skipped by the journal.

What differs between the runtimes' kubectl is only how it is called on master0 (`kubectl
--kubeconfig /etc/kubernetes/admin.conf`, `k3s kubectl`, `k0s kubectl`), so the shell that acts
on a host's node, found by its address, is shared here: `on_node`, `on_joined_node`, and
`node_config`, the whole `node-config` phase (the Clusterfile's labels and taints).
"""

from __future__ import annotations

import re
import shlex
from abc import ABC
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from builder.errors import ClusterError
from builder.runtime.cluster import Cluster, HostSpec

# The runtime phases a plugin may answer, in the order a full life cycle meets them.
# The API server's audit policy, as sealer's basefs ships it: a rootfs file (rendered from
# `statics/audit-policy.yml.tmpl` like any template) that each plugin installs where its API
# server reads it and names in the audit flags. An image without it gets no audit flags: the
# real kube-apiserver refuses to start when --audit-policy-file names a missing file.
AUDIT_POLICY = "statics/audit-policy.yml"

PREFLIGHT = "preflight"  # every host, before init: ports free, no other install
INIT = "init"  # master0: the first control plane
JOIN_CREDENTIALS = "join-credentials"  # master0, just before each join: mints named outputs
JOIN_MASTER = "join-master"  # each other master, one at a time
JOIN_WORKER = "join-worker"  # each node, in parallel
DELETE_MASTER = "delete-master"  # a master leaving a running cluster (on master0 and/or itself)
DELETE_WORKER = "delete-worker"  # a node leaving: drain, delete node, uninstall
DELETE_DONE = "delete-done"  # master0, after a leaving host's own steps (kubeadm: delete the Node)
RESET = "reset"  # every host of a cluster being deleted: workers, masters, master0 last
UPGRADE = "upgrade"  # master0, then masters one by one, then workers (on master0 first: drain)
UPGRADE_DONE = "upgrade-done"  # master0, after a host's own `upgrade` (subject = it): uncordon
API_ENDPOINT = "api-endpoint"  # each worker (all of them when the masters change): the local API endpoint
NODE_CONFIG = "node-config"  # master0, after the joins, for each joined host with labels or taints
KUBECONFIG = "kubeconfig"  # master0: print the admin kubeconfig (the named output below)
CERT = "cert"  # each master, one at a time: the API server certificate with the saved SANs
CERT_RENEW = "cert-renew"  # each master, one at a time: every certificate renewed, restarts
CERT_CHECK = "cert-check"  # each master: the certificates' expiry, printed (a named output)
CERT_CHECK_OUTPUT = "cert-expiration"  # CERT_CHECK's output, prefixed by the master's address

KUBECONFIG_OUTPUT = "kubeconfig"  # the output a KUBECONFIG step gives; saved as ~/.sealer/NAME/kubeconfig
STABLE_ENDPOINT = "apiserver.cluster.local"  # in every API server certificate; kubeconfigs name it

RUNTIME_PHASES = (
    PREFLIGHT,
    INIT,
    JOIN_CREDENTIALS,
    JOIN_MASTER,
    API_ENDPOINT,
    JOIN_WORKER,
    NODE_CONFIG,
    DELETE_MASTER,
    DELETE_WORKER,
    DELETE_DONE,
    RESET,
    UPGRADE,
    UPGRADE_DONE,
    KUBECONFIG,
)

NODE_WAIT_S = 60  # how long node-config waits for a joined host's kubelet to register its node
_NODE_STEP_S = NODE_WAIT_S + 60.0

_OUTPUT_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_OUTPUT_REF = re.compile(r"\{\{output:([a-z][a-z0-9-]*)\}\}")


def output_ref(name: str) -> str:
    """The placeholder for named output `name` inside a command (`{{output:join-token}}`)."""
    if not _OUTPUT_NAME.match(name):
        raise ValueError(f"bad output name {name!r}")
    return "{{output:" + name + "}}"


def cert_check_output(ip: str) -> str:
    """The named output of a master's `cert-check` step (one per master: outputs are global)."""
    return CERT_CHECK_OUTPUT + "-" + re.sub(r"[^a-z0-9]", "-", ip.lower())


def openssl_expiry(paths: str) -> str:
    """Shell: "NAME  notAfter" for each certificate file matched by the glob(s) `paths`."""
    return (
        f'for f in {paths}; do [ -f "$f" ] || continue; '
        'printf \'%-60s %s\\n\' "$f" "$(openssl x509 -noout -enddate -in "$f" | cut -d= -f2)" || exit 1; done'
    )


def output_refs(command: str) -> tuple[str, ...]:
    """The output names `command` refers to, in order of first use."""
    return tuple(dict.fromkeys(_OUTPUT_REF.findall(command)))


def resolve_outputs(command: str, outputs: Mapping[str, str], quote: bool = True) -> str:
    """`command` with every placeholder replaced by its value; KeyError names a missing one."""

    def value(match: re.Match[str]) -> str:
        text = outputs[match.group(1)]
        return shlex.quote(text) if quote else text

    return _OUTPUT_REF.sub(value, command)


@dataclass(frozen=True, slots=True)
class PluginStep:
    """One command of a plugin on one host. `id` is stable (the journal keys on it)."""

    id: str
    description: str
    command: str
    output: str | None = None
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.output is not None and not _OUTPUT_NAME.match(self.output):
            raise ValueError(f"bad output name {self.output!r}")


@dataclass(frozen=True, slots=True)
class HostContext:
    """What a plugin knows about the host it plans for. `env` is the host's whole script env
    (image ENV < Clusterfile < host < -e, plus SEALER_*); `subject` is the host a master0 step
    acts for (the host being joined or deleted), else None. `image_files`: the plugin's
    `config_files` as the image has them (path -> text; a file the image lacks is absent).
    `cert_sans`: the SANs `sealer cert` saved, for the runtimes whose Clusterfile documents
    cannot hold them (k3s)."""

    cluster: Cluster
    host: HostSpec
    rootfs: str
    env: Mapping[str, str] = field(default_factory=dict)
    subject: HostSpec | None = None
    image_files: Mapping[str, str] = field(default_factory=dict)
    cert_sans: tuple[str, ...] = ()  # the SANs `sealer cert` saved (the cert phase: with the new ones)

    @property
    def is_master0(self) -> bool:
        return self.host.ip == self.cluster.master0.ip


class RuntimePlugin(ABC):
    """A cluster runtime. `name` is what `--runtime` and the saved state say; `label` the value
    of the image label `cluster.alpha.sealer.io/cluster-runtime-type` that selects it, and
    `metadata_runtime` Metadata's `ClusterRuntime` (None: no image selects it that way).
    `config_files`: rootfs paths of defaults the plugin merges with the Clusterfile's documents
    (read from the image on this machine, so planning stays pure). `etcd`: the control plane
    keeps its state in etcd on the masters, so their number decides the quorum.
    `kubectl`: kubectl as the cluster admin on master0, as this runtime spells it (None:
    no API server); the phases that act on API objects (save-clusterfile) run it there."""

    name: ClassVar[str]
    label: ClassVar[str | None] = None
    metadata_runtime: ClassVar[str | None] = None
    config_files: ClassVar[tuple[str, ...]] = ()
    etcd: ClassVar[bool] = True
    kubectl: ClassVar[str | None] = None
    # The env of the launch commands on master0 (below the cluster's): the admin kubeconfig, so
    # `kubectl` and `helm` in an app's commands reach the cluster on every runtime.
    launch_env: ClassVar[Mapping[str, str]] = {}

    def commands(self, phase: str, ctx: HostContext) -> Sequence[PluginStep]:
        """The ordered commands of `phase` on `ctx.host`; empty: the host has nothing to do."""
        return ()

    def with_cert_sans(
        self, cluster: Cluster, sans: Sequence[str], image_files: Mapping[str, str]
    ) -> Cluster:
        """`cluster` with `sans` added to its API server certificate's SANs where its saved
        Clusterfile documents keep them (so later joins and upgrades keep them); the `cert`
        phase then applies them on every master. A runtime without an API server refuses."""
        raise ClusterError(
            f"runtime {self.name} has no API server certificate",
            hint="sealer cert works on kubernetes, k3s and k0s clusters",
        )

    def host_problems(
        self, cluster: Cluster, host: HostSpec, tools: frozenset[str], image_files: Mapping[str, str]
    ) -> list[str]:
        """What stops this runtime on `host`, one phrase each, from the check's probe (`tools`:
        which of facts.PROBED_TOOLS it found) and the image's files (`config_files`)."""
        return []

    def warnings(self, cluster: Cluster) -> Sequence[str]:
        """Things worth saying before a run: with etcd, an even number of masters tolerates no
        more failures than one master fewer."""
        return quorum_warnings(len(cluster.masters)) if self.etcd else ()


def quorum_warnings(masters: int) -> tuple[str, ...]:
    if masters > 1 and masters % 2 == 0:
        return (
            f"{masters} masters: etcd needs a majority, so an even number tolerates no more "
            f"failures than {masters - 1}; use an odd number",
        )
    return ()


# --- nodes, as kubectl on master0 sees them ------------------------------------------------------


def _find_node(kubectl: str, ip: str) -> str:
    """Shell: $name = the node whose INTERNAL-IP (column 6 of `get nodes -o wide`) is `ip`, or
    empty; an unreachable API exits 1 (a node that seems gone may not be)."""
    return (
        f"nodes=$({kubectl} get nodes -o wide --no-headers) || exit 1; "
        f"name=$(printf '%s\\n' \"$nodes\" | awk '$6 == \"{ip}\" {{print $1}}')"
    )


def on_node(kubectl: str, ip: str, action: str, command: str) -> str:
    """Shell, on master0: run `command` with $name set to the node whose INTERNAL-IP is `ip`.
    `kubectl` is the plugin's admin kubectl (`k3s kubectl`). An unreachable API fails; a missing
    node is nothing to `action` (it left already, or was never one)."""
    return (
        f"{_find_node(kubectl, ip)}; "
        f'if [ -z "$name" ]; then echo "no node with address {ip}: nothing to {action}"; else {command}; fi'
    )


def on_joined_node(kubectl: str, ip: str, command: str, *, wait_s: int = NODE_WAIT_S) -> str:
    """Shell, on master0: run `command` with $name set to the node of a host that has just
    joined, waiting up to `wait_s` seconds for it to appear. A joined host's kubelet registers
    its node shortly after the join returns (kubeadm join and k3s's Type=notify start do not
    wait for it), so a missing node is not "nothing to do" here: it is a failure once the wait
    is over. An unreachable API fails at once."""
    return (
        f'i=0; while {_find_node(kubectl, ip)}; [ -z "$name" ]; do i=$((i + 1)); '
        f"if [ $i -ge {wait_s} ]; then echo 'no node with address {ip} after {wait_s}s' >&2; exit 1; fi; "
        f"sleep 1; done; {command}"
    )


def node_config(ctx: HostContext, kubectl: str, id_prefix: str) -> tuple[PluginStep, ...]:
    """The `node-config` steps on master0 for `ctx.subject`: its Clusterfile labels and taints
    put on its node with `kubectl label|taint node NAME ... --overwrite` (so a re-run, or a value
    the runtime set first, is no failure). A taint ending in `-` is removed (kubectl's syntax),
    each on its own, a taint the node lacks being nothing to remove (kubectl refuses a whole
    command for one missing taint). `kubectl`: the plugin's admin kubectl on master0;
    `id_prefix`: its step id prefix (`k3s`). Nothing for a host without labels or taints."""
    subject = ctx.subject
    if not ctx.is_master0 or subject is None:
        return ()
    ip = subject.ip
    steps: list[PluginStep] = []
    if subject.labels:
        pairs = [f"{k}={v}" for k, v in subject.labels.items()]
        args = " ".join(shlex.quote(p) for p in pairs)
        command = on_joined_node(kubectl, ip, f'{kubectl} label node "$name" {args} --overwrite')
        steps.append(
            PluginStep(
                f"{id_prefix}-node-labels",
                f"label node {ip}: {' '.join(pairs)}",
                command,
                timeout_s=_NODE_STEP_S,
            )
        )
    if subject.taints:
        added = [t for t in subject.taints if not t.endswith("-")]
        removed = [t for t in subject.taints if t.endswith("-")]
        parts: list[str] = []
        if added:
            args = " ".join(shlex.quote(t) for t in added)
            parts.append(f'{kubectl} taint node "$name" {args} --overwrite || exit 1')
        for taint in removed:
            quoted = shlex.quote(taint)
            gone = shlex.quote(f"no taint {taint[:-1]}: nothing to remove")
            parts.append(
                f'if out=$({kubectl} taint node "$name" {quoted} 2>&1); then echo "$out"; '
                f'else case "$out" in *"not found"*) echo {gone} ;; *) echo "$out" >&2; exit 1 ;; esac; fi'
            )
        command = on_joined_node(kubectl, ip, "; ".join(parts))
        steps.append(
            PluginStep(
                f"{id_prefix}-node-taints",
                f"taint node {ip}: {' '.join(subject.taints)}",
                command,
                timeout_s=_NODE_STEP_S,
            )
        )
    return tuple(steps)
