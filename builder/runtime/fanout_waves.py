"""log(N) waves of fan-out delivery (docs/delivery.md, "Fan-out"): a fetcher that finished
serves the fetchers still waiting from a temporary registry of its own (`serve_wave`), until
`fanout.deliver_hosts` stops it (`stop_wave`); `Servers` hands each fetcher the least busy
server with room. The host commands are `_fanout_shell`'s; the certificate comes from the
cluster CA (`with_wave_material`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from builder.errors import CommandFailed, SealerError
from builder.runtime import _delivery_shell as sh
from builder.runtime import registry_pki
from builder.runtime._fanout_shell import (
    WAVE_CERT_ENV,
    WAVE_HTPASSWD_ENV,
    WAVE_KEY_ENV,
    FanoutPlan,
    wave_serve_command,
    wave_stop_command,
)
from builder.runtime.env import secret_stdin
from builder.runtime.infra.base import InfraDriver
from builder.runtime.registry_pki import RegistryMaterial

# log(N) waves: the fetchers each server (seed, standing host or wave server) feeds at once.
# With F, the servers grow (F+1)-fold a wave; a wave costs F image transfers on a server's link,
# so F = 1 is fastest on paper and 2 amortizes a wave server's start (~0.3 s) over two hosts.
WAVE_WIDTH = 2
_WAVE_START_TIMEOUT_S = 120


@dataclass(frozen=True, slots=True)
class WaveServer:
    """`host` finished and serves the fetchers still waiting (`error` ""), or could not (why)."""

    host: str
    error: str = ""


def with_wave_material(plan: FanoutPlan, state_dir: Path, material: RegistryMaterial) -> FanoutPlan:
    """`plan` with what its wave servers serve with: a certificate from the cluster CA for the
    wave hosts and the registry's htpasswd; one wave (`wave_width` 0) where this machine has no
    CA key to issue it."""
    htpasswd = (material.htpasswd or "").strip()
    if not material.has_tls:
        return replace(plan, wave_htpasswd=htpasswd)
    issued = registry_pki.wave_certificate(state_dir, plan.wave_hosts)
    if issued is None:
        return replace(plan, wave_width=0)
    return replace(plan, wave_cert=issued[0], wave_key=issued[1], wave_htpasswd=htpasswd)


class Servers:
    """Who serves the next fetcher. Without waves (`plan.wave_width` 0): nobody is assigned,
    each layer goes round-robin over the seeds (`plan.sources`), every fetcher at once. With
    waves: each server feeds `wave_width` fetchers at once; a fetcher waits for the least busy
    server with room, and a fetcher that finished becomes a server while others still wait.
    A server that delivered nothing to a fetcher (`drop`: a wave server or seed that died) is
    assigned to no one after, and asked last; when every server was dropped, fetchers go back
    to `plan.sources` (which fail over to this machine)."""

    def __init__(self, plan: FanoutPlan, serves: Mapping[str, frozenset[str]]) -> None:
        self.plan = plan
        self.width = plan.wave_width
        self.busy = {s: 0 for s in plan.servers if serves.get(s)}  # a server serving nothing: none
        self.dropped: set[str] = set()
        self.changed = asyncio.Condition()

    def _alive(self) -> list[str]:
        return [s for s in self.busy if s not in self.dropped]

    async def take(self) -> str | None:
        if not self.width or not self.busy:
            return None
        async with self.changed:
            await self.changed.wait_for(
                lambda: not self._alive() or min(self.busy[s] for s in self._alive()) < self.width
            )
            alive = self._alive()
            if not alive:
                return None
            server = min(alive, key=lambda s: self.busy[s])
            self.busy[server] += 1
            return server

    def order(self, server: str | None) -> tuple[str, ...] | None:
        """The servers a fetcher assigned `server` asks, in turn (None: plan.sources): the
        least busy first, dropped ones last."""
        if server is None:
            return None
        others = (s for s in self.busy if s != server)
        return (server, *sorted(others, key=lambda s: (s in self.dropped, self.busy[s])))

    async def give_back(self, server: str | None) -> None:
        if server is not None:
            async with self.changed:
                self.busy[server] -= 1
                self.changed.notify_all()

    async def add(self, server: str) -> None:
        async with self.changed:
            self.busy[server] = 0
            self.changed.notify_all()

    async def drop(self, servers: Sequence[str]) -> None:
        """`servers` delivered nothing to a fetcher: assign them to no one after (a fetcher
        failing on its own side only costs them their turn; they are still asked last)."""
        if servers:
            async with self.changed:
                self.dropped.update(servers)
                self.changed.notify_all()

    def wants(self, host: str, waiting: int) -> bool:
        """Whether `host`, just finished, should serve: waves on, a host that may (not a
        registry host), and more fetchers waiting than the servers have room for."""
        room = sum(self.width - self.busy[s] for s in self._alive())
        return bool(self.width) and host in self.plan.wave_hosts and waiting > room


async def serve_wave(
    driver: InfraDriver,
    p: sh.Paths,
    plan: FanoutPlan,
    hexes: Sequence[str],
    host: str,
    emit: Callable[[Any], None],
) -> bool:
    """Start `host`'s wave server (False, said, when it cannot: it then only fetches)."""
    secrets = {WAVE_KEY_ENV: plan.wave_key} if plan.wave_cert else {}
    if plan.wave_htpasswd:
        secrets[WAVE_HTPASSWD_ENV] = plan.wave_htpasswd
    prefix, lines = secret_stdin(secrets)
    command = prefix + wave_serve_command(p, plan, hexes, bool(plan.wave_htpasswd))
    try:
        await driver.run(
            host, command, env={WAVE_CERT_ENV: plan.wave_cert}, stdin=lines, timeout_s=_WAVE_START_TIMEOUT_S
        )
    except SealerError as err:
        last = err.stderr_tail.strip().splitlines()[-1:] if isinstance(err, CommandFailed) else []
        emit(WaveServer(host, last[0] if last else err.message))
        return False
    emit(WaveServer(host))
    return True


async def stop_wave(driver: InfraDriver, p: sh.Paths, host: str, emit: Callable[[Any], None]) -> None:
    try:
        await driver.run(host, wave_stop_command(p), timeout_s=_WAVE_START_TIMEOUT_S)
    except SealerError as err:  # said; the next delivery's start stops it first
        emit(WaveServer(host, f"stopping its wave server: {err.message}"))
