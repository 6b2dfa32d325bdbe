"""The Clusterfile's Config documents (configs.py) applied on this machine to the files of an
image, before delivery: `with_configs` gives the DeliveryImage whose per-cluster layer
(delivery.render_layer) carries the results. What a `merge` or `toSecret` reads is what the
image's checked stack has at the path: `read_stack_files` streams the layers from the top down
until each path is found, or hidden by a whiteout or an opaque directory of a higher layer (the
stack check recorded both per layer), or absent; nothing is written, only the wanted files are
held, each capped. A Config path whose parent is not a directory in the image (a symlink a
host's tar would follow) is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import BinaryIO

from builder.errors import ClusterError, LayerError
from builder.image import mediatypes
from builder.layers.compression import Compression, open_decompressed
from builder.layers.safety import EntryReader
from builder.runtime._stackcheck import MAX_TEMPLATE_BYTES, TEMPLATE_SUFFIX, LayerPlan
from builder.runtime.configs import ConfigDataError, ConfigFile, apply_config
from builder.runtime.delivery import DeliveryImage
from builder.store.layout import Store

_CHUNK = 1 << 20


def _hidden(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def read_stack_files(
    layers: Sequence[LayerPlan], opener: Callable[[LayerPlan], BinaryIO], paths: Iterable[str]
) -> dict[str, bytes | None]:
    """path -> its bytes after every layer, None when the stack has no regular file there.
    `opener` gives a layer's decompressed stream. A LayerError names a wanted path that is a
    hardlink or larger than MAX_TEMPLATE_BYTES, or whose parent is not a directory (a file
    written there would go through the image's symlink on a host)."""
    files = set(paths)
    pending = files | {p for path in files for p in _parents(path)}
    kinds: dict[str, str | None] = {}  # the topmost entry's kind; None: hidden or absent
    found: dict[str, bytes | None] = {}
    buf = memoryview(bytearray(_CHUNK))
    for plan in reversed(layers):
        if not pending:
            break
        where = f"layer {plan.descriptor.digest}"
        with opener(plan) as stream:
            reader = EntryReader(stream, buf, f"{where}:")
            while (e := reader.next()) is not None:
                rel = "/".join(e.parts)
                if rel not in pending or e.kind in ("whiteout", "opaque", "skip"):
                    reader.skip_data(e)
                    continue
                kinds[rel] = e.kind
                if rel in files and e.kind == "file":
                    if e.size > MAX_TEMPLATE_BYTES:
                        raise LayerError(
                            f"{e.label} is {e.size} bytes, over the {MAX_TEMPLATE_BYTES} a Config merges"
                        )
                    found[rel] = reader.read_data(e)
                else:
                    reader.skip_data(e)
                pending.discard(rel)
            reader.finish()
        for path in list(pending):  # a higher layer's removals hide what lower layers have
            if _hidden(path, plan.whiteouts) or any(path.startswith(o + "/") for o in plan.opaques):
                kinds[path] = None
                pending.discard(path)
    for path in sorted(files):
        for parent in _parents(path):
            if kinds.get(parent) not in (None, "dir"):
                raise LayerError(f"{path}: {parent} is a {kinds[parent]} in the image, not a directory")
        if kinds.get(path) == "hardlink":
            raise LayerError(f"{path} is a hardlink in the image: a Config merges only regular files")
        if kinds.get(path) not in (None, "file"):
            raise LayerError(f"{path} is a {kinds[path]} in the image, not a file")
    return {path: found.get(path) for path in files}


def with_configs(store: Store, image: DeliveryImage, configs: Sequence[ConfigFile]) -> DeliveryImage:
    """`image` with `configs` applied, in order, to the files they name (`image.configs`).
    What a merge or toSecret reads is what the stack has there (a later Config on the same path
    reads the earlier one's result). A Config on X where the image has X.tmpl is refused: the
    template would overwrite it."""
    if not configs:
        return image
    out: dict[str, bytes] = {}
    needed = {
        c.path for c in configs
        if (c.strategy != "overwrite" or "toSecret" in c.process)
        and c.path not in image.templates and c.path not in image.files
    }  # fmt: skip
    stack: dict[str, bytes | None] = {}
    if needed:

        def opener(plan: LayerPlan) -> BinaryIO:
            desc = plan.descriptor
            kind = Compression(mediatypes.LAYER_COMPRESSION.get(desc.media_type, ""))
            return open_decompressed(store.blobs.open(desc.digest, expected_size=desc.size), kind)

        stack = read_stack_files(image.layers, opener, sorted(needed))
    for config in configs:
        where = f"Config {config.name or config.path} ({config.source})"
        if config.path + TEMPLATE_SUFFIX in image.templates:
            raise ClusterError(
                f"{where}: the image renders {config.path} from {config.path}{TEMPLATE_SUFFIX}, which would overwrite it",
                hint=f"write the Config for {config.path}{TEMPLATE_SUFFIX} instead",
            )
        current = out.get(config.path) or image.templates.get(config.path) or image.files.get(config.path)
        if current is None:
            current = stack.get(config.path)
        try:
            text = apply_config(config, current.decode("utf-8") if current is not None else None)
        except (ConfigDataError, UnicodeDecodeError) as err:
            raise ClusterError(f"{where}: {err}", hint="strategy merge and toSecret need YAML") from None
        out[config.path] = text.encode()
    return replace(image, configs=out)
