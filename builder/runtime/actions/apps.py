"""`run_app`: an app image run on a running cluster (`sealer run APP_IMAGE`), as sealer does.

An app image has no cluster runtime (FROM scratch + manifests, charts, CMDS/LAUNCH: its
runtime selection gives `none` and its extension says app-installer, or it has no runtime
label, Metadata nor KUBEVERSION). Its rootfs goes to master0 (and the other registry hosts when
it bundles container images, below), into its own tree,
`data/<cluster>/apps/<name>/rootfs` (delivery's `target`; the cluster's rootfs is not touched,
and `delete --all` removes it with `data/<cluster>`), then its launch commands run there, on
master0: `--cmds`, else the image's CMDS, else its LAUNCH apps (never the Clusterfile's). Env:
the cluster image's ENV < the app image's ENV < the Clusterfile env < master0's env < the
cluster's saved `-e` < this `-e`, then master0's SEALER_* (SEALER_ROOTFS stays the cluster's)
and SEALER_APP_ROOTFS, the app's rootfs.

An app that bundles container images (its `sealer.image.container.images` annotation lists
some; its rootfs `registry/` holds them) goes to every registry host too, where app-images
adds them to the running cluster registry before the launch (add_app_images.py); on master0
the merge runs whenever the tree has a `registry/`.

Phases: check -> deliver-app -> app-images -> launch-app, journaled under the app image's digest:
a re-run of a finished app moves 0 bytes and launches nothing; a new image of the same app
(same repository: `demo/app:v1` then `demo/app:v2` or a rebuilt `v1`) replaces its tree
atomically and launches again. The apps a cluster runs are kept in state.json (`AppRecord`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from builder.errors import ClusterError, ImageNotFound, InvalidReference
from builder.image import mediatypes
from builder.image.descriptor import Platform
from builder.image.digest import Digest
from builder.image.extension import APP_INSTALLER, ImageExtension, parse_container_images
from builder.image.reference import Reference
from builder.runtime import delivery
from builder.runtime.actions.prepare import (
    Decide,
    Decision,
    Prepared,
    Request,
    assume,
    image_platforms,
    load_image,
    prepare,
    with_delivery_shown,
)
from builder.runtime.actions.settings import Outcome, Settings, host_summaries, require_store
from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases import Check, ImageInfo, Phase, plan_all
from builder.runtime.phases.add_app_images import AddAppImages
from builder.runtime.phases.deliver_app import DeliverApp
from builder.runtime.phases.launch_app import AppPlanState, LaunchApp
from builder.runtime.plugins import get_plugin, runtime_name
from builder.runtime.plugins.none import NoneRuntime
from builder.runtime.runner import format_plan
from builder.runtime.state import AppRecord, ClusterState, SavedMeta
from builder.store.layout import Store

APPS_DIR = "apps"  # under data/<cluster> on master0: apps/<name>/rootfs
_NAME_MAX = 63


# --- which image is an app, and its name on master0 -------------------------------------------------


def _repository(image: str) -> str | None:
    try:
        return Reference.parse(image).name
    except InvalidReference:
        return None


def _same_image(a: str, b: str) -> bool:
    try:
        return a == b or Reference.parse(a) == Reference.parse(b)
    except InvalidReference:
        return False


def runs_as_app(name: str, image: str, home: Path | None = None) -> bool:
    """Whether `sealer run IMAGE` without hosts means an app on the saved cluster `name`: the
    cluster is saved and IMAGE is not the very image it runs (that stays a re-run)."""
    meta = ClusterState(name, home).load_meta()
    return meta is not None and ClusterState(name, home).exists() and not _same_image(image, meta.image)


def _refuse_cluster_images(name: str, image: str, meta: SavedMeta) -> None:
    """The cluster's own image, or another version of it, is not an app."""
    if _same_image(image, meta.image):
        raise ClusterError(
            f"cluster {name} already runs {image}: it is the cluster's image, not an app",
            hint=f"re-run the cluster with its hosts (sealer run {image} --masters ...) or sealer apply",
        )
    repo = _repository(image)
    if repo is not None and repo == _repository(meta.image):
        raise ClusterError(
            f"{image} is another version of cluster {name}'s image {meta.image}, not an app",
            hint=f"sealer upgrade {image} --cluster {name} moves the cluster to it",
        )


def check_app_image(store: Store, info: ImageInfo, name: str) -> None:
    """ClusterError (one line, pointing at `sealer upgrade`) unless `info` is an app image:
    its runtime selection gives `none` and its extension says app-installer, or it has no
    runtime label, Metadata nor KUBEVERSION."""
    runtime, source = runtime_name(info.runtime_label, info.metadata_runtime)
    assert info.digest is not None  # a loaded image's
    manifest = store.read_manifest(info.digest)
    ext_text = manifest.annotations.get(mediatypes.ANNOTATION_SEALER_EXTENSION)
    kind = ImageExtension.from_json(ext_text).type if ext_text else ""
    bare = not info.runtime_label and not info.metadata_runtime and not info.kube_version
    if (runtime == "none" and kind == APP_INSTALLER) or bare:
        return
    if runtime != "none":
        what = f"runtime {runtime}, from its {source.removeprefix('image ')}"
    else:
        what = f"type {kind or 'unknown'}, KUBEVERSION {info.kube_version or '-'}"
    raise ClusterError(
        f"{info.name} is a cluster image, not an app ({what})",
        hint=f"sealer upgrade {info.name} --cluster {name} moves the cluster to it",
    )


def app_name(image: str, digest: Digest, apps: Sequence[AppRecord]) -> tuple[str, AppRecord | None]:
    """The app's directory name on master0 and its saved record, if it ran before. An app is
    its repository (`demo/app:v1` and `demo/app:v2` are one app, the second replacing the
    first); the name is the repository's last component, made unique with a short hash of the
    repository when another app has it; an image without a repository gets a short digest."""
    repo = _repository(image)
    for record in apps:
        if (repo is not None and _repository(record.image) == repo) or (
            repo is None and record.digest == digest
        ):
            return record.name, record
    if repo is None:
        return digest.hex[:12] or "app", None
    base = repo.rsplit("/", 1)[-1][:_NAME_MAX]
    if base in {a.name for a in apps}:
        base = f"{base[: _NAME_MAX - 9]}-{hashlib.sha256(repo.encode()).hexdigest()[:8]}"
    return base, None


def _with_record(apps: Sequence[AppRecord], record: AppRecord) -> tuple[AppRecord, ...]:
    out = [record if a.name == record.name else a for a in apps]
    return tuple(out if any(a.name == record.name for a in apps) else [*out, record])


# --- the plan ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _AppJob:
    saved: Cluster  # as saved
    cluster: Cluster  # as the phases see it: the app's --cmds, no Clusterfile appNames
    meta: SavedMeta
    image: str
    cli_env: Mapping[str, str]

    @property
    def master0(self) -> str:
        return self.saved.master0.ip

    @property
    def runs_registry(self) -> bool:
        """Whether the cluster runs its local registry (not with the `none` runtime, nor with an
        external registry): the app's bundled images go into it."""
        return self.meta.runtime != NoneRuntime.name and bool(self.saved.registry_hosts)

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts an app may go to: master0, and the other registry hosts (for its images)."""
        if not self.runs_registry:
            return (self.master0,)
        return (self.master0, *(h.ip for h in self.saved.registry_hosts if h.ip != self.master0))


def bundles_images(store: Store, info: ImageInfo) -> bool:
    """Whether the image lists container images it carries (`sealer.image.container.images`)."""
    assert info.digest is not None  # a loaded image's
    raw = store.read_manifest(info.digest).annotations.get(mediatypes.ANNOTATION_SEALER_CONTAINER_IMAGES)
    return bool(raw and parse_container_images(raw))


def _app_state(
    job: _AppJob,
    info: ImageInfo,
    settings: Settings,
    target: str,
    store: Store,
) -> AppPlanState:
    merged = replace(info, env={**job.meta.image_env, **info.env})
    return AppPlanState(
        merged,
        get_plugin("none"),
        job.hosts if bundles_images(store, info) else (job.master0,),
        job.cli_env,
        settings.root,
        app_rootfs=delivery.rootfs_path(
            job.saved.name, settings.root, target=target, data_root=job.saved.data_root
        ),
    )


def _phases(job: _AppJob, state: AppPlanState) -> tuple[Phase, ...]:
    images = (AddAppImages(state.app_rootfs),) if job.runs_registry else ()
    return (DeliverApp(state.app_rootfs), *images, LaunchApp(rootfs=state.app_rootfs))


def _dry_run(job: _AppJob, settings: Settings, store: Store) -> Outcome:
    wanted = Platform.parse(job.meta.platform) if job.meta.platform else Platform.host()
    platform, info, dimg = assume(settings, job.image, wanted)
    check_app_image(store, info, job.saved.name)
    name, _ = app_name(job.image, dimg.manifest_digest, job.meta.apps)
    target = f"{APPS_DIR}/{name}"
    state = with_delivery_shown(
        _app_state(job, info, settings, target, store), job.cluster, dimg, settings, target=target
    )
    master0 = job.saved.master0
    facts = Facts.assume(state.targets, platform)
    plans = plan_all((Check(), *_phases(job, state)), job.cluster, facts, state)
    cs = ClusterState(job.saved.name, settings.home)
    out = [
        f"# run app: cluster {job.saved.name}, image {job.image} ({info.digest}), on master0 {master0.ip}"
        f" into {state.app_rootfs}",
        f"# dry-run: nothing is changed and no host is contacted; master0 is assumed to be {platform}",
        *format_plan(job.cluster, plans, verbose=settings.options.verbose),
        "== save-state: Save the cluster's apps (this machine)",
        f"    write {cs.meta_path} (apps: {name} = {job.image}), {cs.journal_path.name}",
    ]
    return Outcome(job.saved, "dry-run", tuple(out), dry_run=True)


def _decide(job: _AppJob, settings: Settings, store: Store) -> Decide:
    """An app's checks of the loaded image (a cluster image is refused) and its tree on master0."""

    def decide(info: ImageInfo, dimg: delivery.DeliveryImage, platform: Platform) -> Decision:
        check_app_image(store, info, job.saved.name)
        name, _ = app_name(job.image, dimg.manifest_digest, job.meta.apps)
        target = f"{APPS_DIR}/{name}"
        return Decision(_app_state(job, info, settings, target, store), target=target)

    return decide


async def _run(job: _AppJob, settings: Settings, store: Store, cs: ClusterState) -> Outcome:
    try:
        available: list[Platform] | None = image_platforms(store, job.image)
    except ImageNotFound:
        if settings.pull is None:
            raise
        available = None
    if available is not None:  # refuse a cluster image before any host is contacted
        local = Platform.parse(job.meta.platform) if job.meta.platform else available[0]
        first = next((p for p in available if p.architecture == local.architecture), available[0])
        check_app_image(store, load_image(store, job.image, first)[0], job.saved.name)
    master0 = job.saved.master0
    # every host the app may go to is checked; the decision narrows it to master0 when the app
    # bundles no container images
    request = Request(job.cluster, job.image, job.hosts, job.cli_env, _decide(job, settings, store))
    journal = cs.journal()
    driver = settings.driver_factory(job.cluster)
    try:
        prepared = await prepare(request, settings, cs, journal, driver)
        assert isinstance(prepared, Prepared)  # an app's decide always goes on
        info, runner = prepared.info, prepared.runner
        state = prepared.state
        assert isinstance(state, AppPlanState)
        name, before = app_name(job.image, prepared.image.manifest_digest, job.meta.apps)
        # the app as wanted, not launched yet, before master0 changes (so delete --all knows it)
        record = AppRecord(
            name,
            job.image,
            prepared.image.manifest_digest,
            launched=bool(before and before.digest == info.digest and before.launched),
        )
        cs.save(job.saved, replace(job.meta, apps=_with_record(job.meta.apps, record)))
        launched: int | None = None  # launch commands run now; None: the image has none
        for phase in _phases(job, state):
            steps = phase.plan(job.cluster, prepared.facts, state)
            if isinstance(phase, LaunchApp) and steps:
                launched = sum(1 for s in steps if not journal.done(info.digest, phase.name, s.host, s.id))
            if steps:
                await runner.run_phase(phase, steps)
        meta = cs.load_meta() or job.meta
        cs.save(job.saved, replace(meta, apps=_with_record(meta.apps, replace(record, launched=True))))
    finally:
        await driver.close()
    summaries = host_summaries(job.cluster, runner, state.targets)
    if launched:
        message = (
            f"app {job.image} on cluster {job.saved.name}: launched on {master0.ip} from {state.app_rootfs}"
        )
    elif launched is None:
        message = (
            f"app {job.image} on cluster {job.saved.name}: delivered to {master0.ip} ({state.app_rootfs}); "
            "it has no CMDS or LAUNCH apps to launch"
        )
    else:
        message = (
            f"app {job.image} already runs on cluster {job.saved.name} ({info.digest}): nothing to launch"
        )
    return Outcome(job.saved, message, hosts=summaries)


def run_app(
    name: str,
    image: str,
    settings: Settings,
    *,
    cli_env: Mapping[str, str] | None = None,
    cmds: Sequence[str] = (),
) -> Outcome:
    """`sealer run APP_IMAGE` on the saved cluster `name`: the app's rootfs onto master0 (its
    own tree), then its launch commands there (`cmds`, else the image's CMDS, else its LAUNCH
    apps). Resumable and idempotent (journaled under the app image's digest); a cluster image
    is refused, pointing at `sealer upgrade`. Nothing changes on the other hosts, but for the
    registry hosts receiving the app's bundled container images."""
    cs = ClusterState(name, settings.home)
    saved, meta = cs.load_cluster(), cs.load_meta()
    if saved is None or meta is None:
        raise ClusterError(f"no saved cluster {name}", hint="sealer run CLUSTER_IMAGE --masters ... first")
    _refuse_cluster_images(name, image, meta)
    if not meta.complete:
        raise ClusterError(
            f"cluster {name}: the last command on it (with {meta.image}) did not finish",
            hint="finish it first (the same command again), then run the app",
        )
    store = require_store(settings)
    job = _AppJob(
        saved,
        replace(saved, cmds=tuple(cmds), app_names=()),
        meta,
        image,
        {**meta.cli_env, **(cli_env or {})},
    )
    if settings.options.dry_run:
        return _dry_run(job, settings, store)
    with cs.lock():
        fresh = cs.load_meta()
        return asyncio.run(_run(replace(job, meta=fresh or meta), settings, store, cs))
