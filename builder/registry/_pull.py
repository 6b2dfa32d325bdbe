"""Pull of ClusterImages into the store: `PullClient`, the pull half of `RegistryClient`.

The manifest (digest checked against the reference's digest or the registry's
Docker-Content-Digest), then each missing config/layer streamed into a `BlobWriter` that checks
size and digest (a corrupt blob fails naming its digest and nothing lands in the store), then
the manifests, and the local name last: an interrupted pull leaves no name behind. An index is
pulled whole with `all_platforms`; otherwise only the manifest for `platform` (default: this
host) is stored and named, as `skopeo copy` does without `--all`, so every local name points at
a complete image. Layers may also be handed to tees as they arrive (tee.py).
"""

from __future__ import annotations

import json
from typing import Any

from builder.errors import DigestMismatch, InvalidManifest, NotFound, StoreError
from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.index import Index
from builder.image.manifest import Manifest
from builder.image.mediatypes import INDEXES, MANIFESTS
from builder.image.reference import Reference
from builder.registry._client_base import ClientBase, _BlobProgress, _Target
from builder.registry.budget import RetryBudget
from builder.registry.events import BlobDone, BlobSkipped, BlobStarted, ManifestDone
from builder.registry.tee import BlobTee, LayerTees
from builder.store.blobs import BlobWriter
from builder.store.layout import Store


class _WriterSink:
    """A download sink over the store's BlobWriter, and the caller's tee if any; `reset` starts
    a fresh writer (and tells the tee)."""

    def __init__(self, store: Store, desc: Descriptor, tee: BlobTee | None = None) -> None:
        self._store = store
        self._desc = desc
        self.writer: BlobWriter = store.blobs.writer(expected=desc.digest, expected_size=desc.size)
        self.tee = tee

    def write(self, data: bytes) -> int:
        n = self.writer.write(data)  # first: it refuses bytes past the expected size
        if self.tee is not None:
            self.tee.write(data)
        return n

    def reset(self) -> None:
        self.writer.abort()
        self.writer = self._store.blobs.writer(expected=self._desc.digest, expected_size=self._desc.size)
        if self.tee is not None:
            self.tee.restart()

    def abort(self) -> None:
        self.writer.abort()
        if self.tee is not None:
            self.tee.abort()


class PullClient(ClientBase):
    """`pull` of `RegistryClient` (and the manifest checks `resolve` shares); see the module
    docstring."""

    def pull(
        self,
        store: Store,
        ref: str,
        *,
        platform: Platform | None = None,
        all_platforms: bool = False,
        tag_as: str | None = None,
        tees: LayerTees | None = None,
    ) -> Descriptor:
        """Pull `ref` into `store` and name it `tag_as` (default: `ref` itself, normalised).

        Returns the descriptor the local name points at: the index with `all_platforms`, else
        the manifest for `platform` (default: this host) when `ref` is an index. Holds the
        store's GC lock shared from the first blob written until the name is set, so a
        concurrent prune cannot free what no name reaches yet.

        `tees` (tee.py): each layer blob downloaded is also handed, as it arrives, to the tee
        `tees.open` gives for it (the config is then fetched before the layers, for the
        diff_ids); a tee's result is published only after its blob's digest matched, and a
        tee's failure fails the pull. Layers the store already held get no tee.
        """
        with store.gc_lock(exclusive=False):
            return self._pull(
                store, ref, platform=platform, all_platforms=all_platforms, tag_as=tag_as, tees=tees
            )

    def _pull(
        self,
        store: Store,
        ref: str,
        *,
        platform: Platform | None,
        all_platforms: bool,
        tag_as: str | None,
        tees: LayerTees | None,
    ) -> Descriptor:
        budget = self._budget()
        target = self._target(ref)
        local_name = str(Reference.parse(tag_as)) if tag_as else str(target.ref)
        what = f"manifest {target.ref}"
        got = target.registry.fetch_manifest(
            target.repository, target.tag_or_digest, what=what, budget=budget
        )
        digest = self._check_manifest_digest(target, got.data, got.digest)
        media_type = _media_type(got.data, got.media_type, what)
        top = Descriptor(media_type, digest, len(got.data))
        pulled: list[str] = []
        if media_type in INDEXES:
            index = Index.from_bytes(got.data)
            if all_platforms:
                for child in index.manifests:
                    if child.media_type in MANIFESTS:
                        pulled += self._pull_manifest(store, target, child, budget, tees=tees)
                store.blobs.put(got.data, expected=digest)
            else:
                chosen = index.select(platform or Platform.host())
                pulled += self._pull_manifest(store, target, chosen, budget, tees=tees)
                top = Descriptor(chosen.media_type, chosen.digest, chosen.size, platform=chosen.platform)
        else:
            pulled += self._pull_manifest(store, target, top, budget, data=got.data, tees=tees)
        self._emit(ManifestDone(str(target.ref), str(top.digest), top.media_type))
        store.refs.set(local_name, top)
        self._remember(store, target.ref.registry, target.repository, pulled)
        return top

    def _pull_manifest(
        self,
        store: Store,
        target: _Target,
        desc: Descriptor,
        budget: RetryBudget,
        *,
        data: bytes | None = None,
        tees: LayerTees | None = None,
    ) -> list[str]:
        """Pull one image manifest and its blobs (manifest bytes stored last); returns blob digests."""
        if data is None:
            what = f"manifest {target.ref.name}@{desc.digest}"
            got = target.registry.fetch_manifest(
                target.repository, str(desc.digest), what=what, budget=budget
            )
            data = got.data
            if Digest.from_bytes(data) != desc.digest:
                raise DigestMismatch(f"{what} hashes to {Digest.from_bytes(data)}", hint="nothing was stored")
        manifest = Manifest.from_bytes(data)
        unique = {b.digest: b for b in (manifest.config, *manifest.layers)}
        diff_ids: dict[Digest, Digest] = {}
        if tees is not None:
            # The config first (one small request), so that each layer's tee knows its diff_id.
            config = manifest.config
            missing = not store.blobs.has(config.digest)
            self._pull_blob(store, target, config, _WriterSink(store, config) if missing else None, budget)
            del unique[config.digest]
            diff_ids = _diff_ids(manifest, store.read_config(config))
        # Writers and tees are opened here, on the caller's thread, so that every one of them is
        # aborted in the `finally` below whatever the worker threads did.
        sinks: dict[Digest, _WriterSink] = {}
        try:
            for d, b in unique.items():
                if not store.blobs.has(d):
                    sink = sinks[d] = _WriterSink(store, b)
                    if tees is not None and d in diff_ids:
                        sink.tee = tees.open(b, diff_ids[d])
            self._parallel(
                lambda blob: self._pull_blob(store, target, blob, sinks.get(blob.digest), budget),
                list(unique.values()),
            )
        finally:
            for sink in sinks.values():
                sink.abort()
        store.blobs.put(data, expected=desc.digest)
        return [str(b.digest) for b in (manifest.config, *manifest.layers)]

    def _pull_blob(
        self,
        store: Store,
        target: _Target,
        desc: Descriptor,
        sink: _WriterSink | None,
        budget: RetryBudget,
    ) -> None:
        digest = str(desc.digest)
        if sink is None:
            self._emit(BlobSkipped(digest, desc.size))
            return
        self._emit(BlobStarted(digest, desc.size, desc.media_type, "pull"))
        progress = _BlobProgress(self._emit, digest, desc.size)

        try:
            try:
                target.registry.download_blob_to(
                    target.repository, digest, desc.size, sink, progress=progress, budget=budget
                )
            except NotFound as err:
                raise NotFound(
                    f"blob {digest} of {target.ref} not found on {target.ref.registry}",
                    status=err.status,
                    code=err.code,
                ) from None
            try:
                # First, while the tee may still be at work: a digest mismatch is the cause to
                # name whatever the tee made of those bytes, and the fsync overlaps the tee.
                sink.writer.commit()
            except StoreError as err:
                raise type(err)(
                    f"blob {digest} from {target.ref.registry}/{target.repository} is corrupt: {err}",
                    hint="the registry holds damaged data; nothing was stored",
                ) from None
            if sink.tee is not None:
                sink.tee.finish()
                sink.tee.publish()  # only now: its bytes are the digest's
        finally:
            sink.abort()
        self._emit(BlobDone(digest, desc.size, progress.done))

    def _check_manifest_digest(self, target: _Target, data: bytes, header: str | None) -> Digest:
        digest = Digest.from_bytes(data)
        expected = str(target.ref.digest) if target.ref.digest else header
        if expected and expected != str(digest):
            raise DigestMismatch(
                f"manifest {target.ref} from the registry hashes to {digest}, expected {expected}",
                hint="the registry or something between us changed the content; nothing was stored",
            )
        return digest


def _diff_ids(manifest: Manifest, config: ImageConfig) -> dict[Digest, Digest]:
    """Layer digest -> diff_id, from the config's `rootfs.diff_ids` (OCI image-spec config.md:
    one per layer, in order). A layer listed twice with two diff_ids gets none (no tee)."""
    if len(config.diff_ids) != len(manifest.layers):
        raise InvalidManifest(
            f"the image config {manifest.config.digest} lists {len(config.diff_ids)} diff_ids for "
            f"{len(manifest.layers)} layers",
            hint="the image on the registry is corrupt; nothing was stored under its name",
        )
    out: dict[Digest, Digest] = {}
    clashes: set[Digest] = set()
    for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
        if out.setdefault(layer.digest, diff_id) != diff_id:
            clashes.add(layer.digest)
    return {d: i for d, i in out.items() if d not in clashes}


def _media_type(data: bytes, header: str, what: str) -> str:
    """The media type of a fetched document: its own mediaType field, else the Content-Type."""
    try:
        obj: Any = json.loads(data)
    except ValueError:
        raise InvalidManifest(f"{what} is not JSON") from None
    field_type = obj.get("mediaType") if isinstance(obj, dict) else None
    for candidate in (field_type, header):
        if candidate in MANIFESTS or candidate in INDEXES:
            return str(candidate)
    if isinstance(obj, dict) and "manifests" in obj:
        return Index.from_bytes(data).media_type
    return Manifest.from_bytes(data).media_type
