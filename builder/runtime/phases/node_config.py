"""node-config: `node-config` on master0 for each joined host with Clusterfile labels or
taints (subject = the host): kubectl label/taint its node, --overwrite."""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.phases.plugin_steps import plugin_steps
from builder.runtime.plugins import base as plugin_phases


class NodeConfig(Phase):
    """The Clusterfile's `labels` and `taints` of each host in scope, put on its node from
    master0 once every host has joined. Only hosts joining now: `apply` does not re-apply a
    changed label of a host already in the cluster (it adds and removes hosts only). Journaled;
    a re-run is harmless anyway, as the plugins label and taint with --overwrite."""

    name: ClassVar[str] = "node-config"
    title: ClassVar[str] = "Label and taint nodes"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        out: list[Step] = []
        for host in state.target_hosts(cluster):
            if host.labels or host.taints:
                out += plugin_steps(plugin_phases.NODE_CONFIG, cluster, state, cluster.master0, subject=host)
        return out
