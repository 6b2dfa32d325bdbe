"""The suite's private Docker engine (tests/docker_fixtures.py) for bundling from the daemon."""

from __future__ import annotations

import docker
import pytest

from tests.docker_fixtures import dockerd

__all__ = ["docker_host", "dockerd"]


@pytest.fixture(scope="session")
def docker_host(dockerd: docker.DockerClient) -> str:
    """The private engine's address as DOCKER_HOST spells it, for `sealer` under test: a
    command that found the machine's own engine instead would prove nothing."""
    # docker-py keeps a unix socket's path only on its transport adapter.
    return f"unix://{dockerd.api._custom_adapter.socket_path}"
