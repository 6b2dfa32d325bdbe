"""Read access to an untrusted OCI image layout, in a directory or a tar archive (for `load`).

Only `oci-layout`, `index.json` and `blobs/<alg>/<hex>` are ever read. In a directory every
component below the input root is opened relative to its parent's fd with O_NOFOLLOW: a
symlink anywhere (`blobs`, `blobs/sha256`, a blob, `index.json`) is refused, not followed, so
a layout cannot make `load` read a file outside it. The input root itself may be a symlink: the
user named it. In an archive the tar is never extracted; links and duplicates are refused.

A docker archive (`docker save`, skopeo's `docker-archive:`) is read through the same
`TarSource` by entry name (`read_member`, `open_member`): those writers put symlinks in it
(skopeo's `ID/layer.tar -> ../DIFFID.tar`, docker's shared layers), so a link is followed one
hop, by name inside the archive only (never to the file system), to a regular entry; a link
to a link, a link out of the archive and a duplicated name are refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
import stat
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from builder.errors import LayoutInvalid
from builder.image.digest import Digest
from builder.store.layout import LAYOUT_FILE
from builder.store.refs import INDEX_FILE

_BLOB_NAME = re.compile(r"^blobs/([a-z0-9]+)/([a-f0-9]+)$")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_LOAD_HINT = (
    "sealer load reads an OCI archive (sealer save, skopeo copy ... oci-archive:FILE), a docker "
    "archive (docker save, skopeo copy ... docker-archive:FILE) or an OCI layout directory"
)
DOCKER_MANIFEST_FILE = "manifest.json"
# tarfile's modes by the compression the first bytes show: one mode, so one error to report.
_TAR_MODES = ((b"\x1f\x8b", "r:gz", "gzip"), (b"BZh", "r:bz2", "bzip2"), (b"\xfd7zXZ\x00", "r:xz", "xz"))


def _blob_name(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


class LayoutSource:
    """Read access to an OCI layout, wherever it lives."""

    stem: str

    def read_small(self, name: str, limit: int) -> bytes | None:
        raise NotImplementedError

    def has_blob(self, digest: Digest) -> bool:
        raise NotImplementedError

    @contextlib.contextmanager
    def open_blob(self, digest: Digest) -> Iterator[tuple[IO[bytes], int]]:
        raise NotImplementedError
        yield  # pragma: no cover

    def close(self) -> None:
        pass


class DirSource(LayoutSource):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.stem = root.resolve().name
        self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self._root_fd)

    def _refused(self, rel: str, err: OSError, parent: int) -> LayoutInvalid:
        # O_NOFOLLOW gives ELOOP on a symlink, or ENOTDIR with O_DIRECTORY: ask lstat.
        try:
            is_link = stat.S_ISLNK(
                os.stat(rel.rpartition("/")[2], dir_fd=parent, follow_symlinks=False).st_mode
            )
        except OSError:
            is_link = err.errno == errno.ELOOP
        if is_link:
            why = "is a symlink (symlinks are refused)"
        elif err.errno == errno.ENOTDIR:
            why = "is not a directory"
        else:
            why = f"cannot be opened ({err.strerror})"
        return LayoutInvalid(f"{self.root / rel} {why}", hint="copy the layout without links")

    def _open_parent(self, parts: list[str]) -> int | None:
        """A new fd on the dir holding `parts[-1]`, walked without following symlinks."""
        fd = os.dup(self._root_fd)
        for i, part in enumerate(parts[:-1]):
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                os.close(fd)
                return None
            except OSError as err:
                refused = self._refused("/".join(parts[: i + 1]), err, fd)
                os.close(fd)
                raise refused from None
            os.close(fd)
            fd = child
        return fd

    def _open(self, rel: str) -> IO[bytes] | None:
        parts = rel.split("/")
        parent = self._open_parent(parts)
        if parent is None:
            return None
        try:
            # O_NONBLOCK: a planted fifo must not hang the open; the type check refuses it.
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise self._refused(rel, err, parent) from None
        finally:
            os.close(parent)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise LayoutInvalid(f"{self.root / rel} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def has_blob(self, digest: Digest) -> bool:
        parts = _blob_name(digest).split("/")
        parent = self._open_parent(parts)
        if parent is None:
            return False
        try:
            os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        finally:
            os.close(parent)
        return True  # a symlink counts as present; opening it is refused

    def read_small(self, name: str, limit: int) -> bytes | None:
        f = self._open(name)
        if f is None:
            return None
        with f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise LayoutInvalid(f"{self.root / name} is larger than {limit} bytes")
        return data

    @contextlib.contextmanager
    def open_blob(self, digest: Digest) -> Iterator[tuple[IO[bytes], int]]:
        f = self._open(_blob_name(digest))
        if f is None:
            raise LayoutInvalid(f"{self.root} lacks blob {digest}", hint="the layout is incomplete")
        with f:
            yield f, os.fstat(f.fileno()).st_size


class TarSource(LayoutSource):
    """An OCI layout or a docker archive in a tar file (`file`; `path` is what messages show)."""

    def __init__(self, path: Path, *, file: Path | None = None) -> None:
        self.path = path
        name = path.name
        for ext in (".tar.gz", ".tgz", ".tar", ".oci"):
            if name.endswith(ext):
                name = name[: -len(ext)]
                break
        self.stem = name if file is None else ""  # `path` only labels a spooled stream
        self.tar = self._open_tar(file or path, path)
        self.members: dict[str, tarfile.TarInfo] = {}  # the OCI layout's entries, all regular
        self.entries: dict[str, tarfile.TarInfo] = {}  # every entry by name (docker archives)
        self.duplicates: set[str] = set()
        try:
            for member in self.tar:
                name = member.name.removeprefix("./")
                key = posixpath.normpath(name)
                if key in self.entries:
                    self.duplicates.add(key)
                self.entries[key] = member
                if name not in (LAYOUT_FILE, INDEX_FILE) and not _BLOB_NAME.match(name):
                    continue  # anything else in the archive is ignored, never extracted
                if name in self.members:
                    raise LayoutInvalid(f"{path}: entry {name!r} appears twice")
                if not member.isreg():
                    raise LayoutInvalid(f"{path}: entry {name!r} is not a regular file (links are refused)")
                self.members[name] = member
        except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
            self.tar.close()
            raise LayoutInvalid(f"{path} is a corrupt tar archive ({err})", hint=_LOAD_HINT) from None
        except BaseException:
            self.tar.close()
            raise

    @property
    def is_docker_archive(self) -> bool:
        """A docker archive has a manifest.json (docker 25+ writes an OCI layout next to it,
        whose ref names are bare tags: the manifest.json's RepoTags name images better)."""
        return DOCKER_MANIFEST_FILE in self.entries

    def _member(self, name: str) -> tarfile.TarInfo | None:
        """The regular entry `name` names, following one link by name inside the archive."""
        wanted = posixpath.normpath(name)
        member = self.entries.get(wanted)
        if member is None:
            return None
        if wanted in self.duplicates:
            raise LayoutInvalid(f"{self.path}: entry {wanted!r} appears twice")
        if member.issym() or member.islnk():
            base = posixpath.dirname(wanted) if member.issym() else ""
            target = posixpath.normpath(posixpath.join(base, member.linkname))
            if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
                raise LayoutInvalid(f"{self.path}: entry {wanted!r} links outside the archive")
            linked = self.entries.get(target)
            if linked is None or target in self.duplicates or not linked.isreg():
                raise LayoutInvalid(
                    f"{self.path}: entry {wanted!r} links to {target!r}, which is not a regular file in the archive"
                )
            return linked
        if not member.isreg():
            raise LayoutInvalid(f"{self.path}: entry {wanted!r} is not a regular file")
        return member

    def read_member(self, name: str, limit: int) -> bytes | None:
        """Entry `name` (a link followed as `_member` does), at most `limit` bytes."""
        member = self._member(name)
        if member is None:
            return None
        if member.size > limit:
            raise LayoutInvalid(f"{self.path}: {name} is larger than {limit} bytes")
        f = self.tar.extractfile(member)
        assert f is not None
        with f:
            return f.read()

    @contextlib.contextmanager
    def open_member(self, name: str) -> Iterator[tuple[IO[bytes], int]]:
        member = self._member(name)
        if member is None:
            raise LayoutInvalid(f"{self.path} lacks entry {name!r}", hint="the archive is incomplete")
        f = self.tar.extractfile(member)
        assert f is not None
        with f:
            yield f, member.size

    @staticmethod
    def _open_tar(file: Path, path: Path) -> tarfile.TarFile:
        with open(file, "rb") as f:
            head = f.read(8)
        mode, kind = next(((m, k) for magic, m, k in _TAR_MODES if head.startswith(magic)), ("r:", "tar"))
        try:
            return tarfile.open(file, mode=mode)  # type: ignore[call-overload,no-any-return]
        except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
            what = "" if kind == "tar" else f"{kind} data, "
            raise LayoutInvalid(f"{path} is not a tar archive ({what}{err})", hint=_LOAD_HINT) from None

    def has_blob(self, digest: Digest) -> bool:
        return _blob_name(digest) in self.members

    def read_small(self, name: str, limit: int) -> bytes | None:
        member = self.members.get(name)
        if member is None:
            return None
        if member.size > limit:
            raise LayoutInvalid(f"{self.path}: {name} is larger than {limit} bytes")
        f = self.tar.extractfile(member)
        assert f is not None  # regular files always have content
        with f:
            return f.read()

    @contextlib.contextmanager
    def open_blob(self, digest: Digest) -> Iterator[tuple[IO[bytes], int]]:
        member = self.members.get(_blob_name(digest))
        if member is None:
            raise LayoutInvalid(f"{self.path} lacks blob {digest}", hint="the archive is incomplete")
        f = self.tar.extractfile(member)
        assert f is not None
        with f:
            yield f, member.size

    def close(self) -> None:
        self.tar.close()
