"""app-images: the container images an app image bundles (its rootfs `registry/`, in
distribution's storage layout; docs/bundling.md) added to the running cluster registry on every
registry host, after deliver-app put the app's rootfs there and before launch-app starts the
pods that pull them.

Each registry host merges the app's tree into its registry's storage with the registry
service's own merge (registry_service.merge_tree_command): only the blobs and links the storage
lacks, blob data hardlinked, the app's tree never modified; a tag the app moves (its new
version) takes the app's value. distribution reads the storage on every request, so the
images are served at once, without a restart. An external registry gets nothing: the user
pushes to it.
"""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.phases.registry_service import merge_tree_command, storage_dir


class AddAppImages(Phase):
    name: ClassVar[str] = "app-images"
    title: ClassVar[str] = "Add the app's container images to the cluster registry"

    def __init__(self, app_rootfs: str) -> None:
        self.app_rootfs = app_rootfs

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        serving = {h.ip for h in cluster.registry_hosts}
        storage = storage_dir(cluster.name, state.root, cluster.data_root)
        return [
            Step(
                host=h.ip,
                id="app-images",
                description=f"the app's registry/ into {storage} (only what it lacks)",
                command=merge_tree_command(f"{self.app_rootfs}/registry", storage, move_tags=True),
                journal=False,  # the merge checks itself: a re-run copies nothing
            )
            for h in state.target_hosts(cluster)
            if h.ip in serving
        ]
