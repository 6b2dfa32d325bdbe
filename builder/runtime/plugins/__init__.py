"""Cluster runtime plugins and how an image selects one.

Selection, first match wins: `--runtime NAME` (saved with the cluster, so apply/join/delete
keep it); the image label `cluster.alpha.sealer.io/cluster-runtime-type` (kubernetes | k3s |
k0s, or `none`); the rootfs `Metadata` file's `ClusterRuntime` (k8s | k3s | k0s); else `none`,
which is what an app-installer image (no runtime label, no KUBEVERSION, no Metadata) gets.

Plugins are imported when first selected (`PLUGINS` maps a name to "module:Class"), so a
command that never meets a runtime does not pay for importing them.
"""

from __future__ import annotations

import importlib

from builder.errors import UnknownRuntime
from builder.runtime.plugins.base import RuntimePlugin

# name (the label value and what --runtime takes) -> "module:Class"
PLUGINS: dict[str, str] = {
    "kubernetes": "builder.runtime.plugins.kubernetes:KubernetesRuntime",
    "k3s": "builder.runtime.plugins.k3s:K3sRuntime",
    "k0s": "builder.runtime.plugins.k0s:K0sRuntime",
    "none": "builder.runtime.plugins.none:NoneRuntime",
}
_METADATA_TO_NAME = {"k8s": "kubernetes", "k3s": "k3s", "k0s": "k0s"}


def known_runtimes() -> tuple[str, ...]:
    return tuple(PLUGINS)


def get_plugin(name: str, *, source: str = "--runtime") -> RuntimePlugin:
    """The plugin called `name`; UnknownRuntime names `source` and lists the known ones."""
    target = PLUGINS.get(name)
    if target is None:
        raise UnknownRuntime(
            f"unknown runtime {name!r} ({source}): known runtimes are {', '.join(known_runtimes())}",
            hint="set the image label cluster.alpha.sealer.io/cluster-runtime-type to one of them, "
            "or pass --runtime",
        )
    module, _, cls = target.partition(":")
    plugin: type[RuntimePlugin] = getattr(importlib.import_module(module), cls)
    return plugin()


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
    "PLUGINS",
    "RuntimePlugin",
    "UnknownRuntime",
    "get_plugin",
    "known_runtimes",
    "runtime_name",
    "select_plugin",
]
