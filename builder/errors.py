"""The one exception tree of `builder`.

Every failure that reaches a user is a SealerError: a one-line message, an optional hint,
a kebab-case `reference` naming the failure kind (as pip's DiagnosticPipError does) and the
process exit code. `cli/main.py` is the only place that catches it and turns it into output.

    SealerError
    ├── UsageError                     exit 2: bad flags or arguments
    ├── PathBusy                       a tree that cannot be removed: a mount point, EBUSY
    ├── BuildError                     ContextPathError, RunStepError, CacheError
    ├── ImageError                     InvalidReference, InvalidManifest, UnsupportedMediaType,
    │                                  MetadataMismatch, ImageNotFound, ImageInUse
    ├── LayerError                     UnsafePath, BadWhiteout
    ├── StoreError                     BlobNotFound, DigestMismatch, SizeMismatch, LayoutInvalid,
    │                                  StoreLocked
    ├── RegistryError                  AuthError, NotFound, RegistryUnavailable
    └── ClusterError                   ClusterfileError, HostError, CommandFailed, PhaseError

`kubefile_grammar.KubefileError` is a separate root with the same fields, because the grammar
package imports nothing of `builder`.
"""

from __future__ import annotations


class SealerError(Exception):
    """Base of every error `builder` raises on purpose."""

    reference = "sealer-error"
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(SealerError):
    reference = "usage-error"
    exit_code = 2


class PathBusy(SealerError):
    """A directory that cannot be removed because something still uses it (a mount, EBUSY)."""

    reference = "path-busy"


# --- build -------------------------------------------------------------------------------------


class BuildError(SealerError):
    reference = "build-error"


class ContextPathError(BuildError):
    """A COPY/ADD/APP source that is missing or resolves outside the build context."""

    reference = "context-path"

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class RunStepError(BuildError):
    """A RUN instruction exited non-zero; carries the status and the tail of its output."""

    reference = "run-step-failed"

    def __init__(self, message: str, *, status: int, output_tail: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.output_tail = output_tail


class CacheError(BuildError):
    reference = "build-cache"


# --- image -------------------------------------------------------------------------------------


class ImageError(SealerError):
    reference = "image-error"


class InvalidReference(ImageError):
    reference = "invalid-reference"
    exit_code = 2


class InvalidManifest(ImageError):
    reference = "invalid-manifest"


class UnsupportedMediaType(ImageError):
    reference = "unsupported-media-type"


class MetadataMismatch(ImageError):
    reference = "metadata-mismatch"


class ImageNotFound(ImageError):
    reference = "image-not-found"


class ImageInUse(ImageError):
    """`rmi ID` of an image that several names share, without -f (docker's conflict)."""

    reference = "image-in-use"


# --- layers ------------------------------------------------------------------------------------


class LayerError(SealerError):
    reference = "layer-error"


class UnsafePath(LayerError):
    """A tar entry or a path that would land outside its root, or a device node."""

    reference = "unsafe-path"


class BadWhiteout(LayerError):
    reference = "bad-whiteout"


# --- store -------------------------------------------------------------------------------------


class StoreError(SealerError):
    reference = "store-error"


class BlobNotFound(StoreError):
    reference = "blob-not-found"


class DigestMismatch(StoreError):
    reference = "digest-mismatch"


class SizeMismatch(StoreError):
    reference = "size-mismatch"


class LayoutInvalid(StoreError):
    reference = "layout-invalid"


class StoreLocked(StoreError):
    reference = "store-locked"


# --- registry ----------------------------------------------------------------------------------


class RegistryError(SealerError):
    reference = "registry-error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        temporary: bool = False,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.temporary = temporary


class AuthError(RegistryError):
    reference = "registry-auth"


class NotFound(RegistryError):
    reference = "registry-not-found"


class RegistryUnavailable(RegistryError):
    reference = "registry-unavailable"


# --- cluster -----------------------------------------------------------------------------------


class ClusterError(SealerError):
    reference = "cluster-error"


class ClusterfileError(ClusterError):
    reference = "clusterfile"

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.line = line


class HostError(ClusterError):
    reference = "host-error"

    def __init__(self, message: str, *, host: str, step: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.host = host
        self.step = step


class CommandFailed(ClusterError):
    reference = "command-failed"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        stdout_tail: str = "",
        stderr_tail: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.stdout_tail = stdout_tail
        self.stderr_tail = stderr_tail


class PhaseError(ClusterError):
    reference = "phase-error"

    def __init__(self, message: str, *, phase: str, step: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.phase = phase
        self.step = step
