"""Safe extraction of an (uncompressed) layer tar: the one unpacker for the store and the hosts.

Every layer is hostile until proven otherwise (DESIGN.md section 3). Headers are parsed by
`_tarstream` (ustar, PAX, GNU long names, capped sizes); this module reads forward only, streams
file data in 4 MB chunks, and creates every entry relative to an open directory fd whose path
was walked component by component with O_NOFOLLOW: a symlink already in `dest` is never
followed, whoever put it there (containerd instead resolves such paths inside the root; we
refuse them). Refused (UnsafePath): absolute paths, `..` components, entries below a symlink or
a non-directory, hardlinks that leave the root or name a non-regular file, device nodes and
fifos. Whiteouts naming `..` or escaping raise BadWhiteout.

Contract: on error this raises and leaves `dest` partly written. Callers extract into a staging
directory (`builder._fs.atomic_dir`) and drop it on failure, so a refused layer leaves nothing
behind. After the end-of-archive blocks the stream is read to EOF so that a verifying reader
(which checks the digest at EOF) gets to check it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from builder.errors import BadWhiteout, LayerError, UnsafePath
from builder.layers._tarstream import BLOCK, FILE_TYPES, MAX_ENTRY_SIZE, MAX_META_SIZE, Member, TarStream
from builder.layers.whiteout import (
    AUFS_META_PREFIX,
    OPAQUE_NAME,
    WHITEOUT_PREFIX,
    is_overlay_whiteout,
    make_overlay_whiteout,
    set_overlay_opaque,
)

__all__ = ["MAX_ENTRY_SIZE", "MAX_META_SIZE", "ExtractStats", "WhiteoutMode", "extract_layer"]

WhiteoutMode = Literal["overlay", "apply"]

CHUNK = 4 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_CACHED_DIRS = 64


@dataclass(frozen=True, slots=True)
class ExtractStats:
    files: int
    dirs: int
    symlinks: int
    hardlinks: int
    whiteouts: int
    bytes: int


def _split(path: str, label: str, error: type[LayerError] = UnsafePath) -> list[str]:
    """Components of archive path `path`; refuse absolute paths, `..` and NUL."""
    if "\x00" in path:
        raise error(f"{label} {path!r} contains a NUL byte")
    if path.startswith("/"):
        raise error(f"{label} {path!r} is an absolute path")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise error(f"{label} {path!r} has a '..' component")
    return parts


class _Extractor:
    def __init__(self, stream: BinaryIO, dest: str | Path, mode: WhiteoutMode) -> None:
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.reader = TarStream(stream, self.view)
        self.overlay = mode == "overlay"
        self.is_root = os.geteuid() == 0
        self.ids = (os.geteuid(), os.getegid())
        self.root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        # Open fds of recently used directories (owned here, LRU): an entry's parent is one
        # openat() from a cached ancestor instead of a walk from the root (opens cost ~40 us
        # each on this kind of disk, and a 3000-file layer made 20000 of them).
        self.dir_fds: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self.written: set[str] = set()  # paths this layer created (OCI: whiteouts spare them)
        self.ancestors: set[str] = set()  # directories holding something this layer created
        self.dirs: dict[str, tuple[int, int, int, int]] = {}  # deferred: mode, uid, gid, mtime_ns
        self.counts = {"files": 0, "dirs": 0, "symlinks": 0, "hardlinks": 0, "whiteouts": 0, "bytes": 0}

    # --- directory fds ------------------------------------------------------------------------

    def close(self) -> None:
        self._drop_cache()
        os.close(self.root_fd)

    def _drop_cache(self) -> None:
        for fd in self.dir_fds.values():
            os.close(fd)
        self.dir_fds.clear()

    def _forget_below(self, pfd: int, name: str) -> None:
        """Close cached fds at or below `name` in the dir `pfd`, which was just removed."""
        parent = () if pfd == self.root_fd else next((k for k, v in self.dir_fds.items() if v == pfd), None)
        if parent is None:
            self._drop_cache_except(pfd)
            return
        gone = (*parent, name)
        for key in [k for k in self.dir_fds if k[: len(gone)] == gone]:
            os.close(self.dir_fds.pop(key))

    def _drop_cache_except(self, keep: int) -> None:
        for key in [k for k, v in self.dir_fds.items() if v != keep]:
            os.close(self.dir_fds.pop(key))

    def _cached_dir(
        self, key: tuple[str, ...], *, create: bool, label: str, error: type[LayerError]
    ) -> int | None:
        """An fd (owned by the cache) on the dir `key` below the root, never through a symlink."""
        if not key:
            return self.root_fd
        fd = self.dir_fds.get(key)
        if fd is not None:
            self.dir_fds.move_to_end(key)
            return fd
        parent = self._cached_dir(key[:-1], create=create, label=label, error=error)
        if parent is None:
            return None
        try:
            try:
                fd = os.open(key[-1], _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(key[-1], 0o755, dir_fd=parent)
                fd = os.open(key[-1], _DIR_FLAGS, dir_fd=parent)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise error(f"{label} goes through {'/'.join(key)!r}, a symlink or not a directory") from None
            raise
        self.dir_fds[key] = fd
        if len(self.dir_fds) > _MAX_CACHED_DIRS:
            # The oldest entry is never `parent` or `fd`: both were just used.
            os.close(self.dir_fds.popitem(last=False)[1])
        return fd

    def _open_dir(
        self, parts: list[str] | tuple[str, ...], *, create: bool, label: str, error: type[LayerError]
    ) -> int | None:
        """A fresh fd (the caller closes it) on the dir `parts`; None if missing."""
        fd = self._cached_dir(tuple(parts), create=create, label=label, error=error)
        return None if fd is None else os.dup(fd)

    def _parent(self, parts: list[str], label: str, error: type[LayerError] = UnsafePath) -> int:
        """The cached fd of an entry's parent dir, created if missing (do not close it)."""
        fd = self._cached_dir(tuple(parts[:-1]), create=True, label=label, error=error)
        assert fd is not None
        return fd

    def _mark(self, parts: list[str]) -> None:
        self.written.add("/".join(parts))
        for i in range(len(parts) - 1, 0, -1):
            parent = "/".join(parts[:i])
            if parent in self.ancestors:
                break
            self.ancestors.add(parent)

    def _unlink(self, pfd: int, name: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=pfd)
            self._forget_below(pfd, name)  # cached fds may point inside the tree that went away
        else:
            os.unlink(name, dir_fd=pfd)

    def _clear(self, pfd: int, name: str, *, keep_dir: bool) -> os.stat_result | None:
        """Remove what sits at `name` (tar: the later entry wins); keep a dir if asked. Returns its stat."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not (keep_dir and stat.S_ISDIR(st.st_mode)):
            self._unlink(pfd, name, st)
        return st

    # --- entries ------------------------------------------------------------------------------

    def run(self) -> ExtractStats:
        while (m := self.reader.next()) is not None:
            self._entry(m)
        self._apply_dirs()
        self.reader.drain()
        return ExtractStats(**self.counts)

    def _entry(self, m: Member) -> None:
        base = m.name.rstrip("/").rpartition("/")[2]
        if base.startswith(WHITEOUT_PREFIX):  # whatever its type, as docker reads it
            self.reader.skip(m.size + (-m.size % BLOCK), f"whiteout {m.name!r}")
            self._whiteout(m, base)
            return
        label = f"layer entry {m.name!r}"
        parts = _split(m.name, "layer entry")
        if not parts:  # "." / "./": the root itself; its metadata is the caller's
            self.reader.skip(m.size + (-m.size % BLOCK), label)
            return
        kind = m.type
        if kind in FILE_TYPES:
            self._file(m, parts, label)
        elif kind == tarfile.DIRTYPE:
            self._dir(m, parts, label)
        elif kind == tarfile.SYMTYPE:
            self._symlink(m, parts, label)
        elif kind == tarfile.LNKTYPE:
            self._hardlink(m, parts, label)
        elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            what = "character" if kind == tarfile.CHRTYPE else "block"
            raise UnsafePath(f"{label} is a {what} device (device nodes are refused)")
        elif kind == tarfile.FIFOTYPE:
            raise UnsafePath(f"{label} is a fifo (refused)")
        else:
            raise LayerError(f"{label} has unsupported tar type {kind!r}")
        self._mark(parts)

    def _owner(self, m: Member, *, fd: int | None = None, name: str = "", dir_fd: int | None = None) -> None:
        if not self.is_root:
            return
        if fd is not None:
            os.fchown(fd, m.uid, m.gid)
        else:
            os.chown(name, m.uid, m.gid, dir_fd=dir_fd, follow_symlinks=False)

    def _file(self, m: Member, parts: list[str], label: str) -> None:
        pfd = self._parent(parts, label)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            # Most entries are new: try the exclusive create first, clear only when it is taken
            # (one syscall less per file than a stat before every create).
            fd = os.open(parts[-1], flags, 0o600, dir_fd=pfd)
        except FileExistsError:
            self._clear(pfd, parts[-1], keep_dir=False)
            fd = os.open(parts[-1], flags, 0o600, dir_fd=pfd)
        try:
            self._copy(fd, m.size, label)
            if (m.uid, m.gid) != self.ids:  # the file was just created: it is ours already
                self._owner(m, fd=fd)  # before chmod: chown clears setuid bits
            os.fchmod(fd, m.mode)
            os.utime(fd, ns=(m.mtime_ns, m.mtime_ns))
        finally:
            os.close(fd)
        self.reader.skip(-m.size % BLOCK, label)
        self.counts["files"] += 1
        self.counts["bytes"] += m.size

    def _copy(self, fd: int, size: int, label: str) -> None:
        remaining = size
        while remaining:
            n = self.reader.readinto(self.view[: min(remaining, CHUNK)])
            if n == 0:
                raise LayerError(
                    f"layer truncated: {label} needs {size} bytes, stream ended after {size - remaining}"
                )
            chunk = self.view[:n]
            while chunk:
                chunk = chunk[os.write(fd, chunk) :]
            remaining -= n

    def _dir(self, m: Member, parts: list[str], label: str) -> None:
        pfd = self._parent(parts, label)
        st = self._clear(pfd, parts[-1], keep_dir=True)
        if st is None or not stat.S_ISDIR(st.st_mode):
            os.mkdir(parts[-1], 0o700, dir_fd=pfd)  # real mode applied after the contents
            if self.overlay and st is not None and is_overlay_whiteout(st):
                # A dir replacing a whiteout of this layer hides what lower layers had there.
                dfd = os.open(parts[-1], _DIR_FLAGS, dir_fd=pfd)
                try:
                    set_overlay_opaque(dfd)
                finally:
                    os.close(dfd)
        self.dirs["/".join(parts)] = (m.mode, m.uid, m.gid, m.mtime_ns)
        self.counts["dirs"] += 1

    def _symlink(self, m: Member, parts: list[str], label: str) -> None:
        pfd = self._parent(parts, label)
        self._clear(pfd, parts[-1], keep_dir=False)
        # The target may point anywhere: it is stored, never followed by this reader.
        os.symlink(m.linkname, parts[-1], dir_fd=pfd)
        self._owner(m, name=parts[-1], dir_fd=pfd)
        os.utime(parts[-1], ns=(m.mtime_ns, m.mtime_ns), dir_fd=pfd, follow_symlinks=False)
        self.counts["symlinks"] += 1

    def _hardlink(self, m: Member, parts: list[str], label: str) -> None:
        target = _split(m.linkname, f"{label}: hardlink target")
        if not target:
            raise UnsafePath(f"{label} is a hardlink to the layer root")
        if target == parts:
            return  # a link to itself: nothing to do
        tfd = self._open_dir(target[:-1], create=False, label=f"{label}: hardlink target", error=UnsafePath)
        if tfd is None:
            raise LayerError(f"{label} is a hardlink to {m.linkname!r}, which does not exist")
        try:
            try:
                st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                raise LayerError(f"{label} is a hardlink to {m.linkname!r}, which does not exist") from None
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePath(f"{label} is a hardlink to {m.linkname!r}, which is not a regular file")
            pfd = self._parent(parts, label)
            self._clear(pfd, parts[-1], keep_dir=False)
            os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)
        self.counts["hardlinks"] += 1

    # --- whiteouts ----------------------------------------------------------------------------

    def _whiteout(self, m: Member, base: str) -> None:
        label = f"whiteout {m.name!r}"
        parts = _split(m.name, "whiteout", BadWhiteout)
        dir_parts = parts[:-1]
        if base == OPAQUE_NAME:
            self._opaque(dir_parts, label)
        elif base.startswith(AUFS_META_PREFIX):
            return  # AUFS bookkeeping (.wh..wh.plnk): skipped, as docker does
        else:
            target = base[len(WHITEOUT_PREFIX) :]
            if target in ("", ".", ".."):
                raise BadWhiteout(f"{label} names {target!r}, not an entry of its directory")
            self._delete(dir_parts, target, label)
        self.counts["whiteouts"] += 1

    def _opaque(self, dir_parts: list[str], label: str) -> None:
        fd = self._open_dir(dir_parts, create=self.overlay, label=label, error=BadWhiteout)
        if fd is None:
            return  # apply: nothing below to hide
        try:
            if self.overlay:
                set_overlay_opaque(fd)
                return
            prefix = "/".join(dir_parts)
            for child in os.listdir(fd):
                self._remove_lower(fd, child, f"{prefix}/{child}" if prefix else child)
        finally:
            os.close(fd)

    def _delete(self, dir_parts: list[str], target: str, label: str) -> None:
        rel = "/".join([*dir_parts, target])
        fd = self._open_dir(dir_parts, create=self.overlay, label=label, error=BadWhiteout)
        if fd is None:
            return
        try:
            if not self.overlay:
                self._remove_lower(fd, target, rel)
                return
            if rel in self.written:
                # OCI: a whiteout never hides its own layer's entries. If that entry is a dir,
                # making it opaque still hides the lower layers' contents, as the whiteout meant.
                st = os.stat(target, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    dfd = os.open(target, _DIR_FLAGS, dir_fd=fd)
                    try:
                        set_overlay_opaque(dfd)
                    finally:
                        os.close(dfd)
                return
            self._clear(fd, target, keep_dir=False)
            make_overlay_whiteout(target, dir_fd=fd)
        finally:
            os.close(fd)

    def _remove_lower(self, pfd: int, name: str, rel: str) -> None:
        """Delete what lower layers put at `rel`, keeping what this layer wrote (OCI layer spec)."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if rel not in self.written and rel not in self.ancestors:
            self._unlink(pfd, name, st)
            return
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
            try:
                for child in os.listdir(fd):
                    self._remove_lower(fd, child, f"{rel}/{child}")
            finally:
                os.close(fd)

    def _apply_dirs(self) -> None:
        """Directory modes, owners and mtimes, deepest first, after all contents are in place.

        Deepest first so that a parent made read-only (or unsearchable) never blocks a child;
        siblings in path order so that the dir-fd cache serves their parent.
        """
        for rel in sorted(self.dirs, key=lambda r: (-r.count("/"), r)):
            mode, uid, gid, mtime_ns = self.dirs[rel]
            try:
                fd = self._cached_dir(tuple(rel.split("/")), create=False, label=rel, error=UnsafePath)
            except UnsafePath:
                continue  # replaced by a symlink or file later in the layer: not ours to touch
            if fd is None:
                continue
            if self.is_root:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.utime(fd, ns=(mtime_ns, mtime_ns))


def extract_layer(stream: BinaryIO, dest: str | Path, *, whiteouts: WhiteoutMode) -> ExtractStats:
    """Extract the uncompressed tar `stream` into the existing directory `dest`, safely.

    `whiteouts="overlay"`: `dest` is a fresh overlay diff dir; OCI whiteouts become overlay
    whiteouts (char device 0/0, `trusted.overlay.opaque=y`). `whiteouts="apply"`: `dest` is a
    flat rootfs built layer by layer; a whiteout deletes its target and an opaque marker empties
    its directory of what lower layers put there (this layer's entries survive, wherever the
    marker sorts). Duplicate entries: the later wins. uid/gid are kept when running as root.
    Raises LayerError (UnsafePath, BadWhiteout) and leaves `dest` partly written: extract into
    a staging dir and drop it on failure (see the module docstring).
    """
    ex = _Extractor(stream, dest, whiteouts)
    try:
        return ex.run()
    except OSError as err:
        raise LayerError(f"extracting layer into {dest}: {err}") from err
    finally:
        ex.close()
