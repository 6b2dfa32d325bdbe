"""Fan-out delivery: each layer leaves the controller at most K times; every other host fetches
it from the cluster registry (docs/delivery.md, "Fan-out").

`choose` decides, before any host changes, whether an action fans out (`FanoutPlan`) or
delivers as today (None). `deliver_hosts` then runs the delivery of the hosts it is given:
*seeds* (the first K registry hosts among the targets) get today's delivery with their blobs
kept, then those blobs published (hardlinked) in the registry storage under the repository
`sealer-rootfs/<cluster>`; *fetchers* fetch each layer blob they lack over HTTPS from a seed,
or from a *standing* registry host (one this action does not deliver to, e.g. on a join) that
an earlier fan-out left serving it (round-robin, failing over to the next), each blob checked
against its digest before anything unpacks it, then get today's delivery, which finds those
blobs on the host and sends only the host's rendered templates and any blob no server had.
Starting the registry on the seeds between the two is the `registry-seed` phase's
(phases/deliver_fetch.py). A fetcher's fetch is `fanout_fetch`'s, its waves `fanout_waves`'s,
and the shell run on hosts is in `_fanout_shell`.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from builder.errors import ClusterError, HostError, SealerError, UsageError
from builder.runtime import _delivery_shell as sh
from builder.runtime import delivery
from builder.runtime._delivery_plan import BARE_HOST, plan_host, rootfs_id, wanted_items
from builder.runtime._fanout_shell import (
    FanoutPlan,
    fetch_command,
    publish_command,
    wave_serve_command,
)
from builder.runtime.cluster import Cluster
from builder.runtime.cluster_fields import DISTRIBUTIONS
from builder.runtime.facts import FETCH_TOOLS
from builder.runtime.fanout_fetch import BlobFetched, FetchFailed, fetch_missing, find_published
from builder.runtime.fanout_waves import (
    WAVE_WIDTH,
    Servers,
    WaveServer,
    serve_wave,
    stop_wave,
)
from builder.runtime.infra.base import InfraDriver
from builder.runtime.registry_pki import RegistryMaterial
from builder.store.layout import Store

# `auto` fans out from this many target hosts on: below it the seeds' extra steps (publish,
# the registry started early, a disk write per fetched blob) cost more than the controller's
# link saves (docs/BENCHMARKS.md, Fan-out).
AUTO_MIN_HOSTS = 4


def repository(cluster: str) -> str:
    """The registry repository the seeds serve the rootfs layers from (no manifest, no tag)."""
    return f"sealer-rootfs/{cluster}"


def choose(
    mode: str,
    fanout: int | None,
    cluster: Cluster,
    targets: Sequence[str],
    material: RegistryMaterial | None,
    storage: str,
) -> FanoutPlan | None:
    """The plan for `mode` (ssh | fanout | auto), or None for today's delivery. The seeds are
    the first K registry hosts among `targets`; the cluster's other registry hosts stand by as
    sources (a join: the new hosts fetch what an earlier fan-out published on the masters).
    ClusterError for a fan-out that cannot be (no cluster registry), UsageError for K out of
    range."""
    if mode not in DISTRIBUTIONS:
        raise UsageError(f"--distribution {mode!r}: one of {', '.join(DISTRIBUTIONS)}")
    if fanout is not None and fanout < 1:
        raise UsageError(f"--fanout {fanout}: the controller must send each layer to at least 1 host")
    if mode == "ssh":
        return None
    wanted = set(targets)
    serving = [h.ip for h in cluster.registry_hosts if h.ip in wanted]
    standing = tuple(h.ip for h in cluster.registry_hosts if h.ip not in wanted)
    if material is None or not (serving or standing):
        if mode == "auto":
            return None
        why = (
            "no cluster registry (the none runtime or an external registry)"
            if material is None
            else "the cluster has no registry host"
        )
        raise ClusterError(
            f"--distribution fanout: {why}",
            hint="use --distribution ssh (or auto), or include a master that serves the cluster registry",
        )
    if fanout is not None and fanout > len(serving):  # K counts the hosts this machine sends to
        raise UsageError(
            f"--fanout {fanout}: only {len(serving)} registry host(s) among the targets can serve "
            f"({', '.join(serving)})",
            hint=f"give --fanout 1 to {len(serving)}, or leave it out for all of them"
            if serving
            else "a join of nodes fetches from the registry hosts already there: leave --fanout out",
        )
    if mode == "auto" and len(targets) < AUTO_MIN_HOSTS:
        return None
    seeds = tuple(serving[: fanout or len(serving)])
    fetchers = tuple(h.ip for h in cluster.hosts if h.ip in wanted and h.ip not in seeds)
    registry_ips = {h.ip for h in cluster.registry_hosts}  # their port is the cluster registry's
    wave_hosts = tuple(f for f in fetchers if f not in registry_ips)
    auth = None
    spec = cluster.registry
    if material.htpasswd is not None and spec.username is not None and spec.password is not None:
        auth = base64.b64encode(f"{spec.username}:{spec.password}".encode()).decode()
    ca = material.ca_pem if material.has_tls else None
    return FanoutPlan(
        seeds,
        fetchers,
        spec.port,
        repository(cluster.name),
        storage,
        ca,
        auth,
        mode == "fanout",
        standing,
        wave_hosts=wave_hosts,
        wave_width=WAVE_WIDTH if wave_hosts else 0,
    )


def fetch_problems(plan: FanoutPlan | None, host: str, tools: frozenset[str]) -> list[str]:
    """What stops `host` from fetching (for the check phase): neither curl nor wget, when
    fan-out was asked for (with auto the host gets its layers from this machine)."""
    if plan is None or not plan.forced or host not in plan.fetchers or any(t in tools for t in FETCH_TOOLS):
        return []
    return [
        "fan-out delivery fetches layers with curl or wget and this host has neither "
        "(install one, or use --distribution ssh)"
    ]


# --- running it -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FanoutDelivery:
    """One host's delivery: today's result (`bytes_sent`: from the controller) and what it
    fetched from seeds (`bytes_fetched`, by seed in `sources`)."""

    result: delivery.HostDelivery
    bytes_fetched: int = 0
    sources: tuple[str, ...] = ()


FanoutEvent = delivery.DeliveryEvent | FetchFailed | BlobFetched | WaveServer


async def _publish(driver: InfraDriver, seed: str, command: str) -> None:
    try:
        await driver.run(seed, command)
    except SealerError as err:
        raise HostError(
            f"{seed}: publishing the layers in its registry storage: {err.message}", host=seed, step="publish"
        ) from err


async def deliver_hosts(
    driver: InfraDriver,
    store: Store,
    image: delivery.DeliveryImage,
    cluster: str,
    host_env: Mapping[str, Mapping[str, str]],
    plan: FanoutPlan,
    *,
    root: str = delivery.DEFAULT_ROOT,
    max_parallel: int = 8,
    on_event: Callable[[FanoutEvent], None] | None = None,
    data_root: str = "",
) -> dict[str, FanoutDelivery]:
    """Deliver `image` to the hosts of `host_env` as the cluster's rootfs: seeds as today with
    their blobs kept and published in the registry storage; fetchers from the seeds (whose
    registry must be serving by then), then as today for what is left. With waves
    (`plan.wave_width`), a fetcher that finished serves those still waiting from a wave server,
    every one stopped before this returns (fanout_waves.py). HostError naming the (first) failed
    host once every host has finished, as `delivery.deliver`."""
    emit = on_event or (lambda event: None)
    p = sh.Paths(root, cluster, data_root=data_root)  # the cluster's spec.dataRoot, if any
    seeds = {h: e for h, e in host_env.items() if h not in plan.fetchers}
    fetchers = {h: e for h, e in host_env.items() if h in plan.fetchers}
    out: dict[str, FanoutDelivery] = {}
    failures: dict[str, HostError] = {}
    hexes = [layer.descriptor.digest.hex for layer in image.layers]
    if seeds:
        seeded = await delivery.deliver(
            driver,
            store,
            image,
            cluster,
            seeds,
            root=root,
            max_parallel=max_parallel,
            on_event=emit,
            keep_blobs=True,
            data_root=data_root,
        )
        await asyncio.gather(*(_publish(driver, h, publish_command(p, plan, hexes)) for h in seeds))
        out.update({h: FanoutDelivery(r) for h, r in seeded.items()})
    if not fetchers:
        return out
    serves = dict(await find_published(driver, plan, hexes))  # after the seeds published
    pool = Servers(plan, serves)
    slots = asyncio.Semaphore(max(1, max_parallel))
    waiting = set(fetchers)  # not yet given a server
    waves: list[str] = []  # the wave servers started, stopped at the end whatever happens

    async def one(host: str, env: Mapping[str, str]) -> None:
        async with slots:
            started = time.monotonic()
            server = await pool.take()
            waiting.discard(host)
            try:
                fetched, used, dead = await fetch_missing(
                    driver, store, image, p, plan, host, env, emit, serves, pool.order(server)
                )
                await pool.drop(dead)
                result = (
                    await delivery.deliver(
                        driver,
                        store,
                        image,
                        cluster,
                        {host: env},
                        root=root,
                        on_event=emit,
                        keep_blobs=True,
                        data_root=data_root,
                    )
                )[host]
            except SealerError as err:
                failures[host] = (
                    err
                    if isinstance(err, HostError)
                    else HostError(f"{host}: {err.message}", host=host, step="deliver-fetch")
                )
                return
            finally:
                await pool.give_back(server)
            seconds = time.monotonic() - started
            out[host] = FanoutDelivery(replace(result, seconds=seconds), fetched, used)
        if pool.wants(host, len(waiting)):  # the slot is free again: the start is on the host
            waves.append(host)
            if await serve_wave(driver, p, plan, hexes, host, emit):
                serves[host] = frozenset(hexes)
                await pool.add(host)

    try:
        await asyncio.gather(*(one(h, e) for h, e in fetchers.items()))
    finally:
        await asyncio.gather(*(stop_wave(driver, p, h, emit) for h in waves))
    if failures:
        first = next(h for h in fetchers if h in failures)
        more = [h for h in fetchers if h in failures and h != first]
        suffix = f" (and {len(more)} more: {', '.join(more)})" if more else ""
        err = failures[first]
        raise HostError(err.message + suffix, host=first, step=err.step, hint=err.hint) from err
    return out


def dry_run_lines(
    plan: FanoutPlan,
    image: delivery.DeliveryImage,
    cluster: str,
    host: str,
    env: Mapping[str, str],
    root: str = delivery.DEFAULT_ROOT,
    data_root: str = "",
) -> list[str]:
    """What a first fan-out delivery runs on `host`, for the dry-run: a seed's is today's with
    its blobs kept, then the publish; a fetcher's is the probe, each layer's fetch (from whom,
    and the command for the first source), then today's plan with those blobs on the host
    (only the rendered templates are uploaded)."""
    p = sh.Paths(root, cluster, data_root=data_root)
    hexes = [layer.descriptor.digest.hex for layer in image.layers]
    if host not in plan.fetchers:
        lines = delivery.plan_commands(
            image, cluster, host, root=root, env=env, keep_blobs=True, data_root=data_root
        )
        return [f"seed: every layer from this machine, kept and served as {plan.repository}", *lines,
                publish_command(p, plan, hexes)]  # fmt: skip
    items = wanted_items(None, image, delivery.render_layer(image, env))
    wanted = [str(i.digest) for i in items]
    rid = rootfs_id(wanted)
    out = [sh.probe(p, rid)]
    if plan.wave_width:
        out.append(
            f"waves: each server feeds {plan.wave_width} fetchers at once; when none has room this "
            "host waits, and may be given a host that finished (a wave server) instead"
        )
    firsts: dict[str, list[tuple[str, int]]] = {}  # one command a source, its layers in one curl
    for n, item in enumerate(items[: len(image.layers)]):
        order = plan.sources(host, n)
        others = "".join(f", else {seed}" for seed in order[1:])
        out.append(f"fetch {item.digest} ({item.size}) from {order[0]}{others}, else this machine")
        firsts.setdefault(order[0], []).append((item.digest.hex, item.size))
    out += [fetch_command(p, plan, server, blobs) for server, blobs in firsts.items()]
    fetched = replace(BARE_HOST, blobs=frozenset(hexes))
    ops, _ = plan_host(p, rid, items, wanted, fetched, True)
    for op in ops:
        if op.item is not None:
            out.append(f"upload {op.item.digest} ({op.item.size})")
        out.append(op.command)
    if plan.wave_width and host in plan.wave_hosts:
        out.append(
            f"then, while fetchers wait for a server: serve them on :{plan.port} until every fetcher "
            "is done, then stop"
        )
        out.append(wave_serve_command(p, plan, hexes, bool(plan.wave_htpasswd)))
    return out
