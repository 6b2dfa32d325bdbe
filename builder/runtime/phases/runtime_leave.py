"""runtime-leave: hosts leaving a running cluster, one at a time, nodes first: the
`delete-worker`/`delete-master` commands on master0 (subject = the host), then those on the
host itself, then `delete-done` on master0."""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step, ordered_for_removal
from builder.runtime.phases.plugin_steps import plugin_steps
from builder.runtime.plugins import base as plugin_phases


class RuntimeLeave(Phase):
    name: ClassVar[str] = "runtime-leave"
    title: ClassVar[str] = "Remove hosts from the cluster runtime"
    serial: ClassVar[bool] = True

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        if state.delete_all:
            return []
        out: list[Step] = []
        for _, host in ordered_for_removal(cluster, state.target_hosts(cluster)):
            phase = plugin_phases.DELETE_MASTER if host.is_master else plugin_phases.DELETE_WORKER
            out += plugin_steps(phase, cluster, state, cluster.master0, subject=host)
            out += plugin_steps(phase, cluster, state, host, subject=host)
            out += plugin_steps(plugin_phases.DELETE_DONE, cluster, state, cluster.master0, subject=host)
        return out
