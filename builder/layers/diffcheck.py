"""Comparing an unpacked diff dir with the layer tar it was unpacked from (`sealer fsck`).

Diff dirs are published by renaming a staging dir, but the files inside are never fsynced (per
file or with syncfs the unpack would lose its speed; docker and containerd do not either), so
after a power loss a published diff dir can hold torn files: zero-length, missing, or the right
size full of zeros (XFS). `compare_diff_dir` reads the tar once through the checked
`safety.EntryReader`, replays in memory what `tarreader.extract_layer` does with it in
"overlay" mode (the later of two entries for one path wins, parents made implicitly, a dir that
replaces a whiteout turns opaque, a whiteout of this layer's own dir makes it opaque, hardlinks
keep the content their target had when linked), and compares the tree on disk with the result:
types, the size and sha256 of regular files, symlink targets, whiteouts (char device 0/0),
opaque markers, and nothing on disk that the layer does not make. Metadata (mode, owner,
mtime) is not compared: a power loss tears data, and non-root unpacks cannot give owners.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, cast

from builder.errors import LayerError
from builder.layers._readahead import ReadAhead
from builder.layers.safety import Entry, EntryReader
from builder.layers.whiteout import is_overlay_opaque, is_overlay_whiteout

__all__ = ["Difference", "compare_diff_dir"]

_CHUNK = 4 << 20
_READ = 1 << 20


@dataclass(frozen=True, slots=True)
class Difference:
    """One path of a diff dir that is not what its layer makes; `what` says how, briefly."""

    path: str
    what: str


@dataclass(slots=True)
class _Content:
    """A regular file's bytes as the unpack wrote them; hardlinks share one."""

    size: int
    sha256: str


@dataclass(slots=True)
class _Node:
    kind: Literal["dir", "file", "symlink", "whiteout"]
    content: _Content | None = None
    target: str = ""
    opaque: bool = False
    children: dict[str, _Node] = field(default_factory=dict)


def _describe(node: _Node) -> str:
    if node.kind == "file":
        assert node.content is not None
        return f"a file of {node.content.size} bytes"
    if node.kind == "symlink":
        return f"a symlink to {node.target!r}"
    return "a directory" if node.kind == "dir" else "a whiteout"


class _Replay:
    """The tree `extract_layer(..., whiteouts="overlay")` makes in a fresh dir, in memory.

    Mirrors its state (`written`: paths this layer made, `ancestors`: their parents) because
    whiteouts decide on it. Entries the unpack would refuse cannot be in a published diff dir,
    so they are not re-checked here.
    """

    def __init__(self) -> None:
        self.root = _Node("dir")
        self.written: set[str] = set()
        self.ancestors: set[str] = set()

    def _dir(self, parts: tuple[str, ...]) -> _Node:
        """The dir at `parts`, made (as the unpack makes missing parents) where absent."""
        node = self.root
        for i, part in enumerate(parts):
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node("dir")
            elif child.kind != "dir":
                raise LayerError(f"the layer goes through {'/'.join(parts[: i + 1])!r}, not a directory")
            node = child
        return node

    def apply(self, e: Entry, content: _Content | None) -> None:
        if e.kind == "skip":
            return
        if e.kind == "opaque":
            self._dir(e.parts).opaque = True
            return
        if e.kind != "whiteout" and not e.parts:
            return  # the root itself: its metadata is the caller's
        parent, name, rel = self._dir(e.parts[:-1]), e.parts[-1], "/".join(e.parts)
        old = parent.children.get(name)
        if e.kind == "whiteout":
            if rel not in self.written:
                parent.children[name] = _Node("whiteout")  # whatever was there goes
            elif old is not None and old.kind == "dir":
                old.opaque = True  # a whiteout spares its own layer's dir but hides lower ones
            return
        if e.kind == "file":
            parent.children[name] = _Node("file", content)
        elif e.kind == "dir":
            if old is None or old.kind != "dir":
                parent.children[name] = _Node("dir", opaque=old is not None and old.kind == "whiteout")
        elif e.kind == "symlink":
            parent.children[name] = _Node("symlink", target=e.linkname)
        elif e.link != e.parts:  # a hardlink (to itself: nothing to do)
            linked = self._dir(e.link[:-1]).children.get(e.link[-1])
            if linked is None or linked.kind != "file":
                raise LayerError(f"the layer links {rel!r} to {'/'.join(e.link)!r}, not a file")
            parent.children[name] = _Node("file", linked.content)
        self.written.add(rel)
        for i in range(len(e.parts) - 1, 0, -1):
            above = "/".join(e.parts[:i])
            if above in self.ancestors:
                break
            self.ancestors.add(above)


def _replay(tar: BinaryIO) -> _Node:
    """The tree the layer tar `tar` (uncompressed) unpacks to, files as size and sha256."""
    source = ReadAhead(tar, _CHUNK)
    try:
        reader = EntryReader(cast(BinaryIO, source), memoryview(bytearray(_CHUNK)), "layer")
        replay = _Replay()
        while (e := reader.next()) is not None:
            content = None
            if e.kind == "file":
                digest, remaining = hashlib.sha256(), e.size
                while remaining:
                    chunk = reader.readview(min(remaining, _CHUNK))
                    if not chunk:
                        raise LayerError(f"layer truncated: {e.label} needs {remaining} more bytes")
                    digest.update(chunk)
                    remaining -= len(chunk)
                content = _Content(e.size, digest.hexdigest())
                reader.skip_data(e, e.size)
            else:
                reader.skip_data(e)
            replay.apply(e, content)
        reader.finish()
        return replay.root
    finally:
        source.close()


class _Disk:
    """What is on disk, hashed once per inode (hardlinks share it)."""

    def __init__(self) -> None:
        self.hashes: dict[tuple[int, int], str | None] = {}
        self.see_opaque = os.geteuid() == 0  # trusted.* xattrs are invisible to other users

    def sha256(self, path: str, st: os.stat_result) -> str | None:
        """None when the file cannot be read (not ours to judge: permissions)."""
        key = (st.st_dev, st.st_ino)
        if key not in self.hashes:
            digest = hashlib.sha256()
            try:
                with open(path, "rb", buffering=0) as f:
                    while chunk := f.read(_READ):
                        digest.update(chunk)
                self.hashes[key] = digest.hexdigest()
            except PermissionError:
                self.hashes[key] = None
        return self.hashes[key]

    def differences(self, path: str, node: _Node, st: os.stat_result) -> Iterator[str]:
        mode = st.st_mode
        if node.kind == "dir":
            if not stat.S_ISDIR(mode):
                yield f"{_kind(st)}, the blob has a directory"
            elif self.see_opaque and is_overlay_opaque(path) != node.opaque:
                yield "not opaque, the blob makes it opaque" if node.opaque else "opaque, the blob's is not"
        elif node.kind == "file":
            assert node.content is not None
            want = node.content
            if not stat.S_ISREG(mode):
                yield f"{_kind(st)}, the blob has {_describe(node)}"
            elif st.st_size != want.size:
                yield f"{st.st_size} bytes, the blob has {want.size}"
            elif self.sha256(path, st) not in (want.sha256, None):
                yield f"{want.size} bytes as in the blob, but other bytes"
        elif node.kind == "symlink":
            if not stat.S_ISLNK(mode):
                yield f"{_kind(st)}, the blob has {_describe(node)}"
            elif (target := os.readlink(path)) != node.target:
                yield f"a symlink to {target!r}, the blob's points to {node.target!r}"
        elif not is_overlay_whiteout(st):
            yield f"{_kind(st)}, the blob has a whiteout"


def _kind(st: os.stat_result) -> str:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return f"a file of {st.st_size} bytes"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symlink"
    if is_overlay_whiteout(st):
        return "a whiteout"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return f"a device {os.major(st.st_rdev)}/{os.minor(st.st_rdev)}"
    return "a fifo or socket"


def compare_diff_dir(tar: BinaryIO, diff_dir: str | Path) -> list[Difference]:
    """The paths where `diff_dir` is not what the uncompressed layer `tar` unpacks to, in walk
    order (see the module docstring for what is compared). Read-only. LayerError when the tar
    is not a layer the unpack could have published."""
    expected = _replay(tar)
    disk = _Disk()
    found: list[Difference] = []
    root = os.fspath(diff_dir)
    found += [Difference("/", w) for w in disk.differences(root, expected, os.lstat(root))]
    stack: list[tuple[str, _Node]] = [("", expected)]
    while stack:  # iterative: a layer's tree may be 2000 levels deep
        rel, node = stack.pop()
        full = os.path.join(root, rel) if rel else root
        with os.scandir(full) as it:
            names = sorted(entry.name for entry in it)
        for name in names:
            crel = f"{rel}/{name}" if rel else name
            st = os.lstat(os.path.join(full, name))
            want = node.children.get(name)
            if want is None:
                found.append(Difference(crel, f"{_kind(st)} the blob does not make"))
                continue
            whats = list(disk.differences(os.path.join(full, name), want, st))
            found += [Difference(crel, w) for w in whats]
            if want.kind == "dir" and stat.S_ISDIR(st.st_mode):
                stack.append((crel, want))
        for name in sorted(set(node.children) - set(names)):
            crel = f"{rel}/{name}" if rel else name
            found.append(Difference(crel, f"missing, the blob has {_describe(node.children[name])}"))
    return found
