"""A private Docker engine (tests/docker_fixtures.py) for the archive interop tests."""

from __future__ import annotations

from tests.docker_fixtures import dockerd

__all__ = ["dockerd"]
