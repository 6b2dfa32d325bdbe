"""The phases' plans, pure: a golden dry-run for the `none` runtime on 1 master + 2 nodes,
env precedence, launch choices, removal order and runtime selection."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from builder.errors import ClusterError, UnknownRuntime
from builder.image.descriptor import Platform
from builder.image.digest import Digest
from builder.image.extension import Application
from builder.runtime.cluster import Cluster, HostAlias
from builder.runtime.clusterfile import cluster_from_flags
from builder.runtime.facts import Facts, parse_probe, problems
from builder.runtime.phases import (
    Check,
    ImageInfo,
    PlanState,
    install_phases,
    removal_phases,
)
from builder.runtime.phases.base import Phase, Step
from builder.runtime.phases.clean_scripts import CleanScripts
from builder.runtime.phases.launch import Launch
from builder.runtime.phases.scripts import HostScripts
from builder.runtime.plugins import select_plugin
from builder.runtime.plugins.none import NoneRuntime
from builder.runtime.runner import format_plan

PLATFORM = Platform("linux", "amd64")
IMAGE = ImageInfo(
    name="demo:v1",
    digest=Digest("sha256", "ab" * 32),
    platform=PLATFORM,
    env={"COLOR": "image", "GREETING": "hi"},
    app_names=("greet",),
    applications=(Application("greet", "shell", ("greet.sh",), env={"WHO": "all"}),),
    compressed_bytes=1000,
    layer_count=2,
)
CLUSTER = cluster_from_flags("demo:v1", "10.0.0.1", "10.0.0.2,10.0.0.3", env={"COLOR": "cluster"}, name="c1")


def state(**kwargs: object) -> PlanState:
    base: dict[str, object] = {"image": IMAGE, "plugin": NoneRuntime(), "targets": CLUSTER.ips}
    return PlanState(**(base | kwargs))  # type: ignore[arg-type]


GOLDEN = """\
# (shared) env: COLOR=cli GREETING=hi SEALER_CLUSTER=c1 SEALER_MASTER0=10.0.0.1 SEALER_MASTERS=10.0.0.1 SEALER_NODES=10.0.0.2,10.0.0.3 SEALER_ROOTFS=/var/lib/sealer/data/c1/rootfs
== deliver: Deliver the rootfs
  10.0.0.1 (master0)
    # 2 layers of demo:v1 into /var/lib/sealer/data/c1/rootfs
    $ deliver sha256:abababababababababababababababababababababababababababababababab -> /var/lib/sealer/data/c1/rootfs
  10.0.0.2 (node)
    # 2 layers of demo:v1 into /var/lib/sealer/data/c1/rootfs
    $ deliver sha256:abababababababababababababababababababababababababababababababab -> /var/lib/sealer/data/c1/rootfs
  10.0.0.3 (node)
    # 2 layers of demo:v1 into /var/lib/sealer/data/c1/rootfs
    $ deliver sha256:abababababababababababababababababababababababababababababababab -> /var/lib/sealer/data/c1/rootfs
== host-scripts: Run init.sh
  10.0.0.1 (master0)
    env: (shared) SEALER_HOST_IP=10.0.0.1 SEALER_ROLE=master
    # sh scripts/init.sh as master
    $ cd /var/lib/sealer/data/c1/rootfs && if [ -f scripts/init.sh ]; then sh scripts/init.sh; else echo 'no scripts/init.sh in the image: skipped'; fi
  10.0.0.2 (node)
    env: (shared) SEALER_HOST_IP=10.0.0.2 SEALER_ROLE=node
    # sh scripts/init.sh as node
    $ cd /var/lib/sealer/data/c1/rootfs && if [ -f scripts/init.sh ]; then sh scripts/init.sh; else echo 'no scripts/init.sh in the image: skipped'; fi
  10.0.0.3 (node)
    env: (shared) SEALER_HOST_IP=10.0.0.3 SEALER_ROLE=node
    # sh scripts/init.sh as node
    $ cd /var/lib/sealer/data/c1/rootfs && if [ -f scripts/init.sh ]; then sh scripts/init.sh; else echo 'no scripts/init.sh in the image: skipped'; fi
== launch: Launch on master0
  10.0.0.1 (master0)
    env: (shared) SEALER_HOST_IP=10.0.0.1 SEALER_ROLE=master WHO=all
    # launch app greet (shell) 1/1
    $ cd /var/lib/sealer/data/c1/rootfs && sh application/apps/greet/greet.sh"""


def test_golden_dry_run_of_the_none_runtime_on_one_master_and_two_nodes() -> None:
    s = state(cli_env={"COLOR": "cli"})
    facts = Facts.assume(CLUSTER.ips, PLATFORM)
    plans = [(p, p.plan(CLUSTER, facts, s)) for p in install_phases()]
    assert "\n".join(format_plan(CLUSTER, plans, verbose=True)) == GOLDEN
    # the runtime phases of `none` plan nothing: should_run is false for each
    assert [p.name for p in install_phases() if p.should_run(CLUSTER, facts, s)] == [
        "deliver",
        "host-scripts",
        "launch",
    ]


def _plan_envs(lines: list[str]) -> list[dict[str, str]]:
    """Each host block's env as a reader of the dry-run rebuilds it: `(shared)` + its own."""
    shared: dict[str, str] = {}
    out = []
    for line in lines:
        if line.startswith("# (shared) env: "):
            shared = dict(w.split("=", 1) for w in shlex.split(line.removeprefix("# (shared) env: ")))
        elif line.startswith("    env: "):
            words = shlex.split(line.removeprefix("    env: "))
            base = shared if words[:1] == ["(shared)"] else {}
            out.append(base | dict(w.split("=", 1) for w in words if w != "(shared)"))
    return out


def test_dry_run_env_lines_rebuild_every_hosts_env() -> None:
    host = replace(CLUSTER.hosts[1], env={"COLOR": "host's own", "ONLY_HOST": "1"})
    cluster = replace(CLUSTER, hosts=(CLUSTER.hosts[0], host, CLUSTER.hosts[2]))
    facts = Facts.assume(cluster.ips, PLATFORM)
    plans = [(p, p.plan(cluster, facts, state())) for p in install_phases()]
    lines = format_plan(cluster, plans, verbose=True)
    wanted = [dict(steps[0].env) for _, steps in plans for steps in _host_blocks(steps) if steps[0].env]
    assert _plan_envs(lines) == wanted
    shared_line = next(line for line in lines if line.startswith("# (shared) env: "))
    assert "COLOR" not in shared_line and "SEALER_NODES=10.0.0.2,10.0.0.3" in shared_line


def _host_blocks(steps: list[Step]) -> list[list[Step]]:
    blocks: dict[tuple[str, int], list[Step]] = {}
    for s in steps:
        blocks.setdefault((s.host, s.stage), []).append(s)
    return sorted(blocks.values(), key=lambda b: b[0].stage)


def test_dry_run_of_3000_hosts_prints_the_host_lists_once() -> None:
    # Every host block used to print SEALER_NODES whole: 5000 hosts gave an 880 MB plan.
    cluster = cluster_from_flags("demo:v1", "10.0.0.1", "10.0.1.0-10.0.12.183", name="c1")
    assert len(cluster.nodes) == 3000
    facts = Facts.assume(cluster.ips, PLATFORM)
    plans = [(p, p.plan(cluster, facts, state(targets=cluster.ips))) for p in install_phases()]
    text = "\n".join(format_plan(cluster, plans, verbose=True))
    nodes = ",".join(h.ip for h in cluster.nodes)
    assert text.count(nodes) == 1
    assert len(text) < 3001 * 800 + len(nodes)


def test_env_precedence_image_then_clusterfile_then_host_then_cli() -> None:
    from dataclasses import replace

    host = replace(CLUSTER.hosts[1], env={"COLOR": "host", "ONLY_HOST": "1"})
    cluster = replace(CLUSTER, hosts=(CLUSTER.hosts[0], host, CLUSTER.hosts[2]))
    assert state().host_env(cluster, host)["COLOR"] == "host"
    assert state().host_env(cluster, cluster.hosts[0])["COLOR"] == "cluster"
    assert state(cli_env={"COLOR": "cli"}).host_env(cluster, host)["COLOR"] == "cli"
    assert state(image=replace(IMAGE, env={"X": "image"})).host_env(cluster, host)["X"] == "image"
    assert state().host_env(cluster, host)["SEALER_ROLE"] == "node"


def test_join_plans_only_the_new_hosts_and_launches_nothing() -> None:
    s = state(targets=("10.0.0.3",))
    facts = Facts.assume(("10.0.0.3",), PLATFORM)
    hosts = {st.host for p in install_phases() for st in p.plan(CLUSTER, facts, s)}
    assert hosts == {"10.0.0.3"}
    assert Launch().plan(CLUSTER, facts, s) == []


def test_launch_prefers_clusterfile_cmds_then_image_cmds_then_apps() -> None:
    from dataclasses import replace

    facts = Facts()
    with_cmds = replace(CLUSTER, cmds=("echo from-clusterfile",))
    assert [st.command for st in Launch().plan(with_cmds, facts, state())] == ["echo from-clusterfile"]
    image_cmds = replace(IMAGE, launch_cmds=("echo a", "echo b"))
    assert [st.command for st in Launch().plan(CLUSTER, facts, state(image=image_cmds))] == [
        "echo a",
        "echo b",
    ]
    apps = (
        Application("web", "kube", ("a.yaml", "b.yaml")),
        Application("chart", "helm", ("mychart",)),
        Application("custom", "shell", ("x.sh",), cmds=("make run",)),
    )
    image_apps = replace(IMAGE, applications=apps, app_names=("web", "chart", "custom"))
    steps = Launch().plan(CLUSTER, facts, state(image=image_apps))
    assert [st.command for st in steps] == [
        "kubectl apply -f application/apps/web/a.yaml",
        "kubectl apply -f application/apps/web/b.yaml",
        "helm install chart application/apps/chart/mychart",
        "make run",
    ]
    assert steps[-1].cwd == "/var/lib/sealer/data/c1/rootfs/application/apps/custom"
    with pytest.raises(ClusterError, match="app 'nope' is not in image demo:v1"):
        Launch().plan(replace(CLUSTER, app_names=("nope",)), facts, state())


def test_removal_runs_nodes_then_masters_then_master0() -> None:
    cluster = cluster_from_flags("demo:v1", "10.0.0.1,10.0.0.4", "10.0.0.2,10.0.0.3", name="c1")
    s = state(targets=cluster.ips, delete_all=True)
    steps = {p.name: p.plan(cluster, Facts(), s) for p in removal_phases()}
    assert [(st.stage, st.host) for st in steps["clean-scripts"]] == [
        (0, "10.0.0.2"),
        (0, "10.0.0.3"),
        (1, "10.0.0.4"),
        (2, "10.0.0.1"),
    ]
    assert all(st.kind == "remove" for st in steps["remove-rootfs"])
    assert steps["runtime-leave"] == [] and steps["runtime-reset"] == []  # the none runtime


def test_check_probes_and_judges_hosts() -> None:
    steps = Check().plan(CLUSTER, Facts(), state())
    assert [st.host for st in steps] == list(CLUSTER.ips) and all(not st.journal for st in steps)
    good = parse_probe(
        "h", "arch=x86_64\nhostname=a\ntool=sh\ntool=tar\ntool=sha256sum\ntool=zstd\nfree_kb=999999\n"
    )
    assert good.platform == PLATFORM and good.decompressor == "zstd"
    assert problems(good, PLATFORM, 1000) == []
    arm = parse_probe("h", "arch=aarch64\ntool=sh\nfree_kb=10\n")
    found = problems(arm, PLATFORM, 1000)
    assert found[0] == "architecture arm64 but the image is linux/amd64"
    assert found[1] == "missing tar, sha256sum"
    assert found[2].startswith("0 MiB free")


def test_runtime_selection() -> None:
    assert select_plugin(None, None).name == "none"
    assert select_plugin("none", None).name == "none"
    assert select_plugin("k3s", None, "none").name == "none"
    assert select_plugin("k3s", None).name == "k3s"
    with pytest.raises(UnknownRuntime, match="known runtimes are kubernetes, k3s, k0s, none") as err:
        select_plugin("docker", None)
    assert "image label cluster.alpha.sealer.io/cluster-runtime-type=docker" in err.value.message
    with pytest.raises(UnknownRuntime, match=r"unknown runtime 'k9s' \(rootfs Metadata ClusterRuntime=k9s\)"):
        select_plugin(None, "k9s")


def test_init_registry_runs_after_init_on_every_host_only_when_the_image_has_it() -> None:
    plain = HostScripts().plan(CLUSTER, Facts(), state())
    assert [(s.host, s.id) for s in plain] == [(ip, "init.sh") for ip in CLUSTER.ips]
    image = replace(IMAGE, files={"scripts/init-registry.sh": "#!/bin/sh\n"})
    steps = HostScripts().plan(CLUSTER, Facts(), state(image=image))
    assert [(s.host, s.id) for s in steps] == [
        (ip, script) for ip in CLUSTER.ips for script in ("init.sh", "init-registry.sh")
    ]
    assert steps[1].command.endswith(
        "then sh scripts/init-registry.sh; else echo 'no scripts/init-registry.sh in the image: skipped'; fi"
    )
    assert steps[1].env["SEALER_MASTER0"] == "10.0.0.1" and steps[1].cwd == steps[0].cwd


def test_host_aliases_go_in_before_init_and_out_after_clean() -> None:
    aliased = replace(CLUSTER, host_aliases=(HostAlias("10.9.9.9", ("registry.internal",)),))
    steps = HostScripts().plan(aliased, Facts(), state())
    assert [(s.host, s.id) for s in steps] == [
        *((ip, "host-aliases") for ip in CLUSTER.ips),
        *((ip, "init.sh") for ip in CLUSTER.ips),
    ]
    assert "10.9.9.9 registry.internal" in steps[0].command and 'cat "$tmp" > /etc/hosts' in steps[0].command
    removal = [(s.stage, s.host, s.id) for s in CleanScripts().plan(aliased, Facts(), state())]
    assert removal[-3:] == [
        (0, "10.0.0.2", "host-aliases"),
        (0, "10.0.0.3", "host-aliases"),
        (2, "10.0.0.1", "host-aliases"),
    ]
    assert [s.id for s in HostScripts().plan(CLUSTER, Facts(), state())] == ["init.sh"] * 3


@pytest.mark.parametrize("action", ["run", "apply"])
def test_changed_labels_taints_or_aliases_of_joined_hosts_are_refused(action: str, tmp_path: Path) -> None:
    """Nothing re-applies them to hosts that already joined, so run/apply say so rather than
    saving a Clusterfile the hosts do not match (no host is contacted: the check comes first)."""
    from builder.runtime import actions
    from builder.runtime.state import ClusterState, SavedMeta

    cs = ClusterState("c1", tmp_path)
    cs.save(
        CLUSTER,
        SavedMeta(
            image="demo:v1",
            digest=Digest("sha256", "ab" * 32),
            platform="linux/amd64",
            runtime="none",
            complete=True,
        ),
    )
    node = CLUSTER.host("10.0.0.2")
    relabelled = replace(node, labels={"tier": "front"}, taints=("k=v:NoSchedule",))
    wanted = replace(
        CLUSTER,
        hosts=tuple(relabelled if h.ip == node.ip else h for h in CLUSTER.hosts),
        host_aliases=(HostAlias("10.9.9.9", ("registry.internal",)),),
    )
    settings = actions.Settings(home=tmp_path)
    with pytest.raises(ClusterError) as err:
        (actions.run if action == "run" else actions.apply)(wanted, settings)
    assert err.value.message == (
        "hosts already in cluster c1 keep what they got when they joined; "
        "changed: 10.0.0.2 labels and taints, spec.hostAliases"
    )
    assert cs.load_cluster() == CLUSTER  # nothing saved


# The short plan (`--dry-run` without --verbose): one line per step and host, as k0sctl prints
# one; a delivery says what it sends to a host that has none of the layers.
SHORT_GOLDEN = """\
== deliver: Deliver the rootfs
  10.0.0.1 (master0): 2 layers of demo:v1 into /var/lib/sealer/data/c1/rootfs (up to 1.5 kB to send)
  10.0.0.2 (node): 2 layers of demo:v1 into /var/lib/sealer/data/c1/rootfs (up to 1.5 kB to send)
  10.0.0.3 (node): 2 layers of demo:v1 into /var/lib/sealer/data/c1/rootfs (up to 1.5 kB to send)
== host-scripts: Run init.sh
  10.0.0.1 (master0): sh scripts/init.sh as master
  10.0.0.2 (node): sh scripts/init.sh as node
  10.0.0.3 (node): sh scripts/init.sh as node
== launch: Launch on master0
  10.0.0.1 (master0): launch app greet (shell) 1/1
# 7 steps on 3 hosts, up to 4.5 kB to send; --verbose shows each step's commands"""


def _uploads(*sizes: int) -> tuple[str, ...]:
    """Delivery lines as `delivery.plan_commands` shows them: a command, then per layer its upload."""
    lines = ["probe ..."]
    for i, size in enumerate(sizes):
        lines += [f"upload sha256:{str(i) * 64} ({size})", "zstd -d | tar -x ..."]
    return tuple(lines)


def test_golden_short_dry_run_of_the_none_runtime_on_one_master_and_two_nodes() -> None:
    s = state(cli_env={"COLOR": "cli"}, delivery_lines=dict.fromkeys(CLUSTER.ips, _uploads(1000, 500)))
    facts = Facts.assume(CLUSTER.ips, PLATFORM)
    plans = [(p, p.plan(CLUSTER, facts, s)) for p in install_phases()]
    assert "\n".join(format_plan(CLUSTER, plans)) == SHORT_GOLDEN
    verbose = "\n".join(format_plan(CLUSTER, plans, verbose=True))
    assert "    $ upload sha256:" + "0" * 64 + " (1000)" in verbose and "to send" not in verbose


def test_short_dry_run_of_3000_hosts_is_one_line_per_step_and_host() -> None:
    cluster = cluster_from_flags("demo:v1", "10.0.0.1", "10.0.1.0-10.0.12.183", name="c1")
    facts = Facts.assume(cluster.ips, PLATFORM)
    plans = [(p, p.plan(cluster, facts, state(targets=cluster.ips))) for p in install_phases()]
    lines = format_plan(cluster, plans)
    steps = sum(len(steps) for _, steps in plans)
    assert len(lines) == steps + 3 + 1  # a line per step, per phase, and the total
    assert max(len(line) for line in lines) < 120


def test_dry_run_masks_the_values_of_secret_env() -> None:
    class Secret(Phase):
        name = "secret"
        title = "a step with a password"

        def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
            env = {"SEALER_REGISTRY_PASSWORD": "hunter2", "PLAIN": "shown"}
            return [Step(h.ip, "s", "uses it", 'echo "$SEALER_REGISTRY_PASSWORD"', env=env,
                         secret_env=("SEALER_REGISTRY_PASSWORD",)) for h in cluster.hosts]  # fmt: skip

    plans = [(Secret(), Secret().plan(CLUSTER, Facts.assume(CLUSTER.ips, PLATFORM), state()))]
    text = "\n".join(format_plan(CLUSTER, plans, verbose=True))
    assert "hunter2" not in text
    assert "SEALER_REGISTRY_PASSWORD=***" in text and "PLAIN=shown" in text
