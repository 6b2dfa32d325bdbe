"""Rootfs delivery: an image's layers onto hosts as `data/<cluster>/rootfs`, only what is missing.

`prepare_image` resolves the image for a platform and checks its layer stack once on the
controller (cached in the store); `render_layer` renders the image's `*.tmpl` files with a
host's env into a small deterministic tar applied last, so image layers stay shared between
hosts and clusters. `deliver` then, per host and concurrently: one probe command (the applied
list, the rootfs symlink, the staging progress, blobs present, zstd/gzip); nothing more when the
wanted list is already applied; else every layer not yet in the staging tree is unpacked into it
(a missing one is streamed as stored, extracted as it arrives and verified by sha256 when it
ends; a blob already on the host is extracted from there), each recorded in the staging
progress once verified, then the atomic switch (`_delivery_shell.switch`). Hosts keep no blobs
unless `keep_blobs=True` (then each streamed blob is also kept, verified, under blobs/, and
reused by any later wanted list). A failure leaves the current rootfs untouched; the next
attempt for the same wanted list continues after the last recorded layer, so only the layers
not yet unpacked travel. `remove` undoes a cluster's delivery and prunes blobs no other cluster
uses; `plan_commands` prints, for `--dry-run`, the plan `deliver` runs. Every entry point takes
`target`: a directory under `data/<cluster>` that gets its own rootfs with the same guarantees
(an app's, `apps/<name>`, on master0), leaving the cluster's own rootfs alone; the default ""
is the cluster's rootfs.

This module holds the public API, the events and the per-host run. The parts live beside it:
`_delivery_image` (prepare_image, render_layer, the stack-check cache), `_stackcheck` (the
check itself), `_delivery_plan` (a host's wanted list and the commands after its probe, shared
with the dry-run and fan-out) and `_delivery_shell` (every command text, the host-side layout).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.errors import ClusterError, CommandFailed, HostError, SealerError
from builder.image.digest import Digest
from builder.layers.compression import Compression, open_decompressed
from builder.runtime import _delivery_shell as sh
from builder.runtime._delivery_image import DeliveryImage, prepare_image, render_layer
from builder.runtime._delivery_plan import (
    BARE_HOST,
    PROBE_TIMEOUT_S,
    Item,
    Op,
    plan_host,
    rootfs_id,
    wanted_items,
)
from builder.runtime._stackcheck import LayerPlan
from builder.runtime.cluster import check_cluster_name
from builder.runtime.infra.base import InfraDriver
from builder.store.layout import Store

__all__ = [
    "DEFAULT_ROOT",
    "BlobSent",
    "DeliveryEvent",
    "DeliveryImage",
    "HostDelivery",
    "HostDone",
    "HostFailed",
    "HostProgress",
    "HostSkipped",
    "HostStarted",
    "LayerPlan",
    "check_target",
    "deliver",
    "plan_commands",
    "prepare_image",
    "remove",
    "render_layer",
    "rootfs_path",
]

DEFAULT_ROOT = "/var/lib/sealer"
_CHUNK = 4 << 20
_PROGRESS_EVERY_S = 0.1  # HostProgress while a blob streams: at most this often per host
_TARGET_PART = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
# Names the cluster's own delivery uses in data/<cluster> (its switch removes stale rootfs-*
# and .staging-* there; `.` is refused by _TARGET_PART): a target must not start with them.
_CLUSTER_NAMES = re.compile(r"^(rootfs|applied)")


def check_target(target: str) -> str:
    """A relative path of lower-case name components under data/<cluster>, clear of the
    cluster's own names ("" is the cluster's rootfs itself); ClusterError otherwise."""
    if target == "":
        return target
    parts = target.split("/")
    if not all(_TARGET_PART.match(x) and ".." not in x for x in parts) or _CLUSTER_NAMES.match(parts[0]):
        raise ClusterError(
            f"delivery target {target!r} is not a plain relative path under the cluster's data dir",
            hint="lower-case letters, digits, '.', '_' and '-' per component, not rootfs*/applied",
        )
    return target


def _paths(root: str, cluster: str, target: str, data_root: str = "") -> sh.Paths:
    return sh.Paths(root, check_cluster_name(cluster), check_target(target), data_root)


def rootfs_path(cluster: str, root: str = DEFAULT_ROOT, *, target: str = "", data_root: str = "") -> str:
    """The path scripts see as the cluster's rootfs (a symlink to the current tree), or as the
    rootfs of `target` (an app's) when one is given; under `data_root` (the cluster's
    spec.dataRoot) when it has one, else under `root`."""
    return _paths(root, cluster, target, data_root).rootfs


@dataclass(frozen=True, slots=True)
class HostDelivery:
    """What one host's delivery did.

    `blobs_sent`: compressed blobs streamed (kept on the host only with keep_blobs).
    `layers_present`: wanted layers that did not travel because the host already had them: all
    of them when the rootfs (or a whole rootfs-<id> tree) was already there; else those recorded
    in the progress of a staging dir left by an interrupted attempt, plus those whose blob a
    keep_blobs delivery left on the host. `streamed_plain`: layers the host could not decompress
    (no zstd/gzip), streamed decompressed from the controller.
    """

    host: str
    bytes_sent: int
    blobs_sent: int
    layers_present: int
    rebuilt: bool
    seconds: float
    streamed_plain: int = 0


@dataclass(frozen=True, slots=True)
class HostStarted:
    host: str


@dataclass(frozen=True, slots=True)
class BlobSent:
    host: str
    digest: Digest
    bytes: int


@dataclass(frozen=True, slots=True)
class HostProgress:
    """Bytes sent to `host` so far, as they stream (counted once each write has drained), of
    about `bytes_total` (the blobs it lacks; a layer streamed decompressed sends more)."""

    host: str
    bytes_sent: int
    bytes_total: int


@dataclass(frozen=True, slots=True)
class HostSkipped:
    """The host already has the wanted rootfs: nothing was sent or changed."""

    host: str


@dataclass(frozen=True, slots=True)
class HostDone:
    result: HostDelivery


@dataclass(frozen=True, slots=True)
class HostFailed:
    host: str
    message: str


DeliveryEvent = HostStarted | BlobSent | HostProgress | HostSkipped | HostDone | HostFailed


# --- one host -------------------------------------------------------------------------------------


def _file_chunks(path: Path) -> Iterator[bytes]:
    # Read as stored: the host's sha256 check on arrival is against the digest, so a blob that
    # rotted in the store fails there; hashing here too would cost a second pass per host.
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def _plain_chunks(item: Item) -> Iterator[bytes]:
    assert item.path is not None
    with open(item.path, "rb") as raw, open_decompressed(raw, Compression(item.compression)) as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def _host_error(host: str, err: SealerError, item: Item | None) -> HostError:
    if isinstance(err, HostError):
        return err
    if isinstance(err, CommandFailed) and err.status == sh.VERIFY_FAILED and item is not None:
        last = err.stderr_tail.strip().splitlines()[-1:] or [""]
        return HostError(
            f"{host}: layer {item.digest} failed its check on arrival ({last[0]})", host=host, step="verify"
        )
    return HostError(
        err.message if err.message.startswith(host) else f"{host}: {err.message}", host=host, step="deliver"
    )


async def _deliver_host(
    driver: InfraDriver,
    items: list[Item],
    p: sh.Paths,
    host: str,
    emit: Callable[[DeliveryEvent], None],
    keep_blobs: bool,
) -> HostDelivery:
    started = time.monotonic()
    emit(HostStarted(host))
    wanted = [str(i.digest) for i in items]
    rid = rootfs_id(wanted)
    probe = sh.parse_probe((await driver.run(host, sh.probe(p, rid), timeout_s=PROBE_TIMEOUT_S)).stdout)
    ops, present = plan_host(p, rid, items, wanted, probe, keep_blobs)
    if not ops:
        emit(HostSkipped(host))
        return HostDelivery(host, 0, 0, present, False, time.monotonic() - started)
    sent = blobs_sent = plain = 0
    # No report before the first bytes: a host that receives nothing reports nothing.
    total = sum(op.item.size for op in ops if op.item is not None)  # the blobs it lacks
    last_report = time.monotonic()

    def streamed(n: int) -> None:
        nonlocal sent, last_report
        sent += n
        if time.monotonic() - last_report >= _PROGRESS_EVERY_S:
            last_report = time.monotonic()
            emit(HostProgress(host, sent, total))

    for op in ops:
        item = op.item
        if item is None:
            await driver.run(host, op.command)
            present += op.present
        elif not op.plain:
            chunks = [item.data] if item.data is not None else _file_chunks(_path(item))
            before = sent
            n = (await driver.pipe_to(host, op.command, _counted(chunks, streamed))).bytes_sent
            sent = before + n
            blobs_sent += 1
            emit(BlobSent(host, item.digest, n))
            emit(HostProgress(host, sent, total))
        else:
            before = sent
            sent = (
                before
                + (await driver.pipe_to(host, op.command, _counted(_plain_chunks(item), streamed))).bytes_sent
            )
            plain += 1
            emit(HostProgress(host, sent, max(total, sent)))
    return HostDelivery(host, sent, blobs_sent, present, True, time.monotonic() - started, plain)


async def _counted(
    chunks: Iterator[bytes] | list[bytes], on_bytes: Callable[[int], None]
) -> AsyncIterator[bytes]:
    """`chunks` for a driver's `pipe_to`, each counted when the driver asks for the next one
    (its write has drained by then), so that progress follows the bytes as they stream rather
    than jumping at a blob's end. Reads run in a thread, as the drivers do for plain iterators."""
    it = iter(chunks)
    try:
        while (chunk := await asyncio.to_thread(next, it, None)) is not None:
            yield chunk
            on_bytes(len(chunk))
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def _path(item: Item) -> Path:
    assert item.path is not None
    return item.path


async def _verify_blob(driver: InfraDriver, host: str, digest: Digest, *, root: str = DEFAULT_ROOT) -> None:
    """The on-arrival check alone, for a `.partial-<hex>` already on the host: renamed to its
    digest path when its sha256 matches, else deleted and HostError naming host and digest.
    (Uploads run the same check in their own command; this is how it is tested, since SSH's MAC
    makes corruption in transit impossible to stage.)"""
    p = sh.Paths(root, "_")
    item = Item(digest, 0, "", digest, (), (), None)
    try:
        await driver.run(host, sh.verify_partial(p, digest.hex))
    except SealerError as err:
        raise _host_error(host, err, item) from err


async def deliver(
    driver: InfraDriver,
    store: Store,
    image: DeliveryImage,
    cluster: str,
    host_env: Mapping[str, Mapping[str, str]],
    *,
    root: str = DEFAULT_ROOT,
    max_parallel: int = 8,
    on_event: Callable[[DeliveryEvent], None] | None = None,
    keep_blobs: bool = False,
    target: str = "",
    data_root: str = "",
) -> dict[str, HostDelivery]:
    """Deliver `image` to every host of `host_env` (host -> its merged env for rendering), as
    the cluster's rootfs or, with `target`, as `data/<cluster>/<target>/rootfs`.

    By default hosts keep no blobs: each missing layer is streamed once, unpacked as it arrives
    and verified when it ends. `keep_blobs=True` also keeps every streamed blob under
    `<root>/blobs/sha256` (verified), so that a later wanted list sharing layers (a new image
    version, another cluster) sends only the blobs the host lacks; it costs a disk write of
    every blob on every host. Blobs already on a host are used in either mode.

    Every host's templates are rendered before anything is sent (a RootfsTemplateError stops all).
    Hosts run concurrently, `max_parallel` at once. Idempotent: a host whose applied list is the
    wanted list costs one command and moves 0 bytes. Raises HostError naming the (first) host
    that failed once every host has finished; the others' results come as HostDone events.
    """
    p = _paths(root, cluster, target, data_root)
    plans = {host: wanted_items(store, image, render_layer(image, env)) for host, env in host_env.items()}
    emit = on_event or (lambda event: None)
    slots = asyncio.Semaphore(max(1, max_parallel))
    results: dict[str, HostDelivery] = {}
    failures: dict[str, HostError] = {}

    async def one(host: str, items: list[Item]) -> None:
        async with slots:
            try:
                results[host] = await _deliver_host(driver, items, p, host, emit, keep_blobs)
            except (SealerError, OSError) as err:  # OSError: reading a store blob
                if isinstance(err, OSError):
                    err = HostError(f"{host}: reading a layer from the store: {err}", host=host)
                failures[host] = _host_error(host, err, _failed_item(err, items))
                emit(HostFailed(host, failures[host].message))
                return
        emit(HostDone(results[host]))

    await asyncio.gather(*(one(host, items) for host, items in plans.items()))
    if failures:
        first = next(h for h in plans if h in failures)
        err = failures[first]
        more = [h for h in plans if h in failures and h != first]
        suffix = f" (and {len(more)} more: {', '.join(more)})" if more else ""
        raise HostError(err.message + suffix, host=first, step=err.step, hint=err.hint) from err
    return results


def _failed_item(err: SealerError, items: list[Item]) -> Item | None:
    if not isinstance(err, CommandFailed):
        return None
    return next((i for i in items if f"sha256:{i.digest.hex} arrived" in err.stderr_tail), None)


async def remove(
    driver: InfraDriver,
    cluster: str,
    hosts: Sequence[str],
    *,
    root: str = DEFAULT_ROOT,
    target: str = "",
    data_root: str = "",
) -> None:
    """Remove data/<cluster> (every rootfs tree, the symlink, the applied list; its targets'
    too) from `hosts`, or only data/<cluster>/<target>, then the blobs no remaining applied
    list names. Idempotent."""
    p = _paths(root, cluster, target, data_root)
    slots = asyncio.Semaphore(8)

    async def one(host: str) -> None:
        async with slots:
            try:
                await driver.run(host, sh.remove(p))
            except SealerError as err:
                raise _host_error(host, err, None) from err

    await asyncio.gather(*(one(h) for h in hosts))


def plan_commands(
    image: DeliveryImage,
    cluster: str,
    host: str,
    *,
    root: str = DEFAULT_ROOT,
    env: Mapping[str, str] | None = None,
    keep_blobs: bool = False,
    target: str = "",
    data_root: str = "",
) -> list[str]:
    """The commands delivery would run on `host` for a first delivery: the probe, then the
    plan `deliver` runs (`_delivery_plan.plan_host`) for a host that has nothing yet, each
    upload preceded by `upload <digest> (<size>)`. With `env` the host's templates are rendered,
    so the rendered layer's digest and the rootfs id are real; without it they are placeholders."""
    p = _paths(root, cluster, target, data_root)
    rendered = render_layer(image, env) if env is not None else None
    items = wanted_items(None, image, rendered)
    wanted = [str(i.digest) for i in items]
    placeholder = bool(image.templates) and rendered is None
    rid = "<id>" if placeholder else rootfs_id(wanted)
    ops, _ = plan_host(
        p, rid, items, [*wanted, "<rendered>"] if placeholder else wanted, BARE_HOST, keep_blobs
    )
    if placeholder:  # the rendered layer, unknown without the host's env, before the switch
        shown = f"upload <rendered templates of {host}: {len(image.templates)} files>"
        ops.insert(-1, Op(shown))
        ops.insert(-1, Op(sh.upload_extract(p, rid, "<rendered>", "", keep_blobs=keep_blobs)))
    out = [sh.probe(p, rid)]
    for op in ops:
        if op.item is not None:
            out.append(f"upload {op.item.digest} ({op.item.size})")
        out.append(op.command)
    return out
