"""The phases of an app run on a running cluster (`sealer run APP_IMAGE`, actions/apps.py):
deliver-app puts the app image's rootfs into its own tree on master0, launch-app runs its
launch commands there. Their own journal names keep them apart from the cluster's phases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.phases.launch import Launch


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


class LaunchApp(Launch):
    """Launch, from the app's rootfs; its own journal name, so an app never shares the
    cluster's launch entries (even an app image whose digest is the cluster's)."""

    name: ClassVar[str] = "launch-app"
    title: ClassVar[str] = "Launch the app on master0"


@dataclass(frozen=True, slots=True)
class AppPlanState(PlanState):
    """The plan state of an app: master0's env with SEALER_APP_ROOTFS on top."""

    app_rootfs: str = ""

    def host_env(self, cluster: Cluster, host: HostSpec) -> dict[str, str]:
        env = PlanState.host_env(self, cluster, host)  # zero-argument super() fails with slots
        env["SEALER_APP_ROOTFS"] = self.app_rootfs
        return env
