"""The cluster's container runtime: sealer's spec.containerRuntime.type against what the image
runs on, and the CRI socket the kubelets are given.

sealer takes the image's label `cluster.alpha.sealer.io/container-runtime-type` (docker when
absent) and lets spec.containerRuntime.type override it, then runs the image's script for that
runtime (pkg/clusterruntime GetClusterInstallInfo). An image here installs one runtime, so the
Clusterfile may only name the one it installs: a type the label contradicts is refused, and so is
docker from an image that does not say it runs docker. Since Kubernetes 1.24 the kubelet reaches
Docker Engine only through cri-dockerd, so docker also needs an image that ships it (`bin/cri-dockerd`,
which its scripts install and start), or one of an older Kubernetes (its kubelet's dockershim),
and the kubeadm runtime, whose kubelets are then pointed at cri-dockerd's socket (kubeadm's
nodeRegistration.criSocket; an older image's own dockershim socket stays); k3s and k0s run
their own containerd. Every refusal names the Clusterfile line and what the image supports, and comes
before any host changes.
"""

from __future__ import annotations

import re

from builder.errors import ClusterError, ImageNotFound
from builder.image import mediatypes
from builder.image.digest import Digest
from builder.runtime.cluster import Cluster
from builder.store.layout import Store

CONTAINERD = "containerd"
DOCKER = "docker"
# The CRI endpoint each runtime's kubelet uses (the kubeadm container-runtime guide's table).
CRI_SOCKETS = {
    CONTAINERD: "unix:///run/containerd/containerd.sock",
    DOCKER: "unix:///var/run/cri-dockerd.sock",
}
DOCKERSHIM_REMOVED = (1, 24)  # the Kubernetes version whose kubelet lost dockershim
DOCKERSHIM_SOCKET = "dockershim.sock"  # the end of an older image's own criSocket, kept as it is
CRI_DOCKERD = "bin/cri-dockerd"  # what an image that runs docker ships (the stack check keeps its presence)
# The runtimes whose kubelets can be pointed at another CRI socket here.
DOCKER_RUNTIMES = ("kubernetes",)
NO_KUBELET = "none"  # the `none` runtime: its image's scripts are all it runs, no kubelet to point


def check_container_runtime(
    cluster: Cluster,
    image: str,
    label: str | None,
    *,
    runtime: str | None = None,
    ships_cri_dockerd: bool | None = None,
    kube_version: str | None = None,
) -> None:
    """Refuse a spec.containerRuntime.type the image cannot run (ClusterError naming the
    Clusterfile line). `label`: the image's container-runtime label. `runtime` (the cluster
    runtime plugin's name) and `ships_cri_dockerd` are checked when known: a caller with only
    the image's config checks the label alone, before any host is contacted. `kube_version`
    (the image's KUBEVERSION): below 1.24 the kubelet has dockershim, so docker needs no
    cri-dockerd (sealer's own docker images of those versions ship none)."""
    wanted = cluster.container_runtime
    if not wanted:
        return
    at = f"{cluster.container_runtime_at}: " if cluster.container_runtime_at else ""
    said = f"label {mediatypes.LABEL_CONTAINER_RUNTIME}={label}" if label else "no container runtime label"

    def refuse(why: str, hint: str) -> ClusterError:
        return ClusterError(f"{at}spec.containerRuntime.type {wanted}: {why}", hint=hint)

    if label and label != wanted:
        raise refuse(
            f"{image} runs {label} ({said})",
            f"write type: {label}, or leave containerRuntime out: the image's runtime is used",
        )
    if wanted == CONTAINERD:
        return  # what the images here install (and what k3s and k0s embed)
    if not label:
        raise refuse(
            f"{image} does not say it runs docker ({said})",
            f"an image for docker carries {mediatypes.LABEL_CONTAINER_RUNTIME}=docker and ships {CRI_DOCKERD}",
        )
    if runtime == NO_KUBELET:
        return
    if runtime is not None and runtime not in DOCKER_RUNTIMES:
        raise refuse(
            f"the {runtime} runtime runs its own containerd",
            "leave containerRuntime out, or use a kubeadm (kubernetes) image built for docker",
        )
    if ships_cri_dockerd is False and not has_dockershim(kube_version):
        raise refuse(
            f"{image} ({said}, Kubernetes {kube_version or 'of no KUBEVERSION'}) ships no {CRI_DOCKERD}, "
            "which the kubelet needs to reach Docker Engine from Kubernetes 1.24",
            f"use an image that ships {CRI_DOCKERD} and starts it from its scripts",
        )


def has_dockershim(kube_version: str | None) -> bool:
    """Whether the kubelet of `kube_version` (vX.Y.Z) still has dockershim (removed in 1.24)."""
    match = re.match(r"^v?(\d+)\.(\d+)", kube_version or "")
    return match is not None and (int(match.group(1)), int(match.group(2))) < DOCKERSHIM_REMOVED


def cri_socket(cluster: Cluster) -> str | None:
    """The kubelets' CRI endpoint the Clusterfile's type asks for (None: the image's own)."""
    return CRI_SOCKETS.get(cluster.container_runtime)


def image_label(store: Store, image: str, manifest: Digest | None = None) -> str | None:
    """The container-runtime label of `image` (of its `manifest` when given, else of its first
    platform); None when unset. ImageNotFound when the store lacks it."""
    if manifest is None:
        desc = store.resolve(image)
        if desc.media_type in mediatypes.INDEXES:
            desc = store.read_index(desc).manifests[0]
        config = store.read_config(store.read_manifest(desc).config)
    else:
        config = store.read_config(store.read_manifest(manifest).config)
    return config.config.labels.get(mediatypes.LABEL_CONTAINER_RUNTIME) or None


def check_local_image(cluster: Cluster, store: Store) -> None:
    """`check_container_runtime` on the label alone, before any host is contacted, when the
    image is already in the store (one a run pulls is checked once pulled, before any host
    changes)."""
    if not cluster.container_runtime:
        return
    try:
        label = image_label(store, cluster.image)
    except ImageNotFound:
        return
    check_container_runtime(cluster, cluster.image, label)
