"""Safe extraction of an (uncompressed) layer tar: the one unpacker for the store and the hosts.

Every layer is hostile until proven otherwise (DESIGN.md section 3). Entries come checked by
`safety.EntryReader` (the one policy, shared with the runtime's stack check); this module reads
forward only, streams file data in 4 MB chunks, and creates every entry relative to an open
directory fd whose path was walked component by component with O_NOFOLLOW: a symlink already in
`dest` is never followed, whoever put it there (containerd instead resolves such paths inside
the root; we refuse them). The rules that need what is on disk are enforced here with the
policy's messages: parents are directories, one type per path within a layer, hardlinks name a
regular file this layer's whiteouts leave in place, whiteouts never go through a symlink.

Syscalls per entry (issue 16; strace counts in docs/BENCHMARKS.md): a file is openat (created
with its mode when the umask gives that mode), its writes, utimensat, close; a dir is mkdirat
(stat only when the name is taken) and, after its contents, one utimensat through its parent's
cached fd. fchown and fchmod run only where creation did not give the tar's owner and mode: a
setuid/setgid/sticky bit, bits the umask clears, another owner, or a parent with setgid (whose
group new entries inherit). Decompression and hashing run one chunk ahead on a second thread
(`_readahead`), so the writes here overlap them.

Contract: on error this raises and leaves `dest` partly written. Callers extract into a staging
directory (`builder._fs.atomic_dir`) and drop it on failure, so a refused layer leaves nothing
behind. After the end-of-archive blocks the stream is read to EOF so that a verifying reader
(which checks the digest at EOF) gets to check it.

Over 400 lines on purpose: the dir-fd cache, entries and whiteouts all read and update one
extraction's state (what this layer wrote, its implicit dirs, its hardlinks to lower files, the
lower symlinks it replaced, the dirs it made); split, that state would travel through every call.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, cast

from builder.errors import BadWhiteout, LayerError, UnsafePath
from builder.layers._readahead import ReadAhead
from builder.layers.safety import (
    BLOCK,
    MAX_ENTRY_SIZE,
    MAX_META_SIZE,
    Entry,
    EntryReader,
    bad_hardlink,
    retyped,
    through_non_dir,
    through_symlink,
)
from builder.layers.whiteout import is_overlay_whiteout, make_overlay_whiteout, set_overlay_opaque

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


class _Extractor:
    def __init__(self, stream: BinaryIO, dest: str | Path, mode: WhiteoutMode, chunk: int = CHUNK) -> None:
        self.buf = bytearray(chunk)
        self.view = memoryview(self.buf)
        self.overlay = mode == "overlay"
        self.is_root = os.geteuid() == 0
        self.ids = (os.geteuid(), os.getegid())
        self.root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        # Open fds of recently used directories (owned here, LRU): an entry's parent is one
        # openat() from a cached ancestor instead of a walk from the root (opens cost ~40 us
        # each on this kind of disk, and a 3000-file layer made 20000 of them).
        self.dir_fds: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self.written: dict[str, str] = {}  # path -> type this layer created (OCI: whiteouts spare them)
        self.ancestors: set[str] = set()  # directories holding something this layer created
        self.lower_links: dict[str, str] = {}  # hardlink targets of lower layers -> the link's label
        self.replaced: set[str] = set()  # lower symlinks this layer replaced (apply mode)
        self.dirs: dict[str, tuple[int, int, int, int]] = {}  # deferred: mode, uid, gid, mtime_ns
        # Metadata is set only where creation did not give it already (issue 16: syscalls per
        # file). The umask tells what mode creation gives. `made`: the dirs this extraction
        # made in a dir without setgid (with the permission bits they got); they have no setgid
        # while it runs, so what is created in them gets our own uid and gid, as `chown` would
        # set them. A dir made in a setgid dir gets the dir's group and setgid: not in `made`.
        self.umask = _umask()
        self.made: dict[str, int] = {}
        self.root_setgid = bool(os.fstat(self.root_fd).st_mode & stat.S_ISGID)
        self.counts = {"files": 0, "dirs": 0, "symlinks": 0, "hardlinks": 0, "whiteouts": 0, "bytes": 0}
        # Decompression and hashing (whatever `stream` does) on a second thread, ahead of the
        # writes here; started last, so that nothing above can fail with the thread running.
        self.source = ReadAhead(stream, chunk)
        self.reader = EntryReader(cast(BinaryIO, self.source), self.view, "layer")

    # --- directory fds ------------------------------------------------------------------------

    def close(self) -> None:
        self.source.close()
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
        gone = (*parent, *name.split("/"))
        for key in [k for k in self.dir_fds if k[: len(gone)] == gone]:
            os.close(self.dir_fds.pop(key))

    def _drop_cache_except(self, keep: int) -> None:
        for key in [k for k, v in self.dir_fds.items() if v != keep]:
            os.close(self.dir_fds.pop(key))

    def _cached_dir(
        self, key: tuple[str, ...], *, create: bool, label: str, error: type[LayerError]
    ) -> int | None:
        """An fd (owned by the cache) on the dir `key` below the root, never through a symlink.

        Walked from the deepest cached ancestor, iteratively (a path may have 2000 components).
        """
        i = len(key)
        while i and key[:i] not in self.dir_fds:
            i -= 1
        fd = self.root_fd
        if i:
            fd = self.dir_fds[key[:i]]
            self.dir_fds.move_to_end(key[:i])
        for j in range(i, len(key)):
            parent, name = fd, key[j]
            try:
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
                except FileNotFoundError:
                    if not create:
                        return None
                    os.mkdir(name, 0o755, dir_fd=parent)
                    self._made("/".join(key[: j + 1]), 0o755)
                    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                path = "/".join(key[: j + 1])
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    raise through_symlink(label, path, error) from None
                raise through_non_dir(label, path, error) from None
            self.dir_fds[key[: j + 1]] = fd
            if len(self.dir_fds) > _MAX_CACHED_DIRS:
                # The oldest entry is never `fd`: it was just added.
                os.close(self.dir_fds.popitem(last=False)[1])
        return fd

    def _open_dir(
        self, parts: tuple[str, ...], *, create: bool, label: str, error: type[LayerError]
    ) -> int | None:
        """A fresh fd (the caller closes it) on the dir `parts`; None if missing."""
        fd = self._cached_dir(tuple(parts), create=create, label=label, error=error)
        return None if fd is None else os.dup(fd)

    def _parent(self, parts: tuple[str, ...], label: str, error: type[LayerError] = UnsafePath) -> int:
        """The cached fd of an entry's parent dir, created if missing (do not close it)."""
        fd = self._cached_dir(tuple(parts[:-1]), create=True, label=label, error=error)
        assert fd is not None
        return fd

    def _mark(self, parts: tuple[str, ...], kind: str) -> None:
        self.written["/".join(parts)] = kind
        for i in range(len(parts) - 1, 0, -1):
            parent = "/".join(parts[:i])
            if parent in self.ancestors:
                break
            self.ancestors.add(parent)

    def _unlink(self, pfd: int, name: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            _remove_dir(pfd, name)
            self._forget_below(pfd, name)  # cached fds may point inside the tree that went away
        else:
            os.unlink(name, dir_fd=pfd)

    def _clear(self, pfd: int, rel: str, name: str, *, fmt: int) -> os.stat_result | None:
        """Make room at `name` for an entry of type `fmt` (S_IFREG...; 0: a whiteout): remove what
        sits there (a lower layer's, or this layer's of the same type: the later entry wins),
        except a dir for a dir. Returns its stat."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if fmt != stat.S_IFDIR or not stat.S_ISDIR(st.st_mode):
            if rel not in self.written and stat.S_IFMT(st.st_mode) != fmt:
                # A host removes a lower path whose type a layer changes before its `tar -x`.
                self._check_links(rel)
                if stat.S_ISLNK(st.st_mode) and not self.overlay:
                    self.replaced.add(rel)  # a whiteout below it must not pass
            self._unlink(pfd, name, st)
        return st

    def _check_links(self, rel: str) -> None:
        """Refuse removing a lower path that a hardlink of this layer points into."""
        for target, label in self.lower_links.items():
            if target == rel or target.startswith(rel + "/"):
                raise bad_hardlink(label, target)

    # --- entries ------------------------------------------------------------------------------

    def run(self) -> ExtractStats:
        while (e := self.reader.next()) is not None:
            self._entry(e)
        self._apply_dirs()
        self.reader.finish()
        return ExtractStats(**self.counts)

    def _entry(self, e: Entry) -> None:
        kind = e.kind
        if kind in ("whiteout", "opaque", "skip"):
            self.reader.skip_data(e)
            if kind != "skip":
                self._whiteout(e)
            return
        if not e.parts:  # "." / "./": the root itself (a dir); its metadata is the caller's
            return
        rel = "/".join(e.parts)
        same = "file" if kind == "hardlink" else kind
        before = self.written.get(rel) or ("dir" if rel in self.ancestors else None)
        if before is not None and before != same:
            raise retyped(e.label)
        if kind == "file":
            self._file(e, rel)
        elif kind == "dir":
            self._dir(e, rel)
        elif kind == "symlink":
            self._symlink(e, rel)
        else:
            self._hardlink(e, rel)
        self._mark(e.parts, same)

    def _in_plain_dir(self, rel: str) -> bool:
        """True when the parent of `rel` is known to have no setgid bit."""
        parent = rel.rpartition("/")[0]
        return parent in self.made if parent else not self.root_setgid

    def _made(self, rel: str, mode: int) -> None:
        """Record the dir just made at `rel` with `mode`, when what it got is known."""
        if self.umask is not None and self._in_plain_dir(rel):
            self.made[rel] = mode & ~self.umask

    def _creation_mode(self, mode: int, default: int) -> int:
        """`mode` when creating with it gives exactly `mode` (no bits the umask clears, no
        setuid/setgid/sticky: those are set after chown), else `default`."""
        if self.umask is None or mode & (0o7000 | self.umask):
            return default
        return mode

    def _owned_as_created(self, rel: str, uid: int, gid: int) -> bool:
        """True when a new entry at `rel` already has owner `uid`:`gid`: ours, in a dir without
        setgid (a setgid dir would have given it the dir's group)."""
        return (uid, gid) == self.ids and self._in_plain_dir(rel)

    def _owner(self, m: Entry, *, fd: int | None = None, name: str = "", dir_fd: int | None = None) -> None:
        if not self.is_root:
            return
        if fd is not None:
            os.fchown(fd, m.uid, m.gid)
        else:
            os.chown(name, m.uid, m.gid, dir_fd=dir_fd, follow_symlinks=False)

    def _file(self, m: Entry, rel: str) -> None:
        parts, label = m.parts, m.label
        pfd = self._parent(parts, label)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        # Created with its mode when that gives the mode: no fchmod (writing through this fd
        # works whatever the mode: access is checked at open, and a new file is opened anyway).
        mode = self._creation_mode(m.mode, 0o600)
        try:
            # Most entries are new: try the exclusive create first, clear only when it is taken
            # (one syscall less per file than a stat before every create).
            fd = os.open(parts[-1], flags, mode, dir_fd=pfd)
        except FileExistsError:
            self._clear(pfd, rel, parts[-1], fmt=stat.S_IFREG)
            fd = os.open(parts[-1], flags, mode, dir_fd=pfd)
        try:
            self._copy(fd, m.size, label)
            if not self._owned_as_created(rel, m.uid, m.gid):
                self._owner(m, fd=fd)  # before chmod: chown clears setuid bits
            if mode != m.mode:
                os.fchmod(fd, m.mode)
            os.utime(fd, ns=(m.mtime_ns, m.mtime_ns))
        finally:
            os.close(fd)
        self.reader.skip_data(m, m.size)
        self.counts["files"] += 1
        self.counts["bytes"] += m.size

    def _copy(self, fd: int, size: int, label: str) -> None:
        remaining = size
        while remaining:
            chunk = self.reader.readview(min(remaining, CHUNK))  # the read-ahead's buffer: no copy
            if not chunk:  # worded as the reader's skip words it, so the stack check says the same
                raise LayerError(f"layer truncated: {label} needs {remaining + (-size % BLOCK)} more bytes")
            remaining -= len(chunk)
            while chunk:
                chunk = chunk[os.write(fd, chunk) :]

    def _dir(self, m: Entry, rel: str) -> None:
        parts = m.parts
        pfd = self._parent(parts, m.label)
        # The real mode is applied after the contents, unless creation gives it and it lets us
        # (the owner) write and search the dir meanwhile.
        mode = self._creation_mode(m.mode, 0o700) if m.mode & 0o700 == 0o700 else 0o700
        try:  # most dirs are new: mkdir first, stat only when the name is taken
            os.mkdir(parts[-1], mode, dir_fd=pfd)
            self._made(rel, mode)
        except FileExistsError:
            st = self._clear(pfd, rel, parts[-1], fmt=stat.S_IFDIR)
            if st is None or not stat.S_ISDIR(st.st_mode):
                os.mkdir(parts[-1], mode, dir_fd=pfd)
                self._made(rel, mode)
                if self.overlay and st is not None and is_overlay_whiteout(st):
                    # A dir replacing a whiteout of this layer hides what lower layers had there.
                    dfd = os.open(parts[-1], _DIR_FLAGS, dir_fd=pfd)
                    try:
                        set_overlay_opaque(dfd)
                    finally:
                        os.close(dfd)
        self.dirs[rel] = (m.mode, m.uid, m.gid, m.mtime_ns)
        self.counts["dirs"] += 1

    def _symlink(self, m: Entry, rel: str) -> None:
        parts = m.parts
        pfd = self._parent(parts, m.label)
        self._clear(pfd, rel, parts[-1], fmt=stat.S_IFLNK)
        # The target may point anywhere: it is stored, never followed by this reader.
        os.symlink(m.linkname, parts[-1], dir_fd=pfd)
        self._owner(m, name=parts[-1], dir_fd=pfd)
        os.utime(parts[-1], ns=(m.mtime_ns, m.mtime_ns), dir_fd=pfd, follow_symlinks=False)
        self.counts["symlinks"] += 1

    def _hardlink(self, m: Entry, rel: str) -> None:
        label, parts, target = m.label, m.parts, m.link
        linked = "/".join(target)
        tfd = self._open_dir(target[:-1], create=False, label=f"{label}: hardlink target", error=UnsafePath)
        if tfd is None:
            raise bad_hardlink(label, linked)
        try:
            try:
                st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                raise bad_hardlink(label, linked) from None
            if not stat.S_ISREG(st.st_mode):
                raise bad_hardlink(label, linked)
            if linked not in self.written:
                self.lower_links[linked] = label  # this layer's whiteouts must leave it in place
            if target == parts:
                return  # a link to itself: nothing to do
            pfd = self._parent(parts, label)
            self._clear(pfd, rel, parts[-1], fmt=stat.S_IFREG)
            os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)
        self.counts["hardlinks"] += 1

    # --- whiteouts ----------------------------------------------------------------------------

    def _whiteout(self, e: Entry) -> None:
        dir_parts = e.parts if e.kind == "opaque" else e.parts[:-1]
        for i in range(1, len(dir_parts) + 1) if self.replaced else ():
            if "/".join(dir_parts[:i]) in self.replaced:
                raise through_symlink(e.label, "/".join(dir_parts[:i]), BadWhiteout)
        if e.kind == "opaque":
            self._opaque(dir_parts, e.label)
        else:
            self._delete(dir_parts, e.parts[-1], e.label)
        self.counts["whiteouts"] += 1

    def _opaque(self, dir_parts: tuple[str, ...], label: str) -> None:
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

    def _delete(self, dir_parts: tuple[str, ...], target: str, label: str) -> None:
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
            self._clear(fd, rel, target, fmt=0)
            make_overlay_whiteout(target, dir_fd=fd)
        finally:
            os.close(fd)

    def _remove_lower(self, pfd: int, name: str, rel: str) -> None:
        """Delete what lower layers put at `rel`, keeping what this layer wrote (OCI layer spec).

        Iterative, as `_remove_dir`: paths below `pfd` go through dirs just checked with lstat.
        """
        todo = [(name, rel)]
        while todo:
            path, rel = todo.pop()
            try:
                st = os.stat(path, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if rel not in self.written and rel not in self.ancestors:
                if self.lower_links:
                    self._check_links(rel)
                self._unlink(pfd, path, st)
            elif stat.S_ISDIR(st.st_mode):
                fd = os.open(path, _DIR_FLAGS, dir_fd=pfd)
                try:
                    todo += [(f"{path}/{child}", f"{rel}/{child}") for child in os.listdir(fd)]
                finally:
                    os.close(fd)

    def _apply_dirs(self) -> None:
        """Directory modes, owners and mtimes, deepest first, after all contents are in place.

        Deepest first so that a parent made read-only (or unsearchable) never blocks a child;
        siblings in path order so that the dir-fd cache serves their parent.
        """
        for rel in sorted(self.dirs, key=lambda r: (-r.count("/"), r)):
            mode, uid, gid, mtime_ns = self.dirs[rel]
            made = self.made.get(rel)  # None: its owner and mode are not known to be right
            if made == mode and (not self.is_root or (uid, gid) == self.ids):
                self._set_dir_mtime(rel, mtime_ns)
                continue
            try:
                fd = self._cached_dir(tuple(rel.split("/")), create=False, label=rel, error=UnsafePath)
            except UnsafePath:
                continue  # replaced by a symlink or file later in the layer: not ours to touch
            if fd is None:
                continue
            if self.is_root and not (made is not None and (uid, gid) == self.ids):
                os.fchown(fd, uid, gid)
            if made != mode:
                os.fchmod(fd, mode)
            os.utime(fd, ns=(mtime_ns, mtime_ns))

    def _set_dir_mtime(self, rel: str, mtime_ns: int) -> None:
        """The mtime of a dir whose owner and mode creation gave: one utimensat through its
        parent's cached fd (siblings share it), not an open of the dir itself. Never follows a
        symlink: the parents were walked with O_NOFOLLOW, the name is not followed either."""
        parts = tuple(rel.split("/"))
        try:
            pfd = self._cached_dir(parts[:-1], create=False, label=rel, error=UnsafePath)
        except UnsafePath:
            return  # replaced by a symlink or file later in the layer: not ours to touch
        if pfd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.utime(parts[-1], ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)


def _umask() -> int | None:
    """The process's umask, read without setting it (`os.umask` sets it, for every thread)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _remove_dir(pfd: int, name: str) -> None:
    """shutil.rmtree's work without its recursion: a layer's tree may be 2000 levels deep (a
    path of PATH_MAX bytes), past Python's recursion limit. Never follows a symlink."""
    stack = [name]
    while stack:
        path = stack[-1]
        fd = os.open(path, _DIR_FLAGS, dir_fd=pfd)
        try:
            with os.scandir(fd) as it:
                subdirs = []
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        subdirs.append(f"{path}/{entry.name}")
                    else:
                        os.unlink(entry.name, dir_fd=fd)
        finally:
            os.close(fd)
        if subdirs:
            stack += subdirs
        else:
            stack.pop()
            os.rmdir(path, dir_fd=pfd)


def extract_layer(
    stream: BinaryIO, dest: str | Path, *, whiteouts: WhiteoutMode, chunk: int = CHUNK
) -> ExtractStats:
    """Extract the uncompressed tar `stream` into the existing directory `dest`, safely.

    `whiteouts="overlay"`: `dest` is a fresh overlay diff dir; OCI whiteouts become overlay
    whiteouts (char device 0/0, `trusted.overlay.opaque=y`). `whiteouts="apply"`: `dest` is a
    flat rootfs built layer by layer; a whiteout deletes its target and an opaque marker empties
    its directory of what lower layers put there (this layer's entries survive, wherever the
    marker sorts). Duplicate entries: the later wins. uid/gid are kept when running as root.
    Raises LayerError (UnsafePath, BadWhiteout) and leaves `dest` partly written: extract into
    a staging dir and drop it on failure (see the module docstring). `chunk`: the size of the
    read-ahead's buffers (4 of them), smaller for small layers when several unpack at once.
    """
    ex = _Extractor(stream, dest, whiteouts, chunk)
    try:
        return ex.run()
    except OSError as err:
        raise LayerError(f"extracting layer into {dest}: {err}") from err
    finally:
        ex.close()
