"""upgrade: the cluster runtime moves to the new image's version, one host after another.

Order, as kubeadm's, k3s's and k0s's upgrade guides give it: master0 first, then each other
master alone, then the workers in batches (`PlanState.upgrade_batch` at a time). For every
host H, in three stages:

    1. master0 runs the plugin's `upgrade` for subject H (drain H), when H is not master0;
    2. H runs its own `upgrade` (subject H): version check, new binaries, restart;
    3. master0 runs `upgrade-done` for subject H (uncordon H).

A batch of workers goes through each stage together, so at most `upgrade_batch` workers are
drained at once. The new rootfs is delivered before (the `deliver` phase), so the commands read
the new image's files. Steps are journaled under the new image's digest: a failed upgrade,
run again, resumes at the host that failed.
"""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.phases.plugin_steps import plugin_steps
from builder.runtime.plugins import base as plugin_phases


def upgrade_groups(cluster: Cluster, batch: int) -> list[tuple[HostSpec, ...]]:
    """Hosts in upgrade order, grouped: master0, each other master alone, workers by `batch`."""
    master0 = cluster.master0
    groups: list[tuple[HostSpec, ...]] = [(master0,)]
    groups += [(h,) for h in cluster.masters if h.ip != master0.ip]
    nodes = list(cluster.nodes)
    size = max(1, batch)
    groups += [tuple(nodes[i : i + size]) for i in range(0, len(nodes), size)]
    return groups


class Upgrade(Phase):
    name: ClassVar[str] = "upgrade"
    title: ClassVar[str] = "Upgrade the cluster runtime"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        master0 = cluster.master0
        out: list[Step] = []
        stage = 0
        for group in upgrade_groups(cluster, state.upgrade_batch):
            for host in group:
                if host.ip != master0.ip:
                    out += plugin_steps(
                        plugin_phases.UPGRADE, cluster, state, master0, subject=host, stage=stage
                    )
                out += plugin_steps(
                    plugin_phases.UPGRADE, cluster, state, host, subject=host, stage=stage + 1
                )
                out += plugin_steps(
                    plugin_phases.UPGRADE_DONE, cluster, state, master0, subject=host, stage=stage + 2
                )
            stage += 3
        return out
