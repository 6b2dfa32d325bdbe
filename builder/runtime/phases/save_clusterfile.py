"""save-clusterfile: the cluster's Clusterfile, secrets removed, and what an importer needs, into
the ConfigMap kube-system/sealer-clusterfile (cluster_mirror.py), through master0's admin kubectl.

Last of the install and upgrade sequences, after the removal of some hosts (the cluster without
them), after `sealer cert`. Nothing when the whole cluster goes (`delete --all`), nor for the
`none` runtime, which has no API server.

The ConfigMap reaches master0 on the command's stdin (a command line holds at most 128 KiB), into
a temp file that kubectl reads:

    kubectl -n kube-system get configmap sealer-clusterfile   exists: kubectl replace -f FILE
                                                              else:   kubectl create -f FILE

create/replace rather than `kubectl apply`: apply would also keep the whole object in its
last-applied-configuration annotation, and annotations may hold only 256 KiB in all. Runs on
every attempt (journal=False): what is saved changes with every action.
"""

from __future__ import annotations

from typing import ClassVar

from builder.image.digest import Digest
from builder.runtime import cluster_mirror
from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step

TIMEOUT_S = 120


def save_command(kubectl: str) -> str:
    """Shell on master0: stdin (a ConfigMap) created or replaced with `kubectl`."""
    ns, name = cluster_mirror.NAMESPACE, cluster_mirror.NAME
    return (
        'f=$(mktemp) || exit 1; trap \'rm -f "$f"\' EXIT; cat >"$f" || exit 1; '
        f"if {kubectl} -n {ns} get configmap {name} >/dev/null 2>&1; "
        f'then {kubectl} replace -f "$f"; else {kubectl} create -f "$f"; fi'
    )


def mirrored_state(state: PlanState, digest: Digest) -> cluster_mirror.MirroredState:
    image = state.image
    return cluster_mirror.MirroredState(
        image=image.name,
        digest=digest,
        platform=str(image.platform),
        runtime=state.plugin.name,
        kube_version=image.kube_version or "",
        cert_sans=state.mirror.cert_sans,
        cli_env=dict(state.cli_env),
        image_env=dict(image.env),
        image_hooks=image.hooks,
    )


class SaveClusterfile(Phase):
    """The cluster as this action leaves it, saved in the cluster. `after_removal`: the plan's
    cluster still has the leaving hosts (state.targets); what is saved is without them."""

    name: ClassVar[str] = "save-clusterfile"
    title: ClassVar[str] = "Save the cluster in the cluster (ConfigMap kube-system/sealer-clusterfile)"

    def __init__(self, *, after_removal: bool = False) -> None:
        self.after_removal = after_removal

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        kubectl, digest = state.plugin.kubectl, state.image.digest
        # digest None: the image is not resolved (plans made only to probe hosts), nothing to save
        if kubectl is None or digest is None or (self.after_removal and state.delete_all):
            return []
        if self.after_removal:
            cluster = cluster.without_hosts(state.targets)
        payload = cluster_mirror.configmap_bytes(cluster, mirrored_state(state, digest), state.mirror)
        command = save_command(kubectl)
        where = f"{cluster_mirror.NAMESPACE}/{cluster_mirror.NAME}"
        return [
            Step(
                host=cluster.master0.ip,
                id="configmap",
                description=f"save the Clusterfile (no secrets) and state to ConfigMap {where}",
                command=command,
                stdin=payload,
                journal=False,
                timeout_s=TIMEOUT_S,
                shown=(f"{command}    # stdin: the ConfigMap as JSON",),
            )
        ]


__all__ = ["SaveClusterfile", "save_command"]
