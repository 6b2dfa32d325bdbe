"""The layer-safety policy: the rules every tar entry of an untrusted layer must pass.

Two readers enforce it, so that the store and the hosts never disagree on what is safe:
`tarreader.extract_layer` (into the store's diff dirs or a flat rootfs; what is on disk is
checked through O_NOFOLLOW dir fds) and the runtime's stack check (a tree of the whole stack,
before a host's plain `tar -x` sees a layer). `EntryReader` applies the rules that need no state,
and the rules that do are worded here (`through_symlink`, `bad_hardlink`, ...) so both readers
refuse the same entries with the same one-line message. Rules:

- path (`split_path`): no NUL, not absolute, no `..`, components of at most NAME_MAX bytes, at
  most PATH_MAX bytes in all, nothing below a `.wh.` component; `.` (the root) only as a dir.
- type: files, dirs, symlinks (target stored, never followed; non-empty, no NUL, <= PATH_MAX),
  hardlinks (target a checked path, not the root, an existing regular file of this layer or
  below that this layer's whiteouts do not remove); device nodes and fifos refused (UnsafePath),
  other types (GNU sparse, volume labels, ...) refused (LayerError).
- parents: every parent is a directory, never a symlink, whoever made it; one path has one type
  within a layer (tar would apply a dir's mode through an earlier symlink of the same layer).
- whiteouts: `.wh.<name>` names an entry of its directory; `.wh..wh..opq` empties it of lower
  content; `.wh..wh.*` (AUFS bookkeeping) and what lies below it at the root are skipped, as
  docker does; neither goes through a
  symlink (a host's `rm -rf` would follow it), nor through one this layer replaces.
- size: 0..MAX_ENTRY_SIZE for files, 0 for header-only types (tar tools disagree on whether their
  data is skipped); PAX records and GNU long names <= MAX_META_SIZE (`_tarstream`).
- mode: permission bits only (the typeflag decides the type; type bits in the mode field are
  ignored); setuid, setgid and sticky bits are kept, as tar keeps them. Owners <= MAX_ID.
- end: after the end-of-archive block only zero bytes (GNU tar's `-i` would read on).
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import BinaryIO, Literal

from builder.errors import BadWhiteout, LayerError, UnsafePath
from builder.layers._tarstream import BLOCK, FILE_TYPES, MAX_ENTRY_SIZE, MAX_META_SIZE, Member, TarStream
from builder.layers.whiteout import AUFS_META_PREFIX, OPAQUE_NAME, WHITEOUT_PREFIX

__all__ = [
    "BLOCK",
    "MAX_ENTRY_SIZE",
    "MAX_ID",
    "MAX_META_SIZE",
    "NAME_MAX",
    "PATH_MAX",
    "Entry",
    "EntryReader",
    "Kind",
    "bad_hardlink",
    "retyped",
    "split_path",
    "through_non_dir",
    "through_symlink",
]

NAME_MAX = 255  # bytes of one path component (Linux NAME_MAX)
PATH_MAX = 4096  # bytes of a whole path or symlink target (Linux PATH_MAX)
MAX_ID = (1 << 32) - 2  # uid/gid: (uid_t)-1 means "unchanged" to chown
_MAX_MTIME_NS = (1 << 63) - 1  # what a timespec in ns holds

Kind = Literal["file", "dir", "symlink", "hardlink", "whiteout", "opaque", "skip"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One checked entry. `parts` is the path; for a whiteout, the path it deletes; for an
    opaque marker, its directory ("skip": nothing). `link` is a hardlink's checked target."""

    kind: Kind
    parts: tuple[str, ...]
    label: str  # "<where> entry 'a/b'", "<where> whiteout of 'a/b'", "<where> opaque marker of 'a'"
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: str
    link: tuple[str, ...] = ()


def split_path(path: str, label: str, error: type[LayerError] = UnsafePath) -> tuple[str, ...]:
    """Components of archive path `path` (`label` already names it); refuse what can escape."""
    if "\x00" in path:
        raise error(f"{label} contains a NUL byte")
    if path.startswith("/"):
        raise error(f"{label} is an absolute path")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise error(f"{label} has a '..' component")
    if len(path.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise error(f"{label} is longer than {PATH_MAX} bytes")
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise error(f"{label} has a component longer than {NAME_MAX} bytes")
    return parts


def through_symlink(label: str, path: str, error: type[LayerError], made_by: str = "") -> LayerError:
    """An entry, hardlink target or whiteout whose parent path goes through a symlink."""
    return error(f"{label} goes through {path!r}, a symlink{made_by}")


def through_non_dir(label: str, path: str, error: type[LayerError]) -> LayerError:
    return error(f"{label} goes through {path!r}, which is not a directory")


def bad_hardlink(label: str, target: str) -> UnsafePath:
    """A hardlink to something missing, not a regular file, or removed by the layer's whiteouts."""
    return UnsafePath(f"{label} is a hardlink to {target!r}, which is missing or not a regular file")


def retyped(label: str) -> UnsafePath:
    return UnsafePath(f"{label} names a path this layer already made as another type")


_KINDS: dict[bytes, Kind] = {
    **dict.fromkeys(FILE_TYPES, "file"),
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
}


def _check(m: Member, where: str) -> Entry:
    label = f"{where} entry {m.name!r}"
    base = m.name.rstrip("/").rpartition("/")[2]
    if base.startswith(WHITEOUT_PREFIX):  # whatever its type, as docker reads it
        label = f"{where} whiteout {m.name!r}"
        parts = split_path(m.name, label, BadWhiteout)
    else:
        parts = split_path(m.name, label)
    if m.type not in FILE_TYPES and m.size:
        raise LayerError(
            f"{label} is a header-only type with {m.size} bytes of data (refused: tar tools disagree)"
        )
    if len(parts) > 1 and parts[0].startswith(AUFS_META_PREFIX):
        return _entry(m, "skip", (), label)  # below AUFS's `.wh..wh.plnk/`: skipped, as docker does
    if any(p.startswith(WHITEOUT_PREFIX) for p in parts[:-1]):
        raise BadWhiteout(f"{label} lies below a whiteout name")
    if parts and parts[-1].startswith(WHITEOUT_PREFIX):
        name = parts[-1]
        if name == OPAQUE_NAME:
            return _entry(
                m, "opaque", parts[:-1], f"{where} opaque marker of {'/'.join(parts[:-1]) or '/'!r}"
            )
        if name.startswith(AUFS_META_PREFIX):
            return _entry(m, "skip", (), label)
        target = name[len(WHITEOUT_PREFIX) :]
        if target in ("", ".", ".."):
            raise BadWhiteout(f"{label} names {target!r}, not an entry of its directory")
        return _entry(
            m, "whiteout", (*parts[:-1], target), f"{where} whiteout of {'/'.join((*parts[:-1], target))!r}"
        )
    kind = _KINDS.get(m.type)
    if kind is None:
        if m.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            what = "character" if m.type == tarfile.CHRTYPE else "block"
            raise UnsafePath(f"{label} is a {what} device (device nodes are refused)")
        if m.type == tarfile.FIFOTYPE:
            raise UnsafePath(f"{label} is a fifo (refused)")
        raise LayerError(f"{label} has unsupported tar type {m.type!r}")
    if not parts and kind != "dir":
        raise UnsafePath(f"{label} makes the root a non-directory")
    if not (0 <= m.uid <= MAX_ID and 0 <= m.gid <= MAX_ID):
        raise LayerError(f"{label} has owner {m.uid}:{m.gid} (limit {MAX_ID})")
    if not -_MAX_MTIME_NS <= m.mtime_ns <= _MAX_MTIME_NS:
        raise LayerError(f"{label} has an mtime out of range")
    link: tuple[str, ...] = ()
    if kind == "hardlink":
        link = split_path(m.linkname, f"{label}: hardlink target {m.linkname!r}")
        if not link:
            raise UnsafePath(f"{label} is a hardlink to the root")
    elif kind == "symlink":
        if not m.linkname or "\x00" in m.linkname:
            raise UnsafePath(f"{label} is a symlink to {m.linkname!r}, an empty or NUL-holding target")
        if len(m.linkname.encode("utf-8", "surrogateescape")) > PATH_MAX:
            raise LayerError(f"{label} is a symlink to a target longer than {PATH_MAX} bytes")
    return _entry(m, kind, parts, label, link)


def _entry(m: Member, kind: Kind, parts: tuple[str, ...], label: str, link: tuple[str, ...] = ()) -> Entry:
    return Entry(kind, parts, label, m.mode, m.uid, m.gid, m.size, m.mtime_ns, m.linkname, link)


class EntryReader:
    """Forward-only reader of a layer's checked entries from a non-seekable stream.

    `next()` returns the next Entry (its data not read yet) or None at the end of the archive;
    `where` prefixes every label ("layer", "layer 2 (sha256:...):"). The caller reads or skips
    each entry's data (`readinto`, `read_data`, `skip_data`), then calls `finish`, which reads
    to EOF (so a verifying reader gets to check its digest) and refuses non-zero trailing data.
    """

    def __init__(self, stream: BinaryIO, buf: memoryview, where: str) -> None:
        self._tar = TarStream(stream, buf)
        self._where = where
        self._pad = 0

    def next(self) -> Entry | None:
        m = self._tar.next()
        return None if m is None else _check(m, self._where)

    def readinto(self, view: memoryview) -> int:
        return self._tar.readinto(view)

    def readview(self, n: int) -> memoryview:
        """Up to `n` bytes of the current entry's data, without a copy where the stream lends
        its buffer; valid until the next read."""
        return self._tar.readview(n)

    def read_data(self, entry: Entry) -> bytes:
        """The whole data of `entry` (the caller caps its size), padding skipped."""
        data = self._tar.read_exact(entry.size, entry.label)
        self._tar.skip(-entry.size % BLOCK, entry.label)
        return data

    def skip_data(self, entry: Entry, done: int = 0) -> None:
        """Skip the rest of `entry`'s data after `done` bytes were read, and its padding."""
        self._tar.skip(entry.size - done + (-entry.size % BLOCK), entry.label)

    def finish(self) -> None:
        offset = self._tar.offset
        if not self._tar.drain_zeros():
            raise LayerError(
                f"{self._where} has data after its end-of-archive block at offset {offset - BLOCK}"
            )
