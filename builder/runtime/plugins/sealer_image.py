"""sealer's own ClusterImage contract (sealerio/basefs), as this project runs it: how such an
image is recognised, the scripts sealer calls in it, and the env sealer computes for them.

An image built on sealer's base has, in its rootfs (sealerio/basefs context/rootfs and the
context/containerd or context/docker variant copied over it):

    scripts/init-kube.sh                 every host, before kubeadm: the kube binaries into
                                         /usr/bin, etc/kubelet.service and 10-kubeadm.conf, sysctl
    scripts/containerd.sh | docker.sh    every host, first: the container runtime of its label
    scripts/uninstall-containerd.sh | uninstall-docker.sh      on delete
    scripts/init-registry.sh PORT DIR DOMAIN                   the registry (see below)
    etc/kubeadm.yml (or etc/kubeadm.yml.tmpl, rendered)        kubeadm's defaults
    registry/                            the container images, in distribution's storage layout

Detection (`is_sealer_image`): the kubernetes runtime is selected (label or Metadata) and the
image has scripts/init-kube.sh and etc/kubeadm.yml or its template. This project's own basefs
has neither (its defaults are etc/kubeadm.yaml, its host set-up scripts/init.sh).

The env knobs (`sealer_env`), as sealer's Clusterfile decoder sets them (pkg/clusterfile
checkAndFillCluster) before any script or template sees the env: RegistryDomain, RegistryPort,
RegistryURL and the Local- or External- forms of the three, from spec.registry; ContainerRuntime;
and, from a user's SvcCIDR, KubeSvcIP (its first address) and DNSSvcIP (its tenth). A value the
user gives for a computed name is replaced, as sealer drops it. PodCIDR, SvcCIDR and CertSANs are
the user's, read by the image's templates and (CertSANs) by the kubeadm merge.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from builder.errors import ClusterError, InvalidEnv
from builder.image.mediatypes import LABEL_CONTAINER_RUNTIME
from builder.runtime.cluster import Cluster

INIT_KUBE = "scripts/init-kube.sh"
INIT_REGISTRY = "scripts/init-registry.sh"
KUBEADM_YML = "etc/kubeadm.yml"
KUBEADM_YML_TEMPLATE = KUBEADM_YML + ".tmpl"
CONTAINER_RUNTIMES = ("containerd", "docker")  # sealer's common.Containerd and common.Docker
DEFAULT_CONTAINER_RUNTIME = "docker"  # sealer's, for an image without the label
# What the controller reads of such an image (kept by the stack check): the kubeadm defaults'
# text, the scripts' presence.
PRESENT_SCRIPTS = (
    INIT_KUBE,
    *(f"scripts/{cri}.sh" for cri in CONTAINER_RUNTIMES),
    *(f"scripts/uninstall-{cri}.sh" for cri in CONTAINER_RUNTIMES),
)
# Beside the rootfs on each host (data/<cluster>/, removed with it): the container runtime
# installed there, so `delete` runs its uninstall script without the image at hand.
CRI_MARKER = "sealer-container-runtime"
# What sealer's leave removes of init-kube.sh's work besides `kubeadm reset` (its
# RemoteCleanK8sOnHost), where this runtime's own uninstall step does not (its files are in
# /usr/local/bin); clean_scripts.py removes them on a host that ran a sealer image.
INIT_KUBE_FILES = (
    "/usr/bin/kubeadm", "/usr/bin/kubelet", "/usr/bin/kubectl", "/usr/bin/kubelet-pre-start.sh",
    "/etc/sysctl.d/k8s.conf",
)  # fmt: skip
ENV_SVC_CIDR = "SvcCIDR"
ENV_CERT_SANS = "CertSANs"
ENV_REGISTRY_URL = "RegistryURL"


def is_sealer_image(files: Mapping[str, str]) -> bool:
    """The image follows sealer's contract (module docstring); `files`: ImageInfo.files."""
    return INIT_KUBE in files and (KUBEADM_YML in files or KUBEADM_YML_TEMPLATE in files)


def container_runtime(files: Mapping[str, str], label: str | None) -> str:
    """The container runtime a sealer image installs: its label, else the one runtime script
    it ships, else sealer's default (docker)."""
    if label:
        return label
    shipped = [cri for cri in CONTAINER_RUNTIMES if f"scripts/{cri}.sh" in files]
    return shipped[0] if len(shipped) == 1 else DEFAULT_CONTAINER_RUNTIME


def check_sealer_image(image: str, files: Mapping[str, str], label: str | None) -> None:
    """Refuse, before any host changes, a sealer image that cannot install its container
    runtime: a runtime sealer has no script name for, or no scripts/<cri>.sh for it."""
    if not is_sealer_image(files):
        return
    cri = container_runtime(files, label)
    said = f"label {LABEL_CONTAINER_RUNTIME}={label}" if label else "no container runtime label"
    if cri not in CONTAINER_RUNTIMES:
        raise ClusterError(
            f"{image}: container runtime {cri!r} ({said}) is none of {', '.join(CONTAINER_RUNTIMES)}",
            hint="sealer's images install containerd or docker through scripts/<runtime>.sh",
        )
    if install_script(cri) not in files:
        raise ClusterError(
            f"{image} follows sealer's image contract ({INIT_KUBE}) but has no {install_script(cri)} "
            f"for its container runtime {cri} ({said})",
            hint=f"ship {install_script(cri)}, or label the runtime the image installs",
        )


def install_script(cri: str) -> str:
    return f"scripts/{cri}.sh"


def uninstall_script(cri: str) -> str:
    return f"scripts/uninstall-{cri}.sh"


def sealer_env(cluster: Cluster, env: Mapping[str, str], cri: str) -> dict[str, str]:
    """The variables sealer computes (module docstring), to go over the merged env; InvalidEnv
    names SvcCIDR when it is not a network with ten addresses."""
    spec = cluster.registry
    port = str(spec.port) if spec.endpoint != spec.domain else ""
    where = "ExternalRegistry" if spec.external else "LocalRegistry"
    out = {
        f"{where}Domain": spec.domain,
        f"{where}Port": port,
        f"{where}URL": spec.endpoint,
        "RegistryDomain": spec.domain,
        "RegistryPort": port,
        ENV_REGISTRY_URL: spec.endpoint,
        "ContainerRuntime": cri,
    }
    svc = env.get(ENV_SVC_CIDR, "")
    if svc:
        first = svc.split(",")[0].strip()
        try:
            net = ipaddress.ip_network(first, strict=False)
            out["KubeSvcIP"] = str(net[1])
            out["DNSSvcIP"] = str(net[10])
        except (ValueError, IndexError):
            raise InvalidEnv(
                f"{ENV_SVC_CIDR}={svc}: {first!r} is not a service network of at least 11 addresses",
                hint="give SvcCIDR as a CIDR such as 10.96.0.0/22 (sealer takes KubeSvcIP and DNSSvcIP from it)",
            ) from None
    return out


def cert_sans(env: Mapping[str, str]) -> list[str]:
    """The CertSANs env: comma-separated extra API server SANs (sealer splits on ',')."""
    return [s.strip() for s in env.get(ENV_CERT_SANS, "").split(",") if s.strip()]
