"""Unpacking a layer into its diff dir while its compressed bytes are still arriving.

A pull followed by an unpack reads every layer twice (the download, then the blob file again,
hashed again) and pays the two one after the other. `OverlappedUnpack` takes the downloaded
bytes as they are written to the blob, through a bounded queue, and unpacks them on its own
thread into a staging dir (the bounded, hardened `unpack_layer`: diff_id, expansion cap, free
disk, safe paths, overlay whiteouts), so the wall time is about the longer of the two instead
of their sum.

Its owner (the registry client's pull) drives it: `write` every byte in order; `finish` once
the last byte is in (waits for the unpack, raises its error); `publish` only after the blob's
digest and size matched, which renames the staging dir into place; `abort` (idempotent, also
after publish) stops the thread and drops the staging dir. A blob that fails its digest check
therefore leaves no diff dir, and nothing half-written is ever visible. `restart` (the download
starts again from byte 0) drops the unpack instead of rewinding it: the caller unpacks that
layer from the verified blob afterwards, as it does for layers the store already held.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, cast

from builder.image.digest import Digest
from builder.layers.compression import Compression, detect_compression, open_decompressed
from builder.layers.overlay import DiffDirs
from builder.layers.unpack import UnpackOptions, unpack_layer

__all__ = ["OverlappedUnpack"]

# Chunks waiting for the unpacker (the registry client's are 1 MiB at most): enough to ride out
# a slow write on the unpacking side, bounded memory whatever the layer's size.
QUEUE_DEPTH = 4
_POLL_S = 0.1
_EOF = b""


class _Cancelled(Exception):
    """Raised inside the unpacking thread when its owner aborts."""


class _Pipe:
    """Bytes handed from the download thread to the unpacking thread, in order, bounded.

    `read` lends the consumer the producer's chunk itself when it asks for at least as much
    (no copy). The producer never blocks on a consumer that has ended (`closed_by_reader`):
    it drops the bytes, since the blob writer beside it still takes them.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=QUEUE_DEPTH)
        self.cancelled = threading.Event()
        self.closed_by_reader = threading.Event()
        self._chunk = b""
        self._pos = 0
        self._eof = False

    # producer side
    def put(self, data: bytes) -> None:
        while not (self.cancelled.is_set() or self.closed_by_reader.is_set()):
            try:
                self._queue.put(data, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    # consumer side
    def _has_data(self) -> bool:
        """True when bytes are pending, taking the next chunk if needed; False at the end."""
        while self._pos >= len(self._chunk) and not self._eof:
            if self.cancelled.is_set():
                raise _Cancelled
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if not item:
                self._eof = True
            self._chunk, self._pos = item, 0
        return self._pos < len(self._chunk)

    def peek(self, n: int = 4) -> bytes:
        """The next `n` bytes (fewer at the end), not consumed; for telling the compression."""
        head = b""
        while len(head) < n and self._has_data():
            head += self.read(n - len(head))
        # Put them back in front of what is left of the current chunk.
        self._chunk, self._pos = head + self._chunk[self._pos :], 0
        return head

    def read(self, n: int = -1) -> bytes:
        if not self._has_data():
            return b""
        chunk, pos = self._chunk, self._pos
        if pos == 0 and (n < 0 or n >= len(chunk)):
            self._pos = len(chunk)
            return chunk  # the producer's own bytes object: no copy
        end = len(chunk) if n < 0 else min(len(chunk), pos + n)
        self._pos = end
        return chunk[pos:end]

    def readable(self) -> bool:
        return True


class OverlappedUnpack:
    """One layer of a pull, unpacked into `dirs`' staging dir for `layer_id` as its bytes arrive.

    See the module docstring for the protocol. `what` names the layer in errors; the unpack is
    bounded by `compressed_size` and checked against `diff_id` as `DiffDirs.materialize` is.
    """

    def __init__(
        self,
        dirs: DiffDirs,
        layer_id: str,
        *,
        compressed_size: int,
        diff_id: Digest | None,
        what: str,
        options: UnpackOptions | None = None,
        slots: threading.Semaphore | None = None,
    ) -> None:
        self._what = what
        self._slots = slots
        self._pipe = _Pipe()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._dropped = False
        self._stage: AbstractContextManager[Path] | None = dirs.stage(layer_id)
        staging = self._stage.__enter__()
        try:
            (staging / "diff").mkdir()
        except BaseException as err:
            self._close_stage(err)
            raise
        # Started by the first write: a pull opens one per layer up front, most wait their turn.
        self._unstarted: threading.Thread | None = threading.Thread(
            target=self._run,
            args=(staging / "diff", compressed_size, diff_id, options),
            name=f"unpack-{layer_id[:12]}",
            daemon=True,
        )

    def _start(self) -> None:
        if self._unstarted is not None:
            self._thread, self._unstarted = self._unstarted, None
            self._thread.start()

    def _run(
        self, dest: Path, compressed_size: int, diff_id: Digest | None, options: UnpackOptions | None
    ) -> None:
        pipe = self._pipe
        held = False
        try:
            # Compression from the first bytes, as `DiffDirs.materialize` detects it; peeked so
            # the decompressor reads the producer's chunks as they are.
            kind: Compression = detect_compression(pipe.peek())
            # A slot once bytes flow (so a slot never waits for a download that has not begun):
            # each unpack holds ~25 MB (read-ahead buffers, the decompressor, the tar buffer).
            while self._slots is not None and not held:
                if pipe.cancelled.is_set():
                    raise _Cancelled
                held = self._slots.acquire(timeout=_POLL_S)
            source = cast(BinaryIO, pipe)
            tar = open_decompressed(source, kind)  # the pipe itself for a plain tar
            try:
                unpack_layer(
                    tar,
                    dest,
                    whiteouts="overlay",
                    what=self._what,
                    compressed_size=compressed_size,
                    diff_id=diff_id,
                    options=options,
                )
            finally:
                if tar is not source:
                    tar.close()
        except BaseException as err:  # raised to the owner by finish()
            self._error = err
        finally:
            pipe.closed_by_reader.set()
            if held and self._slots is not None:
                self._slots.release()

    # -- the owner's side --------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """The next bytes of the blob (kept by reference until unpacked: do not reuse them)."""
        if not self._dropped:
            self._start()
            self._pipe.put(data)

    def restart(self) -> None:
        """The blob's bytes start again from the first: drop this unpack (see the docstring)."""
        self.abort()
        self._dropped = True

    @property
    def dropped(self) -> bool:
        """True when nothing will be published (restarted or aborted)."""
        return self._dropped

    def finish(self) -> None:
        """Every byte was written: wait for the unpack to end; raises what it raised."""
        if self._dropped:
            return
        self._start()
        self._pipe.put(_EOF)
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            self.abort()
            raise error

    def publish(self) -> None:
        """The blob's digest and size matched: the staging dir becomes the diff dir."""
        if self._dropped or self._stage is None:
            return
        stage, self._stage = self._stage, None
        self._dropped = True
        stage.__exit__(None, None, None)

    def abort(self) -> None:
        """Stop the unpack and drop the staging dir; idempotent, a no-op after publish."""
        self._dropped = True
        self._unstarted = None
        self._pipe.cancelled.set()
        if self._thread is not None:
            self._thread.join()
        self._close_stage(_Cancelled())

    def _close_stage(self, err: BaseException) -> None:
        stage, self._stage = self._stage, None
        if stage is not None:
            with contextlib.suppress(_Cancelled):
                stage.__exit__(type(err), err, None)
