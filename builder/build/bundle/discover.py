"""Discovery of the container images a ClusterImage's files reference.

Where (see docs/bundling.md): `manifests/` and each app's files are read as YAML documents and
only the `image` of the items of `containers`, `initContainers` and `ephemeralContainers` lists
counts, wherever the list sits in the object (Pods, workloads, CronJob job templates, List
items, custom resources embedding pod templates). Other keys named like images (a ConfigMap's
`image: foo`, `imagePullPolicy`, a CRD schema's `image` property, CUE or template text in a
string) are not images: sealer took every key ending in "image" and bundled bogus ones
(sealer #1913: `parameter.image`, `string`, `_params.image` from KubeVela's CUE definitions;
sealer #2006, sealos #1487: unrendered `{{ ... }}` values). Charts are read by `_charts`.
`imageList` files anywhere (sealer's convention) list one image a line; a line
`docker-daemon:NAME[:TAG]` (skopeo's transport name) takes the image from the local Docker engine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.build.bundle._charts import ChartScan, is_chart, scan_chart
from builder.build.bundle._yaml import load_documents, read_text
from builder.errors import ImageDiscoveryError, InvalidReference
from builder.image.reference import Reference

log = logging.getLogger(__name__)

IMAGE_LIST = "imageList"
DAEMON_PREFIX = "docker-daemon:"  # skopeo's transport; FoundImage.transport "docker-daemon"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
APPS_DIR = ("application", "apps")
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
# The rootfs registry data is what bundling writes, not something to read images from.
SKIPPED_TOP_DIRS = frozenset({"registry"})
# How a container-list key looks in YAML (`containers:`) or JSON (`"containers"`).
_CONTAINER_KEYS = tuple(k.encode() for key in CONTAINER_LISTS for k in (f"{key}:", f'"{key}"', f"'{key}'"))


@dataclass(frozen=True, slots=True)
class FoundImage:
    """One image a file references, normalised, with where it was found."""

    image: str  # normalised full reference, e.g. docker.io/library/nginx:1.25
    source: str  # "manifests/app.yaml: Deployment/nginx spec.template.spec.containers[0].image"
    app_name: str  # "" unless the file belongs to an app
    transport: str = ""  # "" (its registry) or "docker-daemon" (the local Docker engine)


@dataclass(frozen=True, slots=True)
class Discovery:
    """What `discover` found: images (sorted, de-duplicated) and what it had to skip, and why."""

    images: tuple[FoundImage, ...]
    warnings: tuple[str, ...]


@dataclass
class _Collector:
    root: Path
    found: dict[tuple[str, str], FoundImage] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seen_files: set[tuple[Path, str]] = field(default_factory=set)
    seen_paths: set[Path] = field(default_factory=set)

    def display(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def add(
        self, text: str, source: str, app: str, *, path: str, line: int | None = None, transport: str = ""
    ) -> None:
        try:
            ref = Reference.parse(text)
        except InvalidReference as err:
            where = f"{path}:{line}" if line else path
            detail = source.split(": ", 1)[1] if ": " in source else ""
            why = err.message.split(f"{text!r}: ", 1)[-1]
            raise ImageDiscoveryError(
                f"{where}: invalid image reference {text!r}{f' at {detail}' if detail else ''}: {why}",
                path=path,
                line=line,
                hint="list images the cluster fills in at run time in an imageList file instead",
            ) from None
        if transport and ref.digest is not None:
            raise ImageDiscoveryError(
                f"{path}:{line}: {DAEMON_PREFIX}{text}: the Docker daemon's images are named NAME[:TAG], not by digest",
                path=path,
                line=line,
                hint=f"write {DAEMON_PREFIX}{ref.familiar_name}:TAG",
            )
        key = (str(ref), app)
        known = self.found.get(key)
        # An explicit docker-daemon entry wins over the same image named in a manifest or chart:
        # that is how one image of a context comes from the daemon and the rest from registries.
        if known is None or (transport and not known.transport):
            self.found[key] = FoundImage(str(ref), source, app, transport)

    def first_visit(self, path: Path, app: str) -> bool:
        key = (path, app)
        if key in self.seen_files:
            return False
        self.seen_files.add(key)
        self.seen_paths.add(path)
        return True

    # -- manifests --------------------------------------------------------------------------

    def manifest_file(self, path: Path, app: str) -> None:
        if not self.first_visit(path, app):
            return
        # A document without a container-list key cannot hold a container image: skip the
        # parse (a YAML parse of thousands of ConfigMaps costs seconds, a substring test not).
        try:
            raw = path.read_bytes()
        except OSError:
            raw = None  # load_documents reports it
        if raw is not None and not any(key in raw for key in _CONTAINER_KEYS):
            return
        shown = self.display(path)
        for n, doc in enumerate(load_documents(path, shown), start=1):
            label = _object_label(doc) or f"document {n}"
            for where, value in _container_images(doc, ""):
                source = f"{shown}: {label} {where}"
                if isinstance(value, str) and value.strip():
                    self.add(value.strip(), source, app, path=shown)
                else:
                    self.warnings.append(f"{source}: {value!r} is not an image reference; skipped")

    # -- image lists ------------------------------------------------------------------------

    def image_list(self, path: Path, app: str) -> None:
        if not self.first_visit(path, app):
            return
        shown = self.display(path)
        for lineno, raw in enumerate(read_text(path, shown).splitlines(), start=1):
            text = raw.split(" #", 1)[0].split("\t#", 1)[0].strip()
            if not text or text.startswith("#"):
                continue
            transport = ""
            if text.startswith(DAEMON_PREFIX):
                text, transport = text[len(DAEMON_PREFIX) :], DAEMON_PREFIX[:-1]
            self.add(text, f"{shown}:{lineno}", app, path=shown, line=lineno, transport=transport)

    # -- charts -----------------------------------------------------------------------------

    def chart(self, chart_dir: Path, app: str) -> None:
        if not self.first_visit(chart_dir, app):
            return
        scan = ChartScan()
        scan_chart(chart_dir, self.display, scan)
        self.warnings.extend(scan.warnings)
        for c in scan.candidates:
            at = f"{c.path}:{c.line}" if c.line else c.path
            source = f"{at}: {c.where}"
            if c.strict:
                self.add(c.text, source, app, path=c.path, line=c.line)
                continue
            try:
                Reference.parse(c.text)
            except InvalidReference as err:
                self.warnings.append(
                    f"{source}: rendered {c.text!r} is not a valid reference ({err.message})"
                )
                continue
            self.add(c.text, source, app, path=c.path, line=c.line)

    # -- trees ------------------------------------------------------------------------------

    def tree(self, top: Path, app: str, *, manifests: bool) -> None:
        """Charts anywhere under `top`; with manifests=True also every YAML/JSON file not in a chart."""
        if top.is_file():
            self.file(top, app)
            return
        if not top.is_dir():
            return
        for dirpath, dirnames, filenames in _walk(top):
            if is_chart(dirpath):
                self.chart(dirpath, app)
                dirnames.clear()
                continue
            for name in filenames:
                if manifests or name == IMAGE_LIST or name.endswith((".tgz", ".tar.gz")):
                    self.file(dirpath / name, app)

    def file(self, path: Path, app: str) -> None:
        if path.name == IMAGE_LIST:
            self.image_list(path, app)
        elif path.name.endswith(MANIFEST_SUFFIXES):
            self.manifest_file(path, app)
        elif path.name.endswith((".tgz", ".tar.gz")):
            self.warnings.append(
                f"{self.display(path)}: packaged chart not inspected; unpack it to bundle its images"
            )


def _walk(top: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """os.walk in sorted order, not following symlinked directories."""
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames.sort()
        yield Path(dirpath), dirnames, sorted(f for f in filenames if not os.path.islink(Path(dirpath, f)))


def _object_label(doc: Any) -> str:
    if not isinstance(doc, Mapping):
        return ""
    kind = doc.get("kind")
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if isinstance(kind, str) and name is not None:
        return f"{kind}/{name}"
    return kind if isinstance(kind, str) else ""


def _container_images(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """(path, image value) for each item of a container list anywhere below `node`."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            child = f"{where}.{key}" if where else str(key)
            if key in CONTAINER_LISTS and isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, Mapping) and "image" in item:
                        yield f"{child}[{i}].image", item["image"]
            yield from _container_images(value, child)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _container_images(item, f"{where}[{i}]")


def _app_of(rel: tuple[str, ...]) -> str:
    if len(rel) > len(APPS_DIR) + 1 and rel[: len(APPS_DIR)] == APPS_DIR:
        return rel[len(APPS_DIR)]
    return ""


def discover(root: Path, *, apps: Mapping[str, Sequence[Path]] | None = None) -> Discovery:
    """Find the images the files under `root` (laid out like the image rootfs) reference.

    `apps` maps an app name to its files or directories (relative to `root` or absolute), for
    apps whose files do not sit under `application/apps/<name>/`. ImageDiscoveryError on
    unreadable YAML (file, line, column) and on invalid references (file and value).
    """
    collector = _Collector(root)
    collector.tree(root / "manifests", "", manifests=True)
    collector.tree(root / "charts", "", manifests=False)
    apps_root = root.joinpath(*APPS_DIR)
    if apps_root.is_dir():
        for app_dir in sorted(apps_root.iterdir()):
            if app_dir.is_dir() and not app_dir.is_symlink():
                collector.tree(app_dir, app_dir.name, manifests=True)
    for name, paths in sorted((apps or {}).items()):
        for path in paths:
            collector.tree(path if path.is_absolute() else root / path, name, manifests=True)
    for dirpath, dirnames, filenames in _walk(root):
        if dirpath == root:
            dirnames[:] = [d for d in dirnames if d not in SKIPPED_TOP_DIRS]
        path = dirpath / IMAGE_LIST
        if IMAGE_LIST in filenames and path not in collector.seen_paths:
            collector.image_list(path, _app_of(path.relative_to(root).parts))
    images = sorted(collector.found.values(), key=lambda f: (f.app_name, f.image))
    return Discovery(tuple(images), tuple(collector.warnings))


class _AbsoluteCollector(_Collector):
    """Names files by their real (absolute) path: the user's context files."""

    def display(self, path: Path) -> str:
        return str(path)


def discover_files(files: Mapping[str, Path]) -> Discovery:
    """Discovery over a rootfs made of pieces: archive path -> the real file that lands there.

    A build knows its layers as such a mapping (COPY entries map image paths to context files;
    an unpacked RUN layer maps to its diff dir), so no directory has to be laid out first. The
    rules are those of `discover`: manifests under `manifests/` and each app's directory,
    charts (a directory with Chart.yaml, values.yaml and templates/ -- read from the real
    directory its Chart.yaml sits in), and `imageList` files anywhere but `registry/`.
    """
    collector = _AbsoluteCollector(Path("/"))
    names = sorted(files)
    chart_roots: list[str] = []
    for name in names:
        parent, _, base = name.rpartition("/")
        if (
            base == "Chart.yaml"
            and parent
            and is_chart(files[name].parent)
            and not any(parent.startswith(root + "/") for root in chart_roots)
        ):
            chart_roots.append(parent)
    for root in chart_roots:
        parts = tuple(root.split("/"))
        if parts[0] == "charts" or _app_of(parts):
            collector.chart(files[f"{root}/Chart.yaml"].parent, _app_of(parts))
    for name in names:
        parts = tuple(name.split("/"))
        if parts[0] in SKIPPED_TOP_DIRS or any(name.startswith(root + "/") for root in chart_roots):
            continue
        app = _app_of(parts)
        if parts[-1] == IMAGE_LIST:
            collector.image_list(files[name], app)
        elif (parts[0] == "manifests" or app) and name.endswith(MANIFEST_SUFFIXES):
            collector.manifest_file(files[name], app)
    images = sorted(collector.found.values(), key=lambda f: (f.app_name, f.image))
    return Discovery(tuple(images), tuple(collector.warnings))


def discover_images(root: Path, *, apps: Mapping[str, Sequence[Path]] = {}) -> list[FoundImage]:
    """`discover(root, apps=apps).images` as a list; each warning is logged at WARNING level."""
    result = discover(root, apps=apps)
    for warning in result.warnings:
        log.warning("image discovery: %s", warning)
    return list(result.images)
