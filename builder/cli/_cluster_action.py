"""How a cluster command drives a runtime action: `make_settings` turns its flags into the
action's Settings (the store, held against prune, the progress display, the puller of images
missing from the store), and `print_outcome` shows the Outcome: the dry-run plan, or a table
per host on stdout and the one-line result on stderr.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from builder.cli._cluster_options import check_verbose
from builder.cli._options import make_registry_options, open_store
from builder.cli.output import human_size, print_table
from builder.cli.progress import run_progress

if TYPE_CHECKING:  # the runtime modules load when a command runs
    from builder.image.descriptor import Platform
    from builder.runtime.actions import Outcome, Settings
    from builder.store.layout import Store


def make_settings(
    ctx: click.Context, *, dry_run: bool, max_parallel: int, verbose: bool = False, need_store: bool = True
) -> Settings:
    """The Settings of a runtime action from the command's flags; the store lock and the
    progress display are released when the command's context closes."""
    from builder.runtime.actions import Settings
    from builder.runtime.runner import RunOptions

    check_verbose(verbose, dry_run)
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


def _puller(store: Store, on_event: Callable[[Any], None]) -> Callable[[str, Platform], None]:
    def pull(name: str, platform: Platform) -> None:
        from builder.registry.client import RegistryClient  # requests: slow to import

        options = make_registry_options(True, False, None, None)  # honours SEALER_REGISTRY_TIMEOUT
        RegistryClient(options, on_event).pull(store, name, platform=platform)

    return pull


def print_outcome(outcome: Outcome, progress: Any = None) -> None:
    """Close the progress display, then print the plan (dry run) or the hosts' table and result."""
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
