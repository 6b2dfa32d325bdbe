"""`sealer run` and `sealer gen`: a new cluster from IMAGE and flags or a Clusterfile, or an
app image on a saved cluster (docs/running.md); `gen` prints the Clusterfile `run` would use.

Progress goes to stderr (a live line per host on a terminal, plain lines otherwise); the
summary table, the dry-run plan and `gen`'s Clusterfile go to stdout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from builder.cli._cluster_action import make_settings, print_outcome
from builder.cli._cluster_options import host_key_flags, run_options, saved_cluster_name, ssh_options
from builder.errors import UsageError

if TYPE_CHECKING:  # the runtime modules load when a command runs
    from builder.runtime.cluster import Cluster


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
    return host_key_flags(cluster, insecure=insecure, known_hosts=known_hosts)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("image", required=False)
@click.option(
    "-f", "--Clusterfile", "clusterfile", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("-m", "--masters", help="Master addresses: a,b,c or a range first-last.")
@click.option("-n", "--nodes", help="Node addresses: a,b,c or a range first-last.")
@ssh_options
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
@run_options
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
        name = saved_cluster_name(cluster_name, none_saved=DEFAULT_CLUSTER_NAME)
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
            settings = make_settings(ctx, dry_run=dry_run, max_parallel=max_parallel, verbose=verbose)
            outcome = actions.run_app(name, image, settings, cli_env=cli_env, cmds=cmds)
            print_outcome(outcome, settings.on_event)
            return
    if ctx.meta.get("provider") == "docker" or ctx.meta.get("node_image"):
        from builder.cli._containers import run_on_docker

        ssh_given = [f for f, v in (("-p", password), ("-i", key_file), ("--port", port), ("-u", user)) if v]
        docker_cluster = run_on_docker(
            ctx, image, clusterfile, masters, nodes, ssh_given, cmds, apps, cluster_name
        )
        settings = make_settings(ctx, dry_run=dry_run, max_parallel=max_parallel, verbose=verbose)
        outcome = actions.run_containers(docker_cluster, settings, cli_env=cli_env, runtime=runtime)
        print_outcome(outcome, settings.on_event)
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
    settings = make_settings(ctx, dry_run=dry_run, max_parallel=max_parallel, verbose=verbose)
    run_action = actions.run_containers if cluster.provider == "CONTAINER" else actions.run
    outcome = run_action(cluster, settings, cli_env=cli_env, runtime=runtime)
    print_outcome(outcome, settings.on_event)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("image")
@click.option("-m", "--masters", help="Master addresses: a,b,c or a range first-last.")
@click.option("-n", "--nodes", help="Node addresses: a,b,c or a range first-last.")
@ssh_options
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
    cluster = host_key_flags(cluster, insecure=insecure_skip_host_key_check, known_hosts=known_hosts)
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
