"""Named references of an OCI image layout: the entries of `index.json`.

The name lives in the `org.opencontainers.image.ref.name` annotation. One layout holds many
repositories, so we store the full reference (`docker.io/library/app:v1`), not only the tag
the OCI spec's examples show; skopeo and umoci accept any such string
(`skopeo inspect oci:$ROOT/oci:docker.io/library/app:v1`).

Each entry also records when its image entered this store (`io.sealer.store.created`, RFC 3339
UTC): image digests stay reproducible (the config's `created` is SOURCE_DATE_EPOCH, default 0),
so `sealer images` shows this time instead, as podman shows when an image was stored. A new
name of an image already here inherits the image's first time; `list` hides the annotation.

Every change is a read-modify-write of index.json under an exclusive flock on the layout
directory, held across read, modify, temp write and rename. Readers need no lock: the file is
only ever replaced whole by rename.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from builder._fs import atomic_write
from builder.errors import InvalidManifest, LayoutInvalid
from builder.image.descriptor import Descriptor
from builder.image.index import Index
from builder.image.mediatypes import ANNOTATION_REF_NAME
from builder.store._lock import locked_dir

INDEX_FILE = "index.json"
MAX_INDEX_BYTES = 64 << 20
DEFAULT_LOCK_TIMEOUT_S = 60.0
ANNOTATION_STORED = "io.sealer.store.created"
_LOCAL_ANNOTATIONS = (ANNOTATION_REF_NAME, ANNOTATION_STORED)

# A module-level alias: inside RefStore, `list` is the method.
_Entries = list[Descriptor]


class RefStore:
    """`index.json` of the layout at `oci_dir`: name -> descriptor."""

    def __init__(
        self, oci_dir: str | os.PathLike[str], *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    ) -> None:
        self.oci_dir = Path(oci_dir)
        self.index_path = self.oci_dir / INDEX_FILE
        self.lock_timeout_s = lock_timeout_s

    # -- reading ---------------------------------------------------------------------------

    def read_index(self) -> Index:
        """The whole index.json (an empty index when the file does not exist yet)."""
        try:
            with open(self.index_path, "rb") as f:
                data = f.read(MAX_INDEX_BYTES + 1)
        except FileNotFoundError:
            return Index()
        if len(data) > MAX_INDEX_BYTES:
            raise LayoutInvalid(f"{self.index_path} is larger than {MAX_INDEX_BYTES} bytes")
        try:
            return Index.from_bytes(data)
        except InvalidManifest as err:
            raise LayoutInvalid(
                f"{self.index_path} is corrupt: {err}",
                hint=f"restore it from a backup, or move it away to start an empty store (blobs are kept in {self.oci_dir / 'blobs'})",
            ) from None

    def list(self) -> builtins.list[tuple[str, Descriptor]]:
        """(name, descriptor) for every named entry, in index order; descriptors lose ref.name
        and the stored time."""
        return [(name, desc) for name, desc, _ in self.entries()]

    def entries(self) -> builtins.list[tuple[str, Descriptor, str | None]]:
        """(name, descriptor, when the image entered the store or None) for every named entry."""
        out = []
        for desc in self.read_index().manifests:
            name = desc.annotations.get(ANNOTATION_REF_NAME)
            if name:
                out.append((name, _strip_name(desc), desc.annotations.get(ANNOTATION_STORED)))
        return out

    def get(self, name: str) -> Descriptor | None:
        return next((d for n, d in self.list() if n == name), None)

    # -- writing ---------------------------------------------------------------------------

    def set(self, name: str, desc: Descriptor) -> None:
        """Point `name` at `desc`, replacing what it pointed at before (atomic). The entry's
        stored time is kept when nothing changes, else taken from another name of the same
        digest, else now."""
        clean = _strip_name(desc)

        def change(entries: _Entries) -> _Entries | None:
            stamp = next(
                (
                    e.annotations[ANNOTATION_STORED]
                    for e in entries
                    if e.digest == clean.digest and ANNOTATION_STORED in e.annotations
                ),
                None,
            ) or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            named = clean.with_annotations(
                {**clean.annotations, ANNOTATION_REF_NAME: name, ANNOTATION_STORED: stamp}
            )
            for i, entry in enumerate(entries):
                if entry.annotations.get(ANNOTATION_REF_NAME) == name:
                    if _strip_name(entry) == clean:
                        return None
                    entries[i] = named
                    return entries
            entries.append(named)
            return entries

        self._update(change)

    def remove(self, name: str) -> bool:
        """Drop `name`; True when it existed. The blobs stay until gc."""
        removed = False

        def change(entries: _Entries) -> _Entries | None:
            nonlocal removed
            kept = [e for e in entries if e.annotations.get(ANNOTATION_REF_NAME) != name]
            removed = len(kept) != len(entries)
            return kept if removed else None

        self._update(change)
        return removed

    def ensure(self) -> None:
        """Create an empty index.json if there is none (under the lock, so it never clobbers)."""
        self._update(lambda entries: None)

    def _update(self, change: Callable[[_Entries], _Entries | None]) -> None:
        with locked_dir(self.oci_dir, exclusive=True, timeout_s=self.lock_timeout_s, what="the image index"):
            exists = self.index_path.exists()
            index = self.read_index()
            entries = change(list(index.manifests))
            if entries is None and exists:
                return
            new = Index(tuple(index.manifests if entries is None else entries), dict(index.annotations))
            atomic_write(self.index_path, new.to_bytes())


def _strip_name(desc: Descriptor) -> Descriptor:
    if not any(k in desc.annotations for k in _LOCAL_ANNOTATIONS):
        return desc
    return desc.with_annotations({k: v for k, v in desc.annotations.items() if k not in _LOCAL_ANNOTATIONS})
