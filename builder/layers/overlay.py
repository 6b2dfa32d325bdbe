"""Overlay diff dirs (`$SEALER_ROOT/overlay2/<id>/diff`) and the merged rootfs a RUN step sees.

`DiffDirs` keeps unpacked layers for use as overlay lowerdirs; `materialize` is idempotent and
atomic (unpack into a staging dir, rename into place). `mounted_rootfs` mounts lowers + a fresh
upperdir and turns the upperdir into OCI entries afterwards. Where overlay mounts are refused
(not root, EPERM, no overlay, an upperdir on overlay), it falls back to a snapshot: the lowers
are flattened into a plain dir, every path's state recorded, and `changes()` diffs against it,
emitting what the overlay upperdir would have held for the same commands.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import logging
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, Literal

from builder._fs import TEMP_SUFFIX, atomic_dir, fsync_dir, remove_tree, try_lock
from builder.errors import LayerError
from builder.image.digest import Digest
from builder.layers.compression import open_decompressed
from builder.layers.tarwriter import TarEntry, _Walker, walk_upperdir
from builder.layers.unpack import UnpackOptions, unpack_layer
from builder.layers.whiteout import WHITEOUT_PREFIX

log = logging.getLogger(__name__)

MountMode = Literal["auto", "overlay", "snapshot"]
_LAYER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# mount(2) copies its data argument as one page (fs/namespace.c copy_mount_options).
_MOUNT_DATA_MAX = 4095
_MNT_DETACH = 2
_UNMOUNT_TRIES = 20
_UNMOUNT_WAIT_S = 0.025
# Marks snapshot dirs: a dir without it was created by the step (rm -rf d; mkdir d), which
# overlay would have made opaque, even if the filesystem reused the inode number.
_SNAP_XATTR = "user.sealer.snapshot"


class DiffDirs:
    """The overlay2 directory of unpacked layers: `<root>/<layer_id>/diff`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _dir(self, layer_id: str) -> Path:
        if not _LAYER_ID.match(layer_id):
            raise LayerError(f"invalid layer id {layer_id!r}", hint="expected [A-Za-z0-9][A-Za-z0-9_.-]*")
        return self.root / layer_id

    def path(self, layer_id: str) -> Path:
        return self._dir(layer_id) / "diff"

    def has(self, layer_id: str) -> bool:
        return self.path(layer_id).is_dir()

    def materialize(
        self,
        layer_id: str,
        open_tar: Callable[[], BinaryIO],
        *,
        compressed_size: int | None = None,
        diff_id: Digest | None = None,
        what: str | None = None,
        options: UnpackOptions | None = None,
    ) -> Path:
        """The diff dir of `layer_id`, unpacked from `open_tar()` (tar, tar+gzip or tar+zstd) if absent.

        Idempotent; atomic: a failed or concurrent unpack never leaves a partial `<id>` visible.
        The unpack is bounded (`builder.layers.unpack`): expansion past the cap over
        `compressed_size`, a full disk or a tar whose sha256 is not `diff_id` raise LayerError
        naming `what` (default "layer <id>") and leave nothing behind.
        """
        diff = self.path(layer_id)
        if diff.is_dir():
            return diff
        with self.stage(layer_id) as staging:
            (staging / "diff").mkdir()
            with open_tar() as raw, open_decompressed(raw) as tar:
                unpack_layer(
                    tar,
                    staging / "diff",
                    whiteouts="overlay",
                    what=what or f"layer {layer_id}",
                    compressed_size=compressed_size,
                    diff_id=diff_id,
                    options=options,
                )
        return diff

    def stage(self, layer_id: str) -> AbstractContextManager[Path]:
        """A fresh staging dir that becomes `<layer_id>` (holding `diff/`) when the block ends
        without error, and is dropped otherwise (`builder._fs.atomic_dir`)."""
        return atomic_dir(self._dir(layer_id))

    def remove(self, layer_id: str) -> None:
        """Delete a diff dir: renamed aside first, so a half-deleted dir is never seen as present."""
        target = self._dir(layer_id)
        try:
            fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return
        try:
            # Locked and named as a temp entry, so a remover killed half-way leaves something
            # `builder._fs.sweep_temps` reclaims, and a live one is left to finish.
            if not try_lock(fd, exclusive=True):
                return  # another process is removing it
            aside = self.root / f".{layer_id}.removing.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"
            try:
                os.rename(target, aside)
            except FileNotFoundError:
                return
            # The rename on disk before any unlink below it, on every file system: a power loss
            # then leaves a temp entry to sweep, never the layer's name over a half-deleted tree.
            fsync_dir(self.root)
            remove_tree(aside)
        finally:
            os.close(fd)

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if _LAYER_ID.match(p.name) and (p / "diff").is_dir()
        )


# --- the merged rootfs of a RUN step ------------------------------------------------------------


class MountedRootfs:
    """The rootfs a RUN step works in (`merged`), and what the step changed (`changes()`)."""

    def __init__(self, merged: Path, mode: Literal["overlay", "snapshot"], upper: Path | None = None) -> None:
        self.merged = merged
        self.mode = mode
        self._upper = upper
        self._before: dict[str, _State] = {}

    def changes(self) -> Iterator[TarEntry]:
        """The step's changes in OCI form (whiteouts, opaque markers), in walk order."""
        if self._upper is not None:
            return walk_upperdir(self._upper)
        return _snapshot_changes(self.merged, self._before)


@contextmanager
def mounted_rootfs(
    lowerdirs: Sequence[Path], scratch: Path, *, mode: MountMode = "auto"
) -> Iterator[MountedRootfs]:
    """Mount `lowerdirs` (top-most first, overlay's order) + a fresh upperdir under `scratch`.

    Unmounts on exit, on error too (lazily if busy). `mode="auto"` falls back to a snapshot of
    the flattened lowers where mounting is refused; "overlay" raises LayerError instead;
    "snapshot" never mounts. `scratch` is the caller's to create and remove.
    """
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    if mode != "snapshot":
        try:
            rootfs = _mount_overlay([Path(p) for p in lowerdirs], scratch)
        except _MountRefused as err:
            if mode == "overlay":
                raise LayerError(
                    f"overlay mount refused: {err}", hint="run as root on a kernel with overlayfs"
                ) from None
            log.info("overlay mount refused (%s); using a snapshot of the lower layers", err)
        else:
            try:
                yield rootfs
            finally:
                _unmount(rootfs.merged)
            return
    yield _snapshot(list(lowerdirs), scratch)


class _MountRefused(Exception):
    pass


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _overlay_data(lowers: list[str], upper: Path, work: Path) -> str:
    return (
        f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off,index=off"
    )


def _mount_overlay(lowerdirs: list[Path], scratch: Path) -> MountedRootfs:
    upper, work, merged = scratch / "upper", scratch / "work", scratch / "merged"
    for d in (upper, work, merged):
        d.mkdir(exist_ok=True)
    if not lowerdirs:
        (scratch / "empty").mkdir(exist_ok=True)
        lowerdirs = [scratch / "empty"]
    fds: list[int] = []
    try:
        lowers = [str(p.resolve()) for p in lowerdirs]
        data = _overlay_data(lowers, upper.resolve(), work.resolve())
        if len(data) > _MOUNT_DATA_MAX or any(c in s for s in lowers for c in ":,\\"):
            # Long lists overflow mount's one-page option limit: name the lowers by short
            # /proc/self/fd paths instead (overlayfs resolves them when mounting).
            fds = [os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for p in lowers]
            data = _overlay_data([f"/proc/self/fd/{fd}" for fd in fds], upper.resolve(), work.resolve())
            if len(data) > _MOUNT_DATA_MAX:
                raise LayerError(
                    f"{len(lowerdirs)} lower layers do not fit in one overlay mount's options "
                    f"({len(data)} > {_MOUNT_DATA_MAX} bytes)",
                    hint="squash some layers of the base image",
                )
        libc = _libc()
        rc = libc.mount(b"overlay", os.fsencode(merged), b"overlay", ctypes.c_ulong(0), data.encode())
        if rc != 0:
            e = ctypes.get_errno()
            raise _MountRefused(f"mount -t overlay on {merged}: {os.strerror(e)} (errno {e})")
    finally:
        for fd in fds:
            os.close(fd)
    return MountedRootfs(merged, "overlay", upper)


def _unmount(target: Path) -> None:
    """Unmount `target`; EBUSY is retried briefly, then the mount is detached lazily.

    A RUN's processes are dead by now (steps/run.py), but the kernel may drop their last
    references to the mount a moment after they show as exited (seen under load); a lazy
    detach is then as good as an unmount: nothing can reach the tree any more.
    """
    libc = _libc()
    path = os.fsencode(target)
    for _ in range(_UNMOUNT_TRIES):
        if libc.umount2(path, 0) == 0:
            return
        e = ctypes.get_errno()
        if e != errno.EBUSY:
            raise LayerError(f"cannot unmount {target}: {os.strerror(e)}")
        time.sleep(_UNMOUNT_WAIT_S)
    if libc.umount2(path, _MNT_DETACH) != 0:
        e = ctypes.get_errno()
        raise LayerError(f"cannot unmount {target}: {os.strerror(e)}")
    log.info("%s stayed busy; detached lazily", target)


# --- snapshot fallback --------------------------------------------------------------------------

# type, mode, uid, gid, size, mtime_ns, ctime_ns, ino, link target, marked (snapshot dir xattr)
_State = tuple[int, int, int, int, int, int, int, int, str, bool]


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        remove_tree(path)
    else:
        os.unlink(path)


def _copy_lower(lower: Path, merged: Path) -> None:
    """Apply one diff dir (overlay form) onto the flat dir `merged`."""
    dirs: list[TarEntry] = []
    as_root = os.geteuid() == 0
    for e in walk_upperdir(lower):
        dst = os.path.join(merged, e.name)
        if e.kind == "whiteout":
            _remove(dst)
        elif e.kind == "opaque":
            for child in os.listdir(dst):
                _remove(os.path.join(dst, child))
        elif e.kind == "dir":
            if not os.path.isdir(dst) or os.path.islink(dst):
                _remove(dst)
                os.mkdir(dst, 0o700)
            dirs.append(e)
        else:
            _remove(dst)
            if e.kind == "file":
                assert e.source is not None
                shutil.copyfile(e.source, dst, follow_symlinks=False)
            elif e.kind == "symlink":
                os.symlink(e.linkname, dst)
            else:  # hardlink within this lower
                os.link(os.path.join(merged, e.linkname), dst, follow_symlinks=False)
                continue
            src_st = os.lstat(os.path.join(lower, e.name))
            if as_root:
                os.chown(dst, e.uid, e.gid, follow_symlinks=False)
            if e.kind == "file":
                os.chmod(dst, e.mode)
            os.utime(dst, ns=(src_st.st_mtime_ns, src_st.st_mtime_ns), follow_symlinks=False)
    for e in reversed(dirs):
        dst = os.path.join(merged, e.name)
        src_st = os.lstat(os.path.join(lower, e.name))
        if as_root:
            os.chown(dst, e.uid, e.gid)
        os.chmod(dst, e.mode)
        os.utime(dst, ns=(src_st.st_mtime_ns, src_st.st_mtime_ns))


def _scan(root: Path, *, mark: bool) -> dict[str, _State]:
    """State of every path below `root`; with `mark`, tag each dir with the snapshot xattr first."""
    states: dict[str, _State] = {}
    marking = mark
    stack = [""]
    while stack:
        rel = stack.pop()
        full = os.path.join(root, rel) if rel else str(root)
        with os.scandir(full) as it:
            names = [entry.name for entry in it]
        for name in names:
            crel = f"{rel}/{name}" if rel else name
            cfull = os.path.join(full, name)
            st = os.lstat(cfull)
            is_dir = stat.S_ISDIR(st.st_mode)
            marked = False
            if is_dir:
                if marking:
                    try:
                        os.setxattr(cfull, _SNAP_XATTR, b"1", follow_symlinks=False)
                        st = os.lstat(cfull)  # setxattr moved ctime
                    except OSError:
                        marking = False  # no user xattrs here: inode numbers alone
                with contextlib.suppress(OSError):
                    marked = os.getxattr(cfull, _SNAP_XATTR, follow_symlinks=False) == b"1"
                stack.append(crel)
            link = os.readlink(cfull) if stat.S_ISLNK(st.st_mode) else ""
            states[crel] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                0 if is_dir else st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_ino,
                link,
                marked,
            )
    return states


def _snapshot(lowerdirs: list[Path], scratch: Path) -> MountedRootfs:
    merged = scratch / "merged"
    if merged.exists():
        remove_tree(merged)
    merged.mkdir()
    for lower in reversed(lowerdirs):  # bottom-most first
        _copy_lower(Path(lower), merged)
    rootfs = MountedRootfs(merged, "snapshot")
    rootfs._before = _scan(merged, mark=True)
    return rootfs


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0]


def _snapshot_changes(merged: Path, before: dict[str, _State]) -> Iterator[TarEntry]:
    after = _scan(merged, mark=False)
    emit: set[str] = set()
    opaque: set[str] = set()
    for rel, now in after.items():
        old = before.get(rel)
        if old is None:
            emit.add(rel)
        elif old[0] != now[0] or (stat.S_ISDIR(now[0]) and (old[7] != now[7] or old[9] != now[9])):
            # Replaced: overlay marks a dir created over a whiteout opaque.
            emit.add(rel)
            if stat.S_ISDIR(now[0]):
                opaque.add(rel)
        elif old != now:
            emit.add(rel)
    whiteouts: set[str] = set()
    for rel in before:
        if rel in after:
            continue
        parent = _parent(rel)
        if parent and (parent not in after or parent in opaque or not stat.S_ISDIR(after[parent][0])):
            continue  # covered by the parent's whiteout, replacement or opaque marker
        whiteouts.add(rel)
    # Overlay copies up the parents of whatever changed below them.
    for rel in list(emit) + list(whiteouts):
        parent = _parent(rel)
        while parent and parent not in emit:
            emit.add(parent)
            parent = _parent(parent)

    def key(item: tuple[str, str]) -> tuple[bytes, ...]:
        rel, kind = item
        parts = rel.split("/")
        if kind == "whiteout":
            parts[-1] = WHITEOUT_PREFIX + parts[-1]
        elif kind == "opaque":
            parts.append("")
        return tuple(os.fsencode(p) for p in parts)

    items = (
        [(r, "entry") for r in emit] + [(r, "whiteout") for r in whiteouts] + [(r, "opaque") for r in opaque]
    )
    walker = _Walker(chmod=None, include=None, overlay=True)
    as_root = os.geteuid() == 0
    for rel, kind in sorted(items, key=key):
        if kind == "entry":
            full = os.path.join(merged, rel)
            entry = walker.entry(full, rel, os.lstat(full))
            # Without root the copies belong to the user; they are root's in the image, as a
            # rootless build's user namespace would map them.
            yield entry if as_root else dataclasses.replace(entry, uid=0, gid=0)
        else:
            yield TarEntry(rel, "whiteout" if kind == "whiteout" else "opaque")
