"""kubeconfig: master0 prints the admin kubeconfig for the action to save."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.phases.plugin_steps import plugin_steps
from builder.runtime.plugins import base as plugin_phases


class Kubeconfig(Phase):
    """kubeconfig: master0 prints the admin kubeconfig (named output `kubeconfig`), which the
    action saves beside the Clusterfile. Nothing for the `none` runtime."""

    name: ClassVar[str] = "kubeconfig"
    title: ClassVar[str] = "Fetch the admin kubeconfig"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        return plugin_steps(plugin_phases.KUBECONFIG, cluster, state, cluster.master0)


def kubeconfig_steps(steps: Sequence[Step]) -> bool:
    """Whether `steps` produce the kubeconfig output (else there is nothing to save)."""
    return any(s.output == plugin_phases.KUBECONFIG_OUTPUT for s in steps)
