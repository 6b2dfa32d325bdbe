"""Small filesystem primitives every writer in `builder` shares.

`atomic_write`, `atomic_file` and `atomic_dir` are the one way a final path is produced: data
goes to a temp name in the same directory (same filesystem, so rename is atomic), is fsynced,
then renamed into place and the directory fsynced. Each temp entry (`.NAME.RAND.tmp`) is held
with an exclusive flock by its writer until the rename, so `sweep_temps` can tell an abandoned
one (its writer was killed) from one in use and remove only the former. `safe_join` keeps a
relative path inside a root.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from builder.errors import PathBusy, UnsafePath

TEMP_SUFFIX = ".tmp"
_CLAIM_TRIES = 100


def try_lock(fd: int, *, exclusive: bool) -> bool:
    """Take a flock on `fd` without waiting; False when someone else holds a conflicting one."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _claimed(path: str, fd: int) -> bool:
    """Lock `fd`, just created at `path`, and check that a sweeper did not take `path` first.

    A sweeper may open and lock a fresh temp entry in the instant before its creator does, and
    remove it: the creator then holds a lock on a removed inode, which the identity check sees.
    """
    if not try_lock(fd, exclusive=True):
        return False
    try:
        on_disk = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _locked_temp(make: Callable[[], str], opener: Callable[[str], int]) -> tuple[str, int]:
    """A new temp entry from `make()` and an fd holding its flock (see `sweep_temps`)."""
    for _ in range(_CLAIM_TRIES):
        path = make()
        try:
            fd = opener(path)
        except FileNotFoundError:
            continue  # swept before we could lock it
        if _claimed(path, fd):
            return path, fd
        os.close(fd)
    raise OSError(errno.EAGAIN, "could not claim a temp entry", make.__name__)


def make_locked_dir(parent: str | os.PathLike[str], *, prefix: str, suffix: str = "") -> tuple[Path, int]:
    """A fresh directory under `parent` and an fd holding its exclusive flock.

    The directory is this process's until the fd is closed; `sweep_temps` (matching `prefix`
    and `suffix`) removes it only once the lock is free, i.e. its owner is gone.
    """
    path, fd = _locked_temp(
        lambda: tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent),
        lambda p: os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW),
    )
    return Path(path), fd


def sweep_temps(
    directory: str | os.PathLike[str],
    *,
    is_temp: Callable[[str], bool] = lambda name: name.startswith(".") and name.endswith(TEMP_SUFFIX),
    before_remove: Callable[[str], None] | None = None,
    dry_run: bool = False,
) -> int:
    """Remove the temp entries of `directory` whose owner is gone (their flock is free).

    `is_temp` selects names (default: `atomic_*`'s `.NAME.RAND.tmp`); `before_remove(path)` runs
    on a claimed dir first (to undo mounts or stop processes a dead owner left in it). Returns
    how many entries were removed (with `dry_run`: would be). Safe against live owners and
    against other sweepers.
    """
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not is_temp(entry.name):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # gone already, or a symlink: not ours
        try:
            if not try_lock(fd, exclusive=True):
                continue  # in use: its owner holds the lock
            if dry_run:
                removed += 1
                continue
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                if before_remove is not None:
                    before_remove(entry.path)
                remove_tree(entry.path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
            removed += 1
        finally:
            os.close(fd)
    return removed


_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h


@functools.cache
def _sync_file_range() -> Any:
    import ctypes  # here: loading it was ~1 ms of every command's start-up (issue 16)

    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # not Linux
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return func


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing the dirty pages of `fd` in [offset, offset + length) to disk, without waiting
    (Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`); a no-op where that is unavailable.

    Not a durability guarantee (fsync still is): a later fsync only waits for what is still in
    flight. A writer that starts writeback as it goes makes its final fsync short: 0.15 s ->
    0.02 s for a 313 MB blob here (issue 16), while the disk was otherwise idle.
    """
    func = _sync_file_range()
    if func is not None:
        func(fd, offset, length, _SYNC_FILE_RANGE_WRITE)  # errors (a pipe: ESPIPE) are ignored


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so that a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike[str], *, mode: int = 0o644, durable: bool = True
) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes `path` (fsynced, renamed) when the block ends cleanly.

    On an error the temp file is removed and `path` is left as it was. `durable=False` skips
    the fsyncs: the rename is still atomic, but after a power loss the file may be empty or
    missing; only for data that is rebuilt when unreadable (caches).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _locked_temp(
        lambda: _mkstemp_closed(target),
        lambda p: os.open(p, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW),
    )
    # The lock lives on the open file description; a dup keeps it after `f` closes, until the
    # rename is done, so a sweeper never takes the finished file for an abandoned one.
    lock_fd = os.dup(fd)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(lock_fd)
    if durable:
        fsync_dir(target.parent)


def _mkstemp_closed(target: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    os.close(fd)
    return tmp


def atomic_write(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, durable: bool = True
) -> None:
    """Write `data` to `path` through a temp file in the same directory, then rename."""
    with atomic_file(path, mode=mode, durable=durable) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh staging directory that becomes `path` when the block ends without error.

    If `path` already exists when the block ends (another writer won the race) the staging
    directory is discarded and the existing one kept: the content is addressed by its name.
    The staging dir is flock'ed while in use, so `sweep_temps` reclaims it if we are killed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging, fd = make_locked_dir(target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)
    try:
        yield staging
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
            remove_tree(staging)
        fsync_dir(target.parent)
    except BaseException:
        remove_tree(staging)
        raise
    finally:
        os.close(fd)


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a directory tree, also when it holds read-only directories; missing is fine.

    A tree that cannot go (a mount point still in it, EBUSY) is a one-line PathBusy naming the
    path, never a retry loop.
    """

    retried: set[str] = set()

    def _onerror(func: Any, p: str, exc_info: Any) -> None:
        err = exc_info[1]
        if isinstance(err, FileNotFoundError):
            return
        if not isinstance(err, PermissionError) or p in retried:
            _raise_busy(p, err)
        # A read-only directory (a 0555 dir from a layer) refuses unlinks of its entries:
        # make the parent (and a dir itself) writable and try once more; once per path, so a
        # failure chmod cannot cure ends here instead of recursing.
        retried.add(p)
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
                shutil.rmtree(p, onerror=_onerror)
            else:
                os.unlink(p)
        except FileNotFoundError:
            pass
        except OSError as again:
            _raise_busy(p, again)

    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    shutil.rmtree(path, onerror=_onerror)


def _raise_busy(path: str, err: BaseException) -> None:
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    raise PathBusy(
        f"cannot remove {path}: {reason}",
        hint="something still uses it (a mount or a running process); `sealer fsck --repair` "
        "undoes what dead sealer processes left",
    ) from None


def safe_join(root: str | os.PathLike[str], relpath: str) -> Path:
    """Join `relpath` under `root` lexically, refusing absolute paths and `..` that climb out.

    Only the lexical form is checked; callers that follow symlinks must also check the
    resolved path (as `build.context.BuildContext` does).
    """
    if "\x00" in relpath:
        raise UnsafePath(f"path {relpath!r} contains a NUL byte")
    parts: list[str] = []
    for part in relpath.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafePath(f"path {relpath!r} climbs out of its root")
            parts.pop()
            continue
        parts.append(part)
    return Path(root, *parts)
