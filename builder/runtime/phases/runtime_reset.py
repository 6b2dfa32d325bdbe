"""runtime-reset: every host of a cluster being deleted: nodes, masters, master0 last."""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step, ordered_for_removal
from builder.runtime.phases.plugin_steps import plugin_steps
from builder.runtime.plugins import base as plugin_phases


class RuntimeReset(Phase):
    name: ClassVar[str] = "runtime-reset"
    title: ClassVar[str] = "Reset the cluster runtime"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        if not state.delete_all:
            return []
        out: list[Step] = []
        for stage, host in ordered_for_removal(cluster, state.target_hosts(cluster)):
            out += plugin_steps(plugin_phases.RESET, cluster, state, host, stage=stage)
        return out
