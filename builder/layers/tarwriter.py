"""Deterministic tar entries: the same tree gives the same bytes wherever and whenever it lives.

Headers come from `tarfile.TarInfo.tobuf(PAX_FORMAT)` (PAX records only where ustar cannot hold a
value); file data is streamed here through one reused 4 MB buffer, because tarfile's 16 KB copy
loop is too slow for gigabyte layers and because batching headers with data gives the consumer
(hash, compressor) large writes. Entries carry uid/gid 0 (walk_tree) or the owner found on disk
(upperdir walks), empty uname/gname, mtime clamped to SOURCE_DATE_EPOCH, no atime/ctime.

Order: siblings sorted by the bytes of their archive name, depth first, parents before children
(GNU tar's `--sort=name`); an opaque marker comes right after its directory. `entry_sort_key`
states the same order for entries not produced by a walk.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from builder.errors import LayerError, UnsafePath
from builder.layers.whiteout import (
    WHITEOUT_PREFIX,
    is_overlay_opaque,
    is_overlay_whiteout,
    oci_opaque_name,
    oci_whiteout_name,
)

EntryKind = Literal["file", "dir", "symlink", "hardlink", "whiteout", "opaque"]
Include = Callable[[str, bool], bool]

BLOCK = 512
CHUNK = 4 << 20
_ZEROS = bytes(BLOCK)
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_TYPES: dict[str, bytes] = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "whiteout": tarfile.REGTYPE,
    "opaque": tarfile.REGTYPE,
}


@dataclass(frozen=True, slots=True)
class TarEntry:
    """One archive member; whiteout/opaque entries name what they delete or make opaque."""

    name: str  # archive path: relative, '/'-separated, no leading './' or '/', no trailing '/'
    kind: EntryKind
    mode: int = 0o644  # permission bits incl. setuid/setgid/sticky
    size: int = 0
    source: str | None = None  # where a "file" entry's bytes come from
    linkname: str = ""  # symlink target, or the earlier entry a hardlink names
    mtime: int = 0
    uid: int = 0
    gid: int = 0

    @property
    def tar_name(self) -> str:
        """The member name written to the archive (`.wh.` forms for whiteout and opaque)."""
        if self.kind == "whiteout":
            return oci_whiteout_name(self.name)
        if self.kind == "opaque":
            return oci_opaque_name(self.name)
        return self.name


def entry_sort_key(entry: TarEntry) -> tuple[bytes, ...]:
    """The walk order as a key: components of the member name; an opaque marker first in its dir."""
    key = tuple(os.fsencode(part) for part in entry.tar_name.split("/"))
    if entry.kind == "opaque":
        return (*key[:-1], b"")
    return key


def _check_name(name: str) -> None:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in name:
        raise UnsafePath(f"tar entry name {name!r} is not a clean relative path")


class TarWriter:
    """Writes entries as a deterministic PAX tar to `out`; `close()` writes the end blocks.

    `out.write` receives memoryviews of a reused buffer, at most CHUNK bytes each and, except
    for the last, exactly CHUNK: it must consume or copy them before returning (files,
    hashlib, zstd and BytesIO all do). `out` is not closed.
    """

    def __init__(
        self,
        out: BinaryIO,
        *,
        source_date_epoch: int = 0,
        on_file: Callable[[TarEntry, str], None] | None = None,
        hash_max_bytes: int | None = None,
    ) -> None:
        self._out = out
        self._epoch = source_date_epoch
        # Called with each file entry and the sha256 hex of the bytes archived for it, so a
        # build cache can learn file hashes in the same pass instead of reading files twice.
        self._on_file = on_file
        self._hash_max = hash_max_bytes  # larger files are not hashed (nor reported to on_file)
        self._buf = bytearray(CHUNK)
        self._view = memoryview(self._buf)
        self._pos = 0
        self._flushed = 0
        self._closed = False

    @property
    def bytes_written(self) -> int:
        """Tar bytes produced so far (including those still in the buffer)."""
        return self._flushed + self._pos

    def _flush(self) -> None:
        if self._pos:
            self._out.write(self._view[: self._pos])
            self._flushed += self._pos
            self._pos = 0

    def _put(self, data: bytes) -> None:
        n = len(data)
        if self._pos + n > CHUNK:
            self._flush()
            if n > CHUNK:  # a PAX header of megabytes: possible, never seen
                self._out.write(data)
                self._flushed += n
                return
        self._view[self._pos : self._pos + n] = data
        self._pos += n

    def _header(self, entry: TarEntry) -> bytes:
        info = tarfile.TarInfo(entry.tar_name)
        info.type = _TYPES[entry.kind]
        info.mode = entry.mode & 0o7777
        info.uid = entry.uid
        info.gid = entry.gid
        info.uname = ""
        info.gname = ""
        info.mtime = max(0, min(entry.mtime, self._epoch))
        if entry.kind == "file":
            info.size = entry.size
        elif entry.kind in ("symlink", "hardlink"):
            info.linkname = entry.linkname
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def add(self, entry: TarEntry) -> None:
        """Append one entry; a "file" entry's bytes are streamed from `entry.source`."""
        if self._closed:
            raise LayerError("tar writer already closed")
        _check_name(entry.name)
        if entry.kind == "hardlink":
            _check_name(entry.linkname)
        self._put(self._header(entry))
        if entry.kind == "file" and entry.size:
            if entry.source is None:
                raise LayerError(f"tar entry {entry.name!r} has no source file")
            wanted = self._on_file is not None and (self._hash_max is None or entry.size <= self._hash_max)
            digest = self._copy_file(entry.source, entry.size, entry.name, hash_it=wanted)
            if wanted and self._on_file is not None:
                self._on_file(entry, digest)
        elif entry.kind == "file" and self._on_file is not None:
            self._on_file(entry, _EMPTY_SHA256)

    def add_all(self, entries: Iterable[TarEntry]) -> None:
        for entry in entries:
            self.add(entry)

    def _copy_file(self, source: str, size: int, name: str, *, hash_it: bool) -> str:
        """Stream a file's bytes into the archive; returns their sha256 when `hash_it`."""
        sha = hashlib.sha256() if hash_it else None
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            remaining = size
            while remaining:
                if self._pos == CHUNK:
                    self._flush()
                want = min(remaining, CHUNK - self._pos)
                n = os.readv(fd, [self._view[self._pos : self._pos + want]])
                if n == 0:
                    raise LayerError(
                        f"{source}: file shrank while being archived as {name!r} "
                        f"({size - remaining} of {size} bytes read)"
                    )
                if sha is not None:
                    sha.update(self._view[self._pos : self._pos + n])
                self._pos += n
                remaining -= n
        finally:
            os.close(fd)
        pad = -size % BLOCK
        if pad:
            self._put(_ZEROS[:pad])
        return sha.hexdigest() if sha is not None else ""

    def close(self) -> None:
        """Write the two zero end-of-archive blocks and hand the last bytes to `out`."""
        if self._closed:
            return
        self._put(_ZEROS * 2)
        self._flush()
        self._closed = True


def _clean_dest(dest: str) -> str:
    parts = [p for p in dest.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"archive destination {dest!r} climbs out of the layer root")
    return "/".join(parts)


def _parents(name: str) -> Iterator[TarEntry]:
    parts = name.split("/")
    for i in range(1, len(parts)):
        yield TarEntry("/".join(parts[:i]), "dir", 0o755)


class _Walker:
    def __init__(self, *, chmod: int | None, include: Include | None, overlay: bool) -> None:
        self.chmod = chmod
        self.include = include
        self.overlay = overlay  # upperdir: overlay whiteouts allowed, owners kept
        self.links: dict[tuple[int, int], str] = {}

    def _mode(self, st: os.stat_result) -> int:
        return stat.S_IMODE(st.st_mode) if self.chmod is None else self.chmod

    def entry(self, path: str, arc: str, st: os.stat_result) -> TarEntry:
        uid, gid = (st.st_uid, st.st_gid) if self.overlay else (0, 0)
        mode = st.st_mode
        mtime = int(st.st_mtime)
        if stat.S_ISDIR(mode):
            return TarEntry(arc, "dir", self._mode(st), mtime=mtime, uid=uid, gid=gid)
        if stat.S_ISREG(mode):
            if st.st_nlink > 1:
                first = self.links.setdefault((st.st_dev, st.st_ino), arc)
                if first != arc:
                    return TarEntry(
                        arc, "hardlink", self._mode(st), linkname=first, mtime=mtime, uid=uid, gid=gid
                    )
            return TarEntry(arc, "file", self._mode(st), st.st_size, path, mtime=mtime, uid=uid, gid=gid)
        if stat.S_ISLNK(mode):
            return TarEntry(arc, "symlink", 0o777, linkname=os.readlink(path), mtime=mtime, uid=uid, gid=gid)
        if self.overlay and is_overlay_whiteout(st):
            return TarEntry(arc, "whiteout")
        what = {stat.S_IFCHR: "character device", stat.S_IFBLK: "block device", stat.S_IFIFO: "fifo"}
        raise UnsafePath(f"{path}: a {what.get(stat.S_IFMT(mode), 'socket')} cannot be put in a layer")

    def walk_dir(self, path: str, rel: str, arc: str) -> Iterator[TarEntry]:
        children: list[tuple[bytes, str, os.stat_result]] = []
        with os.scandir(path) as it:
            names = [e.name for e in it]
        for name in names:
            full = os.path.join(path, name)
            st = os.lstat(full)
            child_rel = f"{rel}/{name}" if rel else name
            if self.include is not None and not self.include(child_rel, stat.S_ISDIR(st.st_mode)):
                continue
            key = name
            if self.overlay and is_overlay_whiteout(st):
                key = WHITEOUT_PREFIX + name
            children.append((os.fsencode(key), name, st))
        children.sort(key=lambda c: c[0])
        for _, name, st in children:
            full = os.path.join(path, name)
            child_rel = f"{rel}/{name}" if rel else name
            child_arc = f"{arc}/{name}" if arc else name
            yield self.entry(full, child_arc, st)
            if stat.S_ISDIR(st.st_mode):
                if self.overlay and is_overlay_opaque(full):
                    yield TarEntry(child_arc, "opaque")
                yield from self.walk_dir(full, child_rel, child_arc)


def walk_tree(
    root: str | Path,
    *,
    dest: str = "",
    chmod: int | None = None,
    include: Include | None = None,
) -> Iterator[TarEntry]:
    """Entries for the tree at `root` under archive prefix `dest`, in walk order.

    The parents of `dest` come first (mode 0755); `root` itself is emitted as `dest` unless
    `dest` is empty. A single file `root` becomes the entry `dest` (default: its base name).
    Files met again by (st_dev, st_ino) become hardlink entries. `include(relpath, is_dir)`
    filters by the path relative to `root` (False on a dir prunes it); `chmod` replaces the mode
    of files and dirs (COPY --chmod). Sockets, fifos and devices raise UnsafePath. uid/gid are 0.
    """
    return _walk(Path(root), _clean_dest(dest), _Walker(chmod=chmod, include=include, overlay=False))


def walk_upperdir(upper: str | Path, *, include: Include | None = None) -> Iterator[TarEntry]:
    """Entries for what an overlay upperdir holds (what a RUN step changed), in OCI form.

    Char devices 0/0 become kind "whiteout", opaque dirs a dir entry followed by kind "opaque";
    owners are kept (unlike walk_tree: a RUN step may chown). Order as walk_tree's.
    """
    return _walk(Path(upper), "", _Walker(chmod=None, include=include, overlay=True))


def _walk(root: Path, dest: str, walker: _Walker) -> Iterator[TarEntry]:
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode):
        name = dest or root.name
        yield from _parents(name)
        yield walker.entry(str(root), name, st)
        return
    if dest:
        yield from _parents(dest)
        yield walker.entry(str(root), dest, st)
    yield from walker.walk_dir(str(root), "", dest)
