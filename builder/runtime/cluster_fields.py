"""The checks of a `Cluster`'s own fields: its name, spec.dataRoot, spec.distribution,
spec.containerRuntime and spec.provider, with their defaults and allowed values. Values only,
no I/O; cluster.py re-exports `DEFAULT_CLUSTER_NAME` and `check_cluster_name`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from builder.errors import InvalidCluster
from builder.runtime.cluster_hosts import HostSpec

DEFAULT_CLUSTER_NAME = "my-cluster"  # sealer's `--cluster-name` default
# sealer's default spec.dataRoot (common.DefaultSealerDataDir): a Clusterfile naming it means
# the default, so it is kept as "" (the hosts' sealer root's data/, delivery.DEFAULT_ROOT).
DEFAULT_DATA_ROOT = "/var/lib/sealer/data"
# spec.containerRuntime.type values: what the ClusterImages run with (sealer's common.Containerd
# and common.Docker; docker only through cri-dockerd, see container_runtime.py).
CONTAINER_RUNTIMES = ("containerd", "docker")
# A data root lands unquoted in some plugin commands and in systemd units: plain characters only.
_DATA_ROOT = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
# Kernel and boot file systems, and the system's own trees: a cluster's data never goes there
# (remove-rootfs deletes the cluster's directory under it).
_SYSTEM_DIRS = (
    "/proc", "/sys", "/dev", "/run", "/var/run", "/boot", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64",
)  # fmt: skip
# Shared directories a data root may be below but not be: the cluster's directory DATAROOT/<name>
# (removed whole by delete) would sit among other software's (/var/lib/<name>), and /var/lib/sealer
# holds the default clusters' data/ and blobs/ beside what would be cluster names.
_SHARED_DIRS = (
    "/var", "/var/lib", "/var/tmp", "/tmp", "/opt", "/srv", "/home", "/root", "/mnt", "/media", "/var/lib/sealer",
)  # fmt: skip

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


DISTRIBUTIONS = ("ssh", "fanout", "auto")  # spec.distribution, --distribution (fanout.choose)


def _one_of(value: str, allowed: tuple[str, ...], what: str, field: str, hint: str) -> str:
    """`value` when it is one of `allowed`; InvalidCluster naming `what` and `field` otherwise."""
    if value not in allowed:
        raise InvalidCluster(f"{what} {value!r} is not one of {', '.join(allowed)}", field=field, hint=hint)
    return value


def check_distribution(mode: str) -> str:
    """spec.distribution: how the layers reach the hosts (docs/delivery.md, Fan-out)."""
    return _one_of(
        mode, DISTRIBUTIONS, "distribution", "distribution",
        "ssh: every host from this machine; fanout: from the registry hosts; auto: by host count",
    )  # fmt: skip


def check_data_root(path: str) -> str:
    """spec.dataRoot: an absolute, normalized path of plain characters (letters, digits, '.',
    '_', '-'), not `/` and not in a kernel or system tree; DEFAULT_DATA_ROOT reads as ""."""
    hint = "an absolute directory such as /data/sealer (sealer's default is /var/lib/sealer/data)"
    if not path.startswith("/"):
        raise InvalidCluster(f"dataRoot {path!r} is not an absolute path", field="dataRoot", hint=hint)
    if path == "/" or not _DATA_ROOT.match(path):
        raise InvalidCluster(
            f"dataRoot {path!r} is not a plain directory path", field="dataRoot",
            hint=hint + "; letters, digits, '.', '_' and '-' in each component",
        )  # fmt: skip
    parts = path.split("/")[1:]
    if any(p in (".", "..") for p in parts):
        raise InvalidCluster(f"dataRoot {path!r} has a '.' or '..' component", field="dataRoot", hint=hint)
    for system in _SYSTEM_DIRS:
        if path == system or path.startswith(system + "/"):
            raise InvalidCluster(
                f"dataRoot {path!r} is in {system}, a system tree", field="dataRoot", hint=hint
            )
    if path in _SHARED_DIRS:
        raise InvalidCluster(
            f"dataRoot {path!r} is shared with other software: the cluster would be {path}/<name>, "
            "which delete removes",
            field="dataRoot",
            hint=f"a directory of its own, such as {path.rstrip('/')}/sealer-data",
        )
    return "" if path == DEFAULT_DATA_ROOT else path


def check_container_runtime(name: str) -> str:
    return _one_of(
        name, CONTAINER_RUNTIMES, "container runtime", "containerRuntime.type",
        "containerd (what the images install), or docker where the image ships cri-dockerd",
    )  # fmt: skip


PROVIDERS = ("BAREMETAL", "CONTAINER")


def check_provider(provider: str, node_image: str, hosts: Iterable[HostSpec]) -> None:
    """spec.provider is one of PROVIDERS; a node image and container hosts go together."""
    _one_of(
        provider, PROVIDERS, "provider", "provider",
        "CONTAINER runs the hosts as Docker containers (sealer run --provider docker)",
    )  # fmt: skip
    if node_image and provider != "CONTAINER":
        raise InvalidCluster("a node image is for CONTAINER clusters", field="nodeImage")
    if provider == "CONTAINER" and any(h.local for h in hosts):
        raise InvalidCluster("a CONTAINER cluster's hosts are containers, not this machine", field="hosts")


def check_cluster_name(name: str) -> str:
    """A DNS-1123 label: the name becomes a directory on every host and under ~/.sealer."""
    if len(name) > 63 or not _DNS1123_LABEL.match(name):
        raise InvalidCluster(
            f"cluster name {name!r} is not a DNS-1123 label",
            field="name",
            hint="lower-case letters, digits and '-', starting and ending alphanumeric, at most 63",
        )
    return name
