"""Small filesystem primitives every writer in `builder` shares.

`atomic_write` and `atomic_dir` are the one way a final path is produced: data goes to a temp
name in the same directory (same filesystem, so rename is atomic), is fsynced, then renamed into
place and the directory fsynced. `safe_join` keeps a relative path inside a root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from builder.errors import UnsafePath


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
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
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
    if durable:
        fsync_dir(target.parent)


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
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
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


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a directory tree, also when it holds read-only directories; missing is fine."""

    def _retry(func: Any, p: str, exc_info: Any) -> None:
        # A read-only directory (a 0555 dir from a layer) refuses unlinks of its entries:
        # make the parent writable and try once more.
        if isinstance(exc_info[1], FileNotFoundError):
            return
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, 0o700)
            shutil.rmtree(p, onerror=_retry)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)

    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    shutil.rmtree(path, onerror=_retry)


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
