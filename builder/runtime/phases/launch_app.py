"""launch-app: an app's launch commands on master0, from the app's own rootfs (after
deliver-app), journaled apart from the cluster's launch; and `AppPlanState`, the plan state of
an app run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.phases.base import PlanState
from builder.runtime.phases.launch import Launch


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
