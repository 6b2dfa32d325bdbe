"""Golden dry-run plans of the k3s runtime plugin (pure: no hosts), against the commands the k3s
air-gap install, HA embedded etcd, manual upgrade and uninstall docs give."""

from __future__ import annotations

import subprocess
from pathlib import Path

from builder.image.descriptor import Platform
from builder.image.digest import Digest
from builder.runtime.facts import Facts
from builder.runtime.phases import (
    ImageInfo,
    JoinMasters,
    JoinNodes,
    NodeConfig,
    PlanState,
    RuntimeInit,
    RuntimeLeave,
    RuntimeReset,
    install_phases,
)
from builder.runtime.plugins import base as phases
from builder.runtime.plugins import select_plugin
from builder.runtime.plugins.base import (
    UPGRADE_DONE,
    on_joined_node,
    output_refs,
    resolve_outputs,
)
from builder.runtime.plugins.k3s import K3sRuntime
from tests.unit.runtime._plugin_golden import INSTALL_PHASES, PluginGolden, R, Row, configured

BASEFS = Path(__file__).resolve().parents[3] / "basefs" / "k3s"
IMAGE = ImageInfo(
    name="k3s:v1.28.5",
    digest=Digest("sha256", "cd" * 32),
    platform=Platform("linux", "amd64"),
    # the basefs image ships the audit policy (statics/audit-policy.yml)
    files={"statics/audit-policy.yml": (BASEFS / "statics" / "audit-policy.yml").read_text()},
)
GOLDEN = PluginGolden(K3sRuntime, IMAGE)
cluster, plan, ctx, rows = GOLDEN.cluster, GOLDEN.plan, GOLDEN.ctx, GOLDEN.rows
rerun_after_failure = GOLDEN.rerun_after_failure

# The commands, written out as the upstream docs give them.
FILES = (
    f"test -x {R}/bin/k3s && test -f {R}/scripts/k3s-install.sh"
    f" && ls {R}/images/k3s-airgap-images-*.tar* >/dev/null"
)
EXISTING = (
    "for f in /usr/local/bin/k3s-uninstall.sh /usr/local/bin/k3s-agent-uninstall.sh"
    " /etc/kubernetes/admin.conf /etc/kubernetes/kubelet.conf"
    " /etc/systemd/system/k0scontroller.service /etc/systemd/system/k0sworker.service;"
    ' do if [ -e "$f" ]; then'
    ' echo "$f exists: another cluster runtime is installed here" >&2; exit 1; fi; done'
)
SERVER_PORTS = (
    'for p in 6443 2379 2380 10250; do if ss -Hltn "sport = :$p" | grep -q .; then'
    ' echo "port $p is in use" >&2; exit 1; fi; done'
)
AGENT_PORTS = (
    'for p in 10250; do if ss -Hltn "sport = :$p" | grep -q .; then'
    ' echo "port $p is in use" >&2; exit 1; fi; done'
)
BINARY = f"install -D -m 0755 {R}/bin/k3s /usr/local/bin/k3s"
IMAGES = (
    "mkdir -p /var/lib/rancher/k3s/agent/images"
    f" && cp {R}/images/k3s-airgap-images-*.tar* /var/lib/rancher/k3s/agent/images/"
)
CONFIG = (
    "mkdir -p /etc/rancher/k3s"
    f" && if [ -f {R}/etc/k3s/config.yaml ]; then cp {R}/etc/k3s/config.yaml /etc/rancher/k3s/config.yaml; fi"
    f" && if [ -f {R}/etc/k3s/registries.yaml ]; then"
    f" cp {R}/etc/k3s/registries.yaml /etc/rancher/k3s/registries.yaml; fi"
)
# a server also gets the audit policy where k3s's CIS hardening guide puts it
SERVER_CONFIG = (
    f"{CONFIG} && install -D -m 0600 {R}/statics/audit-policy.yml /var/lib/rancher/k3s/server/audit.yaml"
)
AUDIT_FLAGS = (
    " --kube-apiserver-arg audit-policy-file=/var/lib/rancher/k3s/server/audit.yaml"
    " --kube-apiserver-arg audit-log-path=/var/lib/rancher/k3s/server/logs/audit.log"
    " --kube-apiserver-arg audit-log-maxage=7 --kube-apiserver-arg audit-log-maxbackup=10"
    " --kube-apiserver-arg audit-log-maxsize=100"
)
# INSTALL_K3S_FORCE_RESTART: a re-run after a failed attempt starts k3s even when install.sh
# writes the same unit and env file again ("No change detected" would skip the start)
INSTALL = "INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_FORCE_RESTART=true"
INIT = (
    f"{INSTALL} sh {R}/scripts/k3s-install.sh"
    f" server --cluster-init --tls-san apiserver.cluster.local{AUDIT_FLAGS} --node-ip 10.0.0.1"
)


def join_server(ip: str) -> str:
    return (
        f"{INSTALL} K3S_TOKEN={{{{output:server-token}}}}"
        f" sh {R}/scripts/k3s-install.sh server --server https://10.0.0.1:6443"
        f" --tls-san apiserver.cluster.local{AUDIT_FLAGS} --node-ip {ip}"
    )


def join_agent(ip: str) -> str:
    return (
        f"{INSTALL} K3S_URL=https://apiserver.cluster.local:6443 K3S_TOKEN={{{{output:agent-token}}}}"
        f" sh {R}/scripts/k3s-install.sh agent --node-ip {ip}"
    )


def on_node(ip: str, action: str, command: str) -> str:
    return (
        "nodes=$(/usr/local/bin/k3s kubectl get nodes -o wide --no-headers) || exit 1;"
        f" name=$(printf '%s\\n' \"$nodes\" | awk '$6 == \"{ip}\" {{print $1}}');"
        f' if [ -z "$name" ]; then echo "no node with address {ip}: nothing to {action}"; else {command}; fi'
    )


def drain(ip: str) -> str:
    return on_node(
        ip,
        "drain",
        '/usr/local/bin/k3s kubectl drain "$name" --ignore-daemonsets --delete-emptydir-data --timeout=300s',
    )


SERVER_UNINSTALL = (
    "if [ -x /usr/local/bin/k3s-uninstall.sh ]; then /usr/local/bin/k3s-uninstall.sh;"
    " else echo 'no /usr/local/bin/k3s-uninstall.sh: nothing to uninstall'; fi"
)
SERVER_RESET = (
    "if [ -x /usr/local/bin/k3s-uninstall.sh ]; then /usr/local/bin/k3s-uninstall.sh"
    " || echo 'k3s-uninstall.sh failed: continuing' >&2;"
    " else echo 'no /usr/local/bin/k3s-uninstall.sh: nothing to reset'; fi"
)
AGENT_RESET = (
    "if [ -x /usr/local/bin/k3s-agent-uninstall.sh ]; then /usr/local/bin/k3s-agent-uninstall.sh"
    " || echo 'k3s-agent-uninstall.sh failed: continuing' >&2;"
    " else echo 'no /usr/local/bin/k3s-agent-uninstall.sh: nothing to reset'; fi"
)
VERSION_CHECK = (
    "old=$(/usr/local/bin/k3s --version | awk 'NR == 1 {print $3}' | sed 's/^v//; s/[+-].*//');"
    f" new=$({R}/bin/k3s --version | awk 'NR == 1 {{print $3}}' | sed 's/^v//; s/[+-].*//');"
    " set -- $(echo \"$old.$new\" | tr . ' ');"
    " if [ $# -ne 6 ]; then echo \"k3s versions not understood: installed '$old', new '$new'\" >&2; exit 1; fi;"
    ' if [ "$1" != "$4" ] || [ "$5" -lt "$2" ] || { [ "$5" -eq "$2" ] && [ "$6" -lt "$3" ]; };'
    ' then echo "k3s $old -> $new: a downgrade or a major change is not supported" >&2; exit 1; fi;'
    ' if [ "$5" -gt $(($2 + 1)) ]; then echo "k3s $old -> $new: upgrade one minor version at a time" >&2;'
    ' exit 1; fi; echo "k3s $old -> $new"'
)


def server_preflight(ip: str) -> list[Row]:
    return [
        (ip, "k3s-preflight-files", FILES),
        (ip, "k3s-preflight-existing", EXISTING),
        (ip, "k3s-preflight-ports", SERVER_PORTS),
    ]


def agent_preflight(ip: str) -> list[Row]:
    return [
        (ip, "k3s-preflight-files", FILES),
        (ip, "k3s-preflight-existing", EXISTING),
        (ip, "k3s-preflight-ports", AGENT_PORTS),
    ]


def staged(ip: str, install: str) -> list[Row]:
    server = "k3s-install.sh server" in install
    return [
        (ip, "k3s-binary", BINARY),
        (ip, "k3s-images", IMAGES),
        (ip, "k3s-config", SERVER_CONFIG if server else CONFIG),
        (ip, "k3s-install", install),
    ]


def test_one_master() -> None:
    c = cluster("10.0.0.1")
    assert plan(c, INSTALL_PHASES, c.ips) == server_preflight("10.0.0.1") + staged("10.0.0.1", INIT)
    assert rows(c, phases.KUBECONFIG, "10.0.0.1") == [
        (
            "10.0.0.1",
            "k3s-kubeconfig",
            "sed 's#server: https://127.0.0.1:6443#server: https://apiserver.cluster.local:6443#'"
            " /etc/rancher/k3s/k3s.yaml",
        )
    ]
    (step,) = K3sRuntime().commands(phases.KUBECONFIG, ctx(c, "10.0.0.1"))
    assert step.output == "kubeconfig"
    assert K3sRuntime().warnings(c) == ()


def test_three_masters_and_two_workers() -> None:
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4,10.0.0.5")
    server_token = "cat /var/lib/rancher/k3s/server/token"
    agent_token = "cat /var/lib/rancher/k3s/server/agent-token"
    assert plan(c, INSTALL_PHASES, c.ips) == [
        *server_preflight("10.0.0.1"),
        *server_preflight("10.0.0.2"),
        *server_preflight("10.0.0.3"),
        *agent_preflight("10.0.0.4"),
        *agent_preflight("10.0.0.5"),
        *staged("10.0.0.1", INIT),
        # each server token read on master0 just before that master joins, one at a time
        ("10.0.0.1", "10.0.0.2/k3s-server-token", server_token),
        *staged("10.0.0.2", join_server("10.0.0.2")),
        ("10.0.0.1", "10.0.0.3/k3s-server-token", server_token),
        *staged("10.0.0.3", join_server("10.0.0.3")),
        # the agent token once, then every agent
        ("10.0.0.1", "k3s-agent-token", agent_token),
        *staged("10.0.0.4", join_agent("10.0.0.4")),
        *staged("10.0.0.5", join_agent("10.0.0.5")),
    ]
    s = PlanState(image=IMAGE, plugin=K3sRuntime(), targets=c.ips)
    creds = [st for p in INSTALL_PHASES for st in p.plan(c, Facts(), s) if st.output]
    assert [(st.output, st.journal) for st in creds] == [
        ("server-token", False),
        ("server-token", False),
        ("agent-token", False),
    ]
    assert K3sRuntime().warnings(c) == ()
    (warning,) = K3sRuntime().warnings(cluster("10.0.0.1,10.0.0.2"))
    assert warning.startswith("2 masters: etcd needs a majority")


def test_adding_a_worker() -> None:
    c = cluster("10.0.0.1", "10.0.0.2,10.0.0.3")
    assert plan(c, INSTALL_PHASES, ("10.0.0.3",)) == [
        *agent_preflight("10.0.0.3"),
        ("10.0.0.1", "k3s-agent-token", "cat /var/lib/rancher/k3s/server/agent-token"),
        *staged("10.0.0.3", join_agent("10.0.0.3")),
    ]


def test_removing_a_master() -> None:
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4")
    leave = (RuntimeLeave(), RuntimeReset())
    assert plan(c, leave, ("10.0.0.3",)) == [
        ("10.0.0.1", "10.0.0.3/k3s-drain", drain("10.0.0.3")),
        (
            "10.0.0.1",
            "10.0.0.3/k3s-delete-node",
            on_node("10.0.0.3", "delete", '/usr/local/bin/k3s kubectl delete node "$name"'),
        ),
        ("10.0.0.3", "k3s-uninstall", SERVER_UNINSTALL),
    ]
    # a worker: the same on master0, then the agent's uninstall script
    assert plan(c, leave, ("10.0.0.4",))[-1] == (
        "10.0.0.4",
        "k3s-uninstall",
        "if [ -x /usr/local/bin/k3s-agent-uninstall.sh ]; then /usr/local/bin/k3s-agent-uninstall.sh;"
        " else echo 'no /usr/local/bin/k3s-agent-uninstall.sh: nothing to uninstall'; fi",
    )


def test_reset() -> None:
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4,10.0.0.5")
    assert plan(c, (RuntimeLeave(), RuntimeReset()), c.ips, delete_all=True) == [
        ("10.0.0.4", "k3s-uninstall", AGENT_RESET),
        ("10.0.0.5", "k3s-uninstall", AGENT_RESET),
        ("10.0.0.2", "k3s-uninstall", SERVER_RESET),
        ("10.0.0.3", "k3s-uninstall", SERVER_RESET),
        ("10.0.0.1", "k3s-uninstall", SERVER_RESET),
    ]


def test_upgrade() -> None:
    """The order the upgrade phase will use: master0, the masters one by one, then for each
    worker: drain on master0, the worker itself, uncordon on master0."""
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3")

    def upgraded(ip: str, service: str) -> list[Row]:
        return [
            (ip, "k3s-upgrade-check", VERSION_CHECK),
            (ip, "k3s-images", IMAGES),
            (ip, "k3s-config", SERVER_CONFIG if service == "k3s" else CONFIG),
            (ip, "k3s-binary", BINARY),
            (ip, "k3s-restart", f"systemctl restart {service}"),
        ]

    got = [
        *rows(c, phases.UPGRADE, "10.0.0.1"),
        *rows(c, phases.UPGRADE, "10.0.0.1", "10.0.0.2"),  # nothing on master0 for a master
        *rows(c, phases.UPGRADE, "10.0.0.2"),
        *rows(c, phases.UPGRADE, "10.0.0.1", "10.0.0.3"),
        *rows(c, phases.UPGRADE, "10.0.0.3", "10.0.0.3"),
        *rows(c, UPGRADE_DONE, "10.0.0.1", "10.0.0.3"),
    ]
    assert got == [
        *upgraded("10.0.0.1", "k3s"),
        *upgraded("10.0.0.2", "k3s"),
        ("10.0.0.1", "k3s-drain", drain("10.0.0.3")),
        *upgraded("10.0.0.3", "k3s-agent"),
        (
            "10.0.0.1",
            "k3s-uncordon",
            on_node("10.0.0.3", "uncordon", '/usr/local/bin/k3s kubectl uncordon "$name"'),
        ),
    ]


def test_a_join_that_failed_at_any_step_resumes_with_the_token_read_again() -> None:
    """The resumable shape: whichever step of a join failed, the re-run starts at that step, and
    the token is read on master0 again right before the one step that uses it (install.sh,
    which also starts k3s); once that step is done nothing needs the token and nothing runs."""
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4")
    agent = staged("10.0.0.4", join_agent("10.0.0.4"))
    agent_token = ("10.0.0.1", "k3s-agent-token", "cat /var/lib/rancher/k3s/server/agent-token")
    for i, (_, step, _) in enumerate(agent):
        assert rerun_after_failure(c, JoinNodes(), ("10.0.0.4", step)) == [agent_token, *agent[i:]]
    # the third master failed: its token is read again just before its install, and only its:
    # the second master's read is skipped, as the next read of "server-token" comes before
    # anything pending uses it
    third = staged("10.0.0.3", join_server("10.0.0.3"))
    read = "cat /var/lib/rancher/k3s/server/token"
    tokens = [("10.0.0.1", "10.0.0.3/k3s-server-token", read)]
    for i, (_, step, _) in enumerate(third):
        assert rerun_after_failure(c, JoinMasters(), ("10.0.0.3", step)) == [*tokens, *third[i:]]
    assert rerun_after_failure(c, JoinNodes(), None) == []
    assert rerun_after_failure(c, JoinMasters(), None) == []
    # init on master0: nothing to read; a failed install.sh runs again and restarts k3s
    assert rerun_after_failure(c, RuntimeInit(), ("10.0.0.1", "k3s-install")) == [
        ("10.0.0.1", "k3s-install", INIT)
    ]
    for _, step, command in (*agent, *third, *staged("10.0.0.1", INIT)):
        if step == "k3s-install":
            assert command.startswith(INSTALL + " "), command
        else:  # the staging steps copy files: running them twice is harmless
            assert "{{output:" not in command and ("install -D" in command or "cp " in command)


def test_secrets_are_only_placeholders_and_each_is_minted_before_use() -> None:
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4")
    s = PlanState(image=IMAGE, plugin=K3sRuntime(), targets=c.ips)
    minted: set[str] = set()
    for p in INSTALL_PHASES:
        for st in p.plan(c, Facts(), s):
            assert set(output_refs(st.command)) <= minted, st.id
            assert "K3S_TOKEN=" not in st.command or "K3S_TOKEN={{output:" in st.command
            if st.output:
                minted.add(st.output)
    assert minted == {"server-token", "agent-token"}
    resolved = resolve_outputs(join_agent("10.0.0.4"), {"agent-token": "K10abc::server:x y"})
    assert "K3S_TOKEN='K10abc::server:x y' sh" in resolved


def test_nothing_for_hosts_outside_their_role() -> None:
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3")
    plugin = K3sRuntime()
    assert plugin.commands(phases.INIT, ctx(c, "10.0.0.2")) == ()
    assert plugin.commands(phases.JOIN_MASTER, ctx(c, "10.0.0.3")) == ()
    assert plugin.commands(phases.JOIN_WORKER, ctx(c, "10.0.0.2")) == ()
    assert plugin.commands(phases.JOIN_CREDENTIALS, ctx(c, "10.0.0.2")) == ()
    assert plugin.commands(phases.KUBECONFIG, ctx(c, "10.0.0.3")) == ()
    assert plugin.commands("no-such-phase", ctx(c, "10.0.0.1")) == ()


def test_selected_by_label_and_metadata() -> None:
    assert K3sRuntime.label == "k3s" and K3sRuntime.metadata_runtime == "k3s"
    assert K3sRuntime.config_files == ("statics/audit-policy.yml",)
    assert isinstance(select_plugin("k3s", None), K3sRuntime)
    assert isinstance(select_plugin(None, "k3s"), K3sRuntime)


def test_an_image_without_the_audit_policy_gets_no_audit_flags() -> None:
    """k3s would start a kube-apiserver that exits at once on a missing policy file."""
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3")
    bare = ImageInfo(name=IMAGE.name, digest=IMAGE.digest, platform=IMAGE.platform)
    got = plan(c, INSTALL_PHASES, c.ips, image=bare)
    assert got and not [row for row in got if "audit" in row[2]]
    # with it, only the servers: agents run no API server
    audited = {row[0] for row in plan(c, INSTALL_PHASES, c.ips) if "audit" in row[2]}
    assert audited == {"10.0.0.1", "10.0.0.2"}


# --- node-config: the Clusterfile's labels and taints ------------------------------------------------


KUBECTL = "/usr/local/bin/k3s kubectl"


def on_joined(ip: str, command: str) -> str:
    """The node of a host that has just joined, waited for up to 60 s (its kubelet registers it
    after the join returns), then `command` with $name."""
    return (
        f"i=0; while nodes=$({KUBECTL} get nodes -o wide --no-headers) || exit 1;"
        f' name=$(printf \'%s\\n\' "$nodes" | awk \'$6 == "{ip}" {{print $1}}\'); [ -z "$name" ];'
        f" do i=$((i + 1)); if [ $i -ge 60 ]; then echo 'no node with address {ip} after 60s' >&2; exit 1; fi;"
        f" sleep 1; done; {command}"
    )


def untaint(taint: str) -> str:
    """Removing one taint: one that is not there is nothing to remove (kubectl refuses it)."""
    return (
        f'if out=$({KUBECTL} taint node "$name" {taint} 2>&1); then echo "$out";'
        f' else case "$out" in *"not found"*) echo \'no taint {taint[:-1]}: nothing to remove\' ;;'
        ' *) echo "$out" >&2; exit 1 ;; esac; fi'
    )


def test_node_config_labels_and_taints_each_host_from_master0_after_the_joins() -> None:
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4,10.0.0.5")
    c = configured(
        c, "10.0.0.2", {"topology.kubernetes.io/zone": "a"}, ("CriticalAddonsOnly=true:NoExecute",)
    )
    c = configured(
        c, "10.0.0.4", {"disk": "ssd", "gpu": ""}, ("dedicated=gpu:NoSchedule", "spot:PreferNoSchedule")
    )
    assert plan(c, (NodeConfig(),), c.ips) == [
        (
            "10.0.0.1",
            "10.0.0.2/k3s-node-labels",
            on_joined("10.0.0.2", f'{KUBECTL} label node "$name" topology.kubernetes.io/zone=a --overwrite'),
        ),
        (
            "10.0.0.1",
            "10.0.0.2/k3s-node-taints",
            on_joined(
                "10.0.0.2",
                f'{KUBECTL} taint node "$name" CriticalAddonsOnly=true:NoExecute --overwrite || exit 1',
            ),
        ),
        (
            "10.0.0.1",
            "10.0.0.4/k3s-node-labels",
            on_joined("10.0.0.4", f'{KUBECTL} label node "$name" disk=ssd gpu= --overwrite'),
        ),
        (
            "10.0.0.1",
            "10.0.0.4/k3s-node-taints",
            on_joined(
                "10.0.0.4",
                f'{KUBECTL} taint node "$name" dedicated=gpu:NoSchedule spot:PreferNoSchedule --overwrite || exit 1',
            ),
        ),
    ]
    s = PlanState(image=IMAGE, plugin=K3sRuntime(), targets=c.ips)
    steps = NodeConfig().plan(c, Facts(), s)
    assert all(st.journal and st.output is None for st in steps)  # done once; --overwrite anyway
    assert [st.description for st in steps] == [
        "label node 10.0.0.2: topology.kubernetes.io/zone=a",
        "taint node 10.0.0.2: CriticalAddonsOnly=true:NoExecute",
        "label node 10.0.0.4: disk=ssd gpu=",
        "taint node 10.0.0.4: dedicated=gpu:NoSchedule spot:PreferNoSchedule",
    ]
    # adding a worker: only its own labels, still from master0; a host without any: nothing
    assert [(h, i) for h, i, _ in plan(c, (NodeConfig(),), ("10.0.0.4",))] == [
        ("10.0.0.1", "10.0.0.4/k3s-node-labels"),
        ("10.0.0.1", "10.0.0.4/k3s-node-taints"),
    ]
    assert plan(c, (NodeConfig(),), ("10.0.0.3", "10.0.0.5")) == []
    # master0's own node: no subject prefix, the same commands
    c0 = configured(c, "10.0.0.1", {"role": "first"})
    assert plan(c0, (NodeConfig(),), ("10.0.0.1",)) == [
        (
            "10.0.0.1",
            "k3s-node-labels",
            on_joined("10.0.0.1", f'{KUBECTL} label node "$name" role=first --overwrite'),
        )
    ]
    assert K3sRuntime().commands(phases.NODE_CONFIG, ctx(c, "10.0.0.4", "10.0.0.4")) == ()  # master0 only


def test_node_config_runs_after_the_joins_and_before_the_kubeconfig() -> None:
    # the hook phases around them: test_runtime_hooks.py
    names = [p.name for p in install_phases() if not p.name.startswith("hook-")]
    assert names[names.index("join-nodes") : names.index("kubeconfig") + 1] == [
        "join-nodes",
        "node-config",
        "kubeconfig",
    ]


def test_node_config_removes_taints_ending_in_a_dash() -> None:
    """Label values are checked on loading (kubectl's rules), so they never need quoting; the
    commands quote them all the same."""
    c = configured(
        cluster("10.0.0.1", "10.0.0.2"),
        "10.0.0.2",
        {"example.com/team": "a.b_c-1"},
        ("a=b:NoSchedule", "node-role.kubernetes.io/master:NoSchedule-", "x:NoExecute-"),
    )
    assert plan(c, (NodeConfig(),), c.ips) == [
        (
            "10.0.0.1",
            "10.0.0.2/k3s-node-labels",
            on_joined("10.0.0.2", f'{KUBECTL} label node "$name" example.com/team=a.b_c-1 --overwrite'),
        ),
        (
            "10.0.0.1",
            "10.0.0.2/k3s-node-taints",
            on_joined(
                "10.0.0.2",
                f'{KUBECTL} taint node "$name" a=b:NoSchedule --overwrite || exit 1; '
                + untaint("node-role.kubernetes.io/master:NoSchedule-")
                + "; "
                + untaint("x:NoExecute-"),
            ),
        ),
    ]


def run_with_kubectl(command: str, kubectl: str) -> subprocess.CompletedProcess[str]:
    """`command` under sh with `k3s kubectl` as the shell function body `kubectl` ($1 the verb)."""
    script = f"k3s() {{ shift; {kubectl}; }}; " + command.replace("/usr/local/bin/k3s", "k3s")
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)


def test_the_node_config_shell_does_what_it_says() -> None:
    """Run the commands with a kubectl that answers like the real one: the node found by its
    address, a taint that is not there nothing to remove, anything else failing the step."""
    c = configured(cluster("10.0.0.1", "10.0.0.2"), "10.0.0.2", {}, ("a=b:NoSchedule", "x:NoExecute-"))
    (taints,) = K3sRuntime().commands(phases.NODE_CONFIG, ctx(c, "10.0.0.1", "10.0.0.2"))
    nodes = (
        "echo 'm0   Ready   control-plane   1m   v1.28.5   10.0.0.1   <none>'; "
        "echo 'w1   Ready   <none>   1m   v1.28.5   10.0.0.2   <none>'"
    )
    kubectl = (
        f'case "$1" in get) {nodes} ;; taint) case "$*" in *-) '
        'echo "error: taint \\"x:NoExecute\\" not found" >&2; return 1 ;; '
        '*) echo "node/$3 tainted: $4" ;; esac ;; esac'
    )
    done = run_with_kubectl(taints.command, kubectl)
    assert (done.returncode, done.stdout) == (
        0,
        "node/w1 tainted: a=b:NoSchedule\nno taint x:NoExecute: nothing to remove\n",
    )
    refused = run_with_kubectl(taints.command, kubectl.replace("not found", "is forbidden"))
    assert refused.returncode == 1 and 'error: taint "x:NoExecute" is forbidden' in refused.stderr
    unreachable = run_with_kubectl(taints.command, "echo 'The connection was refused' >&2; return 1")
    assert unreachable.returncode == 1 and "tainted" not in unreachable.stdout
    # a node that never registers fails once the wait is over (1 s here: no sleep)
    gone = run_with_kubectl(
        on_joined_node("/usr/local/bin/k3s kubectl", "10.0.0.9", "echo found", wait_s=1), kubectl
    )
    assert (gone.returncode, gone.stdout, gone.stderr) == (1, "", "no node with address 10.0.0.9 after 1s\n")


def test_a_server_joining_after_sealer_cert_serves_the_saved_sans() -> None:
    from builder.runtime.cluster_mirror import MirrorFacts

    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3")
    s = PlanState(
        IMAGE, K3sRuntime(), ("10.0.0.2", "10.0.0.3"), mirror=MirrorFacts(("api.example.com", "10.9.9.9"))
    )
    installs = {st.host: st.command for st in JoinMasters().plan(c, Facts(), s) + JoinNodes().plan(c, Facts(), s)
                if st.id == "k3s-install"}  # fmt: skip
    assert (
        "--tls-san apiserver.cluster.local --tls-san api.example.com --tls-san 10.9.9.9"
        in installs["10.0.0.2"]
    )
    assert "--tls-san" not in installs["10.0.0.3"]  # an agent serves no API
