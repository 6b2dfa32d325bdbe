"""Forward-only parsing of tar headers from a non-seekable stream (the reader's front half).

ustar and GNU blocks are decoded by `tarfile.TarInfo.frombuf`; PAX records and GNU long names
are handled here, capped at MAX_META_SIZE because they are read into memory. Sizes above
MAX_ENTRY_SIZE or below zero, bad checksums, sparse files, global PAX headers that set a name, owner
or size, and truncation raise LayerError. The rules on what an entry may be are in `safety`.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import BinaryIO

from builder.errors import LayerError

BLOCK = 512
MAX_ENTRY_SIZE = 1 << 40  # 1 TiB: more is a hostile header, not a file
MAX_META_SIZE = 1 << 20  # PAX records and GNU long names are read into memory: cap them
FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_ZEROS = bytes(BLOCK)
_PER_ENTRY_KEYS = ("path", "linkpath", "size", "uid", "gid")
_META_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


@dataclass(slots=True)
class Member:
    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: str


class TarStream:
    """Forward-only tar member reader over a non-seekable stream."""

    def __init__(self, stream: BinaryIO, buf: memoryview) -> None:
        self._stream = stream
        self._readinto = getattr(stream, "readinto", None)
        self._buf = buf
        self.offset = 0

    def readinto(self, view: memoryview) -> int:
        if self._readinto is not None:
            n: int = self._readinto(view)
        else:
            data = self._stream.read(len(view))
            n = len(data)
            view[:n] = data
        self.offset += n
        return n

    def readview(self, n: int) -> memoryview:
        """Up to `n` bytes (empty at EOF) as a view valid until the next read: the stream's own
        buffer where it lends one (`ReadAhead.readview`: no copy), else this reader's buffer."""
        readview = getattr(self._stream, "readview", None)
        if readview is None:
            k = self.readinto(self._buf[: min(n, len(self._buf))])
            return self._buf[:k]
        view: memoryview = readview(n)
        self.offset += len(view)
        return view

    def read_exact(self, n: int, what: str) -> bytes:
        out = bytearray(n)
        view = memoryview(out)
        got = 0
        while got < n:
            k = self.readinto(view[got:])
            if k == 0:
                if got == 0 and what == "header":
                    return b""
                raise LayerError(f"layer truncated: {what} needs {n} bytes, stream ended after {got}")
            got += k
        return bytes(out)

    def skip(self, n: int, what: str) -> None:
        while n:
            k = self.readinto(self._buf[: min(n, len(self._buf))])
            if k == 0:
                raise LayerError(f"layer truncated: {what} needs {n} more bytes")
            n -= k

    def drain_zeros(self) -> bool:
        """Read to EOF; False if anything but zero bytes came (data after the end block)."""
        zeros = True
        while n := self.readinto(self._buf):
            zeros = zeros and self._buf[:n].tobytes().count(0) == n
        return zeros

    def _meta(self, info: tarfile.TarInfo) -> bytes:
        if not 0 <= info.size <= MAX_META_SIZE:
            raise LayerError(f"layer has a tar metadata record of {info.size} bytes (limit {MAX_META_SIZE})")
        data = self.read_exact(info.size, "tar metadata record")
        self.skip(-info.size % BLOCK, "tar metadata record")
        return data

    def next(self) -> Member | None:
        pax: dict[str, str] = {}
        longname: str | None = None
        longlink: str | None = None
        while True:
            offset = self.offset
            block = self.read_exact(BLOCK, "header")
            if not block or block == _ZEROS:
                return None
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as err:
                raise LayerError(f"invalid tar header at offset {offset}: {err}") from None
            if info.type not in _META_TYPES:
                break
            data = self._meta(info)
            if info.type == tarfile.GNUTYPE_LONGNAME:
                longname = data.rstrip(b"\x00").decode("utf-8", "surrogateescape")
            elif info.type == tarfile.GNUTYPE_LONGLINK:
                longlink = data.rstrip(b"\x00").decode("utf-8", "surrogateescape")
            elif info.type != tarfile.XGLTYPE:
                pax.update(_parse_pax(data, offset))
            else:  # global headers: ignored, as docker does; GNU tar applies them to what follows
                keys = [
                    k for k in _parse_pax(data, offset) if k in _PER_ENTRY_KEYS or k.startswith("GNU.sparse")
                ]
                if keys:
                    raise LayerError(
                        f"layer has a global PAX header setting {keys[0]!r} at offset {offset} "
                        "(refused: tar tools disagree on it)"
                    )
        if info.type == tarfile.GNUTYPE_SPARSE or any(k.startswith("GNU.sparse") for k in pax):
            raise LayerError(f"layer entry {info.name!r} is a sparse file (not supported)")
        name = pax.get("path", longname if longname is not None else info.name)
        linkname = pax.get("linkpath", longlink if longlink is not None else info.linkname)
        try:
            size = int(pax.get("size", info.size))
            uid = int(pax.get("uid", info.uid))
            gid = int(pax.get("gid", info.gid))
            mtime_ns = int(float(pax.get("mtime", info.mtime)) * 1_000_000_000)
        except (ValueError, OverflowError):  # "nan", "inf"
            raise LayerError(f"layer entry {name!r} has a malformed PAX number") from None
        if not 0 <= size <= MAX_ENTRY_SIZE:
            raise LayerError(f"layer entry {name!r} has an invalid size {size}")
        if uid < 0 or gid < 0:
            raise LayerError(f"layer entry {name!r} has a negative owner")
        return Member(name, info.type, info.mode & 0o7777, uid, gid, size, mtime_ns, linkname)


def _parse_pax(data: bytes, offset: int) -> dict[str, str]:
    """PAX extended header records: `<len> <key>=<value>\\n` (POSIX pax format)."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise LayerError(f"malformed PAX header at offset {offset}") from None
        record = data[space + 1 : pos + length]
        if space < 0 or length <= 0 or pos + length > len(data) or not record.endswith(b"\n"):
            raise LayerError(f"malformed PAX header at offset {offset}")
        key, eq, value = record[:-1].partition(b"=")
        if not eq:
            raise LayerError(f"malformed PAX header at offset {offset}")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out
