"""deliver: the image's rootfs onto every host in scope (`builder/runtime/delivery.py`).

Delivery checks itself (each host keeps a record of the layers applied to its rootfs; only
missing ones travel), so its steps run on every attempt and a re-run with nothing changed
moves no bytes. The journal still records each host's delivery for `status`.
"""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step


class Deliver(Phase):
    name: ClassVar[str] = "deliver"
    title: ClassVar[str] = "Deliver the rootfs"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        image = state.image
        rootfs = self.target(cluster, state)
        return [
            Step(
                host=h.ip,
                id="rootfs",
                description=f"{image.layer_count} layers of {image.name} into {rootfs}",
                command=f"deliver {image.digest} -> {rootfs}",
                kind="deliver",
                journal=False,
                shown=state.delivery_lines.get(h.ip, ()),
            )
            for h in state.target_hosts(cluster)
            if not self.fetches(h.ip, state)
        ]

    def fetches(self, host: str, state: PlanState) -> bool:
        """The host gets its layers from the seeds' registry (deliver-fetch), not here."""
        return state.fanout is not None and host in state.fanout.fetchers

    def target(self, cluster: Cluster, state: PlanState) -> str:
        """Where the layers go on each host: the cluster's rootfs."""
        return state.rootfs(cluster)
