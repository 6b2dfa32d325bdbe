"""The document `sealer inspect` prints, shaped as sealer prints it (`ImageSpec`).

Keys: id (the config digest), name, digest (the manifest digest), manifestv1, ociv1 (the
config), imageExtension, containerImageList; plus `layers`, one entry per layer with the
overlay2 directory that holds it unpacked, so that a user can `ls` a layer.
"""

from __future__ import annotations

import json
from typing import Any

from builder.image import mediatypes
from builder.image.descriptor import Platform
from builder.image.extension import ImageExtension, parse_container_images
from builder.rootfs import diff_id_of, ensure_diff_dir
from builder.store.layout import Store


def inspect_document(store: Store, name: str, platform: Platform | None, *, unpack: bool) -> dict[str, Any]:
    desc = store.resolve(name)
    platforms: list[str] = []
    if desc.media_type in mediatypes.INDEXES:
        index = store.read_index(desc)
        platforms = [str(d.platform) for d in index.manifests if d.platform is not None]
        desc = index.select(platform or Platform.host())
    manifest = store.read_manifest(desc)
    config = store.read_config(manifest.config)
    raw_ext = manifest.annotations.get(mediatypes.ANNOTATION_SEALER_EXTENSION)
    extension = json.loads(ImageExtension.from_json(raw_ext).to_json()) if raw_ext else None
    raw_images = manifest.annotations.get(mediatypes.ANNOTATION_SEALER_CONTAINER_IMAGES)
    images = [i.to_json() for i in parse_container_images(raw_images)] if raw_images else []
    layers = []
    for i, (layer, diff_id) in enumerate(zip(manifest.layers, config.diff_ids, strict=False)):
        entry: dict[str, Any] = {
            "digest": str(layer.digest),
            "diffID": str(diff_id),
            "mediaType": layer.media_type,
            "size": layer.size,
        }
        if unpack:
            entry["dir"] = str(ensure_diff_dir(store, layer, diff_id_of(manifest.layers, config.diff_ids, i)))
        layers.append(entry)
    doc: dict[str, Any] = {
        "id": manifest.config.digest.hex,
        "name": name,
        "digest": str(desc.digest),
        "manifestv1": json.loads(manifest.to_bytes()),
        "ociv1": json.loads(config.to_bytes()),
        "imageExtension": extension,
        "containerImageList": images,
        "layers": layers,
    }
    if platforms:
        doc["platforms"] = platforms
    return doc
