"""api-endpoint: the runtime plugin's `api-endpoint` commands (kubeadm: the local haproxy in
front of every master's API server) on the workers that need them.

    ApiEndpoint       install, after join-masters and before join-nodes: each joining worker
                      (its kubelet joins through it), and every other worker of the cluster
                      when masters joined (their backend list grows)
    ApiEndpointLeave  removal, first: when masters leave, every staying worker, planned with
                      the cluster without the leaving hosts, so their API servers leave the
                      rotation before `kubeadm reset` stops them

k3s and k0s answer nothing here: their agents balance over the servers themselves.
"""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.phases.plugin_steps import plugin_steps
from builder.runtime.plugins import base as plugin_phases


class ApiEndpoint(Phase):
    name: ClassVar[str] = "api-endpoint"
    title: ClassVar[str] = "Local API endpoint on the workers"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        targets = set(state.targets)
        masters_joined = any(m.ip in targets for m in cluster.masters)
        out: list[Step] = []
        for host in cluster.nodes:
            if host.ip in targets or masters_joined:
                out += plugin_steps(plugin_phases.API_ENDPOINT, cluster, state, host)
        return out


class ApiEndpointLeave(Phase):
    name: ClassVar[str] = "api-endpoint-leave"
    title: ClassVar[str] = "Local API endpoint on the staying workers"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        leaving = set(state.targets)
        if state.delete_all or not any(m.ip in leaving for m in cluster.masters):
            return []
        staying = cluster.without_hosts(leaving)
        out: list[Step] = []
        for host in staying.nodes:
            out += plugin_steps(plugin_phases.API_ENDPOINT, staying, state, host)
        return out
