"""The Docker engine docker hosts live in: DOCKER_HOST (with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH,
as the docker CLI reads them), else the default socket /var/run/docker.sock. `connect_engine`
pings it once, bounded, so a missing engine is one line at the start, before anything is made.
"""

from __future__ import annotations

import os

from builder.errors import ClusterError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
PING_TIMEOUT_S = 10


class EngineUnavailable(ClusterError):
    """No Docker engine answers at DOCKER_HOST or the default socket."""


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def connect_engine(*, timeout_s: float = 300) -> object:
    """A `docker.DockerClient` for the engine at `engine_address()`, answering `/_ping`;
    EngineUnavailable (one line naming the address) when none answers. `timeout_s` bounds
    each later API call (an exec's whole output is read through its own socket, not this)."""
    import docker
    from docker.errors import DockerException

    address = engine_address()
    hint = "start dockerd, or point DOCKER_HOST at a running engine (unix:///PATH or tcp://HOST:PORT)"
    client = None
    try:
        client = docker.DockerClient.from_env(timeout=PING_TIMEOUT_S)
        client.ping()
    except (DockerException, OSError) as err:
        if client is not None:
            client.close()
        raise EngineUnavailable(
            f"no Docker engine answers at {address} ({_reason(err)})", hint=hint
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
    return _first_line(err)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= 160 else line[:157] + "..."
