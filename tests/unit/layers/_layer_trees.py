"""Small trees and tar helpers shared by the layer tests."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from builder.layers.tarwriter import TarEntry, TarWriter, walk_tree


def make_tree(root: Path, *, mtime: int = 1_700_000_000) -> Path:
    """A tree with files, an empty dir, a 0555 dir with content, symlinks, a hardlink, setuid."""
    (root / "bin").mkdir(parents=True)
    (root / "etc" / "empty").mkdir(parents=True)
    (root / "ro" / "inner").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(b"\x7fELF" + bytes(range(256)) * 40)
    os.chmod(root / "bin" / "tool", 0o4755)
    (root / "etc" / "config").write_text("key: value\n")
    (root / "ro" / "inner" / "data").write_text("read-only parent\n")
    (root / "ro" / "file").write_text("x" * 513)
    os.link(root / "bin" / "tool", root / "bin" / "tool-link")
    os.symlink("../etc/config", root / "bin" / "cfg")
    os.symlink("/nonexistent/abs", root / "dangling")
    (root / "a-b").write_text("sorts between a and a/")
    os.chmod(root / "ro", 0o555)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (mtime, mtime), follow_symlinks=False)
    return root


def tar_bytes(entries: list[TarEntry] | None = None, *, root: Path | None = None, **walk: object) -> bytes:
    out = io.BytesIO()
    writer = TarWriter(out)
    writer.add_all(entries if entries is not None else walk_tree(root, **walk))  # type: ignore[arg-type]
    writer.close()
    return out.getvalue()


def describe(root: Path) -> dict[str, tuple[str, int, str]]:
    """Path -> (kind, mode, content or link target) for comparing trees."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", 0, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode, "")
            elif stat.S_ISCHR(st.st_mode):
                out[rel] = ("chr", mode, str(st.st_rdev))
            else:
                out[rel] = ("file", mode, Path(full).read_bytes().hex()[:64] + str(st.st_size))
    return out
