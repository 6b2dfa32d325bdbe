"""Golden dry-run plans of the k0s runtime plugin (pure: no hosts), against the commands the k0s
air-gap install, multi-node manual install, HA control plane, remove-a-controller, reset and
manual upgrade docs give; plus the ClusterConfig merge, and the resumable shape of joins (what a
re-run after a failure at any step runs, and the join and minting steps' shell run for real)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from builder.errors import K0sConfigError
from builder.image.descriptor import Platform
from builder.image.digest import Digest
from builder.runtime.cluster import Cluster
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
)
from builder.runtime.phases.upgrade import Upgrade
from builder.runtime.plugins import base as phases
from builder.runtime.plugins import select_plugin
from builder.runtime.plugins.base import output_refs, resolve_outputs
from builder.runtime.plugins.k0s import K0sRuntime, controller_config, controller_token, deep_merge
from tests.unit.runtime._plugin_golden import INSTALL_PHASES, PluginGolden, R, Row
from tests.unit.runtime._plugin_golden import configured as labelled

IMAGE_CONFIG = """\
apiVersion: k0s.k0sproject.io/v1beta1
kind: ClusterConfig
metadata:
  name: k0s
spec:
  api:
    sans:
      - apiserver.cluster.local
  network:
    provider: kuberouter
    podCIDR: 10.244.0.0/16
    serviceCIDR: 10.96.0.0/12
  images:
    default_pull_policy: Never
  telemetry:
    enabled: false
"""
IMAGE = ImageInfo(
    name="k0s:v1.29.4",
    digest=Digest("sha256", "ef" * 32),
    platform=Platform("linux", "amd64"),
    # as the basefs image: the ClusterConfig defaults and the audit policy it ships
    files={"etc/k0s.yaml": IMAGE_CONFIG, "statics/audit-policy.yml": "kind: Policy\n"},
)
GOLDEN = PluginGolden(K0sRuntime, IMAGE)
cluster, plan, ctx, rows = GOLDEN.cluster, GOLDEN.plan, GOLDEN.ctx, GOLDEN.rows
rerun_after_failure = GOLDEN.rerun_after_failure
K0S = "/usr/local/bin/k0s"

# The commands, written out as the upstream docs give them.
FILES = f"test -x {R}/bin/k0s && ls {R}/images/k0s-airgap-bundle-* >/dev/null"
EXISTING = (
    "for f in /var/lib/k0s/pki /var/lib/k0s/etcd /var/lib/k0s/kubelet.conf"
    " /etc/systemd/system/k0scontroller.service /etc/systemd/system/k0sworker.service"
    " /usr/local/bin/k3s-uninstall.sh /usr/local/bin/k3s-agent-uninstall.sh"
    ' /etc/kubernetes/admin.conf /etc/kubernetes/kubelet.conf; do if [ -e "$f" ]; then'
    ' echo "$f exists: another cluster runtime is installed here" >&2; exit 1; fi; done'
)
CONTROLLER_PORTS = (
    'for p in 6443 2380 8132 9443 10250; do if ss -Hltn "sport = :$p" | grep -q .; then'
    ' echo "port $p is in use" >&2; exit 1; fi; done'
)
WORKER_PORTS = (
    'for p in 10250; do if ss -Hltn "sport = :$p" | grep -q .; then'
    ' echo "port $p is in use" >&2; exit 1; fi; done'
)
BINARY = f"install -D -m 0755 {R}/bin/k0s /usr/local/bin/k0s"
IMAGES = (
    "mkdir -p /var/lib/k0s/images && rm -f /var/lib/k0s/images/k0s-airgap-bundle-*"
    f" && cp {R}/images/k0s-airgap-bundle-* /var/lib/k0s/images/"
)
START = f"{K0S} start"


def ready(controller: bool) -> str:
    check = f"{K0S} status 2>/dev/null | grep -q '^Process ID:'"
    if controller:
        check += f" && {K0S} kubectl get --raw=/readyz >/dev/null 2>&1"
    return (
        f"i=0; until {check}; do i=$((i + 1)); if [ $i -ge 300 ]; then"
        f" echo 'k0s is not ready after 300s' >&2; {K0S} status >&2; exit 1; fi; sleep 1; done;"
        f" {K0S} status"
    )


def install(role: str, args: str) -> str:
    """`k0s install`, or, over the unit a failed attempt left, stop and `install --force`."""
    return (
        f"if [ -e /etc/systemd/system/k0s{role}.service ]; then {K0S} stop && {K0S} install {role} --force {args};"
        f" else {K0S} install {role} {args}; fi"
    )


SCRUBBED = "# already joined: sealer writes a fresh join token for each attempt"


def join_step(role: str, output: str, args: str) -> str:
    """The one join step: token file, install, start, wait; the file scrubbed on any exit."""
    f = f"/etc/k0s/{role}-token"
    return (
        f"trap \"printf '%s\\n' '{SCRUBBED}' > {f}\" EXIT;"
        f" mkdir -p /etc/k0s && (umask 077 && printf '%s\\n' {{{{output:{output}}}}} > {f}.tmp && mv {f}.tmp {f})"
        f" && {install(role, args)} && {START} && {{ {ready(role == 'controller')}; }}"
    )


# k0s's node-local load balancing, with more than one controller (docs "Node-local load balancing")
NLLB = "    nodeLocalLoadBalancing:\n      enabled: true\n      type: EnvoyProxy\n"


def config(ip: str, masters: tuple[str, ...], extra_sans: tuple[str, ...] = ()) -> str:
    sans = "".join(f"    - {s}\n" for s in ("apiserver.cluster.local", *extra_sans, *masters, "127.0.0.1"))
    # spec.api.extraArgs from the image's statics/audit-policy.yml (k0s runs kube-apiserver on
    # the host, so the flags name host paths), written next to k0s.yaml by the same step
    audit_args = (
        "    extraArgs:\n"
        "      audit-policy-file: /etc/k0s/audit-policy.yml\n"
        "      audit-log-path: /var/log/kubernetes/audit.log\n"
        "      audit-log-maxage: '7'\n"
        "      audit-log-maxbackup: '10'\n"
        "      audit-log-maxsize: '100'\n"
    )
    text = (
        "apiVersion: k0s.k0sproject.io/v1beta1\n"
        "kind: ClusterConfig\n"
        "metadata:\n"
        "  name: k0s\n"
        "spec:\n"
        "  api:\n"
        "    sans:\n"
        f"{sans}"
        f"    address: {ip}\n"
        f"{audit_args}"
        "  network:\n"
        "    provider: kuberouter\n"
        "    podCIDR: 10.244.0.0/16\n"
        "    serviceCIDR: 10.96.0.0/12\n"
        f"{NLLB if len(masters) > 1 else ''}"
        "  images:\n"
        "    default_pull_policy: Never\n"
        "  telemetry:\n"
        "    enabled: false\n"
        "  storage:\n"
        "    etcd:\n"
        f"      peerAddress: {ip}\n"
    )
    return (
        f"mkdir -p /etc/k0s && install -m 0600 {R}/statics/audit-policy.yml /etc/k0s/audit-policy.yml"
        " && umask 077 && cat > /etc/k0s/k0s.yaml.tmp <<'K0S_CONFIG_EOF'"
        " && mv /etc/k0s/k0s.yaml.tmp /etc/k0s/k0s.yaml\n" + text + "K0S_CONFIG_EOF"
    )


def on_node(ip: str, action: str, command: str) -> str:
    return (
        f"nodes=$({K0S} kubectl get nodes -o wide --no-headers) || exit 1;"
        f" name=$(printf '%s\\n' \"$nodes\" | awk '$6 == \"{ip}\" {{print $1}}');"
        f' if [ -z "$name" ]; then echo "no node with address {ip}: nothing to {action}"; else {command}; fi'
    )


def drain(ip: str) -> str:
    return on_node(
        ip, "drain", f'{K0S} kubectl drain "$name" --ignore-daemonsets --delete-emptydir-data --timeout=300s'
    )


STOP_RESET = (
    f"if [ -x {K0S} ]; then {K0S} stop; {K0S} reset && rm -rf /etc/k0s && rm -f {K0S};"
    f" else echo 'no {K0S}: nothing to reset'; fi"
)
RESET = (
    f"if [ -x {K0S} ]; then {K0S} stop; if {K0S} reset; then rm -rf /etc/k0s && rm -f {K0S};"
    f" else echo 'k0s reset failed: continuing' >&2; fi; else echo 'no {K0S}: nothing to reset'; fi"
)
VERSION_CHECK = (
    f"old=$({K0S} version | sed 's/^v//; s/[+-].*//');"
    f" new=$({R}/bin/k0s version | sed 's/^v//; s/[+-].*//');"
    " set -- $(echo \"$old.$new\" | tr . ' ');"
    " if [ $# -ne 6 ]; then echo \"k0s versions not understood: installed '$old', new '$new'\" >&2; exit 1; fi;"
    ' if [ "$1" != "$4" ] || [ "$5" -lt "$2" ] || { [ "$5" -eq "$2" ] && [ "$6" -lt "$3" ]; };'
    ' then echo "k0s $old -> $new: a downgrade or a major change is not supported" >&2; exit 1; fi;'
    ' if [ "$5" -gt $(($2 + 1)) ]; then echo "k0s $old -> $new: upgrade one minor version at a time" >&2;'
    ' exit 1; fi; echo "k0s $old -> $new"'
)


def controller_preflight(ip: str) -> list[Row]:
    return [
        (ip, "k0s-preflight-files", FILES),
        (ip, "k0s-preflight-existing", EXISTING),
        (ip, "k0s-preflight-ports", CONTROLLER_PORTS),
    ]


def worker_preflight(ip: str) -> list[Row]:
    return [
        (ip, "k0s-preflight-files", FILES),
        (ip, "k0s-preflight-existing", EXISTING),
        (ip, "k0s-preflight-ports", WORKER_PORTS),
    ]


def controller(ip: str, masters: tuple[str, ...], *, join: bool, workloads: bool) -> list[Row]:
    args = "--token-file /etc/k0s/controller-token " if join else ""
    args += "-c /etc/k0s/k0s.yaml"
    if workloads:
        args += f" --enable-worker --no-taints --kubelet-extra-args=--node-ip={ip}"
    rows = [(ip, "k0s-binary", BINARY), (ip, "k0s-images", IMAGES), (ip, "k0s-config", config(ip, masters))]
    if join:  # the token's output is per master: controller-token-10-0-0-2
        return [*rows, (ip, "k0s-join", join_step("controller", controller_token(ip), args))]
    return [
        *rows,
        (ip, "k0s-install", install("controller", args)),
        (ip, "k0s-start", START),
        (ip, "k0s-ready", ready(True)),
    ]


def worker(ip: str) -> list[Row]:
    args = f"--token-file /etc/k0s/worker-token --kubelet-extra-args=--node-ip={ip}"
    return [
        (ip, "k0s-binary", BINARY),
        (ip, "k0s-images", IMAGES),
        (ip, "k0s-join", join_step("worker", "worker-token", args)),
    ]


def controller_mint(ip: str) -> tuple[str]:
    """master0 mints a master's token after removing the etcd member a dead join of that master
    may have left: one that never started, which etcd lists under the name ""."""
    url = f"https://{ip}:2380"
    return (
        f'if {K0S} etcd member-list 2>&1 | grep -qF \'"":"{url}"\'; then'
        f" echo 'removing the etcd member {url}: an earlier join added it, it never started' >&2;"
        f" {K0S} etcd leave --peer-address {ip} >&2 || exit 1; fi;"
        f" {K0S} token create --role=controller --expiry=1h",
    )


WORKER_TOKEN = f"{K0S} token create --role=worker --expiry=1h"


def test_one_master() -> None:
    """A lone controller runs the workloads too: --enable-worker --no-taints."""
    c = cluster("10.0.0.1")
    assert plan(c, INSTALL_PHASES, c.ips) == controller_preflight("10.0.0.1") + controller(
        "10.0.0.1", ("10.0.0.1",), join=False, workloads=True
    )
    assert rows(c, phases.KUBECONFIG, "10.0.0.1") == [
        (
            "10.0.0.1",
            "k0s-kubeconfig",
            f"{K0S} kubeconfig admin"
            " | sed -E 's#(server:) https://[^[:space:]]+#\\1 https://apiserver.cluster.local:6443#'",
        )
    ]
    (step,) = K0sRuntime().commands(phases.KUBECONFIG, ctx(c, "10.0.0.1"))
    assert step.output == phases.KUBECONFIG_OUTPUT == "kubeconfig"
    assert K0sRuntime().warnings(c) == ()


def test_three_masters_and_two_workers() -> None:
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4,10.0.0.5")
    masters = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    assert plan(c, INSTALL_PHASES, c.ips) == [
        *controller_preflight("10.0.0.1"),
        *controller_preflight("10.0.0.2"),
        *controller_preflight("10.0.0.3"),
        *worker_preflight("10.0.0.4"),
        *worker_preflight("10.0.0.5"),
        # with workers, the controllers are control plane only
        *controller("10.0.0.1", masters, join=False, workloads=False),
        # a controller token minted on master0 just before each master joins, one at a time
        ("10.0.0.1", "10.0.0.2/k0s-controller-token", *controller_mint("10.0.0.2")),
        *controller("10.0.0.2", masters, join=True, workloads=False),
        ("10.0.0.1", "10.0.0.3/k0s-controller-token", *controller_mint("10.0.0.3")),
        *controller("10.0.0.3", masters, join=True, workloads=False),
        # one worker token, then every worker
        ("10.0.0.1", "k0s-worker-token", WORKER_TOKEN),
        *worker("10.0.0.4"),
        *worker("10.0.0.5"),
    ]
    s = PlanState(image=IMAGE, plugin=K0sRuntime(), targets=c.ips)
    creds = [st for p in INSTALL_PHASES for st in p.plan(c, Facts(), s) if st.output]
    assert [(st.output, st.journal) for st in creds] == [
        ("controller-token-10-0-0-2", False),
        ("controller-token-10-0-0-3", False),
        ("worker-token", False),
    ]
    assert K0sRuntime().warnings(c) == ()
    (warning,) = K0sRuntime().warnings(cluster("10.0.0.1,10.0.0.2"))
    assert warning.startswith("2 masters: etcd needs a majority")


def test_masters_only_all_run_workloads() -> None:
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3")
    masters = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    got = plan(c, (JoinMasters(),), ("10.0.0.2",))
    assert got == [
        ("10.0.0.1", "10.0.0.2/k0s-controller-token", *controller_mint("10.0.0.2")),
        *controller("10.0.0.2", masters, join=True, workloads=True),
    ]


def test_adding_a_worker() -> None:
    c = cluster("10.0.0.1", "10.0.0.2,10.0.0.3")
    assert plan(c, INSTALL_PHASES, ("10.0.0.3",)) == [
        *worker_preflight("10.0.0.3"),
        ("10.0.0.1", "k0s-worker-token", WORKER_TOKEN),
        *worker("10.0.0.3"),
    ]


def test_removing_a_master() -> None:
    """As k0s's "remove a controller" guide: drain and delete the node (if the controller is
    one), delete autopilot's ControlNode, `etcd leave` while it runs; then stop and reset it."""
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4")
    leave = (RuntimeLeave(), RuntimeReset())
    assert plan(c, leave, ("10.0.0.3",)) == [
        ("10.0.0.1", "10.0.0.3/k0s-drain", drain("10.0.0.3")),
        (
            "10.0.0.1",
            "10.0.0.3/k0s-delete-node",
            on_node("10.0.0.3", "delete", f'{K0S} kubectl delete node "$name"'),
        ),
        (
            "10.0.0.1",
            "10.0.0.3/k0s-delete-controlnode",
            f"name=$({K0S} etcd member-list | tr '{{}},' '\\n\\n\\n'"
            " | awk -F'\"' '$4 == \"https://10.0.0.3:2380\" {print $2}');"
            f' if [ -n "$name" ]; then {K0S} kubectl delete controlnode.autopilot.k0sproject.io "$name"'
            " --ignore-not-found; fi",
        ),
        (
            "10.0.0.1",
            "10.0.0.3/k0s-etcd-leave",
            f"if {K0S} etcd member-list | grep -qF '\"https://10.0.0.3:2380\"';"
            f" then {K0S} etcd leave --peer-address 10.0.0.3;"
            " else echo '10.0.0.3 is no etcd member: nothing to leave'; fi",
        ),
        ("10.0.0.3", "k0s-reset", STOP_RESET),
    ]
    # a worker: drain and delete node on master0, then stop and reset on the host
    assert plan(c, leave, ("10.0.0.4",)) == [
        ("10.0.0.1", "10.0.0.4/k0s-drain", drain("10.0.0.4")),
        (
            "10.0.0.1",
            "10.0.0.4/k0s-delete-node",
            on_node("10.0.0.4", "delete", f'{K0S} kubectl delete node "$name"'),
        ),
        ("10.0.0.4", "k0s-reset", STOP_RESET),
    ]


def test_reset() -> None:
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4,10.0.0.5")
    assert plan(c, (RuntimeLeave(), RuntimeReset()), c.ips, delete_all=True) == [
        ("10.0.0.4", "k0s-reset", RESET),
        ("10.0.0.5", "k0s-reset", RESET),
        ("10.0.0.2", "k0s-reset", RESET),
        ("10.0.0.3", "k0s-reset", RESET),
        ("10.0.0.1", "k0s-reset", RESET),
    ]


def test_upgrade() -> None:
    """The upgrade phase's order: master0, each other master, then per worker: drain on
    master0, k0s's manual upgrade on the worker (stop, new binary, start), uncordon."""
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3")
    masters = ("10.0.0.1", "10.0.0.2")

    def upgraded(ip: str, is_controller: bool) -> list[Row]:
        out = [(ip, "k0s-upgrade-check", VERSION_CHECK), (ip, "k0s-images", IMAGES)]
        if is_controller:
            out.append((ip, "k0s-config", config(ip, masters)))
        return [
            *out,
            (ip, "k0s-stop", f"{K0S} stop"),
            (ip, "k0s-binary", BINARY),
            (ip, "k0s-start", START),
            (ip, "k0s-ready", ready(is_controller)),
        ]

    def uncordon(ip: str) -> Row:
        return ("10.0.0.1", f"{ip}/k0s-uncordon", on_node(ip, "uncordon", f'{K0S} kubectl uncordon "$name"'))

    s = PlanState(image=IMAGE, plugin=K0sRuntime(), targets=c.ips)
    got = [(st.host, st.id, st.command) for st in Upgrade().plan(c, Facts(), s)]
    assert got == [
        *upgraded("10.0.0.1", True),
        # a controller that is no node: drain and uncordon say "nothing to ..."
        ("10.0.0.1", "10.0.0.2/k0s-drain", drain("10.0.0.2")),
        *upgraded("10.0.0.2", True),
        uncordon("10.0.0.2"),
        ("10.0.0.1", "10.0.0.3/k0s-drain", drain("10.0.0.3")),
        *upgraded("10.0.0.3", False),
        uncordon("10.0.0.3"),
    ]
    # the convention of the k3s plugin: subject None is the host's own upgrade
    assert rows(c, phases.UPGRADE, "10.0.0.3") == [(h, i, cmd) for h, i, cmd in upgraded("10.0.0.3", False)]
    assert rows(c, phases.UPGRADE_DONE, "10.0.0.1", "10.0.0.1") == []


def test_a_join_that_failed_at_any_step_resumes_with_a_token_minted_for_it() -> None:
    """The resumable shape: whichever step of a join failed, the re-run starts at that step and
    master0 mints a token right before the one step that writes it, installs, starts and waits
    (so no step ever reads a token file an earlier attempt wrote); once that step is done
    nothing needs a token and nothing is minted. A master's token is its own output, so a
    re-run of the third master mints nothing for the second."""
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4")
    masters = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    node = worker("10.0.0.4")
    mint = ("10.0.0.1", "k0s-worker-token", WORKER_TOKEN)
    for i, (_, step, _) in enumerate(node):
        assert rerun_after_failure(c, JoinNodes(), ("10.0.0.4", step)) == [mint, *node[i:]]
    third = controller("10.0.0.3", masters, join=True, workloads=False)
    mint = ("10.0.0.1", "10.0.0.3/k0s-controller-token", *controller_mint("10.0.0.3"))
    for i, (_, step, _) in enumerate(third):
        assert rerun_after_failure(c, JoinMasters(), ("10.0.0.3", step)) == [mint, *third[i:]]
    assert rerun_after_failure(c, JoinNodes(), None) == []
    assert rerun_after_failure(c, JoinMasters(), None) == []
    # init on master0 uses no token: a failed install runs again (over its unit: --force)
    init = controller("10.0.0.1", masters, join=False, workloads=False)
    assert rerun_after_failure(c, RuntimeInit(), ("10.0.0.1", "k0s-install")) == init[3:]
    # the one place a token file is named is the step that writes it from a fresh output
    for _, step, command in (*node, *third, *init):
        assert ("--token-file" in command) == ("{{output:" in command) == (step == "k0s-join"), step


def run_join(tmp_path: Path, *, unit: bool = False, ready: bool = True, start_fails: bool = False) -> Path:
    """Run a worker's k0s-join step with its paths under `tmp_path` and a k0s that logs its
    arguments (and, for `install`, the token file as the daemon would read it). Returns the
    log; the exit status is the last line."""
    c = cluster("10.0.0.1", "10.0.0.2")
    (step,) = [
        st for st in K0sRuntime().commands(phases.JOIN_WORKER, ctx(c, "10.0.0.2")) if st.id == "k0s-join"
    ]
    log, etc, units = tmp_path / "log", tmp_path / "etc-k0s", tmp_path / "units"
    units.mkdir()
    if unit:
        (units / "k0sworker.service").write_text("[Service]\n")
    fake = tmp_path / "k0s"
    fake.write_text(
        f'#!/bin/sh\necho "k0s $*" >> {log}\n'
        f'case "$1" in\n'
        f"  install) cat {etc}/worker-token >> {log} ;;\n"
        f"  start) {'exit 1' if start_fails else 'exit 0'} ;;\n"
        f"  status) {'echo Process ID: 42' if ready else 'exit 1'} ;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    script = (
        resolve_outputs(step.command, {"worker-token": "H4sI-the-token"})
        .replace("/etc/k0s", str(etc))
        .replace("/etc/systemd/system", str(units))
        .replace(K0S, str(fake))
        .replace("-ge 300", "-ge 2")
        .replace("sleep 1", "sleep 0")
    )
    status = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False).returncode
    with log.open("a") as f:
        f.write(f"exit {status}\n")
    return log


def test_the_join_step_installs_starts_waits_and_leaves_no_token(tmp_path: Path) -> None:
    args = "--token-file {etc}/worker-token --kubelet-extra-args=--node-ip=10.0.0.2"
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    log = run_join(fresh)
    etc = fresh / "etc-k0s"
    assert log.read_text().splitlines() == [
        f"k0s install worker {args.format(etc=etc)}",
        "H4sI-the-token",  # what install (and the daemon it starts) finds in the file
        "k0s start",
        "k0s status",
        "k0s status",
        "exit 0",
    ]
    token = etc / "worker-token"
    assert token.read_text() == SCRUBBED + "\n" and token.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in etc.iterdir()) == ["worker-token"]

    # a failed attempt left the unit: it is stopped and replaced, not refused
    again = tmp_path / "again"
    again.mkdir()
    lines = run_join(again, unit=True).read_text().splitlines()
    assert lines[:3] == [
        "k0s stop",
        f"k0s install worker --force {args.format(etc=again / 'etc-k0s')}",
        "H4sI-the-token",
    ]
    assert lines[-1] == "exit 0"

    # k0s never got ready, or did not start: the step fails, and the file holds no token
    for name, kwargs in (("unready", {"ready": False}), ("nostart", {"start_fails": True})):
        (tmp_path / name).mkdir()
        lines = run_join(tmp_path / name, **kwargs).read_text().splitlines()
        assert lines[-1] == "exit 1", lines
        assert ("k0s status" in lines) == (name == "unready")
        assert (tmp_path / name / "etc-k0s" / "worker-token").read_text() == SCRUBBED + "\n"


def test_master0_forgets_only_a_member_that_never_started() -> None:
    """Run a master's minting step on what `k0s etcd member-list` prints: the member a dead join
    of that master added, which etcd lists under the name "", is removed before the token is
    minted; a started member, or another host's, is left alone; stdout is the token only."""
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3")
    (mint,) = K0sRuntime().commands(phases.JOIN_CREDENTIALS, ctx(c, "10.0.0.1", "10.0.0.3"))
    assert mint.output == "controller-token-10-0-0-3"

    def run(members: str, leave_fails: bool = False) -> tuple[int, str, str]:
        fake = (
            'k0s() { case "$1 $2" in'
            f' \'etcd member-list\') echo \'{{"level":"info","members":{members},"msg":"done"}}\' ;;'
            f" 'etcd leave') echo \"k0s $*\"; {'return 1' if leave_fails else 'return 0'} ;;"
            " 'token create') echo H4sI-token ;; esac; }; "
        )
        r = subprocess.run(
            ["sh", "-c", fake + mint.command.replace(K0S, "k0s")], capture_output=True, text=True, check=False
        )
        return r.returncode, r.stdout, r.stderr

    m1 = '"ctl-1":"https://10.0.0.1:2380"'
    code, out, err = run(f'{{"":"https://10.0.0.3:2380",{m1}}}')
    assert (code, out) == (0, "H4sI-token\n")
    assert "k0s etcd leave --peer-address 10.0.0.3" in err and "never started" in err
    for members in (f'{{"ctl-3":"https://10.0.0.3:2380",{m1}}}', f'{{"":"https://10.0.0.2:2380",{m1}}}'):
        assert run(members) == (0, "H4sI-token\n", "")
    code, out, _ = run(f'{{"":"https://10.0.0.3:2380",{m1}}}', leave_fails=True)
    assert (code, out) == (1, "")  # no token for a join etcd would refuse


def test_a_kine_cluster_has_no_member_to_forget() -> None:
    kine: dict[str, object] = {
        "apiVersion": "k0s.k0sproject.io/v1beta1",
        "kind": "ClusterConfig",
        "spec": {"storage": {"type": "kine"}},
    }
    c = with_documents(kine)
    (mint,) = K0sRuntime().commands(phases.JOIN_CREDENTIALS, ctx(c, "10.0.0.1", "10.0.0.2"))
    assert mint.command == f"{K0S} token create --role=controller --expiry=1h"
    (worker_mint,) = K0sRuntime().commands(phases.JOIN_CREDENTIALS, ctx(c, "10.0.0.1", "10.0.0.4"))
    assert (worker_mint.command, worker_mint.output) == (WORKER_TOKEN, "worker-token")


def test_secrets_are_only_placeholders_and_each_is_minted_before_use() -> None:
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4")
    s = PlanState(image=IMAGE, plugin=K0sRuntime(), targets=c.ips)
    minted: set[str] = set()
    for p in INSTALL_PHASES:
        for st in p.plan(c, Facts(), s):
            assert set(output_refs(st.command)) <= minted, st.id
            if st.output:
                minted.add(st.output)
    assert minted == {"controller-token-10-0-0-2", "controller-token-10-0-0-3", "worker-token"}
    (join,) = [st for st in JoinNodes().plan(c, Facts(), s) if st.id == "k0s-join"]
    resolved = resolve_outputs(join.command, {"worker-token": "H4sIAAAA'x y"})
    assert "printf '%s\\n' 'H4sIAAAA'\"'\"'x y' > /etc/k0s/worker-token.tmp" in resolved


def test_every_command_is_valid_sh() -> None:
    """`sh -n` parses every command of every plan (the heredoc and the awk quoting included)."""
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4")
    s = PlanState(image=IMAGE, plugin=K0sRuntime(), targets=c.ips)
    leave = PlanState(image=IMAGE, plugin=K0sRuntime(), targets=("10.0.0.3", "10.0.0.4"))
    commands = [st.full_command for p in INSTALL_PHASES for st in p.plan(c, Facts(), s)]
    commands += [st.full_command for st in RuntimeLeave().plan(c, Facts(), leave)]
    commands += [st.full_command for st in Upgrade().plan(c, Facts(), s)]
    commands += [st.command for st in K0sRuntime().commands(phases.KUBECONFIG, ctx(c, "10.0.0.1"))]
    node_config = NodeConfig().plan(
        labelled(c, "10.0.0.4", {"a": "b-c"}, ("k=v:NoSchedule", "x:NoExecute-")), Facts(), s
    )
    assert len(node_config) == 2
    commands += [st.full_command for st in node_config]
    for command in commands:
        result = subprocess.run(["sh", "-n", "-c", command], capture_output=True, text=True, check=False)
        assert result.returncode == 0, (command, result.stderr)


def test_the_shell_pieces_do_what_they_say() -> None:
    """Run the kubeconfig rewrite and the member-list parsing on what k0s prints."""
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3")
    (kube,) = K0sRuntime().commands(phases.KUBECONFIG, ctx(c, "10.0.0.1"))
    admin = "clusters:\n- cluster:\n    certificate-authority-data: Zm9v\n    server: https://10.0.0.1:6443\n"
    out = subprocess.run(
        ["sh", "-c", kube.command.replace(f"{K0S} kubeconfig admin", "cat")],
        input=admin,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == admin.replace("https://10.0.0.1:6443", "https://apiserver.cluster.local:6443")

    members = '{"members":{"ctl-1":"https://10.0.0.1:2380","ctl-3":"https://10.0.0.3:2380"}}'
    steps = {
        st.id: st.command
        for st in K0sRuntime().commands(phases.DELETE_MASTER, ctx(c, "10.0.0.1", "10.0.0.3"))
    }
    fake = f'k0s() {{ if [ "$1" = etcd ]; then echo \'{members}\'; else echo "k0s $*"; fi; }}; '
    for step_id, expected in (
        (
            "k0s-delete-controlnode",
            "k0s kubectl delete controlnode.autopilot.k0sproject.io ctl-3 --ignore-not-found",
        ),
        ("k0s-etcd-leave", "k0s etcd leave --peer-address 10.0.0.3"),
    ):
        script = fake + steps[step_id].replace(K0S, "k0s").replace(
            "then k0s etcd leave", "then echo k0s etcd leave"
        )
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
        assert out.strip() == expected
    gone = fake.replace('"ctl-3":"https://10.0.0.3:2380"', '"ctl-2":"https://10.0.0.2:2380"')
    out = subprocess.run(
        ["sh", "-c", gone + steps["k0s-etcd-leave"].replace(K0S, "k0s")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "10.0.0.3 is no etcd member: nothing to leave"


def test_nothing_for_hosts_outside_their_role() -> None:
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3")
    plugin = K0sRuntime()
    assert plugin.commands(phases.INIT, ctx(c, "10.0.0.2")) == ()
    assert plugin.commands(phases.JOIN_MASTER, ctx(c, "10.0.0.1")) == ()
    assert plugin.commands(phases.JOIN_MASTER, ctx(c, "10.0.0.3")) == ()
    assert plugin.commands(phases.JOIN_WORKER, ctx(c, "10.0.0.2")) == ()
    assert plugin.commands(phases.JOIN_CREDENTIALS, ctx(c, "10.0.0.2")) == ()
    assert plugin.commands(phases.DELETE_WORKER, ctx(c, "10.0.0.2", "10.0.0.3")) == ()
    assert plugin.commands(phases.KUBECONFIG, ctx(c, "10.0.0.3")) == ()
    assert plugin.commands("no-such-phase", ctx(c, "10.0.0.1")) == ()


def test_selected_by_label_and_metadata() -> None:
    assert K0sRuntime.name == K0sRuntime.label == K0sRuntime.metadata_runtime == "k0s"
    assert K0sRuntime.config_files == ("etc/k0s.yaml", "statics/audit-policy.yml")
    assert isinstance(select_plugin("k0s", None), K0sRuntime)
    assert isinstance(select_plugin(None, "k0s"), K0sRuntime)


# --- the ClusterConfig merge -------------------------------------------------------------------


def with_documents(*docs: dict[str, object]) -> Cluster:
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4")
    return Cluster(name=c.name, image=c.image, hosts=c.hosts, documents=docs)


def test_clusterfile_config_merges_over_the_image_defaults() -> None:
    user = {
        "apiVersion": "k0s.k0sproject.io/v1beta1",
        "kind": "ClusterConfig",
        "metadata": {"name": "prod"},
        "spec": {
            "api": {"sans": ["lb.example.com"], "externalAddress": "lb.example.com", "address": "1.2.3.4"},
            "network": {"provider": "calico", "calico": {"mode": "vxlan"}},
        },
    }
    other = {"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration"}
    c = with_documents(other, user)
    got = controller_config(c, c.host("10.0.0.2"), IMAGE_CONFIG)
    assert got == {
        "apiVersion": "k0s.k0sproject.io/v1beta1",
        "kind": "ClusterConfig",
        "metadata": {"name": "prod"},
        "spec": {
            "api": {
                # the Clusterfile's list replaces the image's; the required names are added
                "sans": [
                    "lb.example.com",
                    "apiserver.cluster.local",
                    "10.0.0.1",
                    "10.0.0.2",
                    "10.0.0.3",
                    "127.0.0.1",
                ],
                "externalAddress": "lb.example.com",
                "address": "10.0.0.2",  # always the host's own
            },
            "network": {
                "provider": "calico",
                "podCIDR": "10.244.0.0/16",
                "serviceCIDR": "10.96.0.0/12",
                "calico": {"mode": "vxlan"},
            },
            "images": {"default_pull_policy": "Never"},
            "telemetry": {"enabled": False},
            # k0s would take the first non-loopback address: pinned to the host's
            "storage": {"etcd": {"peerAddress": "10.0.0.2"}},
        },
    }
    # and it is what the plan writes on that host
    s = PlanState(image=IMAGE, plugin=K0sRuntime(), targets=("10.0.0.2",))
    (step,) = [st for st in JoinMasters().plan(c, Facts(), s) if st.id == "k0s-config"]
    body = step.command.split("\n", 1)[1].rsplit("\n", 1)[0]
    assert yaml.safe_load(body) == controller_config(c, c.host("10.0.0.2"), IMAGE_CONFIG, audit=True)


def test_node_local_load_balancing_with_more_than_one_controller() -> None:
    """Several controllers: each worker's k0s balances over all of them (spec.network
    nodeLocalLoadBalancing, EnvoyProxy); one controller: nothing to balance; an externalAddress
    (a load balancer already) or the Clusterfile's own setting: left as the user has it."""
    three = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4")
    network = controller_config(three, three.host("10.0.0.2"), IMAGE_CONFIG)["spec"]["network"]
    assert network["nodeLocalLoadBalancing"] == {"enabled": True, "type": "EnvoyProxy"}
    one = cluster("10.0.0.1", "10.0.0.4")
    assert (
        "nodeLocalLoadBalancing"
        not in controller_config(one, one.host("10.0.0.1"), IMAGE_CONFIG)["spec"]["network"]
    )
    for spec in (
        {"api": {"externalAddress": "lb.example.com"}},
        {"network": {"nodeLocalLoadBalancing": {"enabled": False}}},
    ):
        doc = {"apiVersion": "k0s.k0sproject.io/v1beta1", "kind": "ClusterConfig", "spec": spec}
        c = with_documents(doc)  # three controllers and a worker
        got = controller_config(c, c.host("10.0.0.1"), IMAGE_CONFIG)["spec"]["network"].get(
            "nodeLocalLoadBalancing"
        )
        assert got == spec.get("network", {}).get("nodeLocalLoadBalancing"), spec


def test_no_image_config_gives_a_minimal_one() -> None:
    c = cluster("10.0.0.1")
    assert controller_config(c, c.host("10.0.0.1"), None) == {
        "apiVersion": "k0s.k0sproject.io/v1beta1",
        "kind": "ClusterConfig",
        "metadata": {"name": "k0s"},
        "spec": {
            "api": {"address": "10.0.0.1", "sans": ["apiserver.cluster.local", "10.0.0.1", "127.0.0.1"]},
            "storage": {"etcd": {"peerAddress": "10.0.0.1"}},
        },
    }
    bare = ImageInfo(name=IMAGE.name, digest=IMAGE.digest, platform=IMAGE.platform)
    (cfg,) = [r for r in plan(c, (RuntimeInit(),), c.ips, image=bare) if r[1] == "k0s-config"]
    assert "    - apiserver.cluster.local\n" in cfg[2]


def test_an_image_without_the_audit_policy_gets_no_audit_flags() -> None:
    """k0s's kube-apiserver would exit at once on a missing policy file."""
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3")
    bare = ImageInfo(
        name=IMAGE.name, digest=IMAGE.digest, platform=IMAGE.platform, files={"etc/k0s.yaml": IMAGE_CONFIG}
    )
    got = plan(c, INSTALL_PHASES, c.ips, image=bare)
    assert got and not [row for row in got if "audit" in row[2]]
    assert "extraArgs" not in controller_config(c, c.host("10.0.0.1"), IMAGE_CONFIG)["spec"]["api"]


def test_the_clusterfiles_api_extra_args_win_over_the_audit_defaults() -> None:
    """spec.api.extraArgs of the Clusterfile merge over the image's; the audit flags fill only
    what neither set."""
    user = {
        "apiVersion": "k0s.k0sproject.io/v1beta1",
        "kind": "ClusterConfig",
        "spec": {"api": {"extraArgs": {"audit-log-maxage": "30", "v": "2"}}},
    }
    c = with_documents(user)
    got = controller_config(c, c.host("10.0.0.1"), IMAGE_CONFIG, audit=True)["spec"]["api"]["extraArgs"]
    assert got == {
        "audit-log-maxage": "30",
        "v": "2",
        "audit-policy-file": "/etc/k0s/audit-policy.yml",
        "audit-log-path": "/var/log/kubernetes/audit.log",
        "audit-log-maxbackup": "10",
        "audit-log-maxsize": "100",
    }


def test_sans_already_there_are_not_repeated() -> None:
    c = cluster("10.0.0.1")
    text = IMAGE_CONFIG.replace(
        "      - apiserver.cluster.local\n", "      - 127.0.0.1\n      - apiserver.cluster.local\n"
    )
    got = controller_config(c, c.host("10.0.0.1"), text)
    assert got["spec"]["api"]["sans"] == ["127.0.0.1", "apiserver.cluster.local", "10.0.0.1"]


def test_deep_merge_replaces_lists_and_scalars() -> None:
    lower = {"a": {"b": 1, "c": [1, 2], "d": {"e": 1}}, "f": 1}
    upper = {"a": {"c": [3], "d": {"g": 2}}, "f": {"h": 1}}
    assert deep_merge(lower, upper) == {"a": {"b": 1, "c": [3], "d": {"e": 1, "g": 2}}, "f": {"h": 1}}
    assert lower == {"a": {"b": 1, "c": [1, 2], "d": {"e": 1}}, "f": 1}  # inputs untouched


@pytest.mark.parametrize(
    ("image_text", "documents", "message"),
    [
        ("spec: [", (), "the image's etc/k0s.yaml is not YAML"),
        ("- a\n", (), "the image's etc/k0s.yaml is not a mapping"),
        (
            "apiVersion: k0s.k0sproject.io/v1beta1\nkind: Cluster\n",
            (),
            "the image's etc/k0s.yaml: expected apiVersion k0s.k0sproject.io/v1beta1, kind ClusterConfig",
        ),
        (
            None,
            ({"apiVersion": "k0s.k0sproject.io/v1beta2", "kind": "ClusterConfig"},),
            "the Clusterfile's ClusterConfig: expected apiVersion k0s.k0sproject.io/v1beta1",
        ),
        (
            None,
            (
                {"apiVersion": "k0s.k0sproject.io/v1beta1", "kind": "ClusterConfig"},
                {"apiVersion": "k0s.k0sproject.io/v1beta1", "kind": "ClusterConfig"},
            ),
            "the Clusterfile has 2 k0s ClusterConfig documents; at most one",
        ),
        (
            None,
            ({"apiVersion": "k0s.k0sproject.io/v1beta1", "kind": "ClusterConfig", "spec": {"api": ["x"]}},),
            "spec.api must be a mapping, not list",
        ),
        (
            None,
            (
                {
                    "apiVersion": "k0s.k0sproject.io/v1beta1",
                    "kind": "ClusterConfig",
                    "spec": {"api": {"sans": "x"}},
                },
            ),
            "spec.api.sans must be a list",
        ),
    ],
)
def test_bad_configs_are_refused(
    image_text: str | None, documents: tuple[dict[str, object], ...], message: str
) -> None:
    c = with_documents(*documents)
    with pytest.raises(K0sConfigError) as info:
        controller_config(c, c.host("10.0.0.1"), image_text)
    assert info.value.message.startswith(message)


def test_the_config_step_writes_the_file_even_with_hostile_values(tmp_path: Path) -> None:
    """Run the k0s-config step (paths moved under tmp_path): the file holds the merged config,
    mode 0600, though a value carries the here-document's end marker and shell syntax."""
    value = "a\nK0S_CONFIG_EOF\n$(touch pwned) `x` 'q' \"d\""
    doc = {"apiVersion": "k0s.k0sproject.io/v1beta1", "kind": "ClusterConfig", "spec": {"x": value}}
    c = with_documents(doc)
    (cfg,) = [st for st in K0sRuntime().commands(phases.INIT, ctx(c, "10.0.0.1")) if st.id == "k0s-config"]
    script = cfg.command.replace("/etc/k0s", str(tmp_path / "etc-k0s")).replace(R, str(tmp_path / "rootfs"))
    (tmp_path / "rootfs" / "statics").mkdir(parents=True)
    (tmp_path / "rootfs" / "statics" / "audit-policy.yml").write_text("kind: Policy\n")
    subprocess.run(["sh", "-c", script], cwd=tmp_path, check=True)
    written = tmp_path / "etc-k0s" / "k0s.yaml"
    expected = controller_config(c, c.host("10.0.0.1"), IMAGE_CONFIG, audit=True)
    text = written.read_text().replace(str(tmp_path / "etc-k0s"), "/etc/k0s")  # the moved flag value
    assert yaml.safe_load(text) == expected
    assert yaml.safe_load(text)["spec"]["x"] == value
    assert written.stat().st_mode & 0o777 == 0o600
    # the policy the flag names is beside it
    policy = tmp_path / "etc-k0s" / "audit-policy.yml"
    assert expected["spec"]["api"]["extraArgs"]["audit-policy-file"] == "/etc/k0s/audit-policy.yml"
    assert policy.read_text() == "kind: Policy\n" and policy.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["etc-k0s", "rootfs"]  # nothing ran


def test_etcd_peer_address_is_the_hosts_and_kine_gets_none() -> None:
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3")
    peer = {ip: controller_config(c, c.host(ip), IMAGE_CONFIG)["spec"]["storage"] for ip in c.ips}
    assert peer == {ip: {"etcd": {"peerAddress": ip}} for ip in c.ips}
    kine = {
        "apiVersion": "k0s.k0sproject.io/v1beta1",
        "kind": "ClusterConfig",
        "spec": {"storage": {"type": "kine"}},
    }
    got = controller_config(with_documents(kine), c.host("10.0.0.1"), IMAGE_CONFIG)
    assert got["spec"]["storage"] == {"type": "kine"}


# --- node-config: the Clusterfile's labels and taints ------------------------------------------------


def on_joined(ip: str, command: str) -> str:
    return (
        f"i=0; while nodes=$({K0S} kubectl get nodes -o wide --no-headers) || exit 1;"
        f' name=$(printf \'%s\\n\' "$nodes" | awk \'$6 == "{ip}" {{print $1}}\'); [ -z "$name" ];'
        f" do i=$((i + 1)); if [ $i -ge 60 ]; then echo 'no node with address {ip} after 60s' >&2; exit 1; fi;"
        f" sleep 1; done; {command}"
    )


def test_node_config_labels_nodes_but_not_controllers_that_are_none() -> None:
    """With workers, k0s controllers have no kubelet: a master's labels cannot apply (warned
    about, no step); a worker's are put on its node with k0s's kubectl on master0."""
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4")
    c = labelled(c, "10.0.0.2", {"zone": "a"}, ("dedicated=etcd:NoSchedule",))
    c = labelled(c, "10.0.0.4", {"disk": "ssd", "zone": "b"}, ("dedicated=db:NoExecute",))
    assert plan(c, (NodeConfig(),), c.ips) == [
        (
            "10.0.0.1",
            "10.0.0.4/k0s-node-labels",
            on_joined("10.0.0.4", f'{K0S} kubectl label node "$name" disk=ssd zone=b --overwrite'),
        ),
        (
            "10.0.0.1",
            "10.0.0.4/k0s-node-taints",
            on_joined(
                "10.0.0.4", f'{K0S} kubectl taint node "$name" dedicated=db:NoExecute --overwrite || exit 1'
            ),
        ),
    ]
    assert list(K0sRuntime().warnings(c)) == [
        "masters 10.0.0.2 have labels or taints, but k0s controllers are no Kubernetes nodes in a "
        "cluster with workers: they are not applied"
    ]
    # without workers every controller runs workloads (--enable-worker): a node, labelled
    solo = labelled(cluster("10.0.0.1,10.0.0.2,10.0.0.3"), "10.0.0.2", {"zone": "a"})
    assert plan(solo, (NodeConfig(),), solo.ips) == [
        (
            "10.0.0.1",
            "10.0.0.2/k0s-node-labels",
            on_joined("10.0.0.2", f'{K0S} kubectl label node "$name" zone=a --overwrite'),
        )
    ]
    assert K0sRuntime().warnings(solo) == ()
