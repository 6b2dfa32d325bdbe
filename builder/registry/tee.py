"""What a pull hands each layer's bytes to while they arrive, besides the blob store (a tee).

The registry knows nothing of unpacking (DESIGN.md section 1): a caller that wants the layers
unpacked as they download (`builder.diffdirs.DiffDirUnpacker`) passes `LayerTees` to
`RegistryClient.pull`. For every layer blob the pull downloads, it asks `open` for a `BlobTee`,
writes each chunk to the blob writer and then to the tee; after the last byte it commits the
blob (digest and size checked), then calls `finish` (the tee's own failure is raised there)
and only then `publish`; on any failure, and always at the end, `abort`. So nothing a tee
makes visible ever comes from bytes that failed their digest.
"""

from __future__ import annotations

from typing import Protocol

from builder.image.descriptor import Descriptor
from builder.image.digest import Digest


class BlobTee(Protocol):
    def write(self, data: bytes, /) -> None:
        """The blob's next bytes, in order (the tee may keep the object: it is not reused)."""

    def restart(self) -> None:
        """The download starts again from byte 0 (the registry ignored a Range request)."""

    def finish(self) -> None:
        """Every byte was written; raises the tee's own failure."""

    def publish(self) -> None:
        """The blob's digest and size matched: make the result visible."""

    def abort(self) -> None:
        """Drop everything not published; idempotent, also after publish."""


class LayerTees(Protocol):
    def open(self, layer: Descriptor, diff_id: Digest | None, /) -> BlobTee | None:
        """A tee for a layer about to download (`diff_id` from the image config); None: no tee."""
