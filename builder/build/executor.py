"""Execute a build: one step per instruction, one layer per layer-producing step.

`build_image` is the entry point. Per platform it plans (plan.py), then runs the steps in order,
consulting the step cache (cache.py) before producing a layer; at the end it writes the
rootfs Metadata layer where one is due, the config, the sealer annotations and the manifest,
and only then points the tags at the result (an OCI index for several platforms). A build
that fails or is killed leaves no tag changed and nothing half-written: blobs and cache entries
are renamed into place whole, and gc removes what no tag reaches.

A COPY layer's diff dir is not written during the build: it is unpacked from the blob the first
time something needs it (a RUN's lowerdirs, `sealer inspect`), which keeps a cold build close to
`tar | zstd`.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import kubefile_grammar as kg
from builder._fs import remove_tree
from builder._reclaim import SESSION_SUFFIX
from builder.build import cache as cache_mod
from builder.build.context import BuildContext, read_regular_file
from builder.build.events import (
    BuildWarning,
    EventSink,
    ImageBuilt,
    PullEvent,
    StepFinished,
    StepOutput,
    StepProgress,
    StepStarted,
    ignore_events,
)
from builder.build.plan import AppStep, BuildOptions, ConfigStep, CopyStep, Plan, RunStep, Step, make_plan
from builder.build.steps.app import app_files
from builder.build.steps.copy import copy_entries
from builder.build.steps.run import run_command
from builder.errors import BuildError, ContextPathError, MetadataMismatch, SealerError
from builder.image import mediatypes
from builder.image.config import History, ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.extension import (
    Application,
    BuildClient,
    ContainerImage,
    ImageExtension,
    Launch,
    dump_container_images,
)
from builder.image.index import Index
from builder.image.manifest import Manifest
from builder.image.metadata import RUNTIME_LABELS, RootfsMetadata, cluster_runtime_from_label
from builder.image.reference import Reference
from builder.layers.onepass import LayerWriter, estimate_tar_size
from builder.layers.overlay import mounted_rootfs
from builder.layers.tarwriter import TarEntry, walk_tree
from builder.rootfs import diff_id_of, ensure_diff_dir
from builder.store.layout import Store
from kubefile_grammar.limits import MAX_KUBEFILE_BYTES

if TYPE_CHECKING:
    from builder.registry.client import RegistryClient

SEALER_VERSION = "0.1.0"
KNOWN_RUNTIMES = RUNTIME_LABELS  # the plan refuses others at their LABEL line
METADATA_FILE = "Metadata"
# Below this many unhashed bytes a COPY hashes its files first, so that a cache hit skips
# compression; above it the hashes are taken while archiving, in the same read.
PREHASH_LIMIT_BYTES = 64 << 20
# Files above this size are keyed in the step cache by their stat identity (size, mtime, inode,
# ctime), not their content: hashing the big binaries of a context cost a cold build ~0.35
# CPU-s for 700 MB, and only a `touch` of one of them (content unchanged) tells the difference
# (it then re-archives that layer, with the same digest). Smaller files keep content hashes.
CONTENT_HASH_MAX_BYTES = 16 << 20
# Where discovery looks for container images in the files a build adds (see build/bundle).
BUNDLE_SOURCES = ("manifests/", "charts/", "application/apps/")


@dataclass(frozen=True, slots=True)
class BuildResult:
    names: tuple[str, ...]
    descriptor: Descriptor  # what the tags point at: a manifest, or an index for several platforms
    manifests: tuple[Descriptor, ...]


def _is_bundle_source(name: str) -> bool:
    return name.startswith(BUNDLE_SOURCES) or posixpath.basename(name) == "imageList"


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


def build_image(store: Store, options: BuildOptions, on_event: EventSink = ignore_events) -> BuildResult:
    """Build the Kubefile of `options` into `store` and tag the result."""
    started = time.monotonic()
    names = tuple(str(Reference.parse(tag)) for tag in options.tags)
    context = BuildContext(options.context)  # a missing context is named before its Kubefile
    kubefile = read_kubefile(options)
    platforms = options.platforms or (Platform.host(),)
    registry = _Registry(options, on_event)
    # One platform: pull just its manifest; several: the whole index, once.
    pull_platform = platforms[0] if len(platforms) == 1 else None
    with store.gc_lock(exclusive=False):
        manifests = []
        for platform in platforms:
            plan = make_plan(
                kubefile,
                options,
                platform,
                store,
                lambda image, p: registry.pull(store, image, p),
                pull_platform,
            )
            if plan.unused_build_args:
                on_event(
                    BuildWarning(f"build args not consumed by any ARG: {', '.join(plan.unused_build_args)}")
                )
            run = _PlatformBuild(store, options, context, plan, on_event, registry)
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


class _Registry:
    """The registry client, created (and oras/requests imported) only when a build needs it."""

    def __init__(self, options: BuildOptions, on_event: EventSink) -> None:
        self.options = options
        self.on_event = on_event
        self._client: RegistryClient | None = None
        self._pulled: set[tuple[str, str]] = set()

    @property
    def client(self) -> RegistryClient:
        if self._client is None:
            from builder.registry.client import RegistryClient, RegistryOptions

            self._client = RegistryClient(
                self.options.registry or RegistryOptions(), lambda event: self.on_event(PullEvent(event))
            )
        return self._client

    def pull(self, store: Store, image: str, platform: Platform | None, *, tag_as: str | None = None) -> None:
        key = (image, str(platform))
        if key in self._pulled:
            return
        self.on_event(BuildWarning(f"pulling {image}" + (f" for {platform}" if platform else "")))
        self.client.pull(store, image, platform=platform, all_platforms=platform is None, tag_as=tag_as)
        self._pulled.add(key)


@dataclass
class _Draft:
    """The mutable state of one platform's build between steps."""

    config: ImageConfig
    layers: list[Descriptor] = field(default_factory=list)
    key: str = ""
    applications: dict[str, Application] = field(default_factory=dict)
    launch_cmds: list[str] = field(default_factory=list)
    launch_apps: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # ENV values for the config, applied once at the end: with_env per ENV line rebuilt the
    # whole env list each time (10,000 ENV lines took 14 s).
    config_env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    kube_version: str | None = None
    built_dirs: set[str] = field(default_factory=set)
    shipped_metadata: Path | None = None
    is_kube_installer_base: bool = False
    base_runtime_label: str | None = None
    container_images: tuple[ContainerImage, ...] = ()
    files: dict[str, str] = field(default_factory=dict)  # archive path -> context file, this build
    file_hashes: dict[str, str] = field(default_factory=dict)  # context file -> sha256, as archived
    run_layers: list[Descriptor] = field(default_factory=list)


class _PlatformBuild:
    def __init__(
        self,
        store: Store,
        options: BuildOptions,
        context: BuildContext,
        plan: Plan,
        on_event: EventSink,
        registry: _Registry,
    ) -> None:
        self.store = store
        self.registry = registry
        self.options = options
        self.context = context
        self.plan = plan
        self.on_event = on_event
        self.platform = str(plan.platform)
        self.created = rfc3339(options.source_date_epoch)
        self.step_cache = cache_mod.StepCache(store.cache_dir)
        self.stat_cache = cache_mod.StatCache(store.cache_dir, context.root)
        self.settings = f"{options.compression.value}|{options.source_date_epoch}|{plan.platform}"

    # --- driver ---------------------------------------------------------------------------------

    def execute(self) -> Descriptor:
        draft = self._start()
        scratch = self.store.scratch_dir("build-")
        try:
            total = len(self.plan.steps)
            for index, step in enumerate(self.plan.steps, start=1):
                self._run_step(draft, step, index, total, scratch)
            self.stat_cache.save()
            if self.options.bundle_images:
                self._bundle(draft, scratch, total + 1)
            return self._finish(draft, scratch)
        finally:
            remove_tree(scratch)

    def _start(self) -> _Draft:
        base = self.plan.base
        if base is None:
            config = ImageConfig.empty(self.plan.platform, self.created)
            return _Draft(config=config, key=f"scratch|{self.settings}")
        draft = _Draft(
            config=base.config.with_created(self.created),
            layers=list(base.manifest.layers),
            key=f"{base.manifest_descriptor.digest}|{self.settings}",
            container_images=base.container_images,
        )
        draft.labels = dict(base.config.config.labels)
        draft.base_runtime_label = draft.labels.get(mediatypes.LABEL_CLUSTER_RUNTIME)
        ext = base.extension
        if ext is not None:
            draft.applications = {a.name: a for a in ext.applications}
            draft.launch_cmds = list(ext.launch.cmds)
            draft.launch_apps = list(ext.launch.app_names)
            draft.env = dict(ext.env)
            draft.is_kube_installer_base = ext.type == "kube-installer"
        elif mediatypes.LABEL_CLUSTER_RUNTIME in draft.labels:
            draft.is_kube_installer_base = True
        return draft

    def _run_step(self, draft: _Draft, step: Step, index: int, total: int, scratch: Path) -> None:
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
                self._config(draft, step)
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
        draft.layers.append(layer.descriptor)
        draft.config = draft.config.with_layer(
            layer.diff_id, History(created=self.created, created_by=layer.created_by)
        )
        draft.key = cache_mod.step_key(draft.key, "layer", str(layer.diff_id))
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

    def _write_layer(
        self,
        entries: Iterable[TarEntry],
        index: int,
        total_bytes: int | None,
        created_by: str,
        extra: dict[str, object] | None = None,
        on_file: Callable[[TarEntry, str], None] | None = None,
        hash_max_bytes: int | None = None,
    ) -> cache_mod.CachedLayer:
        def progress(done: int) -> None:  # the writer's running total: passed on, not summed
            self.on_event(StepProgress(self.platform, index, done, total_bytes))

        with self.store.blobs.writer() as sink:
            with LayerWriter(
                sink,
                compression=self.options.compression,
                source_date_epoch=self.options.source_date_epoch,
                progress=progress,
                on_file=on_file,
                hash_max_bytes=hash_max_bytes,
            ) as writer:
                writer.add_all(entries)
                stats = writer.finish()
            digest, size = sink.commit()
        descriptor = Descriptor(stats.media_type, digest, size)
        info: dict[str, object] = {"uncompressedSize": stats.uncompressed_size, **(extra or {})}
        return cache_mod.CachedLayer(stats.diff_id, descriptor, created_by, info)

    def _cached(self, key: str) -> cache_mod.CachedLayer | None:
        if self.options.no_cache:
            return None
        hit = self.step_cache.get(key)
        if hit is None or not self.store.blobs.has(hit.descriptor.digest):
            return None
        return hit

    def _entries_key(
        self, draft: _Draft, step_text: str, entries: list[TarEntry], hashes: dict[str, str]
    ) -> str:
        lines = []
        for e in entries:
            content = hashes.get(e.source, "") if e.kind == "file" and e.source else ""
            lines.append(f"{e.name}\x00{e.kind}\x00{e.mode:o}\x00{e.linkname}\x00{content}")
        return cache_mod.step_key(draft.key, step_text, cache_mod.inputs_digest(lines), self.settings)

    def _copy(
        self, draft: _Draft, step: CopyStep, index: int, scratch: Path
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

    def _entries_layer(
        self,
        draft: _Draft,
        text: str,
        entries: list[TarEntry],
        index: int,
        extra: dict[str, object] | None = None,
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
                if st.st_size > CONTENT_HASH_MAX_BYTES:
                    hashes[e.source] = cache_mod.stat_identity(st)
                    continue
                known = self.stat_cache.lookup(e.source, st)
                if known is None:
                    missing.append((e, st))
                else:
                    hashes[e.source] = known
        total = estimate_tar_size(entries)  # what the progress counts: tar bytes
        if sum(st.st_size for _, st in missing) <= PREHASH_LIMIT_BYTES:
            for e, _ in missing:
                assert e.source is not None
                hashes[e.source] = self.stat_cache.hash_file(e.source)
            key = self._entries_key(draft, text, entries, hashes)
            draft.file_hashes.update(hashes)
            hit = self._cached(key)
            if hit is not None:
                return hit, True
            layer = self._write_layer(entries, index, total, text, extra)
        else:
            before = {e.source: st for e, st in missing}

            def learn(entry: TarEntry, sha256_hex: str) -> None:
                assert entry.source is not None
                hashes[entry.source] = sha256_hex
                st = before.get(entry.source)
                if st is not None:
                    self.stat_cache.record_if_unchanged(entry.source, st, sha256_hex)

            layer = self._write_layer(
                entries, index, total, text, extra, on_file=learn, hash_max_bytes=CONTENT_HASH_MAX_BYTES
            )
            key = self._entries_key(draft, text, entries, hashes)
            draft.file_hashes.update(hashes)
        self.step_cache.put(key, layer)
        return layer, False

    def _app(
        self, draft: _Draft, step: AppStep, index: int, scratch: Path
    ) -> tuple[cache_mod.CachedLayer, bool]:
        files = app_files(self.context, step.name, step.sources, scratch)
        draft.applications[step.name] = Application(
            name=step.name, type=files.app_type, files=files.launch_files
        )
        return self._entries_layer(draft, step.text, files.entries, index)

    def _lowerdirs(self, draft: _Draft) -> list[Path]:
        """Diff dirs of every layer so far, top-most first, unpacked where missing."""
        dirs = []
        for desc in reversed(draft.layers):
            dirs.append(self._diff_dir(draft, desc))
        return dirs

    def _diff_dir(self, draft: _Draft, desc: Descriptor) -> Path:
        diff_id = diff_id_of(draft.layers, draft.config.diff_ids, draft.layers.index(desc))
        return ensure_diff_dir(self.store, desc, diff_id)

    def _is_dir_in_image(self, draft: _Draft, path: str) -> bool:
        if path in draft.built_dirs:
            return True
        for desc in reversed(draft.layers):
            diff = self._diff_dir(draft, desc)
            candidate = diff / path
            if os.path.lexists(candidate):
                return candidate.is_dir() and not candidate.is_symlink()
        return False

    def _run(
        self, draft: _Draft, step: RunStep, index: int, scratch: Path, label: str
    ) -> tuple[cache_mod.CachedLayer, bool]:
        isolation = self.options.isolation
        settings = self.settings if isolation == "none" else f"{self.settings}|isolation={isolation}"
        key = cache_mod.step_key(draft.key, step.text, json.dumps(step.env), settings)
        hit = self._cached(key)
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
            layer = self._write_layer(rootfs.changes(), index, None, step.text)
        remove_tree(work)
        self.step_cache.put(key, layer)
        return layer, False

    # --- bundled container images ---------------------------------------------------------------

    def _bundle(self, draft: _Draft, scratch: Path, index: int) -> None:
        """Pull the container images this build's files reference into a `registry/` layer: step
        `index` of `index`, after the Kubefile's (known only now: it exists only when the files
        name images), so progress shows `STEP 8/8: BUNDLE ...` rather than `STEP 0/0`."""
        found = self._discover(draft, scratch)
        inherited = {c.image for c in draft.container_images}
        wanted: dict[str, str] = {}
        for image, app in found:
            if image not in inherited:
                wanted.setdefault(image, app)
        if not wanted:
            return
        from builder.build.bundle.distribution import write_distribution

        platform = self.plan.platform
        text = "BUNDLE " + " ".join(sorted(wanted))
        self.on_event(StepStarted(self.platform, index, index, text))
        started = time.monotonic()
        key = cache_mod.step_key(draft.key, text, str(platform), self.settings)
        layer = self._cached(key)
        cached = layer is not None
        if layer is None:
            pulled = Store.open(scratch / "bundle-store")
            try:
                for image in sorted(wanted):
                    self.registry.pull(pulled, image, platform, tag_as=image)
                registry_dir = scratch / "bundle-registry"
                write_distribution(pulled, [(image, image) for image in sorted(wanted)], registry_dir)
            finally:
                pulled.close()
            layer = self._write_layer(walk_tree(registry_dir, dest="registry"), index, None, text)
            self.step_cache.put(key, layer)
        draft.layers.append(layer.descriptor)
        draft.config = draft.config.with_layer(layer.diff_id, History(created=self.created, created_by=text))
        draft.key = cache_mod.step_key(draft.key, "layer", str(layer.diff_id))
        draft.container_images = (
            *draft.container_images,
            *(ContainerImage(image, app, platform) for image, app in sorted(wanted.items())),
        )
        self.on_event(
            StepFinished(
                self.platform,
                index,
                cached,
                str(layer.descriptor.digest),
                layer.descriptor.size,
                None,
                time.monotonic() - started,
            )
        )

    def _discover(self, draft: _Draft, scratch: Path) -> list[tuple[str, str]]:
        """(image, app) pairs the build's manifests, charts and imageList files reference.

        The result is cached by the content of those files (their hashes come from the stat
        cache), so a rebuild does not parse thousands of YAML files again.
        """
        sources = {name: src for name, src in draft.files.items() if _is_bundle_source(name)}
        if not sources and not draft.run_layers:
            return []
        known = draft.file_hashes
        lines = [
            f"{name}\x00{known.get(src) or self.stat_cache.hash_file(src)}"
            for name, src in sorted(sources.items())
        ]
        lines += [f"run\x00{desc.digest}" for desc in draft.run_layers]
        key = cache_mod.inputs_digest(lines)
        cache = cache_mod.JsonCache(self.store.cache_dir, "discover")
        hit = cache.get(key)
        if hit is None:
            from builder.build.bundle.discover import discover_files

            result = discover_files(self._bundle_files(sources, draft.run_layers))
            hit = {
                "images": [[i.image, i.app_name] for i in result.images],
                "warnings": list(result.warnings),
            }
            cache.put(key, hit)
        for warning in hit.get("warnings", []):
            self.on_event(BuildWarning(str(warning)))
        return [(str(image), str(app)) for image, app in hit.get("images", [])]

    def _bundle_files(self, sources: dict[str, str], run_layers: list[Descriptor]) -> dict[str, Path]:
        """Image path -> real file for discovery: context files, then unpacked RUN layers."""
        files = {name: Path(src) for name, src in sources.items()}
        for desc in run_layers:
            diff = ensure_diff_dir(self.store, desc, None)  # a RUN layer this machine wrote
            for dirpath, _, filenames in os.walk(diff):
                for filename in filenames:
                    full = os.path.join(dirpath, filename)
                    name = os.path.relpath(full, diff)
                    if _is_bundle_source(name) and os.path.isfile(full) and not os.path.islink(full):
                        files[name] = Path(full)
        return files

    # --- config-only steps ----------------------------------------------------------------------

    def _config(self, draft: _Draft, step: ConfigStep) -> None:
        ins = step.instruction
        empty = History(created=self.created, created_by=step.text, empty_layer=True)
        if isinstance(ins, kg.Env):
            draft.config = draft.config.with_history(empty)
            draft.config_env.update(step.items)
            draft.env.update(step.items)
        elif isinstance(ins, kg.Label):
            draft.labels.update(step.items)
            draft.config = draft.config.with_history(empty)
        elif isinstance(ins, kg.Maintainer):
            draft.config = draft.config.with_author(step.value).with_history(empty)
        elif isinstance(ins, kg.KubeVersion):
            draft.kube_version = step.value
        elif isinstance(ins, kg.Cmd):
            command = ins.command if isinstance(ins.command, str) else " ".join(ins.command)
            draft.launch_cmds.append(command)
            draft.config = draft.config.with_history(empty)
        elif isinstance(ins, kg.Cmds):
            draft.launch_cmds = list(ins.commands)
            draft.launch_apps = []
        elif isinstance(ins, kg.Launch):
            draft.launch_apps = list(ins.app_names)
            draft.launch_cmds = []
        elif isinstance(ins, kg.AppCmds):
            app = draft.applications[ins.app_name]
            draft.applications[ins.app_name] = replace(app, cmds=tuple(ins.commands))
        elif isinstance(ins, kg.AppEnv):
            app = draft.applications[ins.app_name]
            draft.applications[ins.app_name] = replace(app, env={**app.env, **dict(step.items)})

    # --- the end: Metadata, config, annotations, manifest -------------------------------------

    def _finish(self, draft: _Draft, scratch: Path) -> Descriptor:
        labels = {**draft.labels, **self.options.labels}
        if draft.kube_version:
            labels[mediatypes.LABEL_SUPPORTED_KUBE_VERSION] = draft.kube_version
        runtime_label = labels.get(mediatypes.LABEL_CLUSTER_RUNTIME)
        if runtime_label is not None and runtime_label not in KNOWN_RUNTIMES:
            raise BuildError(
                f"label {mediatypes.LABEL_CLUSTER_RUNTIME}={runtime_label!r} names an unknown cluster runtime",
                hint=f"use one of {', '.join(KNOWN_RUNTIMES)}",
            )
        image_type = self.options.image_type or self._image_type(draft, runtime_label)
        if image_type == "kube-installer":
            if runtime_label is None:
                runtime_label = "kubernetes"
                labels[mediatypes.LABEL_CLUSTER_RUNTIME] = runtime_label
            metadata_layer = self._metadata(draft, runtime_label, scratch)
            if metadata_layer is not None:
                draft.layers.append(metadata_layer.descriptor)
                draft.config = draft.config.with_layer(
                    metadata_layer.diff_id,
                    History(created=self.created, created_by=metadata_layer.created_by),
                )
        config = draft.config.with_env(draft.config_env).with_labels(labels)
        extension = ImageExtension(
            type=image_type,
            applications=tuple(draft.applications.values()),
            launch=Launch(cmds=tuple(draft.launch_cmds), app_names=tuple(draft.launch_apps)),
            env=dict(draft.env),
            build_client=BuildClient(sealer_version=SEALER_VERSION),
        )
        annotations = {
            mediatypes.ANNOTATION_SEALER_EXTENSION: extension.to_json(),
            mediatypes.ANNOTATION_SEALER_CONTAINER_IMAGES: dump_container_images(draft.container_images),
        }
        config_desc = self.store.put_config(config)
        manifest = Manifest(config_desc, tuple(draft.layers), annotations)
        desc = self.store.put_manifest(manifest)
        return desc.with_platform(self.plan.platform)

    def _image_type(self, draft: _Draft, runtime_label: str | None) -> str:
        if runtime_label is not None or draft.kube_version is not None or draft.is_kube_installer_base:
            return "kube-installer"
        if self.plan.base is not None and self.plan.base.extension is not None:
            return self.plan.base.extension.type or "app-installer"
        return "app-installer"

    def _metadata(self, draft: _Draft, runtime_label: str, scratch: Path) -> cache_mod.CachedLayer | None:
        """Check a shipped Metadata file, or write one as the image's last layer. The `none`
        runtime has no Metadata value: nothing is written, and a shipped file's ClusterRuntime
        is not compared (`sealer run` reads the label first)."""
        runtime = cluster_runtime_from_label(runtime_label) if runtime_label != "none" else None
        platform = self.plan.platform
        if draft.shipped_metadata is not None:
            shipped = RootfsMetadata.from_bytes(draft.shipped_metadata.read_bytes())
            problems = []
            if shipped.arch and shipped.arch != platform.architecture:
                problems.append(f"arch {shipped.arch!r} but the build is for {platform.architecture}")
            if runtime is not None and shipped.cluster_runtime != runtime:
                problems.append(
                    f"ClusterRuntime {shipped.cluster_runtime!r} but the runtime label says {runtime_label}"
                )
            if draft.kube_version and shipped.kube_version and shipped.kube_version != draft.kube_version:
                problems.append(
                    f"kubeVersion {shipped.kube_version!r} but KUBEVERSION is {draft.kube_version}"
                )
            if problems:
                raise MetadataMismatch(
                    f"the context's Metadata file disagrees with the Kubefile: {'; '.join(problems)}",
                    hint="fix the Metadata file, or delete it and let the build write it",
                )
            return None
        if runtime is None:
            return None
        if (
            draft.is_kube_installer_base
            and draft.kube_version is None
            and runtime_label == draft.base_runtime_label
        ):
            return None
        metadata = RootfsMetadata(
            version=draft.kube_version or "",
            arch=platform.architecture,
            variant=platform.variant or "",
            kube_version=draft.kube_version or "",
            nydus_flag=False,
            cluster_runtime=runtime,
        )
        data = metadata.to_bytes()
        path = scratch / METADATA_FILE
        path.write_bytes(data)
        entry = TarEntry(name=METADATA_FILE, kind="file", mode=0o644, size=len(data), source=str(path))
        text = f"sealer: write {METADATA_FILE} {Digest.from_bytes(data).hex[:12]}"
        key = cache_mod.step_key(draft.key, text, Digest.from_bytes(data).hex, self.settings)
        hit = self._cached(key)
        if hit is not None:
            return hit
        layer = self._write_layer([entry], 0, len(data), text)
        self.step_cache.put(key, layer)
        return layer
