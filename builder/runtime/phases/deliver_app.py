"""deliver-app: an app image's rootfs into its own tree on master0 (`sealer run APP_IMAGE`,
actions/apps.py); launch-app (launch_app.py) runs its commands there next."""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step


class DeliverApp(Phase):
    """The app image's layers into its own tree on master0 (delivery checks itself)."""

    name: ClassVar[str] = "deliver-app"
    title: ClassVar[str] = "Deliver the app's rootfs to master0"

    def __init__(self, rootfs: str) -> None:
        self.rootfs = rootfs

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        image = state.image
        return [
            Step(
                host=h.ip,
                id="rootfs",
                description=f"{image.layer_count} layers of {image.name} into {self.rootfs}",
                command=f"deliver {image.digest} -> {self.rootfs}",
                kind="deliver",
                journal=False,
                shown=state.delivery_lines.get(h.ip, ()),
            )
            for h in state.target_hosts(cluster)
        ]
