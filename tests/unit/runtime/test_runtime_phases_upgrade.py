"""The upgrade phase's order (master0, masters one by one, workers in batches with drain before
and uncordon after) and the kubeconfig phase, with a plugin that names its steps."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from builder.errors import ClusterError
from builder.image.descriptor import Platform
from builder.image.digest import Digest
from builder.runtime.actions import check_upgrade_versions
from builder.runtime.cluster import Cluster
from builder.runtime.clusterfile import cluster_from_flags
from builder.runtime.facts import Facts
from builder.runtime.phases import ImageInfo, PlanState, Upgrade
from builder.runtime.phases.kubeconfig import Kubeconfig, kubeconfig_steps
from builder.runtime.phases.upgrade import upgrade_groups
from builder.runtime.plugins import base
from builder.runtime.plugins.base import HostContext, PluginStep, RuntimePlugin, quorum_warnings
from builder.runtime.plugins.none import NoneRuntime

IMAGE = ImageInfo(name="x:v2", digest=Digest("sha256", "ab" * 32), platform=Platform("linux", "amd64"))


class Naming(RuntimePlugin):
    """Each phase gives one step named after the phase, the host and the subject."""

    name = "naming"

    def commands(self, phase: str, ctx: HostContext) -> Sequence[PluginStep]:
        subject = ctx.subject.ip if ctx.subject else "-"
        if phase == base.UPGRADE and subject != ctx.host.ip and not ctx.is_master0:
            return ()
        if phase in (base.UPGRADE, base.UPGRADE_DONE):
            return (PluginStep(phase, f"{phase} {subject}", f"echo {phase} {subject}"),)
        if phase == base.KUBECONFIG and ctx.is_master0:
            return (PluginStep("kc", "kubeconfig", "cat admin.conf", output=base.KUBECONFIG_OUTPUT),)
        return ()


def cluster(masters: str, nodes: str = "") -> Cluster:
    return cluster_from_flags("x:v2", masters, nodes or None, name="c1")


def plan(c: Cluster, batch: int) -> list[tuple[int, str, str]]:
    state = PlanState(image=IMAGE, plugin=Naming(), targets=c.ips, upgrade_batch=batch)
    return [(s.stage, s.host, s.command) for s in Upgrade().plan(c, Facts(), state)]


def test_order_master0_masters_then_workers_in_batches() -> None:
    c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4,10.0.0.5,10.0.0.6")
    m0 = "10.0.0.1"
    assert plan(c, batch=2) == [
        (1, m0, "echo upgrade 10.0.0.1"),
        (2, m0, "echo upgrade-done 10.0.0.1"),
        (3, m0, "echo upgrade 10.0.0.2"),
        (4, "10.0.0.2", "echo upgrade 10.0.0.2"),
        (5, m0, "echo upgrade-done 10.0.0.2"),
        (6, m0, "echo upgrade 10.0.0.3"),
        (7, "10.0.0.3", "echo upgrade 10.0.0.3"),
        (8, m0, "echo upgrade-done 10.0.0.3"),
        # first batch: both drained, both upgraded together, both uncordoned
        (9, m0, "echo upgrade 10.0.0.4"),
        (10, "10.0.0.4", "echo upgrade 10.0.0.4"),
        (11, m0, "echo upgrade-done 10.0.0.4"),
        (9, m0, "echo upgrade 10.0.0.5"),
        (10, "10.0.0.5", "echo upgrade 10.0.0.5"),
        (11, m0, "echo upgrade-done 10.0.0.5"),
        (12, m0, "echo upgrade 10.0.0.6"),
        (13, "10.0.0.6", "echo upgrade 10.0.0.6"),
        (14, m0, "echo upgrade-done 10.0.0.6"),
    ]


def test_step_ids_of_master0_for_another_host_carry_its_address() -> None:
    c = cluster("10.0.0.1", "10.0.0.2")
    state = PlanState(image=IMAGE, plugin=Naming(), targets=c.ips)
    ids = [(s.host, s.id) for s in Upgrade().plan(c, Facts(), state)]
    assert ids == [
        ("10.0.0.1", "upgrade"),
        ("10.0.0.1", "upgrade-done"),
        ("10.0.0.1", "10.0.0.2/upgrade"),
        ("10.0.0.2", "upgrade"),
        ("10.0.0.1", "10.0.0.2/upgrade-done"),
    ]
    assert len(set(ids)) == len(ids)


def test_groups_and_batches() -> None:
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3,10.0.0.4,10.0.0.5")
    ips = [[h.ip for h in g] for g in upgrade_groups(c, 2)]
    assert ips == [["10.0.0.1"], ["10.0.0.2"], ["10.0.0.3", "10.0.0.4"], ["10.0.0.5"]]
    assert [[h.ip for h in g] for g in upgrade_groups(c, 0)][2:] == [["10.0.0.3"], ["10.0.0.4"], ["10.0.0.5"]]


def test_kubeconfig_on_master0_only_and_none_runtime_has_none() -> None:
    c = cluster("10.0.0.1,10.0.0.2", "10.0.0.3")
    steps = Kubeconfig().plan(c, Facts(), PlanState(image=IMAGE, plugin=Naming(), targets=("10.0.0.3",)))
    assert [(s.host, s.output, s.journal) for s in steps] == [("10.0.0.1", "kubeconfig", False)]
    assert kubeconfig_steps(steps)
    none = PlanState(image=IMAGE, plugin=NoneRuntime(), targets=c.ips)
    assert Kubeconfig().plan(c, Facts(), none) == []
    assert Upgrade().plan(c, Facts(), none) == []


def test_quorum_warnings() -> None:
    assert quorum_warnings(1) == () and quorum_warnings(3) == ()
    assert quorum_warnings(2)[0].startswith("2 masters: etcd needs a majority")
    assert Naming().warnings(cluster("10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4"))[0].startswith("4 masters")
    assert NoneRuntime().warnings(cluster("10.0.0.1,10.0.0.2")) == ()


@pytest.mark.parametrize(
    ("current", "new", "refused"),
    [
        ("v1.29.4", "v1.29.5", None),
        ("v1.29.4", "v1.30.0", None),
        ("v1.29.4", "v1.29.4", None),  # the same release again (a rebuilt image)
        ("v1.30.0", "v1.29.4", "a downgrade or a major change is not supported"),
        ("v1.29.4", "v1.29.3", "a downgrade or a major change is not supported"),
        ("v1.29.4", "v2.0.0", "a downgrade or a major change is not supported"),
        ("v1.29.4", "v1.31.0", "upgrade one minor version at a time"),
        ("", "v1.31.0", None),  # unknown: left to the hosts' own check
        ("v1.29.4", "", None),
    ],
)
def test_upgrade_versions_checked_before_any_host(current: str, new: str, refused: str | None) -> None:
    if refused is None:
        check_upgrade_versions(current, new)
        return
    with pytest.raises(ClusterError) as err:
        check_upgrade_versions(current, new)
    assert err.value.message == f"the cluster runs {current}, the image is {new}: {refused}"
