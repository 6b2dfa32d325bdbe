"""COPY and ADD: the tar entries of a layer made from context sources.

Destination rules are Docker's: a destination ending in `/`, the image root, or a directory
that already exists in the image receives sources under their own names; several sources need
such a directory destination; a directory source contributes its contents. ADD also fetches
http(s) URLs and unpacks local tar archives (plain, gzip, bzip2, xz) as Docker does, through the
same hardened reader that unpacks pulled layers.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import posixpath
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, cast

from builder.build.context import BuildContext, ContextSource
from builder.errors import ContextPathError
from builder.layers.tarwriter import TarEntry, entry_sort_key, walk_tree

DestIsDir = Callable[[str], bool]

_TAR_MAGIC_OFFSET = 257


def normalize_dest(dest: str) -> tuple[str, bool]:
    """(archive path without leading '/', whether the user marked it as a directory)."""
    marked_dir = dest.endswith("/") or dest in ("", ".", "/") or dest.endswith("/.")
    norm = posixpath.normpath("/" + dest).lstrip("/")
    return ("" if norm == "." else norm), marked_dir


def merge_entries(groups: Iterable[Iterable[TarEntry]]) -> list[TarEntry]:
    """One sorted entry list; for a name given twice the later source wins, as in Docker."""
    by_name: dict[str, TarEntry] = {}
    for group in groups:
        for entry in group:
            by_name[entry.name] = entry
    return sorted(by_name.values(), key=entry_sort_key)


def source_entries(
    context: BuildContext, source: ContextSource, target: str, *, chmod: int | None, into_dir: bool
) -> Iterable[TarEntry]:
    """Entries for one resolved source placed at `target` (a dir if `into_dir` or a dir source)."""
    if source.is_dir:
        return walk_tree(source.path, dest=target, chmod=chmod, include=context.include_filter(source))
    name = posixpath.join(target, source.path.name) if into_dir else target
    return walk_tree(source.path, dest=name, chmod=chmod)


def copy_entries(
    context: BuildContext,
    sources: Iterable[str],
    dest: str,
    *,
    chmod: int | None,
    dest_is_dir: DestIsDir,
    keyword: str = "COPY",
    scratch: Path | None = None,
) -> list[TarEntry]:
    """Resolve COPY/ADD sources and return the layer's entries, sorted."""
    target, marked_dir = normalize_dest(dest)
    resolved: list[tuple[str, ContextSource | Path]] = []
    for pattern in sources:
        if keyword == "ADD" and pattern.startswith(("http://", "https://")):
            from builder.build._fetch import fetch_url  # urllib costs a no-op build ~12 ms

            if scratch is None:
                raise ContextPathError(f"ADD {pattern}: URLs need a scratch directory")
            resolved.append((pattern, fetch_url(pattern, scratch / "fetched")))
            continue
        resolved.extend((pattern, match) for match in context.resolve(pattern))

    into_dir = marked_dir or target == "" or dest_is_dir(target)
    if len(resolved) > 1 and not into_dir:
        raise ContextPathError(
            f"{keyword} with several sources needs a directory destination, got {dest!r}",
            hint=f"end the destination with '/' ({dest}/)",
        )
    groups: list[Iterable[TarEntry]] = []
    for pattern, src in resolved:
        if isinstance(src, Path):
            # A downloaded ADD URL: copied as a file, never unpacked (Docker's rule).
            fetched = ContextSource(pattern, src, False)
            groups.append(source_entries(context, fetched, target, chmod=chmod, into_dir=into_dir))
            continue
        if keyword == "ADD" and not src.is_dir and scratch is not None:
            unpacked = _unpack_archive(src.path, scratch)
            if unpacked is not None:
                groups.append(walk_tree(unpacked, dest=target, chmod=chmod))
                continue
        groups.append(source_entries(context, src, target, chmod=chmod, into_dir=into_dir))
    return merge_entries(groups)


_DECOMPRESSORS: dict[bytes, Callable[[Path], BinaryIO]] = {
    b"\x1f\x8b": lambda p: cast(BinaryIO, gzip.GzipFile(p, "rb")),
    b"BZh": lambda p: cast(BinaryIO, bz2.BZ2File(p, "rb")),
    b"\xfd7zXZ\x00": lambda p: cast(BinaryIO, lzma.LZMAFile(p, "rb")),  # noqa: SIM115 (returned open)
}


def _is_tar_header(block: bytes) -> bool:
    return block[_TAR_MAGIC_OFFSET : _TAR_MAGIC_OFFSET + 5] == b"ustar"


def _open_archive(path: Path) -> BinaryIO | None:
    """An uncompressed tar stream of `path` if it is a (compressed) tar archive, else None.

    The caller closes the stream it gets.
    """
    with open(path, "rb") as f:
        head = f.read(_TAR_MAGIC_OFFSET + 8)
    if _is_tar_header(head):
        return open(path, "rb")
    opener = next((o for magic, o in _DECOMPRESSORS.items() if head.startswith(magic)), None)
    if opener is None:
        return None
    try:
        with opener(path) as probe:
            inner = probe.read(_TAR_MAGIC_OFFSET + 8)
    except (OSError, EOFError, lzma.LZMAError):
        return None
    return opener(path) if _is_tar_header(inner) else None


def _unpack_archive(path: Path, scratch: Path) -> Path | None:
    """Unpack a local tar archive for ADD into the scratch dir; None if it is not one."""
    stream = _open_archive(path)
    if stream is None:
        return None
    from builder.layers.unpack import unpack_layer

    dest = scratch / "unpacked" / path.name
    dest.mkdir(parents=True, exist_ok=True)
    with stream:
        # Bounded as a pulled layer is (expansion over the archive's size, free disk): a
        # context is as untrusted as a registry. The caller's scratch dir goes on error.
        unpack_layer(
            stream, dest, whiteouts="apply", what=f"archive {path}", compressed_size=path.stat().st_size
        )
    return dest
