"""A step's layer: written in one pass into the store's blobs, or found again in the step cache.

`StepLayers` is shared by the parts of one platform's build that produce layers: the steps
(executor.py), the bundled images (bundle/step.py) and the Metadata layer (output.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from builder.build.cache import CachedLayer, LayerCache
from builder.build.events import EventSink, StepProgress
from builder.image.descriptor import Descriptor
from builder.layers.compression import Compression
from builder.layers.onepass import LayerWriter
from builder.layers.tarwriter import TarEntry
from builder.store.layout import Store


class StepLayers:
    """Layers of one platform's build, with their progress reported as StepProgress events."""

    def __init__(
        self,
        store: Store,
        *,
        compression: Compression,
        source_date_epoch: int,
        platform: str,
        on_event: EventSink,
        use_cache: bool,
    ) -> None:
        self.store = store
        self.compression = compression
        self.source_date_epoch = source_date_epoch
        self.platform = platform
        self.on_event = on_event
        self.cache = LayerCache(store, enabled=use_cache)

    def cached(self, key: str) -> CachedLayer | None:
        return self.cache.get(key)

    def remember(self, key: str, layer: CachedLayer) -> None:
        self.cache.put(key, layer)

    def write(
        self,
        entries: Iterable[TarEntry],
        index: int,
        total_bytes: int | None,
        created_by: str,
        extra: dict[str, object] | None = None,
        on_file: Callable[[TarEntry, str], None] | None = None,
        hash_max_bytes: int | None = None,
    ) -> CachedLayer:
        """Archive `entries` as step `index`'s layer: tar, diffID, compression and digest in one
        pass into a blob writer, committed whole."""

        def progress(done: int) -> None:  # the writer's running total: passed on, not summed
            self.on_event(StepProgress(self.platform, index, done, total_bytes))

        with self.store.blobs.writer() as sink:
            with LayerWriter(
                sink,
                compression=self.compression,
                source_date_epoch=self.source_date_epoch,
                progress=progress,
                on_file=on_file,
                hash_max_bytes=hash_max_bytes,
            ) as writer:
                writer.add_all(entries)
                stats = writer.finish()
            digest, size = sink.commit()
        descriptor = Descriptor(stats.media_type, digest, size)
        info: dict[str, object] = {"uncompressedSize": stats.uncompressed_size, **(extra or {})}
        return CachedLayer(stats.diff_id, descriptor, created_by, info)
