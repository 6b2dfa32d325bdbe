"""Push of ClusterImages (manifest or index): `PushClient`, the push half of `RegistryClient`.

Every config and layer first, each HEADed and skipped when the registry has it, else mounted
from another repository of the same registry that is known to hold it (the blob-location cache
of `_client_base.py`), else uploaded streamed from its blob file; then child manifests by
digest; then the top manifest or index under the tag, with its exact stored bytes; then each
manifest is read back (HEAD by digest, GET when HEAD leaves out digest or size) and must match,
so a server that answers "yes" and stores nothing fails the push instead of printing a digest.
"""

from __future__ import annotations

import re

from builder.errors import DigestMismatch, InvalidManifest, NotFound, RegistryError, StoreError, UsageError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.manifest import Manifest
from builder.image.mediatypes import INDEXES, MANIFESTS
from builder.image.reference import Reference
from builder.registry._client_base import ClientBase, _BlobProgress, _Target
from builder.registry.budget import RetryBudget
from builder.registry.errors import is_refused
from builder.registry.events import (
    BlobDone,
    BlobMounted,
    BlobSkipped,
    BlobStarted,
    ManifestDone,
)
from builder.store.layout import Store


class PushClient(ClientBase):
    """`push` of `RegistryClient`; see the module docstring."""

    def push(self, store: Store, name: str, dest: str | None = None) -> Descriptor:
        """Push local image `name` (manifest or index and all it holds) to `dest` (default: `name`).

        Returns the descriptor of what was pushed on top (the digest the CLI prints). Holds the
        store's GC lock shared while it reads: an `rmi` of the image meanwhile cannot free the
        blobs under the upload.
        """
        with store.gc_lock(exclusive=False):
            return self._push(store, name, dest)

    def _push(self, store: Store, name: str, dest: str | None) -> Descriptor:
        budget = self._budget()
        top = store.resolve(name)
        target = self._target(dest or _local_name(store, name))
        children: list[Descriptor] = []
        manifests: list[Manifest] = []
        if top.media_type in INDEXES:
            index = store.read_index(top)
            for child in index.manifests:
                if child.media_type not in MANIFESTS:
                    raise InvalidManifest(
                        f"index {top.digest} holds a {child.media_type}, which push does not handle"
                    )
                children.append(child)
                manifests.append(store.read_manifest(child))
        elif top.media_type in MANIFESTS:
            manifests.append(store.read_manifest(top))
        else:
            raise InvalidManifest(f"{name} is a {top.media_type}, neither a manifest nor an index")
        blobs: dict[Digest, Descriptor] = {}
        for manifest in manifests:
            for desc in (manifest.config, *manifest.layers):
                blobs.setdefault(desc.digest, desc)
        for desc in blobs.values():  # fail before sending anything when the image is incomplete
            if not store.blobs.has(desc.digest):
                raise StoreError(
                    f"blob {desc.digest} of {name} is not in the local store",
                    hint="the image is incomplete; pull or build it again",
                )
        cache = self._read_cache(store).get(target.ref.registry, {})
        self._parallel(
            lambda desc: self._push_blob(store, target, desc, cache.get(str(desc.digest), []), budget),
            list(blobs.values()),
        )
        self._remember(store, target.ref.registry, target.repository, [str(d) for d in blobs])
        for child in children:
            self._put_manifest(store, target, child, str(child.digest), budget)
        self._put_manifest(store, target, top, target.tag_or_digest, budget)
        for desc in (*children, top):
            self._verify_pushed(target, desc, budget)
        return Descriptor(top.media_type, top.digest, top.size)

    def _push_blob(
        self, store: Store, target: _Target, desc: Descriptor, known_in: list[str], budget: RetryBudget
    ) -> None:
        reg, repo, digest = target.registry, target.repository, str(desc.digest)
        if reg.has_blob(repo, digest, desc.size, budget=budget):
            self._emit(BlobSkipped(digest, desc.size))
            return
        location: str | None = None
        for source in known_in:
            if source == repo:
                continue
            location = reg.start_upload(repo, mount=digest, source=source, budget=budget)
            if location is None:
                self._emit(BlobMounted(digest, desc.size, source))
                return
            break  # the registry opened a plain upload session instead; use it
        self._emit(BlobStarted(digest, desc.size, desc.media_type, "push"))
        progress = _BlobProgress(self._emit, digest, desc.size)

        refusals = 0
        while True:
            try:
                if location is None:
                    location = reg.open_upload(repo, budget=budget)
                reg.upload_blob_file(
                    repo,
                    location,
                    store.blobs.path(desc.digest),
                    digest,
                    desc.size,
                    chunk_size=self.options.chunk_size,
                    progress=progress,
                    budget=budget,
                )
                break
            except RegistryError as err:
                # A dropped upload cannot be replayed by the request layer (its body is a
                # stream); start a fresh session, within the operation's budget. A refused
                # connection is final before the registry answered (nothing listens there),
                # a restart to wait for after.
                if not err.temporary or (is_refused(err) and not budget.answered):
                    raise
                if is_refused(err):
                    refusals += 1
                    budget.restarting(reg.host, f"blob {digest}", err, refusals)
                else:
                    budget.retry(reg.host, f"blob {digest}", err)
                location = None
                progress(-progress.done)
        self._emit(BlobDone(digest, desc.size, progress.done))

    def _put_manifest(
        self, store: Store, target: _Target, desc: Descriptor, reference: str, budget: RetryBudget
    ) -> None:
        data = store.blobs.read_bytes(desc.digest)
        header = target.registry.put_manifest(
            target.repository, reference, data, desc.media_type, budget=budget
        )
        if header and header != str(desc.digest):
            raise DigestMismatch(
                f"{target.ref}: the registry stored the manifest as {header}, not {desc.digest}"
            )
        shown = f"{target.ref.name}@{desc.digest}" if reference.startswith("sha256:") else str(target.ref)
        self._emit(ManifestDone(shown, str(desc.digest), desc.media_type))

    def _verify_pushed(self, target: _Target, desc: Descriptor, budget: RetryBudget) -> None:
        """Read a pushed manifest back by digest: the registry must serve those exact bytes.

        HEAD first (digest and size from Docker-Content-Digest and Content-Length, which the
        spec requires on a 200); a registry or proxy that leaves either out gets a GET whose
        bytes are hashed."""
        reg, digest = target.registry, str(desc.digest)
        found = reg.head_manifest(target.repository, digest, budget=budget)
        seen = "nothing (404)"
        if found is not None:
            header, _, size = found
            if header == digest and size == desc.size:
                return
            seen = f"digest {header or '(none)'} and size {size if size >= 0 else '(none)'}"
            if header in (None, digest) and size in (-1, desc.size):
                try:
                    got = reg.fetch_manifest(
                        target.repository, digest, what=f"manifest {digest}", budget=budget
                    )
                except NotFound:
                    got = None
                if got is not None and Digest.from_bytes(got.data) == desc.digest:
                    return
                seen = "other bytes" if got is not None else "nothing (404)"
        raise RegistryError(
            f"{target.ref}: the registry accepted manifest {digest} ({desc.size} bytes) but serves "
            f"{seen} for it; the push did not take",
            hint=f"the server at {target.ref.registry} does not behave as an OCI registry; check the "
            "address (a web server or proxy may answer there)",
        )


_IMAGE_ID = re.compile(r"^(?:sha256:)?[0-9a-f]{12,64}$")


def _local_name(store: Store, name: str) -> str:
    """The full stored name for `name` (so that `app:v1` pushes to docker.io/library/app:v1)."""
    names = dict(store.refs.list())
    if name in names:
        return name
    if _IMAGE_ID.match(name):
        # An image ID would parse as docker.io/library/<hex>:latest; pushing there is never
        # what was meant (docker refuses too).
        raise UsageError(
            f"{name!r} is an image ID, not a name: say where to push it",
            hint=f"sealer push {name} REGISTRY/REPOSITORY:TAG",
        )
    return str(Reference.parse(name))
