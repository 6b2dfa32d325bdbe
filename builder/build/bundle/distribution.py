"""Images from the local store, written in the docker-distribution filesystem storage layout.

`docker-registry serve` (distribution 2.8, `storage.filesystem.rootdirectory: DIR`) serves what
this writes, as paths.go in distribution/distribution lays it out:

    DIR/docker/registry/v2/blobs/sha256/<hex[:2]>/<hex>/data
    DIR/docker/registry/v2/repositories/<repo>/_layers/sha256/<hex>/link               config, layers
    DIR/docker/registry/v2/repositories/<repo>/_manifests/revisions/sha256/<hex>/link  manifests, indexes
    DIR/docker/registry/v2/repositories/<repo>/_manifests/tags/<tag>/current/link
    DIR/docker/registry/v2/repositories/<repo>/_manifests/tags/<tag>/index/sha256/<hex>/link

Each link holds `sha256:<hex>`. The registry checks a repository's links before it serves a blob
or a manifest from it, so every config and layer gets a `_layers` link and every manifest (an
index's children too) a revision link in the repository that uses it.

Repository path: the reference's repository without its registry host (`docker.io/library/nginx`
-> `library/nginx`, `registry.k8s.io/ingress-nginx/controller` -> `ingress-nginx/controller`),
the path under which sealer serves bundled images at `sea.hub:5000/<repo>`. Two source
registries giving one repository path is an error naming both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from builder._fs import atomic_write, fsync_dir
from builder.errors import DistributionLayoutError, SizeMismatch
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.mediatypes import INDEXES, MANIFESTS
from builder.image.reference import Reference
from builder.store.layout import Store

V2 = ("docker", "registry", "v2")
_COPY_CHUNK = 4 << 20


@dataclass(frozen=True, slots=True)
class DistributionStats:
    """What `write_distribution` did; a re-run over the same images writes no blob."""

    images: int  # references written (tags and/or digests)
    repositories: int
    manifests: int  # (repository, manifest or index) pairs linked
    blobs_written: int  # blob files copied (manifests, configs, layers)
    blobs_present: int  # blob files that were already in place
    bytes_written: int


@dataclass
class _Counters:
    manifests: set[tuple[str, Digest]] = field(default_factory=set)
    blobs_written: int = 0
    blobs_present: int = 0
    bytes_written: int = 0


def repository_path(ref: Reference) -> str:
    """Where `ref` lives in the bundle's registry: its repository, without the registry host."""
    return ref.repository


class _Layout:
    def __init__(self, store: Store, dest: Path) -> None:
        self.store = store
        self.v2 = dest.joinpath(*V2)
        self.counters = _Counters()
        self.blobs_done: set[Digest] = set()

    # -- paths ------------------------------------------------------------------------------

    def blob_data(self, digest: Digest) -> Path:
        return self.v2 / "blobs" / digest.algorithm / digest.hex[:2] / digest.hex / "data"

    def repo(self, repo: str) -> Path:
        return self.v2 / "repositories" / repo

    # -- writes -----------------------------------------------------------------------------

    def link(self, path: Path, digest: Digest) -> None:
        data = str(digest).encode()
        with contextlib.suppress(OSError):
            if path.read_bytes() == data:
                return
        atomic_write(path, data)

    def blob(self, desc: Descriptor) -> None:
        """Copy one blob from the store, verified, through a temp file and a rename."""
        digest = desc.digest
        if digest in self.blobs_done:
            return
        final = self.blob_data(digest)
        if final.is_file() and final.stat().st_size == desc.size:
            # Written by an earlier run through the same verified temp-and-rename path.
            self.counters.blobs_present += 1
            self.blobs_done.add(digest)
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".data.", suffix=".tmp", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as out, self.store.blobs.open(digest, expected_size=desc.size) as src:
                # The store's reader raises DigestMismatch/SizeMismatch at EOF: a corrupt blob
                # never reaches the rename below.
                shutil.copyfileobj(src, out, _COPY_CHUNK)
                out.flush()
                os.fsync(out.fileno())
                size = out.tell()
            if size != desc.size:
                raise SizeMismatch(f"blob {digest} is {size} bytes, its descriptor says {desc.size}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        fsync_dir(final.parent)
        self.counters.blobs_written += 1
        self.counters.bytes_written += desc.size
        self.blobs_done.add(digest)

    def manifest_tree(self, repo: str, desc: Descriptor) -> None:
        """The manifest or index `desc`, its children present locally, their configs and layers."""
        if (repo, desc.digest) in self.counters.manifests:
            return
        if desc.media_type in INDEXES:
            index = self.store.read_index(desc)
            for child in index.manifests:
                if child.media_type in MANIFESTS | INDEXES and self.store.blobs.has(child.digest):
                    self.manifest_tree(repo, child)
        elif desc.media_type in MANIFESTS:
            manifest = self.store.read_manifest(desc)
            for blob in (manifest.config, *manifest.layers):
                self.blob(blob)
                self.link(
                    self.repo(repo) / "_layers" / blob.digest.algorithm / blob.digest.hex / "link",
                    blob.digest,
                )
        else:
            raise DistributionLayoutError(f"{desc.digest} has media type {desc.media_type}, not an image")
        # The manifest blob goes in last: a registry never sees a manifest whose blobs are missing.
        self.blob(desc)
        revision = self.repo(repo) / "_manifests" / "revisions" / desc.digest.algorithm / desc.digest.hex
        self.link(revision / "link", desc.digest)
        self.counters.manifests.add((repo, desc.digest))

    def tag(self, repo: str, tag: str, digest: Digest) -> None:
        tag_dir = self.repo(repo) / "_manifests" / "tags" / tag
        self.link(tag_dir / "index" / digest.algorithm / digest.hex / "link", digest)
        self.link(tag_dir / "current" / "link", digest)


def _plan(store: Store, images: Sequence[tuple[str, str]]) -> list[tuple[Reference, Descriptor]]:
    """Resolve every pair and refuse the conflicts one registry directory cannot hold."""
    owners: dict[str, tuple[str, str]] = {}  # repo path -> (registry, reference text)
    tags: dict[tuple[str, str], tuple[Digest, str]] = {}
    plan: list[tuple[Reference, Descriptor]] = []
    seen: set[tuple[str, Digest]] = set()
    for name, ref_text in images:
        ref = Reference.parse(ref_text)
        desc = store.resolve(name)
        if ref.digest is not None and ref.digest != desc.digest:
            raise DistributionLayoutError(
                f"{ref_text} names digest {ref.digest}, but {name!r} in the store is {desc.digest}",
                hint="pull the image by that digest, or drop the digest from the reference",
            )
        repo = repository_path(ref)
        owner = owners.setdefault(repo, (ref.registry, ref_text))
        if owner[0] != ref.registry:
            raise DistributionLayoutError(
                f"{owner[1]} and {ref_text} both map to repository {repo!r} of the bundled registry",
                hint="bundled images are served by repository path without the registry host; keep one of them",
            )
        if ref.tag is not None:
            previous = tags.setdefault((repo, ref.tag), (desc.digest, ref_text))
            if previous[0] != desc.digest:
                raise DistributionLayoutError(
                    f"{previous[1]} and {ref_text} tag {repo}:{ref.tag} with different images "
                    f"({previous[0]} and {desc.digest})"
                )
        key = (str(ref), desc.digest)
        if key not in seen:
            seen.add(key)
            plan.append((ref, desc))
    return plan


def write_distribution(store: Store, images: Sequence[tuple[str, str]], dest: Path) -> DistributionStats:
    """Write (store name, reference as it should appear) pairs into `dest` in distribution's layout.

    All pairs are resolved and checked before anything is written. Blobs are copied from the
    store's verifying reader into a temp file beside their final path, fsynced and renamed, so
    a digest path only ever holds the verified bytes; links are written the same way. Every
    platform of an index that is present locally is written. Idempotent: a re-run writes no
    blob again and leaves links that already hold the right digest untouched.
    """
    plan = _plan(store, images)
    layout = _Layout(store, dest)
    for ref, desc in plan:
        repo = repository_path(ref)
        layout.manifest_tree(repo, desc)
        if ref.tag is not None:
            layout.tag(repo, ref.tag, desc.digest)
    counters = layout.counters
    return DistributionStats(
        images=len(plan),
        repositories=len({repository_path(ref) for ref, _ in plan}),
        manifests=len(counters.manifests),
        blobs_written=counters.blobs_written,
        blobs_present=counters.blobs_present,
        bytes_written=counters.bytes_written,
    )
