"""After hosts leave (`delete`, or an `apply` that only removes): the registry hosts that stay
get a server certificate without the leaving masters' addresses. The material is renewed in
the cluster's state (`registry_pki.load_or_make` for the remaining cluster); only when that
changed something (a registry host left: a master with `ha: true`) does registry-service run,
on every remaining registry host, before anything is saved."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from builder.image.descriptor import Platform
from builder.runtime import registry_pki
from builder.runtime.actions.runners import make_runner
from builder.runtime.actions.settings import Settings
from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases import ImageInfo, PlanState
from builder.runtime.phases.registry_service import RegistryService
from builder.runtime.plugins import get_plugin
from builder.runtime.plugins.none import NoneRuntime
from builder.runtime.state import ClusterState, SavedMeta


def refresh_registry(remaining: Cluster, meta: SavedMeta, settings: Settings, cs: ClusterState) -> None:
    """registry-service on `remaining`'s registry hosts when their material changed."""
    if meta.runtime == NoneRuntime.name:
        return
    material = registry_pki.load_or_make(cs.dir, remaining)
    if material is None or not material.changed:
        return
    image = ImageInfo(
        meta.image, meta.digest, Platform.parse(meta.platform) if meta.platform else Platform.host()
    )
    hosts = tuple(h.ip for h in remaining.registry_hosts)
    state = PlanState(
        image,
        get_plugin(meta.runtime, source="saved state"),
        hosts,
        dict(meta.cli_env),
        settings.root,
        registry=replace(material, changed=True),
    )
    phase = RegistryService()
    steps = phase.plan(remaining, Facts(), state)
    if not steps:
        return

    async def run() -> None:
        driver = settings.driver_factory(remaining)
        try:
            runner = make_runner(driver, cs, cs.journal(), settings, meta.digest)
            await runner.run_phase(phase, steps)
        finally:
            await driver.close()

    asyncio.run(run())
