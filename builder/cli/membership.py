"""`sealer apply`, `join` and `delete`: hosts joining and leaving a saved cluster (`apply`
runs one not saved yet) (docs/running.md). A host leaves only after a yes on the terminal,
or with --force.

Progress goes to stderr; the summary table and the dry-run plan go to stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from builder.cli._cluster_action import make_settings, print_outcome
from builder.cli._cluster_options import (
    DRY_RUN,
    VERBOSE,
    check_verbose,
    run_options,
    saved_cluster_name,
    ssh_options,
)
from builder.errors import UsageError

if TYPE_CHECKING:  # the runtime modules load when a command runs
    from builder.runtime.cluster import HostSpec


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-f",
    "--Clusterfile",
    "clusterfile",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("-y", "--force", is_flag=True, help="Remove hosts without asking for confirmation.")
@run_options
@click.pass_context
def apply(
    ctx: click.Context,
    clusterfile: Path,
    force: bool,
    env: tuple[str, ...],
    dry_run: bool,
    verbose: bool,
    max_parallel: int,
) -> None:
    """Make the cluster what the Clusterfile says: new hosts join, missing hosts leave.

    A cluster not saved yet is run. Changing the image is refused: that is `sealer upgrade`.
    Hosts leave only after a yes on the terminal, or with --force (as `sealer delete`).
    """
    from builder.runtime import actions
    from builder.runtime.clusterfile import load_clusterfile
    from builder.runtime.env import parse_env_args

    check_verbose(verbose, dry_run)
    cli_env = parse_env_args(env)
    wanted = load_clusterfile(clusterfile)
    if not dry_run and not force:
        containers = wanted.provider == "CONTAINER"
        leaving = actions.leaving_containers(wanted) if containers else actions.leaving_hosts(wanted)
        if leaving:  # asked before the progress display takes the terminal
            _confirm_removal(wanted.name, leaving)
    settings = make_settings(ctx, dry_run=dry_run, max_parallel=max_parallel, verbose=verbose)
    apply_action = actions.apply_containers if wanted.provider == "CONTAINER" else actions.apply
    print_outcome(apply_action(wanted, settings, cli_env=cli_env), settings.on_event)


def _confirm_removal(cluster_name: str, hosts: Sequence[str]) -> None:
    """Ask before `apply` removes hosts, as `delete` does: y/N on a terminal, else refuse."""
    from builder.runtime.runner import name_hosts

    what = f"{name_hosts(hosts)} from cluster {cluster_name}"
    if not sys.stdin.isatty():
        raise UsageError(
            f"refusing to remove {what} without confirmation: pass --force (or -y)",
            hint="the Clusterfile no longer lists them; --dry-run shows what they would run",
        )
    click.confirm(f"Remove {what}? They run clean.sh and lose the rootfs", abort=True, err=True)


def _hosts_from_flags(
    masters: str | None, nodes: str | None, ssh_kwargs: dict[str, Any], insecure: bool, base: Any
) -> list[HostSpec]:
    from builder.errors import InvalidCluster
    from builder.runtime.cluster import HostSpec, Role, parse_ip_list

    changes = {k: v for k, v in ssh_kwargs.items() if v not in (None, ())}
    if insecure:
        changes["verify_host_keys"] = False
    try:
        ssh = replace(base, **changes)
        out = [HostSpec(ip, (Role.MASTER,), ssh) for ip in (parse_ip_list(masters) if masters else ())]
        out += [HostSpec(ip, (Role.NODE,), ssh) for ip in (parse_ip_list(nodes) if nodes else ())]
    except InvalidCluster as err:
        raise UsageError(err.message, hint=err.hint) from None
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--masters", help="Masters to add: a,b,c or first-last.")
@click.option("-n", "--nodes", help="Nodes to add: a,b,c or first-last.")
@ssh_options
@click.option("--cluster", "cluster_name", help="Cluster name (default: the only saved one).")
@run_options
@click.pass_context
def join(
    ctx: click.Context,
    masters: str | None,
    nodes: str | None,
    password: str | None,
    key_file: str | None,
    passphrase: str | None,
    port: int | None,
    user: str | None,
    insecure_skip_host_key_check: bool,
    known_hosts: str | None,
    cluster_name: str | None,
    env: tuple[str, ...],
    dry_run: bool,
    verbose: bool,
    max_parallel: int,
) -> None:
    """Add hosts to the saved cluster (SSH settings default to the cluster's)."""
    from builder.runtime import actions
    from builder.runtime.env import parse_env_args
    from builder.runtime.state import ClusterState

    if not masters and not nodes:
        raise UsageError("nothing to join: give --masters or --nodes")
    cluster_name = saved_cluster_name(cluster_name)
    saved = ClusterState(cluster_name).load_cluster()
    if saved is None:
        raise UsageError(f"no saved cluster {cluster_name}", hint="sealer run IMAGE --masters ... creates it")
    ssh_kwargs = {
        "password": password,
        "key_files": (key_file,) if key_file else (),
        "passphrase": passphrase,
        "port": port,
        "user": user,
        "known_hosts": known_hosts,
    }
    if saved.provider == "CONTAINER":  # the hosts are containers: --masters/--nodes are counts
        from builder.cli._containers import parse_count

        settings = make_settings(ctx, dry_run=dry_run, max_parallel=max_parallel, verbose=verbose)
        added = (parse_count("--masters", masters), parse_count("--nodes", nodes))
        outcome = actions.join_containers(cluster_name, *added, settings, cli_env=parse_env_args(env))
        print_outcome(outcome, settings.on_event)
        return
    hosts = _hosts_from_flags(masters, nodes, ssh_kwargs, insecure_skip_host_key_check, saved.ssh)
    settings = make_settings(ctx, dry_run=dry_run, max_parallel=max_parallel, verbose=verbose)
    print_outcome(actions.join(cluster_name, hosts, settings, cli_env=parse_env_args(env)), settings.on_event)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--masters", help="Masters to remove: a,b,c or first-last.")
@click.option("-n", "--nodes", help="Nodes to remove: a,b,c or first-last.")
@click.option("-a", "--all", "all_", is_flag=True, help="Delete the whole cluster.")
@click.option("--cluster", "cluster_name", help="Cluster name (default: the only saved one).")
@click.option("-y", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--skip-unreachable",
    is_flag=True,
    help="A host sealer cannot log in to runs nothing and is forgotten anyway (clean it by hand).",
)
@DRY_RUN
@VERBOSE
@click.pass_context
def delete(
    ctx: click.Context,
    masters: str | None,
    nodes: str | None,
    all_: bool,
    cluster_name: str | None,
    force: bool,
    skip_unreachable: bool,
    dry_run: bool,
    verbose: bool,
) -> None:
    """Remove hosts from the cluster, or the whole cluster with --all.

    Each leaving host runs scripts/clean.sh (nodes first, master0 last), then its rootfs goes
    and the saved state forgets it. Deleting a host again is harmless; a cluster that is not
    saved (any more) is an error.
    """
    from builder.errors import InvalidCluster
    from builder.runtime import actions
    from builder.runtime.cluster import parse_ip_list
    from builder.runtime.state import ClusterState

    if all_ and (masters or nodes):
        raise UsageError("give --all or --masters/--nodes, not both")
    check_verbose(verbose, dry_run)
    if not all_ and not masters and not nodes:
        raise UsageError("nothing to delete: give --masters, --nodes or --all")
    try:
        master_ips = parse_ip_list(masters) if masters else ()
        node_ips = parse_ip_list(nodes) if nodes else ()
    except InvalidCluster as err:
        raise UsageError(err.message, hint=err.hint) from None
    cluster_name = saved_cluster_name(cluster_name)
    if not dry_run and not force and ClusterState(cluster_name).exists():  # else delete says so
        what = f"the whole cluster {cluster_name}" if all_ else ", ".join((*master_ips, *node_ips))
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to delete {what} without confirmation", hint="pass --force (or -y)")
        click.confirm(f"Delete {what}? Its hosts run clean.sh and lose the rootfs", abort=True, err=True)
    settings = make_settings(ctx, dry_run=dry_run, max_parallel=8, verbose=verbose, need_store=False)
    outcome = actions.delete_containers(  # actions.delete, and the containers of a docker cluster
        cluster_name,
        settings,
        masters=master_ips,
        nodes=node_ips,
        all_=all_,
        skip_unreachable=skip_unreachable,
    )
    print_outcome(outcome, settings.on_event)
