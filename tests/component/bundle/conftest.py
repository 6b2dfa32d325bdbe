"""The suite's private Docker engine (tests/docker_fixtures.py) and its address as DOCKER_HOST
(tests/docker_nodes.py), for bundling from the daemon: a `sealer` under test that found the
machine's own engine instead would prove nothing."""

from __future__ import annotations

from tests.docker_nodes import docker_host, dockerd

__all__ = ["docker_host", "dockerd"]
