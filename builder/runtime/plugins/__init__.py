"""Cluster runtime plugins and how an image selects one.

Selection, first match wins: `--runtime NAME` (saved with the cluster, so apply/join/delete
keep it); the image label `cluster.alpha.sealer.io/cluster-runtime-type` (kubernetes | k3s |
k0s, or `none`); the rootfs `Metadata` file's `ClusterRuntime` (k8s | k3s | k0s); else `none`,
which is what an app-installer image (no runtime label, no KUBEVERSION, no Metadata) gets.

The kubeadm, k3s and k0s plugins are the next issue's: an image that names one fails with
"runtime k3s is not implemented yet" unless `--runtime none` asks to run only its scripts.
"""

from __future__ import annotations

from builder.errors import ClusterError
from builder.runtime.plugins.base import RuntimePlugin
from builder.runtime.plugins.none import NoneRuntime

PLUGINS: dict[str, type[RuntimePlugin]] = {"none": NoneRuntime}
# Runtime names sealer knows whose plugins are not written yet (issue 5), by label value.
PLANNED = ("kubernetes", "k3s", "k0s")
_METADATA_TO_NAME = {"k8s": "kubernetes", "k3s": "k3s", "k0s": "k0s"}


class UnknownRuntime(ClusterError):
    reference = "unknown-runtime"


def known_runtimes() -> tuple[str, ...]:
    return (*PLANNED, *PLUGINS)


def get_plugin(name: str, *, source: str = "--runtime") -> RuntimePlugin:
    """The plugin called `name`; UnknownRuntime names `source` and lists the known ones."""
    plugin = PLUGINS.get(name)
    if plugin is not None:
        return plugin()
    if name in PLANNED:
        raise UnknownRuntime(
            f"runtime {name} ({source}) is not implemented yet",
            hint="--runtime none runs only the image's scripts (init.sh, clean.sh) and launch commands",
        )
    raise UnknownRuntime(
        f"unknown runtime {name!r} ({source}): known runtimes are {', '.join(known_runtimes())}"
    )


def runtime_name(label: str | None, metadata_runtime: str | None) -> tuple[str, str]:
    """The runtime an image asks for and where it says so: (name, source)."""
    if label:
        return label, f"image label cluster.alpha.sealer.io/cluster-runtime-type={label}"
    if metadata_runtime:
        name = _METADATA_TO_NAME.get(metadata_runtime, metadata_runtime)
        return name, f"rootfs Metadata ClusterRuntime={metadata_runtime}"
    return "none", "image without a runtime label or Metadata"


def select_plugin(
    label: str | None, metadata_runtime: str | None, override: str | None = None
) -> RuntimePlugin:
    """`override` (--runtime) if given, else the image's label, then its Metadata, else none."""
    if override:
        return get_plugin(override)
    name, source = runtime_name(label, metadata_runtime)
    return get_plugin(name, source=source)


__all__ = [
    "PLANNED",
    "PLUGINS",
    "RuntimePlugin",
    "UnknownRuntime",
    "get_plugin",
    "known_runtimes",
    "runtime_name",
    "select_plugin",
]
