"""Docker hosts for tests, on the suite's private engine (tests/docker_fixtures.py): its
address as DOCKER_HOST, the node image `make node-image` builds (built once per session from
this machine's programs, offline), one container for driver tests, and `leftovers`, what a
test left on the engine (containers, networks, volumes)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from builder.runtime.infra.node_image import DEFAULT_NODE_IMAGE, build_node_image
from tests.docker_fixtures import dockerd

__all__ = ["docker_host", "dockerd", "leftovers", "node_container", "node_image"]


@pytest.fixture(scope="session")
def docker_host(dockerd: docker.DockerClient) -> str:
    """The private engine's address, as DOCKER_HOST spells it."""
    return f"unix://{dockerd.api._custom_adapter.socket_path}"


@pytest.fixture(scope="session")
def node_image(dockerd: docker.DockerClient) -> str:
    build_node_image(dockerd, DEFAULT_NODE_IMAGE)
    return DEFAULT_NODE_IMAGE


@pytest.fixture
def node_container(dockerd: docker.DockerClient, node_image: str) -> Iterator[Any]:
    """One started node container on no network (driver tests need no network)."""
    container = dockerd.containers.run(
        node_image, ["sleep", "infinity"], detach=True, init=True, network_mode="none", hostname="drv-node"
    )
    try:
        yield container
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def leftovers(client: docker.DockerClient) -> list[str]:
    """Containers, user networks and volumes on the engine (the private engine starts with none)."""
    out = [f"container {c.name}" for c in client.containers.list(all=True)]
    out += [f"network {n.name}" for n in client.networks.list() if n.name not in ("bridge", "host", "none")]
    out += [f"volume {v.name}" for v in client.volumes.list()]
    return out
