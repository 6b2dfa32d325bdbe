"""`sealer exec`: a shell command on a saved cluster's hosts (builder/runtime/actions/remote_exec.py)."""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING

import click

from builder.cli._cluster_options import saved_cluster_name
from builder.errors import UsageError

if TYPE_CHECKING:
    from builder.runtime.actions.remote_exec import HostOutput


@click.command("exec", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--cluster", "cluster_name", help="Cluster name (default: the only saved one).")
@click.option("-r", "--roles", help="Only hosts with these roles: master,node.")
@click.option("--hosts", help="Only these hosts: a,b,c or a range first-last.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds each host may take.")
@click.option(
    "--max-parallel", type=click.IntRange(1, 256), default=32, show_default=True, help="Hosts at once."
)
@click.option("--dry-run", is_flag=True, help="Print the hosts it would run on; run nothing.")
@click.argument("command", nargs=-1, required=True)
def exec_(
    cluster_name: str | None,
    roles: str | None,
    hosts: str | None,
    timeout: float | None,
    max_parallel: int,
    dry_run: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND on the cluster's hosts in parallel; each output line is prefixed by its host.

    One argument is a shell command line (sealer exec "cat /etc/hosts | head -3"); several are
    one command and its arguments, quoted as given (sealer exec -- ls -l /etc). The command gets
    the host's script env (SEALER_ROLE, SEALER_HOST_IP, ...). The exit status is the worst
    host's; an unreachable host counts as 255.
    """
    from builder.runtime.actions import Settings
    from builder.runtime.actions.remote_exec import (
        chosen_hosts,
        exec_on_hosts,
        parse_roles,
        saved_cluster,
        worst_status,
    )
    from builder.runtime.runner import RunOptions

    line = command[0] if len(command) == 1 else shlex.join(command)
    if not line.strip():
        raise UsageError("the command is empty")
    settings = Settings(options=RunOptions(max_parallel=max_parallel))
    cluster, cli_env = saved_cluster(saved_cluster_name(cluster_name), settings)
    targets = chosen_hosts(cluster, parse_roles(roles) if roles else (), hosts)
    if dry_run:
        for h in targets:
            role = "master0" if h.ip == cluster.master0.ip else str(h.role)
            click.echo(f"{h.ip} ({role}): {line}")
        return

    def show(out: HostOutput) -> None:
        for text in out.stdout.splitlines():
            click.echo(f"{out.host}: {text}")
        for text in out.stderr.splitlines():
            click.echo(f"{out.host}: {text}", err=True)
        if out.error is not None:
            click.echo(f"{out.host}: unreachable: {out.error}", err=True)

    outputs = exec_on_hosts(
        cluster, targets, line, settings, cli_env=cli_env, timeout_s=timeout, on_output=show
    )
    failed = [o for o in outputs if o.exit_status != 0]
    if failed:
        named = ", ".join(
            f"{o.host} ({'unreachable' if o.error else f'exit {o.exit_status}'})" for o in failed
        )
        click.echo(f"sealer exec: {len(failed)} of {len(outputs)} hosts failed: {named}", err=True)
    sys.exit(worst_status(outputs))
