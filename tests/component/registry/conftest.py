"""Registry fixtures (real docker-registry processes) for the registry component tests."""

from __future__ import annotations

from tests.registry_fixtures import auth_registry, docker_config, registry, tls_registry

__all__ = ["auth_registry", "docker_config", "registry", "tls_registry"]
