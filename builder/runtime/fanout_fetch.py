"""One fetcher's fetch in fan-out delivery (docs/delivery.md, "Fan-out"): `fetch_missing` fetches
the layer blobs the host's delivery plan would upload into its blob cache, over HTTPS from the
servers that publish them (seeds, standing registry hosts, wave servers), in rounds that fail
over to the next server; each blob is checked against its digest on the host before anything
unpacks it. `find_published` asks every server what it serves, so that fetchers ask only those
that have a layer. `fanout.deliver_hosts` runs both; the host commands are `_fanout_shell`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from builder.errors import CommandFailed, SealerError
from builder.runtime import _delivery_shell as sh
from builder.runtime._delivery_plan import PROBE_TIMEOUT_S, Item, plan_host, rootfs_id, wanted_items
from builder.runtime._fanout_shell import (
    NO_FETCH_TOOL,
    FanoutPlan,
    fetch_command,
    parse_fetch_report,
    published_command,
)
from builder.runtime.delivery import DeliveryImage, render_layer
from builder.runtime.infra.base import InfraDriver
from builder.store.layout import Store

_FETCH_TIMEOUT_S = 3600


@dataclass(frozen=True, slots=True)
class FetchFailed:
    """A source did not deliver a blob to `host` (the next is asked); `refused`: it sent a
    blob whose sha256 is not the digest."""

    host: str
    digest: str
    source: str
    refused: bool
    message: str


@dataclass(frozen=True, slots=True)
class BlobFetched:
    host: str
    digest: str
    source: str
    bytes: int


FetchEvent = FetchFailed | BlobFetched


async def fetch_missing(
    driver: InfraDriver,
    store: Store,
    image: DeliveryImage,
    p: sh.Paths,
    plan: FanoutPlan,
    host: str,
    env: Mapping[str, str],
    emit: Callable[[FetchEvent], None],
    serves: Mapping[str, frozenset[str]],
    order: tuple[str, ...] | None = None,
) -> tuple[int, tuple[str, ...], tuple[str, ...]]:
    """Fetch the image layers `host` will need into its blob cache from the servers that
    serve them (`serves`: server -> the layer hexes published there); a layer that none
    delivers is left for the controller. `order`: the servers to ask, in turn, for every layer
    (a wave's assignment), else `plan.sources`. Returns (bytes fetched, the servers used, the
    servers that delivered none of what they were asked for)."""
    items = wanted_items(store, image, render_layer(image, env))
    wanted = [str(i.digest) for i in items]
    rid = rootfs_id(wanted)
    out = await driver.run(host, sh.probe(p, rid), timeout_s=PROBE_TIMEOUT_S)
    ops, _ = plan_host(p, rid, items, wanted, sh.parse_probe(out.stdout), True)
    layer_index = {str(layer.descriptor.digest): n for n, layer in enumerate(image.layers)}
    todo = [op.item for op in ops if op.item is not None and not op.plain and op.item.path is not None]
    stdin = f"Authorization: Basic {plan.basic_auth}\n".encode() if plan.basic_auth else None
    env_ca = {"SEALER_FETCH_CA": plan.ca_pem} if plan.ca_pem is not None else None
    fetched = 0
    used: list[str] = []
    tried: dict[str, set[str]] = {str(i.digest): set() for i in todo}
    left = {str(i.digest): i for i in todo}
    unable: list[str] = []  # the host has neither curl nor wget
    dead: list[str] = []

    async def from_server(server: str, items: list[Item]) -> bool:
        """False when the host has neither curl nor wget (said once)."""
        nonlocal fetched
        command = fetch_command(p, plan, server, [(i.digest.hex, i.size) for i in items])
        try:
            out = await driver.run(host, command, env=env_ca, stdin=stdin, timeout_s=_FETCH_TIMEOUT_S)
        except CommandFailed as err:
            last = (err.stderr_tail.strip().splitlines() or [f"exit {err.status}"])[-1]
            if err.status == NO_FETCH_TOOL:  # every layer from this machine: said once
                if not unable:
                    emit(FetchFailed(host, str(items[0].digest), server, False, last))
                unable.append(server)
                return False
            for item in items:
                emit(FetchFailed(host, str(item.digest), server, False, last))
            dead.append(server)
            return True
        report = parse_fetch_report(out.stdout)
        delivered = False
        for item in items:
            word, arrived = report.get(item.digest.hex, ("failed", ""))
            if word == "ok":
                delivered = True
                fetched += item.size
                used.append(server)
                left.pop(str(item.digest), None)
                emit(BlobFetched(host, str(item.digest), server, item.size))
            else:
                why = f"arrived as sha256:{arrived}" if word == "refused" else "no whole blob from it"
                emit(FetchFailed(host, str(item.digest), server, word == "refused", why))
        if not delivered:
            dead.append(server)
        return True

    # Rounds: each layer left goes to the next server that serves it and was not tried for
    # it; one command per server a round (its layers in one curl). A round tries every layer
    # left once, so there are at most as many rounds as servers (wave servers included).
    for _ in range(len(order or plan.servers)):
        batches: dict[str, list[Item]] = {}
        for digest, item in left.items():
            servers = order or plan.sources(host, layer_index.get(digest, 0))
            server = next(
                (
                    s
                    for s in servers
                    if s not in tried[digest] and item.digest.hex in serves.get(s, frozenset())
                ),
                None,
            )
            if server is not None:
                tried[digest].add(server)
                batches.setdefault(server, []).append(item)
        if not batches:
            break

        able = await asyncio.gather(*(from_server(s, items) for s, items in batches.items()))
        if not all(able):  # every layer from this machine
            break
    return fetched, tuple(dict.fromkeys(used)), tuple(dict.fromkeys(dead))


async def find_published(
    driver: InfraDriver, plan: FanoutPlan, hexes: Sequence[str]
) -> dict[str, frozenset[str]]:
    """What each server (seed or standing registry host) serves (nothing when it cannot be
    asked), so that the fetchers ask only those that have a layer and this machine sends the
    rest: a standing host serves what an earlier fan-out published there, and a seed that an
    earlier delivery over SSH left without kept blobs serves nothing."""

    async def one(server: str) -> frozenset[str]:
        try:
            out = await driver.run(server, published_command(plan, hexes), timeout_s=PROBE_TIMEOUT_S)
        except SealerError:
            return frozenset()
        return frozenset(out.stdout.split())

    found = await asyncio.gather(*(one(s) for s in plan.servers))
    return dict(zip(plan.servers, found, strict=True))
