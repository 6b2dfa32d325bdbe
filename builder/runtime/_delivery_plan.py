"""One host's delivery plan: its wanted list (`wanted_items`: the image layers, then the host's
rendered layer), the rootfs id of that list, and the commands delivery runs after the probe
(`plan_host`), read against what the probe found. The real run (`delivery.deliver`), the dry-run
(`delivery.plan_commands`, against `BARE_HOST`) and fan-out's fetchers (`fanout_fetch`, which
fetch the blobs the plan would upload) all read this one plan. The command texts are
`_delivery_shell`'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.image import mediatypes
from builder.image.digest import Digest
from builder.runtime import _delivery_shell as sh
from builder.runtime._delivery_image import DeliveryImage
from builder.store.layout import Store

PROBE_TIMEOUT_S = 60  # the probe, and fan-out's question of what a server publishes


@dataclass(frozen=True, slots=True)
class Item:
    """One entry of a host's wanted list: an image layer, or the host's rendered layer."""

    digest: Digest
    size: int
    compression: str  # "", "gzip", "zstd"
    diff_id: Digest
    whiteouts: tuple[str, ...]
    opaques: tuple[str, ...]
    path: Path | None  # the store blob; None for the rendered layer
    data: bytes | None = None


def wanted_items(store: Store | None, image: DeliveryImage, rendered: bytes | None) -> list[Item]:
    """A host's wanted list: the image's layers (their store blobs, when `store` is given), then
    the host's `rendered` layer, if any."""
    out = [
        Item(
            p.descriptor.digest,
            p.descriptor.size,
            mediatypes.LAYER_COMPRESSION.get(p.descriptor.media_type, ""),
            p.diff_id,
            p.whiteouts,
            p.opaques,
            store.blobs.path(p.descriptor.digest) if store is not None else None,
        )
        for p in image.layers
    ]
    if rendered is not None:
        digest = Digest.from_bytes(rendered)
        out.append(Item(digest, len(rendered), "", digest, (), (), None, rendered))
    return out


def rootfs_id(wanted: Sequence[str]) -> str:
    """The id of the tree a wanted list builds (`rootfs-<id>`, `.staging-<id>`)."""
    return hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:16]


def resume_from(probe: sh.Probe, wanted: Sequence[str]) -> int | None:
    """How many layers of `wanted` the staging dir already holds, or None when there is no
    staging dir to continue (absent, or its progress is not a prefix of `wanted`)."""
    staged = list(probe.staged)
    if not probe.has_staging or staged != list(wanted[: len(staged)]):
        return None
    return len(staged)


@dataclass(frozen=True, slots=True)
class Op:
    """One command of a host's delivery after the probe. `item`: the layer it sends, as
    stored (`plain=False`) or decompressed on the controller for a host without the tool
    (`plain=True`); None for a command that sends nothing. `present`: it unpacks a blob already
    on the host (how many layers: consecutive commands that send nothing run as one)."""

    command: str
    item: Item | None = None
    plain: bool = False
    present: int = 0


# A host that has nothing yet and both decompressors: what a dry-run assumes of every host.
BARE_HOST = sh.Probe(
    applied=(), link="", has_tree=False, blobs=frozenset(), tools=frozenset({"zstd", "gzip"})
)


def plan_host(
    p: sh.Paths, rid: str, items: Sequence[Item], wanted: Sequence[str], probe: sh.Probe, keep_blobs: bool
) -> tuple[list[Op], int]:
    """The commands delivery runs on a host after its probe, and how many layers were already
    there when it started: nothing when `wanted` is applied; the switch alone when the
    rootfs-<id> tree is whole; else the staging dir prepared (or resumed after its last
    recorded layer), each layer still to stage (its removals, then unpacked from a blob the
    host has, or streamed), then the switch. The real run and the dry-run (`plan_commands`,
    against `BARE_HOST`) both read this list."""
    if list(probe.applied) == list(wanted) and probe.link == f"rootfs-{rid}":
        return [], len(items)
    if probe.has_tree:
        return [Op(sh.switch(p, rid, wanted, built=False))], len(items)
    # An interrupted layer is not in the progress, so it is done again from its removals on:
    # what it left in staging is a prefix of the same verified stream (SSH's MAC), and its
    # removals only delete lower layers' paths or paths this layer makes again.
    done = resume_from(probe, wanted)
    ops = [Op(sh.prepare(p, rid, resume=done is not None, keep_blobs=keep_blobs))]
    for item in items[done or 0 :]:
        ops += [Op(c) for c in sh.removals(p.staging(rid), item.whiteouts, item.opaques)]
        if item.digest.hex in probe.blobs:
            ops.append(Op(sh.extract_blob(p, rid, item.digest.hex, item.compression), present=1))
        elif not item.compression or item.compression in probe.tools:
            cmd = sh.upload_extract(p, rid, item.digest.hex, item.compression, keep_blobs=keep_blobs)
            ops.append(Op(cmd, item))
        else:
            ops.append(Op(sh.stream_extract(p, rid, item.diff_id.hex, str(item.digest)), item, plain=True))
    ops.append(Op(sh.switch(p, rid, wanted, built=True)))
    return joined(ops), done or 0


def joined(ops: list[Op]) -> list[Op]:
    """Consecutive commands that send nothing (the prepare, a layer's removals, unpacking blobs
    already on the host) as one command, up to MAX_COMMAND_CHARS: each is a round trip and a
    shell on the host, and a host that has every blob (kept, or fetched by fan-out) would
    otherwise run two per layer. Each starts with `set -e` or is a single command, so the
    first failure still stops the rest; the switch stays on its own, after any upload."""
    out: list[Op] = []
    for op in ops:
        last = out[-1] if out else None
        if (
            last is not None
            and last.item is None
            and op.item is None
            and op is not ops[-1]
            and len(last.command) + len(op.command) < sh.MAX_COMMAND_CHARS
        ):
            out[-1] = Op(f"{last.command}; {op.command}", present=last.present + op.present)
        else:
            out.append(op)
    return out
