"""The document `sealer inspect` prints, shaped as sealer prints it (`ImageSpec`).

Keys, always present (a stable shape for scripts and `--format`):
- id: the IMAGE ID, the config digest of the platform's manifest (store/identity.py);
- name, digest (the manifest or index digest the name points at), platforms (of an index);
- created: the config's `created` (reproducible: SOURCE_DATE_EPOCH, default 1970-01-01);
- stored: when the image entered this store (RFC 3339 UTC; null for an image reached only by
  digest, or stored before sealer recorded it);
- manifestv1, ociv1 (the config, with config.Labels and config.Env present even when empty),
  imageExtension, containerImageList;
- layers: digest, diffID, mediaType, size and `dir`, the overlay2 directory holding the layer
  unpacked, so that a user can `ls` it: null unless `--unpack` made it (inspect writes nothing
  by default).
"""

from __future__ import annotations

import json
from typing import Any

from builder.diffdirs import diff_id_of, ensure_diff_dir
from builder.image import mediatypes
from builder.image.descriptor import Platform
from builder.image.extension import ImageExtension, parse_container_images
from builder.store.identity import platform_manifest
from builder.store.layout import Store


def inspect_document(store: Store, name: str, platform: Platform | None, *, unpack: bool) -> dict[str, Any]:
    top = store.resolve(name)
    platforms: list[str] = []
    if top.media_type in mediatypes.INDEXES:
        platforms = [str(d.platform) for d in store.read_index(top).manifests if d.platform is not None]
    _, manifest = platform_manifest(store, top, platform)
    config = store.read_config(manifest.config)
    raw_ext = manifest.annotations.get(mediatypes.ANNOTATION_SEALER_EXTENSION)
    extension = json.loads(ImageExtension.from_json(raw_ext).to_json()) if raw_ext else None
    raw_images = manifest.annotations.get(mediatypes.ANNOTATION_SEALER_CONTAINER_IMAGES)
    images = [i.to_json() for i in parse_container_images(raw_images)] if raw_images else []
    layers = []
    for i, (layer, diff_id) in enumerate(zip(manifest.layers, config.diff_ids, strict=False)):
        unpacked = (
            str(ensure_diff_dir(store, layer, diff_id_of(manifest.layers, config.diff_ids, i)))
            if unpack
            else None
        )
        layers.append(
            {
                "digest": str(layer.digest),
                "diffID": str(diff_id),
                "mediaType": layer.media_type,
                "size": layer.size,
                "dir": unpacked,
            }
        )
    stored = next(
        (when for _, desc, when in store.refs.entries() if desc.digest == top.digest and when), None
    )
    return {
        "id": manifest.config.digest.hex,
        "name": name,
        "digest": str(top.digest),
        "platforms": platforms,
        "created": config.created,
        "stored": stored,
        "manifestv1": json.loads(manifest.to_bytes()),
        "ociv1": _with_config_defaults(json.loads(config.to_bytes())),
        "imageExtension": extension,
        "containerImageList": images,
        "layers": layers,
    }


def _with_config_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """The config as stored, with `config.Labels` and `config.Env` always there (empty when
    the image has none), as docker's inspect always has them: `{{index .OCIv1.Config.Labels
    "k"}}` then prints nothing for an image without labels instead of failing."""
    inner = config.setdefault("config", {})
    inner.setdefault("Labels", {})
    inner.setdefault("Env", [])
    return config
