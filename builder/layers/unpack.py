"""Unpacking an untrusted layer within bounds: its diff_id, an expansion cap and free disk.

`extract_layer` keeps every path inside its root; this module keeps the *amount* in check. The
uncompressed stream is counted and hashed as the tar reader consumes it, and the unpack stops
with a one-line LayerError naming the layer as soon as one of these fails:

- expansion: more than `max_ratio` x the compressed size + `ratio_floor_bytes`. An OCI
  descriptor carries no uncompressed size, and sealer's images declare none either, so the
  compressed size is the only bound known up front. Measured with zstd -3: binaries (/usr/bin)
  2.7x, Python sources 3.5x, C headers 8.5x, a tar of 20000 empty files (headers only) 64x;
  zeros ~32000x (a 169 kB blob held 5 GiB). 200x leaves 3x over the worst real case measured;
  the floor covers small layers, whose tar headers and padding compress best.
- free space: the target's filesystem keeps `min_free_bytes` and `min_free_inodes` free
  (checked every `check_every_bytes` of the stream, so it overshoots by at most that much).
- the diff_id: at the end of the stream the sha256 of the uncompressed tar must equal the
  config's `rootfs.diff_ids` entry for the layer (OCI image-spec config.md).

Callers extract into a staging directory and drop it on error (see `extract_layer`).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import zstandard

from builder.errors import LayerError
from builder.image.digest import Digest
from builder.layers.tarreader import CHUNK, ExtractStats, WhiteoutMode, extract_layer

__all__ = ["UnpackOptions", "unpack_layer"]

SMALL_LAYER_BYTES = 16 << 20  # compressed

_HINT = "the layer is hostile or corrupt: remove the image (sealer rmi) and get it from a trusted source"


@dataclass(frozen=True, slots=True)
class UnpackOptions:
    """Bounds on unpacking one layer (the module docstring says why these numbers)."""

    max_ratio: int = 200
    ratio_floor_bytes: int = 32 << 20
    min_free_bytes: int = 256 << 20
    min_free_inodes: int = 16384
    check_every_bytes: int = 16 << 20


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


class _Bounded:
    """A forward-only reader over the uncompressed stream that counts, hashes and checks."""

    def __init__(
        self,
        stream: BinaryIO,
        *,
        what: str,
        dest: Path,
        compressed_size: int | None,
        diff_id: Digest | None,
        options: UnpackOptions,
    ) -> None:
        self._stream = stream
        self._readinto = getattr(stream, "readinto", None)
        self._what = what
        self._dest = dest
        self._diff_id = diff_id
        self._hash = hashlib.sha256() if diff_id is not None else None
        self._options = options
        self._compressed = compressed_size
        self._max = (
            None
            if compressed_size is None
            else options.max_ratio * compressed_size + options.ratio_floor_bytes
        )
        self._next_check = 0
        self.size = 0
        self.eof = False

    def readinto(self, view: memoryview) -> int:
        try:
            if self._readinto is not None:
                n: int = self._readinto(view)
            else:
                data = self._stream.read(len(view))
                n = len(data)
                view[:n] = data
        except (OSError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError) as err:
            raise LayerError(f"{self._what} cannot be decompressed: {err}", hint=_HINT) from None
        if n == 0:
            self.eof = True
            return 0
        if self._hash is not None:
            self._hash.update(view[:n])
        self.size += n
        if self._max is not None and self.size > self._max:
            raise LayerError(
                f"{self._what} expands past {self._options.max_ratio}x its compressed size "
                f"({self._compressed} bytes -> more than {_mib(self._max)}): refused as a "
                "decompression bomb",
                hint=_HINT,
            )
        if self.size >= self._next_check:
            self.check_disk()
        return n

    def read(self, n: int = -1) -> bytes:
        buf = bytearray(n if n >= 0 else 1 << 20)
        got = self.readinto(memoryview(buf))
        return bytes(buf[:got])

    def check_disk(self) -> None:
        self._next_check = self.size + self._options.check_every_bytes
        st = os.statvfs(self._dest)
        free = st.f_bavail * st.f_frsize
        if free < self._options.min_free_bytes:
            raise LayerError(
                f"{self._what}: stopped unpacking after {_mib(self.size)}, {self._dest} has "
                f"{_mib(free)} free (keeping {_mib(self._options.min_free_bytes)})",
                hint="free some disk space (sealer prune) and retry",
            )
        # f_files is 0 where a filesystem has no inode limit (btrfs).
        if st.f_files and st.f_favail < self._options.min_free_inodes:
            raise LayerError(
                f"{self._what}: stopped unpacking after {_mib(self.size)}, {self._dest} has "
                f"{st.f_favail} free inodes (keeping {self._options.min_free_inodes})",
                hint="free some inodes (sealer prune) and retry",
            )

    def finish(self) -> None:
        """Read to the end (bounded as ever) and check the diff_id."""
        buf = memoryview(bytearray(1 << 20))
        while self.readinto(buf):
            pass
        if self._hash is None or self._diff_id is None:
            return
        actual = Digest("sha256", self._hash.hexdigest())
        if self._diff_id.algorithm != "sha256" or actual != self._diff_id:
            raise LayerError(
                f"{self._what} does not match its diff_id: the uncompressed tar is {actual}, "
                f"the image config says {self._diff_id}",
                hint=_HINT,
            )


def _chunk(compressed_size: int | None) -> int:
    """The read-ahead's buffer size: 4 MiB (measured best for big files) unless the layer is
    small, where 1 MiB holds as much of it and the 4 buffers cost 4 MB instead of 16 (a pull
    unpacks a few layers at once)."""
    if compressed_size is not None and compressed_size < SMALL_LAYER_BYTES:
        return 1 << 20
    return CHUNK


def unpack_layer(
    stream: BinaryIO,
    dest: str | Path,
    *,
    whiteouts: WhiteoutMode,
    what: str,
    compressed_size: int | None,
    diff_id: Digest | None = None,
    options: UnpackOptions | None = None,
) -> ExtractStats:
    """`extract_layer` of the uncompressed tar `stream` into `dest`, within the bounds above.

    `what` names the layer in errors ("layer sha256:..."); `compressed_size` (None: unknown,
    no expansion cap) is what the ratio applies to; `diff_id` (None: not checked) is compared
    with the sha256 of the whole stream, read to its end. Raises LayerError; like
    `extract_layer`, leaves `dest` partly written on error.
    """
    bounded = _Bounded(
        stream,
        what=what,
        dest=Path(dest),
        compressed_size=compressed_size,
        diff_id=diff_id,
        options=options or UnpackOptions(),
    )
    try:
        bounded.check_disk()  # a full disk refuses the layer before anything is written
        stats = extract_layer(
            cast(BinaryIO, bounded), dest, whiteouts=whiteouts, chunk=_chunk(compressed_size)
        )
        bounded.finish()
    except LayerError as err:
        if not err.message.startswith(what):
            err.message = f"{what}: {err.message}"
            err.args = (err.message,)
        raise
    return stats
