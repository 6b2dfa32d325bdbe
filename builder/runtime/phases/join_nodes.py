"""join-nodes: `join-credentials` on master0 once, then `join-worker` on every node at once
(bounded by the runner)."""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.phases.plugin_steps import plugin_steps
from builder.runtime.plugins import base as plugin_phases


class JoinNodes(Phase):
    name: ClassVar[str] = "join-nodes"
    title: ClassVar[str] = "Join nodes"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        joins: list[Step] = []
        for host in state.target_hosts(cluster):
            if not host.is_master:
                joins += plugin_steps(plugin_phases.JOIN_WORKER, cluster, state, host, stage=1)
        if not joins:
            return []
        return plugin_steps(plugin_phases.JOIN_CREDENTIALS, cluster, state, cluster.master0) + joins
