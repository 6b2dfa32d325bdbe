"""Whiteouts in their two forms, and the conversions between them.

OCI form (image-spec layer.md): a file `.wh.<name>` deletes `<name>` of lower layers; a file
`.wh..wh..opq` makes its directory opaque (lower layers' contents hidden).
Overlay form (kernel overlayfs.rst): a character device 0/0 is a whiteout; the xattr
`trusted.overlay.opaque=y` marks an opaque directory (`user.overlay.opaque` on userxattr
mounts; both are read).
Names and the overlay primitives only: walking an upperdir into entries is
`tarwriter.walk_upperdir`, which uses these helpers.
"""

from __future__ import annotations

import errno
import os
import stat

from builder.errors import BadWhiteout

WHITEOUT_PREFIX = ".wh."
OPAQUE_NAME = ".wh..wh..opq"
# AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`): docker skips these, and so do we.
AUFS_META_PREFIX = ".wh..wh."
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_OPAQUE_XATTRS = (OVERLAY_OPAQUE_XATTR, "user.overlay.opaque")


def is_whiteout_name(name: str) -> bool:
    """True when the last component of archive path `name` starts with `.wh.` (any kind)."""
    return name.rpartition("/")[2].startswith(WHITEOUT_PREFIX)


def is_opaque_name(name: str) -> bool:
    return name.rpartition("/")[2] == OPAQUE_NAME


def whiteout_target(name: str) -> str:
    """The archive path a `.wh.` entry deletes (`a/.wh.b` -> `a/b`), or its dir if opaque."""
    parent, _, base = name.rpartition("/")
    if base == OPAQUE_NAME:
        return parent
    if not base.startswith(WHITEOUT_PREFIX):
        raise BadWhiteout(f"{name!r} is not a whiteout name")
    target = base[len(WHITEOUT_PREFIX) :]
    return f"{parent}/{target}" if parent else target


def oci_whiteout_name(target: str) -> str:
    """The `.wh.` entry name that deletes archive path `target` (`a/b` -> `a/.wh.b`)."""
    parent, _, base = target.rpartition("/")
    return f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else WHITEOUT_PREFIX + base


def oci_opaque_name(directory: str) -> str:
    """The opaque marker entry name of archive dir `directory` ("" is the root)."""
    return f"{directory}/{OPAQUE_NAME}" if directory else OPAQUE_NAME


def is_overlay_whiteout(st: os.stat_result) -> bool:
    """True for overlayfs's whiteout: a character device with device number 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_overlay_opaque(path: str | os.PathLike[str] | int) -> bool:
    """True when directory `path` (or an fd on it) carries overlayfs's opaque xattr."""
    for key in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, key, follow_symlinks=False) == b"y":
                return True
        except OSError as err:
            if err.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                raise
    return False


def make_overlay_whiteout(name: str, *, dir_fd: int) -> None:
    """Create overlayfs's whiteout `name` (char device 0/0) in the directory `dir_fd`."""
    os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dir_fd)


def set_overlay_opaque(dir_fd: int) -> None:
    """Mark the directory open as `dir_fd` opaque for overlayfs."""
    os.setxattr(dir_fd, OVERLAY_OPAQUE_XATTR, b"y")
