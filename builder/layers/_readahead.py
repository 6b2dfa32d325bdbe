"""Reading a layer's stream one step ahead of its unpacker, on a second thread.

Unpacking a layer of big files is three costs in a row on one core: decompression (zstd or
gzip), the hashes of whoever reads below (the blob's digest, the diff_id) and the writes into
the page cache. python-zstandard, zlib and hashlib release the GIL on large buffers, as
`os.write` does, so a thread that decompresses and hashes the next chunks while the unpacker
writes the current one keeps both cores busy (measured on a 670 MB layer of 12 files: see
docs/BENCHMARKS.md). Errors raised while reading ahead are raised to the consumer, in order,
at the read that reaches them.
"""

from __future__ import annotations

import mmap
import queue
import threading
from typing import BinaryIO

CHUNK = 4 << 20
DEPTH = 2  # chunks read ahead: enough to cover a slow write, bounded memory (~16 MB in all)


class ReadAhead:
    """A forward-only `readinto` over `stream`, filled by a thread; `close` stops and joins it.

    Buffers rotate (DEPTH + 2 of them: DEPTH queued, one being consumed, one being filled), so
    memory stays bounded; `readview` lends the consumer the filled buffer itself (no copy).
    """

    def __init__(self, stream: BinaryIO, chunk: int = CHUNK, depth: int = DEPTH) -> None:
        self._stream = stream
        # Anonymous maps, not bytearrays: bytearray(4 MB) zero-fills at once (~1.5 ms each, most
        # of the unpack of a one-file layer); a map's pages are only touched as data arrives.
        self._buffers = [memoryview(mmap.mmap(-1, chunk)) for _ in range(depth + 2)]
        self._queue: queue.Queue[memoryview | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._pending = memoryview(b"")
        self._done = False
        self._thread = threading.Thread(target=self._fill, name="layer-read-ahead", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        readinto = getattr(self._stream, "readinto", None)
        i = 0
        try:
            while not self._stop.is_set():
                buf = self._buffers[i % len(self._buffers)]
                i += 1
                if readinto is not None:
                    n = readinto(buf)
                else:
                    data = self._stream.read(len(buf))
                    n = len(data)
                    buf[:n] = data
                if not self._put(buf[:n]) or n == 0:
                    return
        except BaseException as err:  # handed to the consumer, raised there
            self._put(err)

    def _put(self, item: memoryview | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _next(self) -> bool:
        """Take the next filled buffer as pending; False at EOF. Raises the stream's error."""
        if self._done:
            return False
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if not item:
            self._done = True
            return False
        self._pending = item
        return True

    def readinto(self, view: memoryview) -> int:
        if not self._pending and not self._next():
            return 0
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def readview(self, n: int) -> memoryview:
        """Up to `n` bytes as a view of the filled buffer (no copy), valid until the next read."""
        if not self._pending and not self._next():
            return self._pending
        view = self._pending[:n]
        self._pending = self._pending[len(view) :]
        return view

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
