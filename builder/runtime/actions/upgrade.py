"""`upgrade`: every host of a saved cluster moves to a newer image of the same runtime."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import replace

from builder.errors import ClusterError
from builder.runtime.actions.install import InstallJob, dry_run_install, install_hosts
from builder.runtime.actions.settings import Outcome, Settings
from builder.runtime.cluster import Cluster
from builder.runtime.state import ClusterState

WORKER_DISRUPTION = 0.1  # share of the workers drained at once by default (k0sctl's default)


def default_upgrade_batch(cluster: Cluster) -> int:
    return max(1, math.ceil(len(cluster.nodes) * WORKER_DISRUPTION))


def upgrade(
    name: str,
    image: str,
    settings: Settings,
    *,
    batch: int | None = None,
    cli_env: Mapping[str, str] | None = None,
) -> Outcome:
    """`sealer upgrade IMAGE`: every host of the saved cluster moves to `image`, master0 first,
    then the other masters one by one, then the workers `batch` at a time (drained first).
    A downgrade, a major change or more than one minor version per step is refused: from the
    images' KUBEVERSIONs before any host changes, and by each host's own check of the binaries.
    The runtime stays. A failed upgrade resumes when run again with the same image, or goes
    back to the image the cluster ran before (`previous_image`), as an upgrade to it."""
    cs = ClusterState(name, settings.home)
    saved, meta = cs.load_cluster(), cs.load_meta()
    if saved is None or meta is None:
        raise ClusterError(f"no saved cluster {name}", hint="sealer run IMAGE --masters ... first")
    if not meta.complete and image not in (meta.image, meta.previous_image):
        back = f", or go back with `sealer upgrade {meta.previous_image}`" if meta.previous_image else ""
        raise ClusterError(
            f"cluster {name}: the last command on it (with {meta.image}) did not finish",
            hint=f"finish it first (`sealer upgrade {meta.image}` or the same command again){back}",
        )
    if batch is not None and batch < 1:
        raise ClusterError(f"--batch {batch}: at least one worker at a time")
    wanted = replace(saved, image=image)
    job = InstallJob(
        wanted,
        image,
        wanted.ips,
        {**meta.cli_env, **(cli_env or {})},
        meta.runtime,
        upgrade=True,
        upgrade_batch=batch or default_upgrade_batch(wanted),
        current_digest=meta.digest if meta.complete else None,
        current_kube_version=meta.kube_version if meta.complete else "",
    )
    if settings.options.dry_run:
        return dry_run_install(job, settings, "upgrade")
    with cs.lock():
        outcome = asyncio.run(install_hosts(job, settings, cs))
    if outcome.hosts:
        return replace(outcome, message=f"cluster {name} upgraded to {image}")
    return outcome
