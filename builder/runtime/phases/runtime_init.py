"""runtime-init: master0, when it is in scope, runs the plugin's `init`."""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.phases.plugin_steps import plugin_steps
from builder.runtime.plugins import base as plugin_phases


class RuntimeInit(Phase):
    name: ClassVar[str] = "runtime-init"
    title: ClassVar[str] = "Start the cluster runtime on master0"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        if cluster.master0.ip not in state.targets:
            return []
        return plugin_steps(plugin_phases.INIT, cluster, state, cluster.master0)
