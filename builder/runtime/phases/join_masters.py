"""join-masters: each other master, one at a time: `join-credentials` on master0, then
`join-master` on the host."""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.phases.plugin_steps import plugin_steps
from builder.runtime.plugins import base as plugin_phases


class JoinMasters(Phase):
    name: ClassVar[str] = "join-masters"
    title: ClassVar[str] = "Join masters"
    serial: ClassVar[bool] = True

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        out: list[Step] = []
        master0 = cluster.master0
        for host in state.target_hosts(cluster):
            if not host.is_master or host.ip == master0.ip:
                continue
            joins = plugin_steps(plugin_phases.JOIN_MASTER, cluster, state, host)
            if joins:
                out += plugin_steps(plugin_phases.JOIN_CREDENTIALS, cluster, state, master0, subject=host)
                out += joins
        return out
