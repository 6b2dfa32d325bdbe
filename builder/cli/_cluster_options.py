"""What the cluster commands (run.py, membership.py, maintenance.py, cluster.py) share of
their flags: the SSH options, the run options (--env, --dry-run, --verbose, --max-parallel and
the delivery flags), the host-key flags applied to a Cluster, and which saved cluster a
command means. Imports nothing of the runtime at module level: `sealer <cmd> --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click

from builder.errors import UsageError

if TYPE_CHECKING:  # the runtime modules load when a command runs
    from builder.runtime.cluster import Cluster


def ssh_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The SSH flags of every host (-p, -i, --pk-passwd, --port, -u) and the host-key flags."""
    for decorator in reversed(
        [
            click.option("-p", "--passwd", "password", help="SSH password of every host."),
            click.option(
                "-i",
                "--pk",
                "key_file",
                type=click.Path(dir_okay=False),
                help="SSH private key of every host.",
            ),
            click.option("--pk-passwd", "passphrase", help="Passphrase of the private key."),
            click.option(
                "--port", type=click.IntRange(1, 65535), help="SSH port of every host (default 22)."
            ),
            click.option("-u", "--user", help="SSH user (default root)."),
            click.option(
                "--insecure-skip-host-key-check",
                is_flag=True,
                help="Do not verify host keys against known_hosts (Clusterfile ssh.verifyHostKeys: false).",
            ),
            click.option(
                "--known-hosts",
                type=click.Path(dir_okay=False),
                help="known_hosts file to verify host keys with (default ~/.ssh/known_hosts).",
            ),
        ]
    ):
        func = decorator(func)
    return func


DRY_RUN = click.option(
    "--dry-run", is_flag=True, help="Print the plan, one line per step and host; change nothing."
)
VERBOSE = click.option(
    "--verbose", is_flag=True, help="With --dry-run: every step's commands and env, not one line per step."
)


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The flags of a command that runs phases on hosts: --env, --dry-run, --verbose,
    --max-parallel, and the delivery flags, kept in ctx.meta for `make_settings`."""
    for decorator in reversed(
        [
            click.option(
                "-e",
                "--env",
                "env",
                multiple=True,
                metavar="K=V",
                help="Env for the scripts (wins over all).",
            ),
            DRY_RUN,
            VERBOSE,
            click.option(
                "--max-parallel",
                type=click.IntRange(1, 256),
                default=8,
                show_default=True,
                help="Hosts at once.",
            ),
            click.option(
                "--keep-blobs",
                is_flag=True,
                expose_value=False,  # read by make_settings from ctx.meta: no command repeats it
                callback=lambda ctx, _param, value: ctx.meta.__setitem__("keep_blobs", value),
                help="Also keep each delivered layer blob on the hosts (verified), so a later "
                "image sharing layers sends fewer bytes (docs/delivery.md).",
            ),
            click.option(
                "--distribution",
                type=click.Choice(["ssh", "fanout", "auto"]),
                default=None,
                expose_value=False,
                callback=lambda ctx, _param, value: ctx.meta.__setitem__("distribution", value),
                help="How layers reach the hosts: ssh from this machine to each, fanout (the "
                "registry hosts get them, the others fetch from them), auto (fanout from "
                "4 hosts on; docs/delivery.md). Default: the Clusterfile's spec.distribution, else auto.",
            ),
            click.option(
                "--fanout",
                type=click.IntRange(1, None),
                default=None,
                metavar="K",
                expose_value=False,
                callback=lambda ctx, _param, value: ctx.meta.__setitem__("fanout", value),
                help="With fan-out: the registry hosts this machine sends each layer to "
                "(default: all of them).",
            ),
        ]
    ):
        func = decorator(func)
    return func


def _with_ssh(cluster: Cluster, **changes: Any) -> Cluster:
    """The cluster with `changes` applied to its own and every host's SSH settings."""
    hosts = tuple(replace(h, ssh=replace(h.ssh, **changes)) for h in cluster.hosts)
    return replace(cluster, hosts=hosts, ssh=replace(cluster.ssh, **changes))


def host_key_flags(cluster: Cluster, *, insecure: bool, known_hosts: str | None) -> Cluster:
    """The cluster with --known-hosts and --insecure-skip-host-key-check over its SSH settings."""
    if known_hosts:
        cluster = _with_ssh(cluster, known_hosts=known_hosts)
    return _with_ssh(cluster, verify_host_keys=False) if insecure else cluster


def check_verbose(verbose: bool, dry_run: bool) -> None:
    """Before anything is asked or opened: --verbose changes only a dry-run's plan."""
    if verbose and not dry_run:
        raise UsageError("--verbose shows a dry-run's commands: it goes with --dry-run")


def saved_cluster_name(given: str | None, *, none_saved: str | None = None) -> str:
    """The saved cluster a command means: `--cluster`, else the only saved one. Several saved
    clusters need `--cluster` (UsageError listing them); none saved is a ClusterError, or
    `none_saved` for `run`, where no saved cluster means a new one."""
    from builder.errors import ClusterError
    from builder.runtime.actions import saved_clusters
    from builder.runtime.state import state_home

    if given:
        return given
    saved = saved_clusters()
    if len(saved) == 1:
        return saved[0]
    if not saved:
        if none_saved is not None:
            return none_saved
        raise ClusterError(
            f"no saved cluster in {state_home()}",
            hint="sealer run IMAGE --masters ... creates one; SEALER_STATE_HOME moves the state",
        )
    names = ", ".join(saved[:10]) + (f", ... ({len(saved)} in all)" if len(saved) > 10 else "")
    raise UsageError(f"{len(saved)} saved clusters ({names}): say which with --cluster NAME")
