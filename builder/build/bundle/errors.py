"""Failures of image bundling: discovery (bad YAML, bad references) and the distribution layout."""

from __future__ import annotations

from builder.errors import BuildError


class ImageDiscoveryError(BuildError):
    """A file the build context ships cannot be read for images: bad YAML or a bad reference.

    Carries the context-relative `path` and, where known, the 1-based `line`.
    """

    reference = "image-discovery"

    def __init__(self, message: str, *, path: str, line: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.line = line


class DistributionLayoutError(BuildError):
    """The images asked for cannot share one registry directory (a repository path or a tag
    claimed twice), or a referenced digest is not the image the store holds."""

    reference = "distribution-layout"
