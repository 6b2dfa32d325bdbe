"""Docker hosts: the containers and the network a CONTAINER cluster runs on (sealer's
`--provider CONTAINER`, kind's and k3d's way of getting a cluster in CI).

Per cluster, on the engine `builder.registry.docker_daemon.connect_engine` finds: one user-defined bridge
network `sealer-<cluster>`, and per host one container `sealer-<cluster>-<role><n>` with its
own hostname `<cluster>-<role><n>`, started from the node image with `sleep infinity` under the
engine's init (`--init`: the scripts' daemons are reaped), all labelled with the cluster name
(`CLUSTER_LABEL`) and the role, so the engine itself says which containers a cluster has and
`remove_all` finds them even when the saved state is gone. A host is its address on the
network: the cluster model, the phases and the state see IP addresses as for SSH hosts.

Capabilities: every default one is dropped and only what the phases use is added back, one
by one (`CAPABILITIES`), rather than `--privileged`, which cannot start where the machine's
capability bounding set lacks some capability (runc: "unable to apply caps").

`create` checks each new container has what delivery needs (sh, tar, sha256sum, zstd or
gzip); on any failure it removes everything it made, so a refused node image leaves nothing.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from builder.errors import ClusterError
from builder.runtime.cluster import Role

if TYPE_CHECKING:
    from builder.runtime.infra.docker import DockerDriver

CLUSTER_LABEL = "io.sealer.cluster"
ROLE_LABEL = "io.sealer.role"
# What the phases do in a container, and the capability each needs (docs/containers.md):
CAPABILITIES = (
    "CHOWN",  # tar --numeric-owner gives unpacked files their owners; scripts chown
    "DAC_OVERRIDE",  # root writes files whatever their mode (delivery's staging trees)
    "FOWNER",  # chmod/utime of files root does not own (tar restoring modes and mtimes)
    "FSETID",  # setuid/setgid bits kept on unpacked files
    "KILL",  # scripts and timeouts signal processes of other users
    "SETUID",  # su/setpriv in scripts, daemons dropping privileges
    "SETGID",
    "NET_BIND_SERVICE",  # services on ports below 1024 (a registry on 443)
    "NET_RAW",  # ping and raw sockets for the scripts' checks
    "SYS_CHROOT",  # chroot in scripts
    "MKNOD",  # refused by delivery anyway; runtimes make their device nodes
    "AUDIT_WRITE",
    "SETFCAP",  # file capabilities on unpacked binaries
)
_NAME = re.compile(r"^sealer-(?P<cluster>.+)-(?P<role>master|node)(?P<index>\d+)$")
_TOOLS_PROBE = (
    "for t in sh tar sha256sum; do command -v $t >/dev/null 2>&1 || echo missing=$t; done; "
    "command -v zstd >/dev/null 2>&1 || command -v gzip >/dev/null 2>&1 || echo missing=zstd-or-gzip; "
    "tar --version 2>/dev/null | grep -q 'GNU tar' || echo missing=GNU-tar"
)


def network_name(cluster: str) -> str:
    return f"sealer-{cluster}"


def container_name(cluster: str, role: Role, index: int) -> str:
    return f"sealer-{cluster}-{role}{index}"


def hostname(cluster: str, role: Role, index: int) -> str:
    suffix = f"-{role}{index}"
    return cluster[: 63 - len(suffix)].rstrip("-") + suffix


@dataclass(frozen=True, slots=True)
class ContainerHost:
    """One host container: its name, role, address on the cluster network, engine status."""

    name: str
    role: Role
    index: int
    ip: str
    status: str


class ContainerHosts:
    """The containers and network of one cluster on the engine `client` (docker.DockerClient)."""

    def __init__(self, client: Any, cluster: str) -> None:
        self._client = client
        self.cluster = cluster
        self.network = network_name(cluster)

    # --- reading -------------------------------------------------------------------------------

    def hosts(self) -> list[ContainerHost]:
        """The cluster's containers (by label), in role then index order."""
        out = []
        for c in self._client.containers.list(all=True, filters={"label": f"{CLUSTER_LABEL}={self.cluster}"}):
            match = _NAME.match(c.name)
            if match is None or match["cluster"] != self.cluster:
                continue
            nets = c.attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
            ip = (nets.get(self.network) or {}).get("IPAddress", "")
            out.append(ContainerHost(c.name, Role(match["role"]), int(match["index"]), ip, c.status))
        return sorted(out, key=lambda h: (h.role is not Role.MASTER, h.index))

    def addresses(self) -> dict[str, str]:
        """Address on the cluster network -> container name, for the driver."""
        return {h.ip: h.name for h in self.hosts() if h.ip}

    def _networks(self) -> list[Any]:
        # the engine's name filter matches prefixes too: sealer-a would find sealer-ab
        return [n for n in self._client.networks.list(names=[self.network]) if n.name == self.network]

    def has_network(self) -> bool:
        return bool(self._networks())

    # --- making --------------------------------------------------------------------------------

    def _ensure_network(self) -> bool:
        """Make the cluster's network unless it exists; True when this call made it."""
        if self.has_network():
            return False
        self._client.networks.create(
            self.network, driver="bridge", labels={CLUSTER_LABEL: self.cluster}, check_duplicate=True
        )
        return True

    def _node_image(self, image: str) -> None:
        from docker.errors import ImageNotFound

        try:
            self._client.images.get(image)
        except ImageNotFound:
            raise ClusterError(
                f"node image {image} is not in the Docker engine",
                hint="make node-image builds sealer-node:latest offline; or give --node-image "
                "(spec.nodeImage) an image with sh, GNU tar, coreutils and zstd or gzip",
            ) from None

    def create(self, counts: Mapping[Role, int], node_image: str) -> list[ContainerHost]:
        """`counts` more hosts per role (indices after the highest in use), started and checked;
        on any failure everything this call made is removed and ClusterError says why."""
        from docker.errors import DockerException

        self._node_image(node_image)
        existing = self.hosts()
        made_network = self._ensure_network()
        made: list[Any] = []
        try:
            for role in (Role.MASTER, Role.NODE):
                start = max((h.index + 1 for h in existing if h.role is role), default=0)
                for index in range(start, start + counts.get(role, 0)):
                    made.append(self._run(role, index, node_image))
            for container in made:
                self._check_tools(container, node_image)
        except (DockerException, ClusterError) as err:
            self._remove_containers(made)
            if made_network:
                self._remove_network()
            if isinstance(err, ClusterError):
                raise
            raise ClusterError(f"cannot make the cluster's containers: {_one_line(err)}") from None
        names = {c.name for c in made}
        return [h for h in self.hosts() if h.name in names]

    def _run(self, role: Role, index: int, node_image: str) -> Any:
        return self._client.containers.run(
            node_image,
            ["sleep", "infinity"],
            detach=True,
            name=container_name(self.cluster, role, index),
            hostname=hostname(self.cluster, role, index),
            network=self.network,
            init=True,
            cap_drop=["ALL"],
            cap_add=list(CAPABILITIES),
            labels={CLUSTER_LABEL: self.cluster, ROLE_LABEL: str(role)},
        )

    def _check_tools(self, container: Any, node_image: str) -> None:
        result = container.exec_run(["sh", "-c", _TOOLS_PROBE])
        missing = [
            line.split("=", 1)[1] for line in result.output.decode().split() if line.startswith("missing=")
        ]
        if result.exit_code not in (0, 1) or missing:
            what = ", ".join(missing) or f"sh -c exited {result.exit_code}"
            raise ClusterError(
                f"node image {node_image} lacks {what}",
                hint="a node image needs sh, GNU tar, sha256sum and zstd or gzip (docs/containers.md)",
            )

    # --- removing ------------------------------------------------------------------------------

    def remove(self, ips: Sequence[str]) -> list[str]:
        """Remove the containers at `ips` (gone ones are fine); their names."""
        by_ip = {h.ip: h.name for h in self.hosts()}
        names = [by_ip[ip] for ip in ips if ip in by_ip]
        self._remove_containers([self._client.containers.get(n) for n in names])
        return names

    def remove_all(self) -> list[str]:
        """Every container of the cluster, then its network. Idempotent."""
        names = [h.name for h in self.hosts()]
        self._remove_containers([self._client.containers.get(n) for n in names])
        self._remove_network()
        return names

    def remove_network_if_unused(self) -> None:
        """The cluster's network, when none of its containers is left."""
        if not self.hosts():
            self._remove_network()

    def _remove_containers(self, containers: Sequence[Any]) -> None:
        from docker.errors import NotFound

        for c in containers:
            with contextlib.suppress(NotFound):
                c.remove(force=True, v=True)

    def _remove_network(self) -> None:
        from docker.errors import NotFound

        for net in self._networks():
            with contextlib.suppress(NotFound):
                net.remove()


def _one_line(err: BaseException) -> str:
    from docker.errors import APIError

    text = err.explanation if isinstance(err, APIError) and err.explanation else str(err)
    return " ".join(str(text).split())[:200]


def docker_driver(cluster: str) -> DockerDriver:
    """The DockerDriver for `cluster`'s containers on the engine at DOCKER_HOST (or the default
    socket); DockerEngineUnavailable, one line, when none answers."""
    from builder.registry.docker_daemon import connect_engine
    from builder.runtime.infra.docker import DockerDriver

    client = connect_engine()
    return DockerDriver(client, resolve=ContainerHosts(client, cluster).addresses, owns_client=True)
