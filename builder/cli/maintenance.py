"""`sealer upgrade` and `sealer cert`: a saved cluster changed in place, its hosts kept: a
newer image of its runtime, its API server certificates (docs/running.md).

Progress goes to stderr; the summary table, the dry-run plan and --check-expiration's report
go to stdout.
"""

from __future__ import annotations

import click

from builder.cli._cluster_action import make_settings, print_outcome
from builder.cli._cluster_options import DRY_RUN, VERBOSE, check_verbose, run_options, saved_cluster_name
from builder.errors import UsageError


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("image")
@click.option("--cluster", "cluster_name", help="Cluster name (default: the only saved one).")
@click.option(
    "--batch",
    type=click.IntRange(1, 1000),
    help="Workers upgraded (drained) at once (default 10% of them, at least 1).",
)
@run_options
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

    cluster_name = saved_cluster_name(cluster_name)
    settings = make_settings(ctx, dry_run=dry_run, max_parallel=max_parallel, verbose=verbose)
    outcome = actions.upgrade(cluster_name, image, settings, batch=batch, cli_env=parse_env_args(env))
    print_outcome(outcome, settings.on_event)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--alt-names", help="SANs to add to the API server certificate: NAME,IP,...")
@click.option("--renew", is_flag=True, help="Renew every certificate of every master.")
@click.option("--check-expiration", is_flag=True, help="Show each master's certificates and their expiry.")
@click.option("--cluster", "cluster_name", help="Cluster name (default: the only saved one).")
@DRY_RUN
@VERBOSE
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
    check_verbose(verbose, dry_run)
    cluster_name = saved_cluster_name(cluster_name)
    settings = make_settings(ctx, dry_run=dry_run, max_parallel=1, verbose=verbose)
    outcome = cert_action(cluster_name, settings, alt_names=names, renew=renew)
    print_outcome(outcome, settings.on_event)
    if outcome.plan and not outcome.dry_run:  # --check-expiration's report
        click.echo("\n".join(outcome.plan))
