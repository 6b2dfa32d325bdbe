"""Preparing an image for delivery, on the controller: `prepare_image` resolves the image for a
platform and checks its layer stack once (`_stackcheck`: nothing a host's `tar -x` must not see),
the result cached in the store under `cache/delivery/<manifest hex>.json`; `render_layer` renders
the image's `*.tmpl` files (and the Clusterfile's Config results) with a host's env into a small
deterministic tar applied last, so image layers stay shared between hosts and clusters.
Public through `delivery` (DeliveryImage, prepare_image, render_layer).
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from builder._fs import atomic_write
from builder.errors import ImageNotFound, RootfsTemplateError
from builder.image import mediatypes
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.extension import ImageExtension
from builder.layers.compression import Compression, open_decompressed
from builder.layers.tarwriter import TarEntry, TarWriter
from builder.runtime._stackcheck import TEMPLATE_SUFFIX, LayerPlan, check_stack, is_template_path
from builder.runtime.env import render_template
from builder.store.layout import Store

CHECK_VERSION = 7  # bump when the stack check changes: cached results are redone


@dataclass(frozen=True, slots=True)
class DeliveryImage:
    """One image for one platform, its layer stack checked."""

    name: str
    manifest_digest: Digest
    platform: Platform
    layers: tuple[LayerPlan, ...]
    templates: Mapping[str, bytes]  # rootfs path of the .tmpl file -> its bytes
    env: Mapping[str, str]  # the image's ENV (config Env + sealer extension env), lowest precedence
    files: Mapping[str, bytes] = field(default_factory=dict)  # the stack check's KEPT_FILES present
    configs: Mapping[str, bytes] = field(default_factory=dict)  # the Clusterfile's Config results, by path


def prepare_image(store: Store, name: str, platform: Platform) -> DeliveryImage:
    """Resolve `name` to its manifest for `platform` and check its layer stack (cached).

    Raises ImageNotFound (naming the platforms the image has) and LayerError subclasses
    (UnsafePath, BadWhiteout) for a stack no host may unpack.
    """
    desc = store.resolve(name)
    if desc.media_type in mediatypes.INDEXES:
        desc = store.read_index(desc).select(platform)  # ImageNotFound lists the platforms
    manifest = store.read_manifest(desc)
    config = store.read_config(manifest.config)
    if not config.platform.matches(platform):
        raise ImageNotFound(
            f"image {name!r} is for {config.platform}, not {platform}",
            hint=f"the image has only {config.platform}",
        )
    if len(config.diff_ids) != len(manifest.layers):
        raise ImageNotFound(
            f"image {name!r} lists {len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids"
        )
    env = dict(e.partition("=")[::2] for e in config.config.env)
    ext = manifest.annotations.get(mediatypes.ANNOTATION_SEALER_EXTENSION)
    if ext:
        env.update(ImageExtension.from_json(ext).env)
    layers, templates, files = _checked_stack(store, desc.digest, manifest.layers, config.diff_ids)
    return DeliveryImage(name, desc.digest, config.platform, layers, templates, env, files)


def _checked_stack(
    store: Store, manifest_digest: Digest, descs: Sequence[Descriptor], diff_ids: Sequence[Digest]
) -> tuple[tuple[LayerPlan, ...], dict[str, bytes], dict[str, bytes]]:
    cache = store.cache_dir / "delivery" / f"{manifest_digest.hex}.json"
    cached = _load_cache(cache, descs, diff_ids)
    if cached is not None:
        return cached

    def opener(desc: Descriptor) -> Callable[[], BinaryIO]:
        kind = Compression(mediatypes.LAYER_COMPRESSION.get(desc.media_type, ""))
        return lambda: open_decompressed(store.blobs.open(desc.digest, expected_size=desc.size), kind)

    result = check_stack((d, i, opener(d)) for d, i in zip(descs, diff_ids, strict=True))
    doc = {
        "version": CHECK_VERSION,
        "layers": [
            {"digest": str(p.descriptor.digest), "whiteouts": p.whiteouts, "opaques": p.opaques}
            for p in result.layers
        ],
        "templates": {k: base64.b64encode(v).decode() for k, v in result.templates.items()},
        "files": {k: base64.b64encode(v).decode() for k, v in result.files.items()},
    }
    atomic_write(cache, json.dumps(doc).encode())
    return result.layers, result.templates, result.files


def _load_cache(
    path: Path, descs: Sequence[Descriptor], diff_ids: Sequence[Digest]
) -> tuple[tuple[LayerPlan, ...], dict[str, bytes], dict[str, bytes]] | None:
    try:
        doc = json.loads(path.read_bytes())
        if doc["version"] != CHECK_VERSION or [x["digest"] for x in doc["layers"]] != [
            str(d.digest) for d in descs
        ]:
            return None
        layers = tuple(
            LayerPlan(d, i, tuple(x["whiteouts"]), tuple(x["opaques"]))
            for d, i, x in zip(descs, diff_ids, doc["layers"], strict=True)
        )
        templates, files = (
            {k: base64.b64decode(v) for k, v in doc[key].items()} for key in ("templates", "files")
        )
        return layers, templates, files
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or unreadable: check again


def render_layer(image: DeliveryImage, env: Mapping[str, str]) -> bytes | None:
    """A plain, deterministic tar of the image's templates rendered with `env` over the image's
    ENV (`X.tmpl` -> `X`, mode 0644, uid/gid 0, mtime 0) and of the Clusterfile's Config results
    (`image.configs`; one on a template changes the template); None when there is neither.
    RootfsTemplateError names the file (rootfs path) and the missing variable."""
    templates = {**image.templates, **{p: v for p, v in image.configs.items() if is_template_path(p)}}
    if not templates and not image.configs:
        return None
    merged = {**image.env, **env}
    rendered: dict[str, bytes] = {p: v for p, v in image.configs.items() if not is_template_path(p)}
    for path, data in sorted(templates.items()):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise RootfsTemplateError("template is not UTF-8 text", path=path, line=1) from None
        rendered[path[: -len(TEMPLATE_SUFFIX)]] = render_template(text, merged, path=path).encode()
    out = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="sealer-render-") as tmp:
        writer = TarWriter(out)
        for i, (target, body) in enumerate(sorted(rendered.items())):
            src = Path(tmp) / str(i)
            src.write_bytes(body)
            writer.add(TarEntry(target, "file", 0o644, len(body), str(src)))
        writer.close()
    return out.getvalue()
