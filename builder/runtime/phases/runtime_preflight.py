"""runtime-preflight: every host in scope runs the plugin's `preflight`."""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.phases.plugin_steps import plugin_steps
from builder.runtime.plugins import base as plugin_phases


class RuntimePreflight(Phase):
    name: ClassVar[str] = "runtime-preflight"
    title: ClassVar[str] = "Runtime preflight"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        out: list[Step] = []
        for host in state.target_hosts(cluster):
            out += plugin_steps(plugin_phases.PREFLIGHT, cluster, state, host)
        return out
