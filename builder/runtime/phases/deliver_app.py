"""deliver-app: an app image's rootfs into its own tree on master0 (`sealer run APP_IMAGE`,
actions/apps.py); launch-app (launch_app.py) runs its commands there next."""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.phases.base import PlanState
from builder.runtime.phases.deliver import Deliver


class DeliverApp(Deliver):
    """The app image's layers into its own tree on master0 (delivery checks itself)."""

    name: ClassVar[str] = "deliver-app"
    title: ClassVar[str] = "Deliver the app's rootfs to master0"

    def __init__(self, rootfs: str) -> None:
        self.rootfs = rootfs

    def target(self, cluster: Cluster, state: PlanState) -> str:
        return self.rootfs
