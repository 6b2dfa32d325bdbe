"""What an action takes besides its arguments (`Settings`) and what it gives back (`Outcome`,
one `HostSummary` per host)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import ClusterError
from builder.image.descriptor import Platform
from builder.runtime.cluster import Cluster
from builder.runtime.infra.base import InfraDriver
from builder.runtime.infra.routing import make_driver
from builder.runtime.phases import DEFAULT_ROOT
from builder.runtime.runner import EventSink, Runner, RunOptions, ignore
from builder.store.layout import Store


@dataclass(frozen=True)
class Settings:
    """What every action needs besides its arguments."""

    store: Store | None = None
    home: Path | None = None  # the state home (None: $SEALER_STATE_HOME or ~/.sealer)
    options: RunOptions = field(default_factory=RunOptions)
    root: str = DEFAULT_ROOT
    on_event: EventSink = ignore
    driver_factory: Callable[[Cluster], InfraDriver] = make_driver
    pull: Callable[[str, Platform], None] | None = None  # fetch a missing image (the CLI's registry)
    keep_blobs: bool = False  # hosts also keep each delivered blob (delivery.deliver's option)
    distribution: str | None = None  # ssh | fanout | auto (fanout.choose); None: the Clusterfile's, else auto
    fanout: int | None = None  # K: the hosts the controller sends each layer to (None: the registry hosts)


def require_store(settings: Settings) -> Store:
    if settings.store is None:
        raise ClusterError("this action needs the image store")
    return settings.store


@dataclass(frozen=True, slots=True)
class HostSummary:
    host: str
    role: str
    phases: tuple[str, ...]
    bytes_sent: int
    seconds: float
    failed: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What an action did: a message, the dry-run plan, the per-host summary."""

    cluster: Cluster | None
    message: str
    plan: tuple[str, ...] = ()
    hosts: tuple[HostSummary, ...] = ()
    dry_run: bool = False


def host_summaries(cluster: Cluster, runner: Runner, hosts: Sequence[str]) -> tuple[HostSummary, ...]:
    out = []
    for ip in hosts:
        stats = runner.host_stats(ip)
        role = "master0" if cluster.has_host(ip) and cluster.master0.ip == ip else ""
        if not role:
            role = str(cluster.host(ip).role) if cluster.has_host(ip) else "?"
        out.append(HostSummary(ip, role, tuple(stats.phases), stats.bytes_sent, stats.seconds, stats.failed))
    return tuple(out)
