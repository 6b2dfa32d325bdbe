"""The one exception tree of `builder`.

Every failure that reaches a user is a SealerError: a one-line message, an optional hint,
a kebab-case `reference` naming the failure kind (as pip's DiagnosticPipError does) and the
process exit code. `cli/main.py` is the only place that catches it and turns it into output.

    SealerError
    ├── UsageError                     exit 2: bad flags or arguments
    ├── PathBusy                       a tree that cannot be removed: a mount point, EBUSY
    ├── TemplateError                  a Go text/template (--format, .tmpl, charts) that fails
    ├── BuildError                     ContextPathError, RunStepError, CacheError, AppTypeError,
    │                                  FetchError, ImageDiscoveryError, DistributionLayoutError
    ├── ImageError                     InvalidReference, InvalidManifest, UnsupportedMediaType,
    │                                  MetadataMismatch, ImageNotFound, ImageInUse, InvalidDigest,
    │                                  InvalidPlatform, InvalidMetadata, InvalidExtension
    ├── LayerError                     UnsafePath, BadWhiteout
    ├── StoreError                     BlobNotFound, DigestMismatch, SizeMismatch, LayoutInvalid,
    │                                  StoreLocked
    ├── RegistryError                  AuthError, NotFound, RegistryUnavailable
    ├── DockerError                    DockerEngineUnavailable, ImageNotInDaemon
    └── ClusterError                   ClusterfileError, HostError, CommandFailed, PhaseError,
                                       InvalidCluster, InvalidEnv, RootfsTemplateError,
                                       UnknownRuntime, KubeadmConfigError, K0sConfigError

Every class is defined here, none in the modules that raise them (they import from here).
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


class TemplateError(SealerError):
    """A Go text/template (`builder/_gotemplate.py`: `--format`, `.tmpl` files, chart image
    discovery) that cannot be parsed or executed; `detail` without the location prefix."""

    reference = "template-error"

    def __init__(
        self,
        detail: str,
        *,
        line: int | None = None,
        source: str = "template",
        variable: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.detail, self.line, self.source, self.variable = detail, line, source, variable
        super().__init__(self._text(), hint=hint)

    def _text(self) -> str:
        return f"{self.source}:{self.line}: {self.detail}" if self.line is not None else self.detail

    def located(self, source: str, line: int) -> TemplateError:
        if self.line is None:
            self.line, self.source = line, source
            self.message = self._text()
            self.args = (self.message,)
        return self


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


class AppTypeError(BuildError):
    """An APP or COPY of an app whose files are none of kube, helm or shell."""

    reference = "app-type"


class FetchError(BuildError):
    """A remote COPY/ADD source (http, https) that cannot be downloaded."""

    reference = "fetch-failed"


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


class InvalidDigest(ImageError):
    reference = "invalid-digest"


class InvalidPlatform(ImageError):
    reference = "invalid-platform"
    exit_code = 2


class InvalidMetadata(ImageError):
    """A Metadata file or runtime label that sealer would not understand."""

    reference = "invalid-metadata"


class InvalidExtension(ImageError):
    """A sealer annotation whose JSON does not have the shape sealer writes."""

    reference = "invalid-image-extension"


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


# --- docker engine -----------------------------------------------------------------------------


class DockerError(SealerError):
    """A local Docker engine (DOCKER_HOST or the default socket) that cannot do what was asked."""

    reference = "docker-error"


class DockerEngineUnavailable(DockerError):
    """No Docker engine answers at the address DOCKER_HOST or the default socket gives."""

    reference = "docker-engine-unavailable"


class ImageNotInDaemon(DockerError):
    """An image asked for from the Docker daemon (`docker-daemon:NAME`) that it does not hold."""

    reference = "image-not-in-daemon"


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


class InvalidCluster(ClusterError):
    """A cluster value that breaks a rule of the model; `field` names the offending field."""

    reference = "invalid-cluster"

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field


class InvalidEnv(ClusterError):
    """An env entry or name that is malformed or reserved; `source` names the layer."""

    reference = "invalid-env"

    def __init__(self, message: str, *, source: str | None = None, hint: str | None = None) -> None:
        super().__init__(f"{source}: {message}" if source else message, hint=hint)
        self.source = source


class RootfsTemplateError(ClusterError):
    """A `.tmpl` file of an image's rootfs that cannot be rendered for a host: names the file,
    the line and the variable (`runtime/env.py`)."""

    reference = "template-error"

    def __init__(
        self,
        message: str,
        *,
        path: str,
        line: int,
        variable: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(f"{path}:{line}: {message}", hint=hint)
        self.path = path
        self.line = line
        self.variable = variable


class UnknownRuntime(ClusterError):
    """A runtime name (--runtime, the image's label) no plugin answers to."""

    reference = "unknown-runtime"


class KubeadmConfigError(ClusterError):
    """The image's etc/kubeadm.yaml or a kubeadm document of the Clusterfile is unusable."""

    reference = "kubeadm-config"


class K0sConfigError(ClusterError):
    """The image's etc/k0s.yaml or the Clusterfile's ClusterConfig is not a usable k0s config."""

    reference = "k0s-config"
