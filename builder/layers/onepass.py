"""One pass per layer: entries -> tar -> sha256 (diff_id) -> compressor -> sink.

The tar writer hands over 4 MB slices; a second thread hashes each (hashlib releases the GIL
on large buffers) and feeds it to the compressor (zstd compresses in its own worker threads, in
C), while the caller's thread reads the next files, so on two cores reading, hashing and
compression run side by side. The compressed bytes are hashed by the sink
(the store's blob writer), not here: every byte is hashed once. Memory is bounded by the tar
buffer and zstd's job buffers, whatever the layer size.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

from builder.errors import LayerError
from builder.image.digest import Digest
from builder.image.mediatypes import COMPRESSION_LAYER
from builder.layers.compression import ByteSink, Compression, Compressor, open_compressor
from builder.layers.tarwriter import BLOCK, TarEntry, TarWriter


def estimate_tar_size(entries: Iterable[TarEntry]) -> int:
    """The tar size `entries` make (a header block each, file bytes padded to blocks, the two
    end blocks): exact unless a long name or link needs a PAX header. For progress bars."""
    size = 2 * BLOCK
    for e in entries:
        size += BLOCK + (-(-e.size // BLOCK) * BLOCK if e.kind == "file" else 0)
    return size


@dataclass(frozen=True, slots=True)
class LayerStats:
    diff_id: Digest
    uncompressed_size: int
    media_type: str


class _Tee:
    """What the tar writer writes to: count here, then hash and compress on a second thread.

    The calling thread reads files (and hashes them when the cache asks); a worker thread
    hashes the tar stream, feeds the compressor and, through it, the sink (which hashes and
    writes the compressed bytes). Both sides spend their time in C code that releases the GIL,
    so on two cores they overlap instead of queueing behind each other. Slices are copied into
    a bounded queue (4 x 4 MB), so memory stays bounded.
    """

    _DEPTH = 4

    def __init__(self, compressor: Compressor, progress: Callable[[int], None] | None) -> None:
        self.sha = hashlib.sha256()
        self.size = 0
        self.compressor = compressor
        self.progress = progress
        self._queue: queue.Queue[bytes | None] = queue.Queue(self._DEPTH)
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._drain, name="layer-compress", daemon=True)
        self._worker.start()

    def _drain(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            if self._error is not None:
                continue  # keep draining so that the producer never blocks forever
            try:
                self.sha.update(chunk)
                self.compressor.write(chunk)
            except BaseException as err:  # re-raised in the caller's thread
                self._error = err

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: memoryview) -> int:
        self._check()
        self._queue.put(bytes(data))
        self.size += len(data)
        if self.progress is not None:
            self.progress(self.size)
        return len(data)

    def close(self) -> None:
        """Wait for every queued slice, then end the compressed frame."""
        self._queue.put(None)
        self._worker.join()
        self._check()
        self.compressor.close()

    def abandon(self) -> None:
        """Stop the worker after an error on the producer side."""
        if self._worker.is_alive():
            self._error = self._error or LayerError("layer abandoned")
            self._queue.put(None)
            self._worker.join()


class LayerWriter:
    """Writes one layer to `sink`; `finish()` returns its facts. A context manager.

    Leaving the block without `finish()` (an error) abandons the layer: the sink holds a partial
    blob that its owner must discard. `progress` is called with the running total of tar
    (uncompressed) bytes written so far, not a delta, about every 4 MB and once more at the
    end, when it equals `uncompressed_size`. The sink is never closed here.
    """

    def __init__(
        self,
        sink: ByteSink,
        *,
        compression: Compression = Compression.ZSTD,
        source_date_epoch: int = 0,
        progress: Callable[[int], None] | None = None,
        on_file: Callable[[TarEntry, str], None] | None = None,
        hash_max_bytes: int | None = None,
    ) -> None:
        self._compression = compression
        self._tee = _Tee(open_compressor(compression, sink), progress)
        self._tar = TarWriter(
            self._tee,  # type: ignore[arg-type]
            source_date_epoch=source_date_epoch,
            on_file=on_file,
            hash_max_bytes=hash_max_bytes,
        )
        self._stats: LayerStats | None = None

    def __enter__(self) -> LayerWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stats is None:
            self._tee.abandon()
        if exc_type is None and self._stats is None:
            raise LayerError("LayerWriter left without finish(): the layer was not written")

    def add(self, entry: TarEntry) -> None:
        if self._stats is not None:
            raise LayerError("LayerWriter already finished")
        self._tar.add(entry)

    def add_all(self, entries: Iterable[TarEntry]) -> None:
        for entry in entries:
            self.add(entry)

    def finish(self) -> LayerStats:
        """End the tar and the compressed frame; returns diff_id, tar size and media type."""
        if self._stats is None:
            self._tar.close()
            self._tee.close()
            self._stats = LayerStats(
                diff_id=Digest.from_hash(self._tee.sha),
                uncompressed_size=self._tee.size,
                media_type=COMPRESSION_LAYER[self._compression.value],
            )
        return self._stats
