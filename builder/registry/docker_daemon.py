"""Images of the local Docker engine, as skopeo's `docker-daemon:` transport reads them.

`DockerDaemon` (the build's `builder.build.pull.DockerDaemon`) finds the engine where the
docker CLI does without a context: DOCKER_HOST (with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH), else
the default socket unix:///var/run/docker.sock. It connects on first use, so a build that
bundles nothing from the daemon never imports the `docker` package nor needs an engine.

`inspect` asks `GET /images/{name}/json` for the image ID and platform. `export` streams
`GET /images/{id}/get` (the docker-archive `docker save` writes; by ID, so the bytes are the
image the caller inspected even if the tag moves meanwhile) in 1 MiB chunks into the store's
docker-archive loader (`builder.store.archive.load`, the reader `sealer load` uses: archive
spooled to the store's scratch dir, every layer hashed against the config's diff_ids, nothing
named unless all verified). Layers stay uncompressed, as docker keeps them (blob digest =
diff_id), so the same daemon image always gives the same manifest digest.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from builder.errors import DigestMismatch, DockerEngineUnavailable, DockerError
from builder.image.descriptor import Descriptor, Platform
from builder.image.reference import Reference
from builder.store.layout import Store

DEFAULT_HOST = "unix:///var/run/docker.sock"
_CHUNK = 1 << 20
_TIMEOUT_S = 60  # per socket operation (connect, each read), docker-py's default
PING_TIMEOUT_S = 10
_HINT = "start the Docker engine, or point DOCKER_HOST at one (e.g. unix:///run/user/1000/docker.sock)"


@dataclass(frozen=True, slots=True)
class DaemonImage:
    """An image the daemon holds: its ID (`docker images --no-trunc`) and platform."""

    image_id: str
    platform: Platform


def engine_address() -> str:
    """Where the engine is looked for, as messages name it."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def connect_engine(*, timeout_s: float = _TIMEOUT_S) -> Any:
    """A `docker.DockerClient` for the engine at `engine_address()` that answered `/_ping`
    (bounded by PING_TIMEOUT_S), so a missing engine is one line before anything is made:
    DockerEngineUnavailable naming the address and why. `timeout_s` then bounds each API call.
    The one way to the engine, for the build's daemon images and the runtime's docker hosts."""
    import docker
    from docker.errors import DockerException

    client = None
    try:
        client = docker.DockerClient.from_env(timeout=PING_TIMEOUT_S)
        client.ping()
    except (DockerException, OSError) as err:
        if client is not None:
            client.close()
        raise DockerEngineUnavailable(
            f"no Docker engine answers at {engine_address()} ({_reason(err)})", hint=_HINT
        ) from None
    client.api.timeout = timeout_s
    return client


def _reason(err: BaseException) -> str:
    """What went wrong, in a few words: docker-py wraps the socket error in two layers."""
    text = str(err)
    for marker, reason in (
        ("FileNotFoundError", "no such socket"),
        ("No such file", "no such socket"),
        ("ConnectionRefused", "connection refused"),
        ("Connection refused", "connection refused"),
        ("PermissionError", "permission denied"),
        ("Permission denied", "permission denied"),
        ("timed out", "timed out"),
    ):
        if marker in text:
            return reason
    lines = text.strip().splitlines()
    line = lines[0] if lines else type(err).__name__
    return line if len(line) <= 160 else line[:157] + "..."


class _ChunkStream(io.RawIOBase):
    """docker-py's generator of archive chunks as a raw binary stream (one chunk held at a time)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


@contextlib.contextmanager
def _engine_errors(what: str) -> Iterator[None]:
    """docker-py's and requests' failures while the engine is asked to `what`, as SealerErrors
    (docker.errors.ImageNotFound passes: for `inspect` it is an answer)."""
    import docker
    import requests

    try:
        yield
    except docker.errors.ImageNotFound:
        raise
    except docker.errors.APIError as err:
        raise DockerError(f"the Docker engine refused to {what}: {err.explanation or err}") from None
    except requests.RequestException as err:
        raise DockerEngineUnavailable(
            f"the Docker engine at {engine_address()} stopped answering to {what} ({type(err).__name__})",
            hint=_HINT,
        ) from None


class DockerDaemon:
    """The local Docker engine's images; connects on first use. DockerEngineUnavailable when
    no engine answers, DockerError for anything else the engine refuses."""

    def __init__(self) -> None:
        self._client: Any = None

    def _api(self) -> Any:
        if self._client is None:
            self._client = connect_engine()
        return self._client.api

    def inspect(self, name: str) -> DaemonImage | None:
        import docker

        try:
            with _engine_errors(f"inspect {name}"):
                attrs = self._api().inspect_image(name)
        except docker.errors.ImageNotFound:
            return None
        return DaemonImage(
            str(attrs["Id"]),
            Platform(
                str(attrs.get("Os") or "linux"), str(attrs["Architecture"]), attrs.get("Variant") or None
            ),
        )

    def export(self, store: Store, image_id: str, tag_as: str) -> Descriptor:
        """`image_id` into `store` as `tag_as`, streamed and verified; its manifest descriptor.
        The exported image must be the one asked for: its config digest (or, on an engine with
        the containerd image store, its manifest digest) is `image_id`."""
        from builder.store import archive  # ~5 ms of imports a build without daemon images skips

        label = f"docker-daemon:{Reference.parse(tag_as).familiar}"
        with _engine_errors(f"export {tag_as}"):
            chunks = self._api().get_image(image_id, chunk_size=_CHUNK)
            archive.load(store, io.BufferedReader(_ChunkStream(chunks), _CHUNK), name=tag_as, label=label)
        desc = store.resolve(tag_as)
        config = store.read_manifest(desc).config
        if image_id not in (str(config.digest), str(desc.digest)):
            raise DigestMismatch(
                f"{label}: the Docker engine exported image {config.digest}, not {image_id}",
                hint="build again; the image changed during the export",
            )
        return desc
