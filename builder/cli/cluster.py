"""Cluster commands: run, gen, apply, join, delete, cluster status and import (docs/running.md).

Progress goes to stderr (a live line per host on a terminal, plain lines otherwise); the
summary table, the dry-run plan, `gen`'s Clusterfile and `status` go to stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from builder.cli._options import make_registry_options, open_store
from builder.cli.output import human_size, print_json, print_table
from builder.cli.progress import run_progress
from builder.errors import UsageError

if TYPE_CHECKING:  # the runtime modules load when a command runs
    from builder.image.descriptor import Platform
    from builder.runtime.actions import Outcome, Settings
    from builder.runtime.cluster import Cluster, HostSpec
    from builder.store.layout import Store


# --- shared options ------------------------------------------------------------------------------


def _ssh_options(func: Callable[..., Any]) -> Callable[..., Any]:
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


_DRY_RUN = click.option(
    "--dry-run", is_flag=True, help="Print the plan, one line per step and host; change nothing."
)
_VERBOSE = click.option(
    "--verbose", is_flag=True, help="With --dry-run: every step's commands and env, not one line per step."
)


def _run_options(func: Callable[..., Any]) -> Callable[..., Any]:
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
            _DRY_RUN,
            _VERBOSE,
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
                expose_value=False,  # read by _settings from ctx.meta: no command repeats it
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


def _host_key_flags(cluster: Cluster, *, insecure: bool, known_hosts: str | None) -> Cluster:
    if known_hosts:
        cluster = _with_ssh(cluster, known_hosts=known_hosts)
    return _with_ssh(cluster, verify_host_keys=False) if insecure else cluster


def _settings(
    ctx: click.Context, *, dry_run: bool, max_parallel: int, verbose: bool = False, need_store: bool = True
) -> Settings:
    from builder.runtime.actions import Settings
    from builder.runtime.runner import RunOptions

    _check_verbose(verbose, dry_run)
    store = open_store(ctx) if need_store else None
    if store is not None:
        # Held until the command ends: delivery streams the image's blobs from the store, and
        # a prune meanwhile must wait rather than free them.
        ctx.with_resource(store.gc_lock(exclusive=False))
    progress = run_progress(dry_run=dry_run)
    ctx.call_on_close(progress.close)
    return Settings(
        store=store,
        options=RunOptions(max_parallel=max_parallel, dry_run=dry_run, verbose=verbose),
        on_event=progress,
        pull=_puller(store, progress.registry_events) if store is not None else None,
        keep_blobs=bool(ctx.meta.get("keep_blobs", False)),
        distribution=ctx.meta.get("distribution"),
        fanout=ctx.meta.get("fanout"),
    )


def _check_verbose(verbose: bool, dry_run: bool) -> None:
    """Before anything is asked or opened: --verbose changes only a dry-run's plan."""
    if verbose and not dry_run:
        raise UsageError("--verbose shows a dry-run's commands: it goes with --dry-run")


def _puller(store: Store, on_event: Callable[[Any], None]) -> Callable[[str, Platform], None]:
    def pull(name: str, platform: Platform) -> None:
        from builder.registry.client import RegistryClient  # requests: slow to import

        options = make_registry_options(True, False, None, None)  # honours SEALER_REGISTRY_TIMEOUT
        RegistryClient(options, on_event).pull(store, name, platform=platform)

    return pull


def _report(outcome: Outcome, progress: Any = None) -> None:
    if progress is not None:
        progress.close()
    if outcome.dry_run:
        click.echo("\n".join(outcome.plan))
        return
    if outcome.hosts:
        rows = [
            [
                h.host,
                h.role,
                f"{len(h.phases)}" + (f" (failed in {h.failed})" if h.failed else ""),
                human_size(h.bytes_sent),
                f"{h.seconds:.2f}",
            ]
            for h in outcome.hosts
        ]
        print_table(["HOST", "ROLE", "PHASES", "DELIVERED", "SECONDS"], rows)
    click.echo(outcome.message, err=True)


# --- commands ------------------------------------------------------------------------------------


def _cluster_from_args(
    image: str | None,
    clusterfile: Path | None,
    *,
    masters: str | None,
    nodes: str | None,
    password: str | None,
    key_file: str | None,
    passphrase: str | None,
    port: int | None,
    user: str | None,
    cmds: Sequence[str],
    cluster_name: str | None,
    insecure: bool,
    known_hosts: str | None = None,
) -> Cluster:
    from builder.runtime.cluster import DEFAULT_CLUSTER_NAME
    from builder.runtime.clusterfile import cluster_from_flags, load_clusterfile

    if clusterfile is not None:
        if image or masters or nodes:
            raise UsageError("give -f Clusterfile or IMAGE with --masters/--nodes, not both")
        cluster = load_clusterfile(clusterfile)
        if cmds:
            cluster = replace(cluster, cmds=tuple(cmds))
        if cluster_name and cluster_name != cluster.name:
            raise UsageError(f"--cluster {cluster_name} but the Clusterfile names {cluster.name}")
    else:
        if not image:
            raise UsageError(
                "missing IMAGE (or -f Clusterfile)", hint="sealer run IMAGE --masters IPS --nodes IPS"
            )
        cluster = cluster_from_flags(
            image,
            masters,
            nodes,
            password=password,
            key_file=key_file,
            passphrase=passphrase,
            port=port,
            user=user,
            cmds=cmds,
            name=cluster_name or DEFAULT_CLUSTER_NAME,
        )
    return _host_key_flags(cluster, insecure=insecure, known_hosts=known_hosts)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("image", required=False)
@click.option(
    "-f", "--Clusterfile", "clusterfile", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("-m", "--masters", help="Master addresses: a,b,c or a range first-last.")
@click.option("-n", "--nodes", help="Node addresses: a,b,c or a range first-last.")
@_ssh_options
@click.option("--cmds", multiple=True, help="Launch commands instead of the image's (repeatable).")
@click.option("--apps", help="Launch only these apps of the image, in this order: a,b.")
@click.option(
    "--cluster",
    "cluster_name",
    help="Cluster name (default my-cluster; for an app: the only saved cluster).",
)
@click.option(
    "--runtime",
    help="Cluster runtime instead of the image's: kubernetes, k3s, k0s or none (only the scripts).",
)
@click.option(
    "--provider",
    type=click.Choice(["ssh", "docker"]),
    expose_value=False,
    callback=lambda ctx, _param, value: ctx.meta.__setitem__("provider", value),
    help="docker: the hosts are containers made for the cluster, --masters/--nodes are counts "
    "(docs/containers.md). Default ssh (or the Clusterfile's spec.provider).",
)
@click.option(
    "--node-image",
    expose_value=False,
    callback=lambda ctx, _param, value: ctx.meta.__setitem__("node_image", value),
    help="With --provider docker: the containers' image (default sealer-node:latest, `make node-image`).",
)
@_run_options
@click.pass_context
def run(
    ctx: click.Context,
    image: str | None,
    clusterfile: Path | None,
    masters: str | None,
    nodes: str | None,
    password: str | None,
    key_file: str | None,
    passphrase: str | None,
    port: int | None,
    user: str | None,
    insecure_skip_host_key_check: bool,
    known_hosts: str | None,
    cmds: tuple[str, ...],
    apps: str | None,
    cluster_name: str | None,
    runtime: str | None,
    env: tuple[str, ...],
    dry_run: bool,
    verbose: bool,
    max_parallel: int,
) -> None:
    """Run IMAGE as a cluster on the hosts (this machine when no --masters are given).

    Check the hosts, deliver the rootfs, run scripts/init.sh everywhere, start the cluster
    runtime, launch the image's commands or apps on master0, and save the cluster under
    ~/.sealer/<cluster>/. A run that failed resumes when run again.

    With no --masters/--nodes/-f and a saved cluster (--cluster, else the only saved one), an
    app image runs on that cluster: its rootfs goes to master0 only and its CMDS (or LAUNCH
    apps, or --cmds) run there.
    """
    from builder.runtime import actions
    from builder.runtime.cluster import DEFAULT_CLUSTER_NAME
    from builder.runtime.env import parse_env_args

    cli_env = parse_env_args(env)
    if image and clusterfile is None and not masters and not nodes:
        name = _saved_cluster(cluster_name, none_saved=DEFAULT_CLUSTER_NAME)
        if actions.runs_as_app(name, image):
            ssh = {
                "-p": password,
                "-i": key_file,
                "--pk-passwd": passphrase,
                "--port": port,
                "-u": user,
                "--known-hosts": known_hosts,
                "--insecure-skip-host-key-check": insecure_skip_host_key_check or None,
                "--runtime": runtime,
                "--apps": apps,
            }
            given = [flag for flag, value in ssh.items() if value is not None]
            if given:
                raise UsageError(
                    f"{', '.join(given)}: not for an app on cluster {name}, which runs with the saved cluster's settings",
                    hint="give --masters to make a new cluster instead",
                )
            settings = _settings(ctx, dry_run=dry_run, max_parallel=max_parallel, verbose=verbose)
            outcome = actions.run_app(name, image, settings, cli_env=cli_env, cmds=cmds)
            _report(outcome, settings.on_event)
            return
    if ctx.meta.get("provider") == "docker" or ctx.meta.get("node_image"):
        from builder.cli._containers import run_on_docker

        ssh_given = [f for f, v in (("-p", password), ("-i", key_file), ("--port", port), ("-u", user)) if v]
        docker_cluster = run_on_docker(
            ctx, image, clusterfile, masters, nodes, ssh_given, cmds, apps, cluster_name
        )
        settings = _settings(ctx, dry_run=dry_run, max_parallel=max_parallel, verbose=verbose)
        outcome = actions.run_containers(docker_cluster, settings, cli_env=cli_env, runtime=runtime)
        _report(outcome, settings.on_event)
        return
    cluster = _cluster_from_args(
        image,
        clusterfile,
        masters=masters,
        nodes=nodes,
        password=password,
        key_file=key_file,
        passphrase=passphrase,
        port=port,
        user=user,
        cmds=cmds,
        cluster_name=cluster_name,
        insecure=insecure_skip_host_key_check,
        known_hosts=known_hosts,
    )
    if apps is not None:  # over the Clusterfile's appNames, as --cmds over its cmds
        names = tuple(a.strip() for a in apps.split(",") if a.strip())
        if not names:
            raise UsageError("--apps: no app named", hint="--apps a,b launches apps a and b of the image")
        cluster = replace(cluster, app_names=names)
    settings = _settings(ctx, dry_run=dry_run, max_parallel=max_parallel, verbose=verbose)
    run_action = actions.run_containers if cluster.provider == "CONTAINER" else actions.run
    outcome = run_action(cluster, settings, cli_env=cli_env, runtime=runtime)
    _report(outcome, settings.on_event)


def _saved_cluster(given: str | None, *, none_saved: str | None = None) -> str:
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


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("image")
@click.option("-m", "--masters", help="Master addresses: a,b,c or a range first-last.")
@click.option("-n", "--nodes", help="Node addresses: a,b,c or a range first-last.")
@_ssh_options
@click.option("-e", "--env", "env", multiple=True, metavar="K=V", help="Cluster env entries.")
@click.option("--cmds", multiple=True, help="Launch commands instead of the image's (repeatable).")
@click.option("--cluster", "cluster_name", help="Cluster name (default my-cluster).")
def gen(
    image: str,
    masters: str | None,
    nodes: str | None,
    password: str | None,
    key_file: str | None,
    passphrase: str | None,
    port: int | None,
    user: str | None,
    insecure_skip_host_key_check: bool,
    known_hosts: str | None,
    env: tuple[str, ...],
    cmds: tuple[str, ...],
    cluster_name: str | None,
) -> None:
    """Print the Clusterfile `sealer run` would use for these flags (secrets included)."""
    from builder.runtime.clusterfile import cluster_from_flags, dump_clusterfile
    from builder.runtime.env import parse_env_args

    cluster = cluster_from_flags(
        image,
        masters,
        nodes,
        password=password,
        key_file=key_file,
        passphrase=passphrase,
        port=port,
        user=user,
        env=parse_env_args(env),
        cmds=cmds,
        name=cluster_name or "my-cluster",
    )
    cluster = _host_key_flags(cluster, insecure=insecure_skip_host_key_check, known_hosts=known_hosts)
    click.echo(dump_clusterfile(cluster), nl=False)
    missing = _missing_known_hosts(cluster)
    if missing:
        # On stderr: stdout is the Clusterfile. `run -f` would stop on every host otherwise.
        click.echo(
            f"note: {missing} does not exist, so `sealer run` cannot check the hosts' keys: give gen or run "
            "--known-hosts FILE (ssh.knownHosts) or --insecure-skip-host-key-check",
            err=True,
        )


def _missing_known_hosts(cluster: Cluster) -> str | None:
    """The known_hosts file SSH hosts of `cluster` would be checked against, if it is missing."""
    for host in cluster.hosts:
        if host.local or not host.ssh.verify_host_keys:
            continue
        path = Path(host.ssh.known_hosts or "~/.ssh/known_hosts").expanduser()
        if not path.is_file():
            return host.ssh.known_hosts or "~/.ssh/known_hosts"
    return None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-f",
    "--Clusterfile",
    "clusterfile",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("-y", "--force", is_flag=True, help="Remove hosts without asking for confirmation.")
@_run_options
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

    _check_verbose(verbose, dry_run)
    cli_env = parse_env_args(env)
    wanted = load_clusterfile(clusterfile)
    if not dry_run and not force:
        containers = wanted.provider == "CONTAINER"
        leaving = actions.leaving_containers(wanted) if containers else actions.leaving_hosts(wanted)
        if leaving:  # asked before the progress display takes the terminal
            _confirm_removal(wanted.name, leaving)
    settings = _settings(ctx, dry_run=dry_run, max_parallel=max_parallel, verbose=verbose)
    apply_action = actions.apply_containers if wanted.provider == "CONTAINER" else actions.apply
    _report(apply_action(wanted, settings, cli_env=cli_env), settings.on_event)


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
@_ssh_options
@click.option("--cluster", "cluster_name", help="Cluster name (default: the only saved one).")
@_run_options
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
    cluster_name = _saved_cluster(cluster_name)
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

        settings = _settings(ctx, dry_run=dry_run, max_parallel=max_parallel, verbose=verbose)
        added = (parse_count("--masters", masters), parse_count("--nodes", nodes))
        outcome = actions.join_containers(cluster_name, *added, settings, cli_env=parse_env_args(env))
        _report(outcome, settings.on_event)
        return
    hosts = _hosts_from_flags(masters, nodes, ssh_kwargs, insecure_skip_host_key_check, saved.ssh)
    settings = _settings(ctx, dry_run=dry_run, max_parallel=max_parallel, verbose=verbose)
    _report(actions.join(cluster_name, hosts, settings, cli_env=parse_env_args(env)), settings.on_event)


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
@_DRY_RUN
@_VERBOSE
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
    _check_verbose(verbose, dry_run)
    if not all_ and not masters and not nodes:
        raise UsageError("nothing to delete: give --masters, --nodes or --all")
    try:
        master_ips = parse_ip_list(masters) if masters else ()
        node_ips = parse_ip_list(nodes) if nodes else ()
    except InvalidCluster as err:
        raise UsageError(err.message, hint=err.hint) from None
    cluster_name = _saved_cluster(cluster_name)
    if not dry_run and not force and ClusterState(cluster_name).exists():  # else delete says so
        what = f"the whole cluster {cluster_name}" if all_ else ", ".join((*master_ips, *node_ips))
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to delete {what} without confirmation", hint="pass --force (or -y)")
        click.confirm(f"Delete {what}? Its hosts run clean.sh and lose the rootfs", abort=True, err=True)
    settings = _settings(ctx, dry_run=dry_run, max_parallel=8, verbose=verbose, need_store=False)
    outcome = actions.delete_containers(  # actions.delete, and the containers of a docker cluster
        cluster_name,
        settings,
        masters=master_ips,
        nodes=node_ips,
        all_=all_,
        skip_unreachable=skip_unreachable,
    )
    _report(outcome, settings.on_event)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("image")
@click.option("--cluster", "cluster_name", help="Cluster name (default: the only saved one).")
@click.option(
    "--batch",
    type=click.IntRange(1, 1000),
    help="Workers upgraded (drained) at once (default 10% of them, at least 1).",
)
@_run_options
@click.pass_context
def upgrade(
    ctx: click.Context,
    image: str,
    cluster_name: str | None,
    batch: int | None,
    env: tuple[str, ...],
    dry_run: bool,
    verbose: bool,
    max_parallel: int,
) -> None:
    """Upgrade the saved cluster to IMAGE, a newer image of the same runtime.

    Every host gets the new rootfs and runs its init.sh; then master0, each other master in
    turn, and the workers in batches (drained first, uncordoned after) run the runtime's
    upgrade. A downgrade, a major change or more than one minor version at a time is refused.
    An upgrade that failed resumes when run again.
    """
    from builder.runtime import actions
    from builder.runtime.env import parse_env_args

    cluster_name = _saved_cluster(cluster_name)
    settings = _settings(ctx, dry_run=dry_run, max_parallel=max_parallel, verbose=verbose)
    outcome = actions.upgrade(cluster_name, image, settings, batch=batch, cli_env=parse_env_args(env))
    _report(outcome, settings.on_event)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--alt-names", help="SANs to add to the API server certificate: NAME,IP,...")
@click.option("--renew", is_flag=True, help="Renew every certificate of every master.")
@click.option("--check-expiration", is_flag=True, help="Show each master's certificates and their expiry.")
@click.option("--cluster", "cluster_name", help="Cluster name (default: the only saved one).")
@_DRY_RUN
@_VERBOSE
@click.pass_context
def cert(
    ctx: click.Context,
    alt_names: str | None,
    renew: bool,
    check_expiration: bool,
    cluster_name: str | None,
    dry_run: bool,
    verbose: bool,
) -> None:
    """The API server certificates of the saved cluster, one master at a time.

    --alt-names adds SANs (saved: later joins and upgrades keep them); --renew renews the
    certificates (kubeadm certs renew all, k3s certificate rotate, a k0s restart);
    --check-expiration shows their expiry. A failed run resumes when run again.
    """
    from builder.runtime.actions.cert import cert as cert_action
    from builder.runtime.actions.cert import parse_alt_names

    given = [
        f
        for f, on in (
            ("--alt-names", alt_names is not None),
            ("--renew", renew),
            ("--check-expiration", check_expiration),
        )
        if on
    ]
    if len(given) != 1:
        raise UsageError(
            "give one of --alt-names, --renew, --check-expiration"
            + (f" (not {' and '.join(given)} together)" if given else "")
        )
    names = parse_alt_names(alt_names) if alt_names is not None else ()
    _check_verbose(verbose, dry_run)
    cluster_name = _saved_cluster(cluster_name)
    settings = _settings(ctx, dry_run=dry_run, max_parallel=1, verbose=verbose)
    outcome = cert_action(cluster_name, settings, alt_names=names, renew=renew)
    _report(outcome, settings.on_event)
    if outcome.plan and not outcome.dry_run:  # --check-expiration's report
        click.echo("\n".join(outcome.plan))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cluster() -> None:
    """Saved clusters (~/.sealer/<cluster>/)."""


@cluster.command()
@click.option("--cluster", "cluster_name", help="Cluster name (default: the only saved one).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(cluster_name: str | None, fmt: str) -> None:
    """Hosts, roles, image digest and the last phase each host finished."""
    from builder.runtime import actions

    cluster_name = _saved_cluster(cluster_name)
    info = actions.status(cluster_name)
    containers = actions.container_status(cluster_name)  # {} unless the hosts are containers
    if containers:
        info["containers"] = containers
    if fmt == "json":
        print_json(info)
        return
    click.echo(f"cluster  {info['name']}")
    click.echo(f"image    {info['image']} ({info['digest']}, {info['platform']})")
    click.echo(f"runtime  {info['runtime']}")
    if info.get("kubeconfig"):
        click.echo(f"kubeconfig  {info['kubeconfig']}")
    click.echo(
        f"state    {'complete' if info['complete'] else 'incomplete: run again to finish'}  ({info['state_dir']})"
    )
    rows = [
        [h["ip"], h["role"], "yes" if h["joined"] else "no", h["last_phase"] or "-"] for h in info["hosts"]
    ]
    print_table(["HOST", "ROLE", "JOINED", "LAST PHASE"], rows)
    if containers:
        click.echo("")
        print_table(
            ["HOST", "CONTAINER", "STATUS"],
            [[ip, c["container"], c["status"]] for ip, c in containers.items()],
        )
    if info["apps"]:
        click.echo("")
        apps = [
            [a["name"], a["image"], a["digest"][:19], "yes" if a["launched"] else "no", a["rootfs"]]
            for a in info["apps"]
        ]
        print_table(["APP", "IMAGE", "DIGEST", "LAUNCHED", "ROOTFS (MASTER0)"], apps)


@cluster.command("import")
@click.option(
    "--kubeconfig",
    required=True,
    type=click.Path(dir_okay=False),
    help="Admin kubeconfig of the cluster: its API server, CA and credentials.",
)
@click.option(
    "-f",
    "--clusterfile",
    "ssh_file",
    type=click.Path(dir_okay=False),
    help="Clusterfile with only this machine's spec.ssh, spec.hosts[].ips/ssh and registry password.",
)
@click.option("--cluster", "cluster_name", help="The cluster's name, checked (an import keeps it).")
@_ssh_options
def import_(kubeconfig: str, ssh_file: str | None, cluster_name: str | None, **ssh: Any) -> None:
    """Rebuild ~/.sealer/<cluster>/ from the cluster's ConfigMap kube-system/sealer-clusterfile,
    so that status, join and delete work from this machine (docs/running.md)."""
    from builder.runtime.actions.import_state import import_cluster

    # the SSH flags in the Clusterfile's spelling (spec.ssh), over -f's
    spelling = {"user": "user", "password": "passwd", "key_file": "pk", "passphrase": "pkPasswd"}
    flags: dict[str, Any] = {spelling[k]: v for k, v in ssh.items() if k in spelling and v}
    if ssh["port"]:
        flags["port"] = str(ssh["port"])
    if ssh["known_hosts"]:
        flags["knownHosts"] = ssh["known_hosts"]
    if ssh["insecure_skip_host_key_check"]:
        flags["verifyHostKeys"] = False
    outcome = import_cluster(
        Path(kubeconfig),
        ssh_file=Path(ssh_file) if ssh_file else None,
        ssh_flags=flags,
        expect_name=cluster_name,
    )
    click.echo(outcome.message)
