"""registry-remove: on each leaving registry host, the registry service goes: its unit stopped,
disabled and removed, then its directory (config, certificates, htpasswd, storage: see
registry_service.py). In removal order (nodes, masters, master0 last), before clean.sh; the
hosts' trust and mirrors are the registry-untrust phase's. Idempotent: a host where nothing of
it is left has nothing to do. Nothing for the `none` runtime, which runs no registry.
"""

from __future__ import annotations

import shlex
from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step, ordered_for_removal
from builder.runtime.phases.registry_service import registry_dir, unit_name, unit_path
from builder.runtime.plugins.none import NoneRuntime


def remove_command(cluster: Cluster, root: str) -> str:
    unit = unit_name(cluster.name)
    path = shlex.quote(unit_path(cluster.name))
    where = registry_dir(cluster.name, root, cluster.data_root)
    directory = shlex.quote(where)
    return (
        f"if [ -e {path} ]; then systemctl disable --now {unit} || true; rm -f {path}; "
        f"systemctl daemon-reload; fi; rm -rf {directory}; echo '{unit} and {where} removed'"
    )


class RemoveRegistry(Phase):
    name: ClassVar[str] = "registry-remove"
    title: ClassVar[str] = "Remove the cluster registry"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        if cluster.registry.external or isinstance(state.plugin, NoneRuntime):
            return []
        command = remove_command(cluster, state.root)
        serving = {h.ip for h in cluster.registry_hosts}
        return [
            Step(
                host=h.ip,
                id="registry-remove",
                description=f"stop, disable and remove {unit_name(cluster.name)}; "
                f"remove {registry_dir(cluster.name, state.root, cluster.data_root)}",
                command=command,
                stage=stage,
                journal=False,
            )
            for stage, h in ordered_for_removal(cluster, state.target_hosts(cluster))
            if h.ip in serving
        ]
