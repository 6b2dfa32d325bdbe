"""Push, pull, resolve, exists, login and logout of ClusterImages: the policy on top of `_oras`.

Push (manifest or index): every config and layer first, each HEADed and skipped when the
registry has it, else mounted from another repository of the same registry that is known to
hold it (the store's `cache/registry-blobs.json` remembers digest -> repositories per registry
from earlier pushes and pulls), else uploaded streamed from its blob file; then child manifests
by digest; then the top manifest or index under the tag, with its exact stored bytes; then
each manifest is read back (HEAD by digest, GET when HEAD leaves out digest or size) and must
match, so a server that answers "yes" and stores nothing fails the push instead of printing a
digest.

Pull: the manifest (digest checked against the reference's digest or the registry's
Docker-Content-Digest), then each missing config/layer streamed into a `BlobWriter` that checks
size and digest (a corrupt blob fails naming its digest and nothing lands in the store), then
the manifests, and the local name last: an interrupted pull leaves no name behind. An index is
pulled whole with `all_platforms`; otherwise only the manifest for `platform` (default: this
host) is stored and named, as `skopeo copy` does without `--all`, so every local name points at
a complete image.

Scheme: `plain_http=True` always uses http, `False` always https. `None` (the default) uses
https, except for loopback registries (`localhost`, 127.0.0.0/8, `::1`): there one TLS probe of
`/v2/` decides, and plain HTTP is used only when the port answers in plain HTTP (as docker
treats 127.0.0.0/8 as an insecure registry). A loopback registry that speaks TLS is verified.

Time: each operation (push, pull, resolve, exists, login) draws its retries and its waiting
from one `RetryBudget` (budget.py), shared by its blobs and threads.

Past ~400 lines: push and pull share the target, cache, event and thread-pool plumbing here;
splitting them would make that plumbing public.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import queue
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder._fs import atomic_write
from builder.errors import DigestMismatch, InvalidManifest, NotFound, RegistryError, StoreError, UsageError
from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.index import Index
from builder.image.manifest import Manifest
from builder.image.mediatypes import INDEXES, MANIFESTS
from builder.image.reference import Reference
from builder.registry import auth
from builder.registry._oras import OrasRegistry, is_refused
from builder.registry.budget import RetryBudget
from builder.registry.events import (
    BlobDone,
    BlobMounted,
    BlobProgress,
    BlobSkipped,
    BlobStarted,
    ManifestDone,
    RegistryEvent,
    Retrying,
)
from builder.registry.tee import BlobTee, LayerTees
from builder.store.blobs import BlobWriter
from builder.store.layout import Store

log = logging.getLogger(__name__)

BLOB_CACHE = "registry-blobs.json"
MAX_REPOS_PER_BLOB = 8


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """How to talk to registries; the CLI builds it from --tls-verify, --plain-http, --ca-cert."""

    tls_verify: bool = True
    plain_http: bool | None = None  # None: https, plain http only for a loopback host without TLS
    ca_cert: Path | None = None
    auth_file: Path | None = None  # default: $DOCKER_CONFIG/config.json or ~/.docker/config.json
    # --creds: used for every registry instead of the auth file and its credential helpers
    credentials: auth.Credentials | None = None
    # Retries per operation (not per request or blob: an outage that cuts several blobs costs
    # one), shared by its threads; exponential backoff with full jitter (~4 s in all for 5) on
    # 5xx/429, dropped connections and timeouts. A refused connection is final before the
    # registry answered (nothing listens: one line at once) and waited for after (a restart,
    # until `timeout_s` without progress; budget.py). A push cut off for good is resumed by
    # running it again (done blobs are skipped).
    retries: int = 5
    # The longest an operation may go without progress (an answer, or bytes moving), retries
    # included; each connect or read waits a third of it. 30 s: a healthy registry answers in
    # milliseconds, 10 s of silence on one request is already far outside normal, and 30 s
    # leaves room for 2-3 such requests or a registry restart (docker-registry: < 1 s).
    timeout_s: float = 30.0
    chunk_size: int = 0  # 0: one streamed PUT per blob (fastest measured); >0: PATCH chunks
    max_workers: int = 3  # blobs moved at once


@dataclass
class _Target:
    ref: Reference
    registry: OrasRegistry
    tag_or_digest: str = field(init=False)

    def __post_init__(self) -> None:
        self.tag_or_digest = str(self.ref.digest) if self.ref.digest else (self.ref.tag or "latest")

    @property
    def repository(self) -> str:
        return self.ref.repository


class _Cancelled(Exception):
    """Raised in a worker when another transfer of the same push/pull has failed."""


@dataclass(frozen=True, slots=True)
class _Run:
    events: queue.SimpleQueue[RegistryEvent]
    failed: threading.Event


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1, with or without a port."""
    name = host
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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


class RegistryClient:
    """Moves images between a `Store` and OCI registries; see the module docstring."""

    def __init__(
        self,
        options: RegistryOptions = RegistryOptions(),
        on_event: Callable[[RegistryEvent], None] | None = None,
    ) -> None:
        self.options = options
        self._on_event = on_event
        self._registries: dict[str, OrasRegistry] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def _budget(self) -> RetryBudget:
        """A fresh budget for one operation; its retries reach `on_event` as Retrying."""

        def on_retry(what: str, attempt: int, delay: float, reason: str) -> None:
            self._emit(Retrying(what, attempt, delay, reason))

        return RetryBudget(retries=self.options.retries, timeout_s=self.options.timeout_s, on_retry=on_retry)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def auth_file(self) -> Path:
        return self.options.auth_file or auth.default_auth_file()

    def _emit(self, event: RegistryEvent) -> None:
        run = getattr(self._local, "run", None)
        if run is not None:  # a worker thread: hand the event to the caller's thread
            if run.failed.is_set():
                raise _Cancelled
            run.events.put(event)
        elif self._on_event is not None:
            self._on_event(event)

    def _parallel(self, work: Callable[[Descriptor], None], items: list[Descriptor]) -> None:
        """Run `work` on each item in a small thread pool, largest first, so that small blobs
        overlap the big one (measured: ~80 ms saved per push of the benchmark image). The largest
        starts alone, the others once its bytes move (or it is settled): its first byte, which
        decides when the whole ends, came ~6 ms later (median, 10 pushes: 19.6 -> 13.6 ms after
        the start of the push) while three threads' first requests took turns on the GIL. Events
        still reach `on_event` on the calling thread, in order per blob; the first failure stops
        the other transfers at their next progress event and is raised here."""
        if len(items) <= 1 or self.options.max_workers <= 1:
            for item in items:
                work(item)
            return
        run = _Run(queue.SimpleQueue(), threading.Event())

        def task(item: Descriptor) -> None:
            self._local.run = run
            try:
                if not run.failed.is_set():
                    work(item)
            except BaseException:
                run.failed.set()
                raise
            finally:
                self._local.run = None

        ordered = sorted(items, key=lambda d: -d.size)
        with ThreadPoolExecutor(max_workers=min(self.options.max_workers, len(items))) as pool:
            futures = [pool.submit(task, ordered[0])]
            while not self._drain(run, timeout=0.005) and not futures[0].done():
                pass
            futures += [pool.submit(task, item) for item in ordered[1:]]
            pending = set(futures)
            while pending:
                self._drain(run, timeout=0.05)
                pending = {f for f in pending if not f.done()}
        self._drain(run, timeout=0)
        errors = [f.exception() for f in futures if f.exception() is not None]
        real = [e for e in errors if not isinstance(e, _Cancelled)]
        if real or errors:
            raise (real or errors)[0]  # type: ignore[misc]

    def _drain(self, run: _Run, *, timeout: float) -> bool:
        """Hand queued events to `on_event`; True when one of them shows a blob's bytes moving
        or the blob settled (anything but BlobStarted and Retrying)."""
        moving = False
        try:
            event = run.events.get(timeout=timeout) if timeout else run.events.get_nowait()
            while True:
                moving = moving or isinstance(event, BlobProgress | BlobDone | BlobSkipped | BlobMounted)
                if self._on_event is not None:
                    self._on_event(event)
                event = run.events.get_nowait()
        except queue.Empty:
            return moving

    def _registry(self, host: str) -> OrasRegistry:
        with self._lock:
            found = self._registries.get(host)
        if found is not None:
            return found
        credentials = self.options.credentials or auth.find_credentials(self.auth_file, host)
        registry = self._new_registry(host, credentials)
        with self._lock:
            self._registries[host] = registry
        return registry

    def _new_registry(self, host: str, credentials: auth.Credentials | None) -> OrasRegistry:
        opts = self.options
        verify: bool | str = (str(opts.ca_cert) if opts.ca_cert else True) if opts.tls_verify else False

        def make(plain: bool) -> OrasRegistry:
            return OrasRegistry(
                host,
                plain_http=plain,
                verify=verify,
                credentials=credentials,
                request_timeout_s=opts.timeout_s / 3,
            )

        if opts.plain_http is not None:
            return make(opts.plain_http)
        registry = make(False)
        if is_loopback(host) and not registry.speaks_tls():
            registry.session.close()
            return make(True)
        return registry

    def _target(self, text: str) -> _Target:
        ref = Reference.parse(text)
        return _Target(ref, self._registry(ref.registry))

    # -- the blob-location cache -------------------------------------------------------------

    def _cache_path(self, store: Store) -> Path:
        return store.cache_dir / BLOB_CACHE

    def _read_cache(self, store: Store) -> dict[str, dict[str, list[str]]]:
        try:
            obj = json.loads(self._cache_path(store).read_bytes())
        except (OSError, ValueError):
            return {}
        return obj if isinstance(obj, dict) else {}

    def _remember(self, store: Store, host: str, repository: str, digests: list[str]) -> None:
        """Record that `host/repository` holds `digests` (a hint for later mounts; lossy is fine)."""
        cache = self._read_cache(store)
        per_host = cache.setdefault(host, {})
        if not isinstance(per_host, dict):
            per_host = cache[host] = {}
        for digest in digests:
            repos = [r for r in per_host.get(digest, []) if isinstance(r, str) and r != repository]
            per_host[digest] = [repository, *repos][:MAX_REPOS_PER_BLOB]
        try:
            # Not fsynced: a hint lost in a crash costs one upload, and the fsyncs of file and
            # directory were ~4 ms of every push and pull, 15 ms on a busy disk; a torn file
            # reads as no hints (`_read_cache`).
            atomic_write(self._cache_path(store), json.dumps(cache, sort_keys=True).encode(), durable=False)
        except OSError as err:  # a hint cache must never fail a push or pull
            log.warning("cannot update %s: %s", self._cache_path(store), err)

    # -- resolve / exists -------------------------------------------------------------------

    def resolve(self, ref: str) -> Descriptor:
        """The descriptor of `ref`'s manifest or index on the registry; NotFound if none."""
        budget = self._budget()
        target = self._target(ref)
        what = f"manifest {target.ref}"
        got = target.registry.fetch_manifest(
            target.repository, target.tag_or_digest, what=what, budget=budget
        )
        digest = self._check_manifest_digest(target, got.data, got.digest)
        media_type = _media_type(got.data, got.media_type, what)
        return Descriptor(media_type, digest, len(got.data))

    def exists(self, ref: str) -> bool:
        """True when `ref` names a manifest or index on the registry."""
        budget = self._budget()
        target = self._target(ref)
        found = target.registry.head_manifest(target.repository, target.tag_or_digest, budget=budget)
        return found is not None

    def _check_manifest_digest(self, target: _Target, data: bytes, header: str | None) -> Digest:
        digest = Digest.from_bytes(data)
        expected = str(target.ref.digest) if target.ref.digest else header
        if expected and expected != str(digest):
            raise DigestMismatch(
                f"manifest {target.ref} from the registry hashes to {digest}, expected {expected}",
                hint="the registry or something between us changed the content; nothing was stored",
            )
        return digest

    # -- login / logout ---------------------------------------------------------------------

    def login(self, registry: str, username: str, password: str) -> None:
        """Check the credentials against `registry` (GET /v2/), then keep them: in the credential
        helper the auth file names for it, else in the file."""
        host = _registry_host(registry)
        credentials = auth.Credentials(username, password)
        budget = self._budget()  # before the TLS probe, which counts against it
        client = self._new_registry(host, credentials)
        try:
            client.check_login(budget=budget)
        finally:
            client.session.close()
        auth.store_credentials(self.auth_file, host, credentials)
        with self._lock:
            self._registries.pop(host, None)

    def logout(self, registry: str) -> bool:
        """Forget the credentials for `registry` (helper and file); False when there were none."""
        host = _registry_host(registry)
        with self._lock:
            self._registries.pop(host, None)
        return auth.remove_credentials(self.auth_file, host)

    # -- push -------------------------------------------------------------------------------

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
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            self._emit(BlobProgress(digest, done, desc.size))

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
                progress(-done)
        self._emit(BlobDone(digest, desc.size, done))

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

    # -- pull -------------------------------------------------------------------------------

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
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            self._emit(BlobProgress(digest, done, desc.size))

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
        self._emit(BlobDone(digest, desc.size, done))


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


def _registry_host(text: str) -> str:
    """`https://reg.example:5000/` -> `reg.example:5000`; docker hub aliases -> `docker.io`."""
    host = text.strip()
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix) :]
    host = host.split("/", 1)[0]
    if host in ("index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    return host


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
