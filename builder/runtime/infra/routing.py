"""The driver a cluster runs with: LocalDriver for the local host (`sealer run IMAGE` with no
hosts), SSHDriver for the rest, and RoutingDriver when a cluster mixes both; DockerDriver for a
CONTAINER cluster (its hosts are containers, container_hosts.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from builder.errors import HostError
from builder.runtime.cluster import Cluster
from builder.runtime.infra.base import CommandResult, InfraDriver, SSHCredentials, StreamResult
from builder.runtime.infra.local import LocalDriver


class RoutingDriver:
    """One driver per host: the local machine through LocalDriver, the rest over SSH."""

    def __init__(self, routes: Mapping[str, InfraDriver]) -> None:
        self._routes = dict(routes)

    def _for(self, host: str) -> InfraDriver:
        try:
            return self._routes[host]
        except KeyError:
            raise HostError(f"{host}: not a host of this cluster", host=host) from None

    async def run(self, host: str, command: str, **kwargs: Any) -> CommandResult:
        return await self._for(host).run(host, command, **kwargs)

    async def pipe_to(self, host: str, remote_command: str, chunks: Any, **kwargs: Any) -> StreamResult:
        return await self._for(host).pipe_to(host, remote_command, chunks, **kwargs)

    async def stream_to(self, host: str, remote_command: str, chunks: Any, **kwargs: Any) -> int:
        return await self._for(host).stream_to(host, remote_command, chunks, **kwargs)

    async def put_file(self, host: str, local: Any, remote: str, *, mode: int = 0o644) -> int:
        return await self._for(host).put_file(host, local, remote, mode=mode)

    async def exists(self, host: str, path: str) -> bool:
        return await self._for(host).exists(host, path)

    async def is_dir(self, host: str, path: str) -> bool:
        return await self._for(host).is_dir(host, path)

    async def platform(self, host: str) -> Any:
        return await self._for(host).platform(host)

    async def hostname(self, host: str) -> str:
        return await self._for(host).hostname(host)

    async def close(self) -> None:
        seen: set[int] = set()
        for driver in self._routes.values():
            if id(driver) not in seen:
                seen.add(id(driver))
                await driver.close()


def ssh_credentials(cluster: Cluster) -> dict[str, SSHCredentials]:
    return {h.ip: SSHCredentials(**dataclasses.asdict(h.ssh)) for h in cluster.hosts if not h.local}


def make_driver(cluster: Cluster, *, max_hosts: int = 32) -> InfraDriver:
    """LocalDriver for the local host (sealer run IMAGE with no hosts), SSHDriver for the rest."""
    if cluster.provider == "CONTAINER":  # hosts are containers: the Engine API, no SSH
        from builder.runtime.container_hosts import docker_driver

        return docker_driver(cluster.name)
    local = [h for h in cluster.hosts if h.local]
    remote = [h for h in cluster.hosts if not h.local]
    local_driver = LocalDriver(extra_names=frozenset(h.ip for h in local)) if local else None
    if not remote:
        assert local_driver is not None
        return local_driver
    from builder.runtime.infra.ssh import SSHDriver

    ssh = SSHDriver(ssh_credentials(cluster), max_hosts=max_hosts)
    if local_driver is None:
        return ssh
    routes: dict[str, InfraDriver] = {h.ip: ssh for h in remote}
    routes.update({h.ip: local_driver for h in local})
    return RoutingDriver(routes)
