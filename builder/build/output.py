"""The end of one platform's build: the rootfs Metadata layer, the config, the sealer
annotations and the manifest, written into the store (`finish_image`).

The image type (kube-installer or app-installer) and the cluster runtime label are decided
here, from the Kubefile, the base and the --label/--type options; a Metadata file the context
ships is checked against them instead of being written.
"""

from __future__ import annotations

from pathlib import Path

from builder.build import cache as cache_mod
from builder.build.draft import Draft
from builder.build.layer import StepLayers
from builder.build.plan import BuildOptions, Plan
from builder.errors import BuildError, MetadataMismatch
from builder.image import mediatypes
from builder.image.config import History
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.extension import BuildClient, ImageExtension, Launch, dump_container_images
from builder.image.manifest import Manifest
from builder.image.metadata import RUNTIME_LABELS, RootfsMetadata, cluster_runtime_from_label
from builder.layers.tarwriter import TarEntry
from builder.store.layout import Store

SEALER_VERSION = "0.1.0"
KNOWN_RUNTIMES = RUNTIME_LABELS  # the plan refuses others at their LABEL line
METADATA_FILE = "Metadata"


def finish_image(
    store: Store,
    options: BuildOptions,
    plan: Plan,
    draft: Draft,
    layers: StepLayers,
    *,
    created: str,
    settings: str,
    scratch: Path,
) -> Descriptor:
    """Write the Metadata layer where one is due, the config and the manifest; return the
    manifest's descriptor with the build's platform."""
    labels = {**draft.labels, **options.labels}
    if draft.kube_version:
        labels[mediatypes.LABEL_SUPPORTED_KUBE_VERSION] = draft.kube_version
    runtime_label = labels.get(mediatypes.LABEL_CLUSTER_RUNTIME)
    if runtime_label is not None and runtime_label not in KNOWN_RUNTIMES:
        raise BuildError(
            f"label {mediatypes.LABEL_CLUSTER_RUNTIME}={runtime_label!r} names an unknown cluster runtime",
            hint=f"use one of {', '.join(KNOWN_RUNTIMES)}",
        )
    image_type = options.image_type or _image_type(plan, draft, runtime_label)
    if image_type == "kube-installer":
        if runtime_label is None:
            runtime_label = "kubernetes"
            labels[mediatypes.LABEL_CLUSTER_RUNTIME] = runtime_label
        metadata_layer = _metadata(plan, draft, runtime_label, layers, settings, scratch)
        if metadata_layer is not None:
            draft.layers.append(metadata_layer.descriptor)
            draft.config = draft.config.with_layer(
                metadata_layer.diff_id,
                History(created=created, created_by=metadata_layer.created_by),
            )
    config = draft.config.with_env(draft.config_env).with_labels(labels)
    extension = ImageExtension(
        type=image_type,
        applications=tuple(draft.applications.values()),
        launch=Launch(cmds=tuple(draft.launch_cmds), app_names=tuple(draft.launch_apps)),
        env=dict(draft.env),
        build_client=BuildClient(sealer_version=SEALER_VERSION),
    )
    annotations = {
        mediatypes.ANNOTATION_SEALER_EXTENSION: extension.to_json(),
        mediatypes.ANNOTATION_SEALER_CONTAINER_IMAGES: dump_container_images(draft.container_images),
    }
    config_desc = store.put_config(config)
    manifest = Manifest(config_desc, tuple(draft.layers), annotations)
    desc = store.put_manifest(manifest)
    return desc.with_platform(plan.platform)


def _image_type(plan: Plan, draft: Draft, runtime_label: str | None) -> str:
    if runtime_label is not None or draft.kube_version is not None or draft.is_kube_installer_base:
        return "kube-installer"
    if plan.base is not None and plan.base.extension is not None:
        return plan.base.extension.type or "app-installer"
    return "app-installer"


def _metadata(
    plan: Plan, draft: Draft, runtime_label: str, layers: StepLayers, settings: str, scratch: Path
) -> cache_mod.CachedLayer | None:
    """Check a shipped Metadata file, or write one as the image's last layer. The `none`
    runtime has no Metadata value: nothing is written, and a shipped file's ClusterRuntime
    is not compared (`sealer run` reads the label first)."""
    runtime = cluster_runtime_from_label(runtime_label) if runtime_label != "none" else None
    platform = plan.platform
    if draft.shipped_metadata is not None:
        shipped = RootfsMetadata.from_bytes(draft.shipped_metadata.read_bytes())
        problems = []
        if shipped.arch and shipped.arch != platform.architecture:
            problems.append(f"arch {shipped.arch!r} but the build is for {platform.architecture}")
        if runtime is not None and shipped.cluster_runtime != runtime:
            problems.append(
                f"ClusterRuntime {shipped.cluster_runtime!r} but the runtime label says {runtime_label}"
            )
        if draft.kube_version and shipped.kube_version and shipped.kube_version != draft.kube_version:
            problems.append(f"kubeVersion {shipped.kube_version!r} but KUBEVERSION is {draft.kube_version}")
        if problems:
            raise MetadataMismatch(
                f"the context's Metadata file disagrees with the Kubefile: {'; '.join(problems)}",
                hint="fix the Metadata file, or delete it and let the build write it",
            )
        return None
    if runtime is None:
        return None
    if (
        draft.is_kube_installer_base
        and draft.kube_version is None
        and runtime_label == draft.base_runtime_label
    ):
        return None
    metadata = RootfsMetadata(
        version=draft.kube_version or "",
        arch=platform.architecture,
        variant=platform.variant or "",
        kube_version=draft.kube_version or "",
        nydus_flag=False,
        cluster_runtime=runtime,
    )
    data = metadata.to_bytes()
    path = scratch / METADATA_FILE
    path.write_bytes(data)
    entry = TarEntry(name=METADATA_FILE, kind="file", mode=0o644, size=len(data), source=str(path))
    text = f"sealer: write {METADATA_FILE} {Digest.from_bytes(data).hex[:12]}"
    key = cache_mod.metadata_key(draft.key, text, data, settings)
    hit = layers.cached(key)
    if hit is not None:
        return hit
    layer = layers.write([entry], 0, len(data), text)
    layers.remember(key, layer)
    return layer
