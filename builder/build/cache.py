"""Build cache: step results keyed by what produced them, and a stat cache of file hashes.

A step key is sha256(parent key, canonical instruction after expansion, digest of the inputs,
the build's layer settings). A cached step is only used while its blob is still in the store.
Every key of a build is computed here (`*_key` functions), so that what a cache hit depends on
is read in one place: a key that misses an input serves a stale layer.

The stat cache maps (path, size, mtime_ns, inode, ctime_ns) to the file's sha256, so that an
unchanged context is not re-read on the next build: a changed file changes its ctime, which a
user cannot set back. One JSON file per context directory under `$SEALER_ROOT/cache/stat/`.

Cache files are renamed into place whole but not fsynced: after a crash an entry may be missing
or empty, which reads as a miss (the step runs again); a blob is never trusted from here alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder._fs import atomic_write
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.layers.tarwriter import TarEntry
from builder.store.layout import Store

_STAT_CACHE_VERSION = 1
# Below this many unhashed bytes a COPY hashes its files first, so that a cache hit skips
# compression; above it the hashes are taken while archiving, in the same read.
PREHASH_LIMIT_BYTES = 64 << 20
# Files above this size are keyed in the step cache by their stat identity (size, mtime, inode,
# ctime), not their content: hashing the big binaries of a context cost a cold build ~0.35
# CPU-s for 700 MB, and only a `touch` of one of them (content unchanged) tells the difference
# (it then re-archives that layer, with the same digest). Smaller files keep content hashes.
CONTENT_HASH_MAX_BYTES = 16 << 20


def step_key(parent: str, instruction: str, inputs: str = "", settings: str = "") -> str:
    """The cache key of one step; `parent` is the previous step's key (or the base's digest)."""
    h = hashlib.sha256()
    for part in (parent, instruction, inputs, settings):
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\x00")
    return h.hexdigest()


def layer_settings(compression: str, source_date_epoch: int, platform: Platform) -> str:
    """What every layer of a build depends on besides its inputs."""
    return f"{compression}|{source_date_epoch}|{platform}"


def start_key(base: Digest | None, settings: str) -> str:
    """The parent key of a build's first step: its base manifest (or scratch) and settings."""
    return f"scratch|{settings}" if base is None else f"{base}|{settings}"


def after_layer_key(parent: str, diff_id: Digest) -> str:
    """The parent key of the step after one that added the layer `diff_id`."""
    return step_key(parent, "layer", str(diff_id))


def entries_key(
    parent: str, step_text: str, entries: Iterable[TarEntry], hashes: dict[str, str], settings: str
) -> str:
    """A COPY/ADD/APP layer's key: every entry's name, type, mode, link target and the hash (or
    stat identity) of its source file."""
    lines = []
    for e in entries:
        content = hashes.get(e.source, "") if e.kind == "file" and e.source else ""
        lines.append(f"{e.name}\x00{e.kind}\x00{e.mode:o}\x00{e.linkname}\x00{content}")
    return step_key(parent, step_text, inputs_digest(lines), settings)


def run_key(
    parent: str, step_text: str, env: tuple[tuple[str, str], ...], settings: str, isolation: str
) -> str:
    """A RUN layer's key: the command, its environment and how it was isolated."""
    if isolation != "none":
        settings = f"{settings}|isolation={isolation}"
    return step_key(parent, step_text, json.dumps(env), settings)


def bundle_key(parent: str, step_text: str, platform: Platform, settings: str) -> str:
    """The bundled-images layer's key: the sorted image names (in `step_text`) and platform."""
    return step_key(parent, step_text, str(platform), settings)


def metadata_key(parent: str, step_text: str, data: bytes, settings: str) -> str:
    """The Metadata layer's key: the file's bytes."""
    return step_key(parent, step_text, Digest.from_bytes(data).hex, settings)


def discover_key(sources: dict[str, str], hashes: dict[str, str], run_layers: Iterable[Digest]) -> str:
    """The key of an image discovery: the content of each bundle source (archive path -> file,
    hashed) and the RUN layers it also reads."""
    lines = [f"{name}\x00{hashes[src]}" for name, src in sorted(sources.items())]
    lines += [f"run\x00{digest}" for digest in run_layers]
    return inputs_digest(lines)


@dataclass(frozen=True, slots=True)
class CachedLayer:
    """What a layer-producing step left behind: enough to reuse it without re-running it."""

    diff_id: Digest
    descriptor: Descriptor
    created_by: str
    extra: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "diffID": str(self.diff_id),
            "descriptor": self.descriptor.to_json(),
            "createdBy": self.created_by,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> CachedLayer:
        return cls(
            Digest.parse(obj["diffID"]),
            Descriptor.from_json(obj["descriptor"]),
            str(obj.get("createdBy", "")),
            dict(obj.get("extra") or {}),
        )


class StepCache:
    """`$SEALER_ROOT/cache/steps/<key>.json`, one small file per step."""

    def __init__(self, cache_dir: Path) -> None:
        self.dir = cache_dir / "steps"

    def get(self, key: str) -> CachedLayer | None:
        try:
            obj = json.loads((self.dir / f"{key}.json").read_bytes())
            return CachedLayer.from_json(obj)
        except (OSError, ValueError, KeyError, TypeError):
            # A missing or unreadable entry is a miss; the step just runs again.
            return None

    def put(self, key: str, layer: CachedLayer) -> None:
        atomic_write(
            self.dir / f"{key}.json", json.dumps(layer.to_json(), sort_keys=True).encode(), durable=False
        )

    def clear(self) -> int:
        removed = 0
        if self.dir.is_dir():
            for entry in self.dir.iterdir():
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed += 1
        return removed


class LayerCache:
    """The step cache as a build uses it: a hit counts only while its blob is still in the
    store; disabled (--no-cache) every lookup misses, but results are still recorded."""

    def __init__(self, store: Store, *, enabled: bool) -> None:
        self.store = store
        self.steps = StepCache(store.cache_dir)
        self.enabled = enabled

    def get(self, key: str) -> CachedLayer | None:
        if not self.enabled:
            return None
        hit = self.steps.get(key)
        if hit is None or not self.store.blobs.has(hit.descriptor.digest):
            return None
        return hit

    def put(self, key: str, layer: CachedLayer) -> None:
        self.steps.put(key, layer)


class JsonCache:
    """Small JSON results keyed by a digest of their inputs (`$SEALER_ROOT/cache/<kind>/`)."""

    def __init__(self, cache_dir: Path, kind: str) -> None:
        self.dir = cache_dir / kind

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            obj = json.loads((self.dir / f"{key}.json").read_bytes())
        except (OSError, ValueError):
            return None
        return obj if isinstance(obj, dict) else None

    def put(self, key: str, obj: dict[str, Any]) -> None:
        atomic_write(self.dir / f"{key}.json", json.dumps(obj, sort_keys=True).encode(), durable=False)


def _stat_signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def stat_identity(st: os.stat_result) -> str:
    """A file's identity without reading it: changes whenever its content can have changed."""
    return "stat:" + ":".join(str(v) for v in _stat_signature(st))


class StatCache:
    """sha256 of context files, trusted while their stat signature is unchanged."""

    def __init__(self, cache_dir: Path, context_root: Path) -> None:
        tag = hashlib.sha256(str(context_root).encode("utf-8", "surrogateescape")).hexdigest()[:32]
        self.path = cache_dir / "stat" / f"{tag}.json"
        self.context_root = str(context_root)
        self._entries: dict[str, tuple[list[int], str]] = {}
        self._dirty = False
        self._load()

    def _load(self) -> None:
        try:
            obj = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return
        if obj.get("version") != _STAT_CACHE_VERSION or obj.get("root") != self.context_root:
            return
        for path, (sig, digest) in obj.get("files", {}).items():
            self._entries[path] = (list(sig), str(digest))

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        hit = self._entries.get(path)
        if hit is not None and hit[0] == _stat_signature(st):
            return hit[1]
        return None

    def record(self, path: str, st: os.stat_result, sha256_hex: str) -> None:
        self._entries[path] = (_stat_signature(st), sha256_hex)
        self._dirty = True

    def record_if_unchanged(self, path: str, before: os.stat_result, sha256_hex: str) -> None:
        """Record a hash taken elsewhere (while archiving) if the file's stat did not move."""
        try:
            now = os.stat(path)
        except OSError:
            return
        if _stat_signature(now) == _stat_signature(before):
            self.record(path, before, sha256_hex)

    def hash_file(self, path: str) -> str:
        """The sha256 of a file, from the cache when its stat is unchanged."""
        st = os.stat(path)
        cached = self.lookup(path, st)
        if cached is not None:
            return cached
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        # Only trust the hash if the file did not change while it was read.
        if _stat_signature(os.stat(path)) == _stat_signature(st):
            self.record(path, st, digest)
        return digest

    def save(self) -> None:
        if not self._dirty:
            return
        obj = {
            "version": _STAT_CACHE_VERSION,
            "root": self.context_root,
            "files": {p: [sig, d] for p, (sig, d) in sorted(self._entries.items())},
        }
        atomic_write(self.path, json.dumps(obj, separators=(",", ":")).encode(), durable=False)
        self._dirty = False


def inputs_digest(lines: Iterable[str]) -> str:
    """sha256 over canonical input lines (one per file/entry)."""
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8", "surrogateescape"))
        h.update(b"\n")
    return h.hexdigest()
