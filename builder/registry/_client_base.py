"""What every operation of the registry client shares: `ClientBase`.

Per client: one `OrasRegistry` per host, its scheme chosen once (`plain_http=None`: https,
except for loopback registries, where one TLS probe of the port decides: `is_loopback`); one
`RetryBudget` (budget.py) per operation, whose retries reach `on_event` as Retrying; the thread
pool that moves blobs with events handed back to the caller's thread, in order per blob; and
the blob-location cache (`cache/registry-blobs.json` in the store: digest -> repositories per
registry, from earlier pushes and pulls), the hint push uses to mount instead of upload.
Push (`_push.py`) and pull (`_pull.py`) build on it; `client.py` puts them together.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from builder._fs import atomic_write
from builder.image.descriptor import Descriptor
from builder.image.reference import Reference
from builder.registry import auth
from builder.registry._oras import OrasRegistry
from builder.registry.budget import RetryBudget
from builder.registry.events import BlobDone, BlobMounted, BlobProgress, BlobSkipped, RegistryEvent, Retrying
from builder.registry.options import RegistryOptions
from builder.store.layout import Store

log = logging.getLogger(__name__)

BLOB_CACHE = "registry-blobs.json"
MAX_REPOS_PER_BLOB = 8
DEFAULT_OPTIONS = RegistryOptions()  # frozen: one value serves every client


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


class _BlobProgress:
    """The bytes of one blob moved so far, each change reported as BlobProgress; a negative
    count takes back bytes that must move again (a fresh upload session, a download restarted)."""

    def __init__(self, emit: Callable[[RegistryEvent], None], digest: str, size: int) -> None:
        self._emit = emit
        self._digest = digest
        self._size = size
        self.done = 0

    def __call__(self, n: int) -> None:
        self.done += n
        self._emit(BlobProgress(self._digest, self.done, self._size))


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


class ClientBase:
    """The plumbing of `RegistryClient`: registries per host, budgets, events, threads, cache."""

    def __init__(
        self,
        options: RegistryOptions = DEFAULT_OPTIONS,
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
