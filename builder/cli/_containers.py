"""The flags of `sealer run --provider docker` (docs/containers.md): counts instead of
addresses, no SSH settings, the node image; read here so that run.py keeps one branch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from builder.errors import InvalidCluster, UsageError

if TYPE_CHECKING:
    from builder.runtime.cluster import Cluster

MAX_CONTAINERS = 64  # per role and command: a laptop's or a CI runner's worth


def parse_count(flag: str, text: str | None) -> int:
    """A `--masters`/`--nodes` count of containers; an address names a host, which docker hosts
    are not (InvalidCluster, exit 1, before anything is made)."""
    if text is None or text == "":
        return 0
    value = text.strip()
    if not value.isdigit():
        raise InvalidCluster(
            f"{flag} {text!r}: with --provider docker it is a count of containers, not addresses",
            hint=f"e.g. {flag} 1; to run on machines by address drop --provider docker",
        )
    count = int(value)
    if count > MAX_CONTAINERS:
        raise InvalidCluster(f"{flag} {count}: at most {MAX_CONTAINERS} containers per role at once")
    return count


def run_on_docker(
    ctx: click.Context,
    image: str | None,
    clusterfile: Path | None,
    masters: str | None,
    nodes: str | None,
    ssh_given: Sequence[str],
    cmds: Sequence[str],
    apps: str | None,
    cluster_name: str | None,
) -> Cluster:
    """What `sealer run IMAGE --provider docker --masters N --nodes M` asks for."""
    from builder.runtime.actions.containers import container_cluster
    from builder.runtime.cluster import DEFAULT_CLUSTER_NAME, check_cluster_name

    if ctx.meta.get("provider") != "docker":
        raise InvalidCluster("--node-image is for --provider docker", hint="add --provider docker")
    if clusterfile is not None:
        raise UsageError("give -f Clusterfile (spec.provider: CONTAINER) or --provider docker, not both")
    if not image:
        raise UsageError("missing IMAGE", hint="sealer run IMAGE --provider docker --masters 1 --nodes 2")
    if ssh_given:
        raise InvalidCluster(
            f"{', '.join(ssh_given)}: docker hosts are reached through the Docker engine, not SSH"
        )
    name = cluster_name or DEFAULT_CLUSTER_NAME
    try:
        check_cluster_name(name)
    except InvalidCluster as err:
        raise UsageError(err.message, hint=err.hint) from None
    app_names = tuple(a.strip() for a in apps.split(",") if a.strip()) if apps else ()
    return container_cluster(
        name,
        image,
        parse_count("--masters", masters) if masters else 1,
        parse_count("--nodes", nodes),
        node_image=str(ctx.meta.get("node_image") or ""),
        cmds=cmds,
        app_names=app_names,
    )
