"""remove-rootfs: each leaving host's data/<cluster> goes, after clean.sh, in the same order
(nodes, masters, master0 last), with the blobs no other cluster uses. Idempotent."""

from __future__ import annotations

from typing import ClassVar

from builder.runtime._delivery_shell import Paths
from builder.runtime._delivery_shell import remove as remove_command
from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step, ordered_for_removal


class RemoveRootfs(Phase):
    name: ClassVar[str] = "remove-rootfs"
    title: ClassVar[str] = "Remove the rootfs"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        paths = Paths(state.root, cluster.name, data_root=cluster.data_root)
        return [
            Step(
                host=h.ip,
                id="rootfs",
                description=f"remove {paths.data} and the blobs no other cluster uses",
                command=remove_command(paths),
                kind="remove",
                stage=stage,
                journal=False,
            )
            for stage, h in ordered_for_removal(cluster, state.target_hosts(cluster))
        ]
