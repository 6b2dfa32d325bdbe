"""Infra drivers: how the runtime runs commands and moves bytes on hosts.

`InfraDriver` (base.py) is the one interface the phases and delivery use: run a command,
stream bytes into a remote process, put a file (verified), test paths, read the platform and
hostname. Drivers: `LocalDriver` (local.py: this machine, no SSH; the default when a cluster
names no hosts), `SSHDriver` (ssh.py, connections opened by _ssh_connect.py: asyncssh, one
connection per host, bounded channels and uploads), `RoutingDriver` (routing.py, built by
`make_driver(cluster)`: the local host to LocalDriver, the others to SSHDriver), and
`DockerDriver` (docker.py: hosts that are containers, through the Docker Engine API; the
driver of a `provider: CONTAINER` cluster, docs/containers.md). `_shell.py`
holds what the drivers share (the `sh -c` form, CommandFailed messages, `put_file`).
Errors are `builder.errors.HostError` and `CommandFailed`, one line each.
Imports `builder.errors`, `builder.image` and, in routing.py only, the cluster model
(`builder.runtime.cluster`, and `container_hosts` when a cluster's hosts are containers);
never `builder.build` or `builder.cli`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from builder.runtime.infra.base import (
    LOCAL_HOSTS,
    ChannelRetried,
    CommandResult,
    Connected,
    Disconnected,
    InfraDriver,
    InfraEvent,
    SSHCredentials,
    StreamResult,
    TransferProgress,
)
from builder.runtime.infra.local import LocalDriver

if TYPE_CHECKING:
    from builder.runtime.infra.docker import DockerDriver
    from builder.runtime.infra.ssh import SSHDriver


def __getattr__(name: str) -> Any:
    # asyncssh costs ~110 ms to import: only commands that reach hosts over SSH pay for it.
    if name == "SSHDriver":
        from builder.runtime.infra.ssh import SSHDriver

        return SSHDriver
    if name == "DockerDriver":  # the docker package: only for clusters on containers
        from builder.runtime.infra.docker import DockerDriver

        return DockerDriver
    raise AttributeError(name)


__all__ = [
    "LOCAL_HOSTS",
    "ChannelRetried",
    "CommandResult",
    "Connected",
    "Disconnected",
    "DockerDriver",
    "InfraDriver",
    "InfraEvent",
    "LocalDriver",
    "SSHCredentials",
    "SSHDriver",
    "StreamResult",
    "TransferProgress",
]
