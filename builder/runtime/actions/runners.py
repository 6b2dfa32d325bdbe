"""The runner an action drives, built once with everything it needs: the journal and host
logs of the cluster's state, and the delivery and removal callbacks (delivery needs the store
and the image, which the runner does not know)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

from builder.errors import HostError
from builder.image.digest import Digest
from builder.runtime import delivery, fanout, fanout_fetch, fanout_waves
from builder.runtime.actions.settings import Settings
from builder.runtime.cluster import Cluster
from builder.runtime.infra.base import InfraDriver
from builder.runtime.phases import PlanState
from builder.runtime.runner import (
    DeliverFn,
    DeliveryOutcome,
    EventSink,
    HostBytes,
    HostStats,
    Notice,
    RemoveFn,
    Runner,
    combine_host_errors,
)
from builder.runtime.state import ClusterState, Journal


def make_runner(
    driver: InfraDriver,
    cs: ClusterState,
    journal: Journal,
    settings: Settings,
    digest: Digest | None,
    *,
    deliver: DeliverFn | None = None,
    remove: RemoveFn | None = None,
    keep_outputs: Iterable[str] = (),
    stats: Mapping[str, HostStats] | None = None,
) -> Runner:
    """A runner journaling under `digest` (None: the check's probes, before the image is
    known; they are never journaled)."""
    return Runner(
        driver,
        digest=digest,
        journal=journal,
        logs=cs.host_log,
        options=settings.options,
        deliver=deliver,
        remove=remove,
        on_event=settings.on_event,
        log_hint=str(cs.logs_dir / "{host}.log"),
        keep_outputs=keep_outputs,
        stats=stats,
    )


def deliver_fn(
    driver: InfraDriver,
    dimg: delivery.DeliveryImage,
    cluster: Cluster,
    state: PlanState,
    settings: Settings,
    *,
    target: str = "",
) -> DeliverFn:
    """The runner's delivery callback: `dimg` to the hosts it is given, each with its env for
    the templates; `target` a tree of its own under data/<cluster> (an app's), else the rootfs."""
    store = settings.store
    assert store is not None  # prepare requires it

    async def deliver(hosts: Sequence[str], emit: EventSink) -> Mapping[str, DeliveryOutcome]:
        host_env = {h: state.host_env(cluster, cluster.host(h)) for h in hosts}

        def on_event(event: fanout.FanoutEvent) -> None:
            if isinstance(event, delivery.HostProgress):  # as the bytes stream, not per blob
                emit(HostBytes(event.host, event.bytes_sent, event.bytes_total))
            elif isinstance(event, fanout_waves.WaveServer) and event.error:
                emit(Notice(f"{event.host}: not serving the next wave: {event.error}"))  # it only fetched
            elif isinstance(event, fanout_fetch.FetchFailed):  # the next seed (or this machine) is asked
                why = "refused: not its digest" if event.refused else event.message
                emit(
                    Notice(
                        f"{event.host}: layer {event.digest} from {event.source}: {why}; asking the next source"
                    )
                )

        if state.fanout is not None and not target:  # seeds as today, blobs kept; fetchers from them
            fanned = await fanout.deliver_hosts(
                driver,
                store,
                dimg,
                cluster.name,
                host_env,
                state.fanout,
                root=settings.root,
                max_parallel=settings.options.max_parallel,
                on_event=on_event,
                data_root=cluster.data_root,
            )
            return {h: DeliveryOutcome(h, r.result.bytes_sent, r.result.seconds) for h, r in fanned.items()}
        results = await delivery.deliver(
            driver,
            store,
            dimg,
            cluster.name,
            host_env,
            root=settings.root,
            max_parallel=settings.options.max_parallel,
            on_event=on_event,
            keep_blobs=settings.keep_blobs,
            target=target,
            data_root=cluster.data_root,
        )
        return {h: DeliveryOutcome(h, r.bytes_sent, r.seconds) for h, r in results.items()}

    return deliver


def remove_fn(driver: InfraDriver, cluster: Cluster, settings: Settings) -> RemoveFn:
    """The runner's removal callback: each host's rootfs goes; every host that fails is named
    (one HostError for all of them), not only the first."""

    async def remove(hosts: Sequence[str]) -> None:
        slots = asyncio.Semaphore(max(1, settings.options.max_parallel))

        async def one(host: str) -> None:
            async with slots:
                await delivery.remove(
                    driver, cluster.name, [host], root=settings.root, data_root=cluster.data_root
                )

        results = await asyncio.gather(*(one(h) for h in hosts), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        host_errors = [e for e in errors if isinstance(e, HostError)]
        if host_errors and len(host_errors) == len(errors):
            raise combine_host_errors(host_errors)
        if errors:
            raise errors[0]

    return remove
