"""flock(2) on a directory, with a timeout: the store's only locking primitive.

Directories are locked rather than lock files because their inode never changes (index.json
is replaced by rename, so locking it would lock a file nobody else opens) and nothing extra
appears in the OCI layout. flock locks belong to the open file description, so a second open
in the same process does not inherit a lock: GC can tell its own in-flight dir from others'.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from builder._fs import try_lock
from builder.errors import StoreLocked


@contextlib.contextmanager
def locked_dir(path: Path, *, exclusive: bool, timeout_s: float, what: str) -> Iterator[int]:
    """Hold a flock on directory `path` for the block; StoreLocked after `timeout_s`."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while not try_lock(fd, exclusive=exclusive):
            if time.monotonic() >= deadline:
                raise StoreLocked(
                    f"{what} is locked by another sealer process ({path}); gave up after {timeout_s:g} s",
                    hint="wait for the other sealer command (build, pull, load, push, run, prune) to finish, then retry",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        yield fd
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
