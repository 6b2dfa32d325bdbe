"""The rootfs `Metadata` file (sealer's pkg/runtime `Metadata` struct).

JSON keys exactly as sealer's Go tags: `version`, `arch`, `variant`, `kubeVersion`, `NydusFlag`,
`ClusterRuntime`. One sealer release wrote `cluster_runtime` instead; reading accepts both.
The config label `cluster.alpha.sealer.io/cluster-runtime-type` says `kubernetes` where
Metadata says `k8s`; the two helpers at the bottom map between them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from builder.errors import InvalidMetadata
from builder.image._json import load_object

ClusterRuntime = Literal["k8s", "k3s", "k0s"]
CLUSTER_RUNTIMES: tuple[ClusterRuntime, ...] = ("k8s", "k3s", "k0s")
METADATA_FILE = "Metadata"
# What the runtime label may say: a Kubernetes runtime, or `none` (no Kubernetes: `sealer run`
# delivers the rootfs and runs the image's scripts, nothing else). Metadata's ClusterRuntime
# has no `none`: an image labelled `none` gets no Metadata file from the build.
RUNTIME_LABELS: tuple[str, ...] = ("kubernetes", "k3s", "k0s", "none")

_LABEL_TO_RUNTIME: dict[str, ClusterRuntime] = {"kubernetes": "k8s", "k3s": "k3s", "k0s": "k0s"}
_RUNTIME_TO_LABEL = {v: k for k, v in _LABEL_TO_RUNTIME.items()}


@dataclass(frozen=True, slots=True)
class RootfsMetadata:
    """The facts about a rootfs the runtime needs before it can read anything else."""

    version: str = ""
    arch: str = ""
    variant: str = ""
    kube_version: str = ""
    nydus_flag: bool = False
    cluster_runtime: ClusterRuntime = "k8s"

    def to_bytes(self) -> bytes:
        """Indented JSON with a final newline: a file people read, with stable bytes."""
        obj = {
            "version": self.version,
            "arch": self.arch,
            "variant": self.variant,
            "kubeVersion": self.kube_version,
            "NydusFlag": self.nydus_flag,
            "ClusterRuntime": self.cluster_runtime,
        }
        return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> RootfsMetadata:
        obj = load_object(data, "Metadata", InvalidMetadata)
        values = {k: obj.get(k, "") for k in ("version", "arch", "variant", "kubeVersion")}
        if not all(isinstance(v, str) for v in values.values()):
            raise InvalidMetadata("Metadata: version, arch, variant and kubeVersion must be strings")
        nydus = obj.get("NydusFlag", False)
        if not isinstance(nydus, bool):
            raise InvalidMetadata("Metadata: NydusFlag must be true or false")
        runtime = obj.get("ClusterRuntime", obj.get("cluster_runtime")) or "k8s"
        return cls(
            version=values["version"],
            arch=values["arch"],
            variant=values["variant"],
            kube_version=values["kubeVersion"],
            nydus_flag=nydus,
            cluster_runtime=parse_cluster_runtime(runtime),
        )


def parse_cluster_runtime(value: object) -> ClusterRuntime:
    """Check a Metadata `ClusterRuntime` value (k8s | k3s | k0s)."""
    if value not in CLUSTER_RUNTIMES:
        raise InvalidMetadata(
            f"unknown cluster runtime {value!r}", hint=f"use one of {', '.join(CLUSTER_RUNTIMES)}"
        )
    return value


def cluster_runtime_from_label(label: str) -> ClusterRuntime:
    """Map the runtime label value (kubernetes | k3s | k0s) to Metadata's ClusterRuntime."""
    try:
        return _LABEL_TO_RUNTIME[label]
    except KeyError:
        raise InvalidMetadata(
            f"unknown cluster runtime label {label!r}", hint="use kubernetes, k3s or k0s"
        ) from None


def label_from_cluster_runtime(runtime: ClusterRuntime) -> str:
    """Map Metadata's ClusterRuntime (k8s | k3s | k0s) to the label value."""
    return _RUNTIME_TO_LABEL[parse_cluster_runtime(runtime)]
