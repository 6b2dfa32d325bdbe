"""registry-seed and deliver-fetch: the two phases fan-out delivery adds after deliver
(`PlanState.fanout`; nothing without it). See docs/delivery.md, "Fan-out".

registry-seed: on the seeds (deliver sent them every layer), registry-service's own two steps
run early, so that the registry serves their published blobs before the fetchers ask; the
registry-service phase later finds nothing changed. deliver-fetch: every other target host
fetches its layers from the seeds (`fanout.deliver_hosts`, the runner's delivery callback);
the dry-run shows from whom each layer comes.
"""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.phases.registry_service import RegistryService


class SeedRegistry(Phase):
    name: ClassVar[str] = "registry-seed"
    title: ClassVar[str] = "Serve the layers from the seeds' registry"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        plan = state.fanout
        if plan is None or not plan.fetchers:
            return []
        seeds = set(plan.seeds)
        return [s for s in RegistryService().plan(cluster, facts, state) if s.host in seeds]


class DeliverFetch(Phase):
    name: ClassVar[str] = "deliver-fetch"
    title: ClassVar[str] = "Fetch the rootfs from the seeds"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        plan = state.fanout
        if plan is None:
            return []
        image = state.image
        rootfs = state.rootfs(cluster)
        return [
            Step(
                host=h.ip,
                id="rootfs",
                description=f"{image.layer_count} layers of {image.name} into {rootfs}, "
                f"fetched from {', '.join(plan.sources(h.ip, 0))}",
                command=f"fetch {image.digest} -> {rootfs}",
                kind="deliver",
                journal=False,
                shown=state.delivery_lines.get(h.ip, ()),
            )
            for h in state.target_hosts(cluster)
            if h.ip in plan.fetchers
        ]
