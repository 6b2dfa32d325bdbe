"""Execute a build: one step per instruction, one layer per layer-producing step.

`build_image` is the entry point. Per platform it plans (plan.py), then runs the steps in order
(this module dispatches them to steps/), consulting the step cache before producing a layer
(keys: cache.py; layer writing: layer.py); it then bundles the container images the build's
files reference (bundle/step.py), writes the Metadata layer where one is due, the config, the
sealer annotations and the manifest (output.py), and only then points the tags at the result
(an OCI index for several platforms). A build that fails or is killed leaves no tag changed and
nothing half-written: blobs and cache entries are renamed into place whole, and gc removes what
no tag reaches.

Registry access is injected: FROM images and bundled images are pulled through the `pull`
callable the caller passes (pull.py); the build never imports the registry client.

A COPY layer's diff dir is not written during the build: it is unpacked from the blob the first
time something needs it (a RUN's lowerdirs, `sealer inspect`), which keeps a cold build close to
`tar | zstd`.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import kubefile_grammar as kg
from builder._fs import remove_tree
from builder._reclaim import SESSION_SUFFIX
from builder.build import cache as cache_mod
from builder.build.bundle.step import bundle_images
from builder.build.context import BuildContext, read_regular_file
from builder.build.draft import Draft
from builder.build.events import (
    BuildWarning,
    EventSink,
    ImageBuilt,
    StepFinished,
    StepOutput,
    StepStarted,
    ignore_events,
)
from builder.build.layer import StepLayers
from builder.build.output import METADATA_FILE, finish_image
from builder.build.plan import AppStep, BuildOptions, CopyStep, Plan, RunStep, Step, make_plan
from builder.build.pull import DockerDaemon, Puller, Pulls
from builder.build.steps.app import app_files
from builder.build.steps.copy import copy_entries
from builder.build.steps.run import run_command
from builder.diffdirs import diff_id_of, ensure_diff_dir
from builder.errors import ContextPathError, SealerError
from builder.image.descriptor import Descriptor, Platform
from builder.image.extension import Application
from builder.image.index import Index
from builder.image.reference import Reference
from builder.layers.onepass import estimate_tar_size
from builder.layers.overlay import mounted_rootfs
from builder.layers.tarwriter import TarEntry
from builder.store.layout import Store
from kubefile_grammar.limits import MAX_KUBEFILE_BYTES


@dataclass(frozen=True, slots=True)
class BuildResult:
    names: tuple[str, ...]
    descriptor: Descriptor  # what the tags point at: a manifest, or an index for several platforms
    manifests: tuple[Descriptor, ...]


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_kubefile(options: BuildOptions) -> kg.Kubefile:
    path = options.kubefile_path
    try:
        # Capped, regular files only: `-f /dev/zero` or a FIFO must not hang or fill memory.
        data = read_regular_file(path, limit_bytes=MAX_KUBEFILE_BYTES, what="Kubefile")
    except FileNotFoundError:
        raise ContextPathError(
            f"no Kubefile at {path}", hint="write one in the context directory or name it with -f FILE"
        ) from None
    except OSError as err:
        raise ContextPathError(f"cannot read {path}: {err.strerror}") from None
    return kg.parse(data.decode("utf-8", "surrogateescape"), str(path))


def build_image(
    store: Store,
    options: BuildOptions,
    on_event: EventSink = ignore_events,
    *,
    pull: Puller | None = None,
    daemon: DockerDaemon | None = None,
) -> BuildResult:
    """Build the Kubefile of `options` into `store` and tag the result. `pull` fetches FROM
    images the store lacks and the images to bundle; without it the build pulls nothing.
    `daemon` exports the bundled images that come from the local Docker engine."""
    started = time.monotonic()
    names = tuple(str(Reference.parse(tag)) for tag in options.tags)
    context = BuildContext(options.context)  # a missing context is named before its Kubefile
    kubefile = read_kubefile(options)
    platforms = options.platforms or (Platform.host(),)
    pulls = Pulls(pull, on_event, daemon)
    # One platform: pull just its manifest; several: the whole index, once.
    pull_platform = platforms[0] if len(platforms) == 1 else None
    # A RUN step needs every layer of the base unpacked (its lowerdirs): unpack them while the
    # base downloads, not after.
    unpack_base = any(isinstance(ins, kg.Run) for ins in kubefile.instructions)
    with store.gc_lock(exclusive=False):
        manifests = []
        for platform in platforms:
            plan = make_plan(
                kubefile,
                options,
                platform,
                store,
                (lambda image, p: pulls.pull(store, image, p, unpack=unpack_base))
                if pull is not None
                else None,
                pull_platform,
            )
            if plan.unused_build_args:
                on_event(
                    BuildWarning(f"build args not consumed by any ARG: {', '.join(plan.unused_build_args)}")
                )
            run = _PlatformBuild(store, options, context, plan, on_event, pulls)
            manifests.append(run.execute())
        target = manifests[0] if len(manifests) == 1 else store.put_index(Index(tuple(manifests)))
        for name in names:
            store.refs.set(name, target)
    on_event(
        ImageBuilt(
            names[0] if names else "",
            str(target.digest),
            tuple(map(str, platforms)),
            time.monotonic() - started,
        )
    )
    return BuildResult(names, target, tuple(manifests))


class _PlatformBuild:
    """One platform's build: runs the plan's steps in order, each on the draft image."""

    def __init__(
        self,
        store: Store,
        options: BuildOptions,
        context: BuildContext,
        plan: Plan,
        on_event: EventSink,
        pulls: Pulls,
    ) -> None:
        self.store = store
        self.pulls = pulls
        self.options = options
        self.context = context
        self.plan = plan
        self.on_event = on_event
        self.platform = str(plan.platform)
        self.created = rfc3339(options.source_date_epoch)
        self.stat_cache = cache_mod.StatCache(store.cache_dir, context.root)
        self.settings = cache_mod.layer_settings(
            options.compression.value, options.source_date_epoch, plan.platform
        )
        self.layers = StepLayers(
            store,
            compression=options.compression,
            source_date_epoch=options.source_date_epoch,
            platform=self.platform,
            on_event=on_event,
            use_cache=not options.no_cache,
        )

    def execute(self) -> Descriptor:
        draft = Draft.start(self.plan, self.created, self.settings)
        scratch = self.store.scratch_dir("build-")
        try:
            total = len(self.plan.steps)
            for index, step in enumerate(self.plan.steps, start=1):
                self._run_step(draft, step, index, total, scratch)
            self.stat_cache.save()
            if self.options.bundle_images:
                bundle_images(
                    draft,
                    store=self.store,
                    platform=self.plan.platform,
                    layers=self.layers,
                    pulls=self.pulls,
                    stat_cache=self.stat_cache,
                    on_event=self.on_event,
                    created=self.created,
                    settings=self.settings,
                    scratch=scratch,
                    index=total + 1,
                    image_source=self.options.image_source,
                )
            return finish_image(
                self.store,
                self.options,
                self.plan,
                draft,
                self.layers,
                created=self.created,
                settings=self.settings,
                scratch=scratch,
            )
        finally:
            remove_tree(scratch)

    def _run_step(self, draft: Draft, step: Step, index: int, total: int, scratch: Path) -> None:
        self.on_event(StepStarted(self.platform, index, total, step.text))
        started = time.monotonic()
        draft.key = cache_mod.step_key(draft.key, step.text)
        label = f"{self.plan.kubefile.path}:{step.span.line}:{step.span.column}: {step.text.split(' ', 1)[0]}"
        try:
            if isinstance(step, CopyStep):
                result = self._copy(draft, step, index, scratch)
            elif isinstance(step, RunStep):
                result = self._run(draft, step, index, scratch, label)
            elif isinstance(step, AppStep):
                result = self._app(draft, step, index, scratch)
            else:
                draft.apply_config(step, self.created)
                result = None
        except SealerError as err:
            if not err.message.startswith(str(self.plan.kubefile.path)):
                err.message = f"{label}: {err.message}"
                err.args = (err.message,)
            raise
        if result is None:
            self.on_event(
                StepFinished(self.platform, index, False, None, None, None, time.monotonic() - started)
            )
            return
        layer, cached = result
        if isinstance(step, RunStep):
            draft.run_layers.append(layer.descriptor)
        draft.add_layer(layer, self.created)
        self.on_event(
            StepFinished(
                self.platform,
                index,
                cached,
                str(layer.descriptor.digest),
                layer.descriptor.size,
                layer.extra.get("uncompressedSize"),
                time.monotonic() - started,
            )
        )

    # --- layer steps ----------------------------------------------------------------------------

    def _copy(
        self, draft: Draft, step: CopyStep, index: int, scratch: Path
    ) -> tuple[cache_mod.CachedLayer, bool]:
        entries = copy_entries(
            self.context,
            step.sources,
            step.dest,
            chmod=step.chmod,
            dest_is_dir=lambda path: self._is_dir_in_image(draft, path),
            keyword=step.keyword,
            scratch=scratch,
        )
        return self._entries_layer(draft, step.text, entries, index)

    def _app(
        self, draft: Draft, step: AppStep, index: int, scratch: Path
    ) -> tuple[cache_mod.CachedLayer, bool]:
        files = app_files(self.context, step.name, step.sources, scratch)
        draft.applications[step.name] = Application(
            name=step.name, type=files.app_type, files=files.launch_files
        )
        return self._entries_layer(draft, step.text, files.entries, index)

    def _entries_layer(
        self, draft: Draft, text: str, entries: list[TarEntry], index: int
    ) -> tuple[cache_mod.CachedLayer, bool]:
        for e in entries:
            if e.kind == "dir":
                draft.built_dirs.add(e.name)
            elif e.kind == "file" and e.source:
                draft.files[e.name] = e.source
                if e.name == METADATA_FILE:
                    draft.shipped_metadata = Path(e.source)
        # File hashes for the cache key: from the stat cache, else hashed now when few bytes are
        # missing, else learned while archiving (a cold build reads each file once).
        hashes: dict[str, str] = {}
        missing: list[tuple[TarEntry, os.stat_result]] = []
        for e in entries:
            if e.kind == "file" and e.source:
                st = os.stat(e.source)
                if st.st_size > cache_mod.CONTENT_HASH_MAX_BYTES:
                    hashes[e.source] = cache_mod.stat_identity(st)
                    continue
                known = self.stat_cache.lookup(e.source, st)
                if known is None:
                    missing.append((e, st))
                else:
                    hashes[e.source] = known
        total = estimate_tar_size(entries)  # what the progress counts: tar bytes
        if sum(st.st_size for _, st in missing) <= cache_mod.PREHASH_LIMIT_BYTES:
            for e, _ in missing:
                assert e.source is not None
                hashes[e.source] = self.stat_cache.hash_file(e.source)
            key = cache_mod.entries_key(draft.key, text, entries, hashes, self.settings)
            draft.file_hashes.update(hashes)
            hit = self.layers.cached(key)
            if hit is not None:
                return hit, True
            layer = self.layers.write(entries, index, total, text)
        else:
            before = {e.source: st for e, st in missing}

            def learn(entry: TarEntry, sha256_hex: str) -> None:
                assert entry.source is not None
                hashes[entry.source] = sha256_hex
                st = before.get(entry.source)
                if st is not None:
                    self.stat_cache.record_if_unchanged(entry.source, st, sha256_hex)

            layer = self.layers.write(
                entries, index, total, text, on_file=learn, hash_max_bytes=cache_mod.CONTENT_HASH_MAX_BYTES
            )
            key = cache_mod.entries_key(draft.key, text, entries, hashes, self.settings)
            draft.file_hashes.update(hashes)
        self.layers.remember(key, layer)
        return layer, False

    def _run(
        self, draft: Draft, step: RunStep, index: int, scratch: Path, label: str
    ) -> tuple[cache_mod.CachedLayer, bool]:
        isolation = self.options.isolation
        key = cache_mod.run_key(draft.key, step.text, step.env, self.settings, isolation)
        hit = self.layers.cached(key)
        if hit is not None:
            return hit, True
        lowers = self._lowerdirs(draft)
        work = Path(tempfile.mkdtemp(prefix="run-", dir=scratch))
        with mounted_rootfs(lowers, work, mode=self.options.run_mode) as rootfs:
            run_command(
                step.command,
                cwd=rootfs.merged,
                env=step.env,
                on_line=lambda line: self.on_event(StepOutput(self.platform, index, line)),
                step_label=label,
                isolation=isolation,
                # At the top of this process's temp dir, where a later sweep looks for it.
                session_file=self.store.blobs.process_dir() / f"run-{index}{SESSION_SUFFIX}",
            )
            layer = self.layers.write(rootfs.changes(), index, None, step.text)
        remove_tree(work)
        self.layers.remember(key, layer)
        return layer, False

    # --- the image so far -----------------------------------------------------------------------

    def _lowerdirs(self, draft: Draft) -> list[Path]:
        """Diff dirs of every layer so far, top-most first, unpacked where missing."""
        dirs = []
        for desc in reversed(draft.layers):
            dirs.append(self._diff_dir(draft, desc))
        return dirs

    def _diff_dir(self, draft: Draft, desc: Descriptor) -> Path:
        diff_id = diff_id_of(draft.layers, draft.config.diff_ids, draft.layers.index(desc))
        return ensure_diff_dir(self.store, desc, diff_id)

    def _is_dir_in_image(self, draft: Draft, path: str) -> bool:
        if path in draft.built_dirs:
            return True
        for desc in reversed(draft.layers):
            diff = self._diff_dir(draft, desc)
            candidate = diff / path
            if os.path.lexists(candidate):
                return candidate.is_dir() and not candidate.is_symlink()
        return False
