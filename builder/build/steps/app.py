"""APP, CNI and CSI: an application's files under `application/apps/<name>/` and its type.

The type is detected as sealer does (build/kubefile/parser/utils.go), with one correction:
sealer tests "all YAML" before "helm chart", so a chart whose files are all YAML was taken for
plain manifests; here a directory with Chart.yaml, values.yaml and templates/ is a helm chart
first. Then: only .yaml/.yml files -> kube (launch files: the sources); .sh files -> shell
(launch files: the scripts). Anything else is an error naming the app.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from builder.build.context import BuildContext, ContextSource
from builder.build.steps.copy import merge_entries, source_entries
from builder.errors import AppTypeError
from builder.layers.tarwriter import TarEntry

APP_ROOT = "application/apps"


@dataclass(frozen=True, slots=True)
class AppFiles:
    entries: list[TarEntry]
    app_type: str  # kube | helm | shell
    launch_files: tuple[str, ...]  # relative to the app's directory


def _is_chart(path: Path) -> bool:
    return (
        (path / "Chart.yaml").is_file() and (path / "values.yaml").is_file() and (path / "templates").is_dir()
    )


def _files_below(path: Path) -> list[str]:
    if not path.is_dir():
        return [path.name]
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        rel = os.path.relpath(dirpath, path)
        for name in sorted(filenames):
            out.append(name if rel == "." else posixpath.join(rel.replace(os.sep, "/"), name))
    return out


def detect_app_type(name: str, sources: list[ContextSource]) -> tuple[str, tuple[str, ...]]:
    """(type, launch files relative to the app directory) for the resolved sources."""
    if any(s.is_dir and _is_chart(s.path) for s in sources):
        return "helm", tuple(s.path.name for s in sources)
    placed: list[tuple[str, str]] = []  # (path under the app dir, file name)
    for s in sources:
        if s.is_dir:
            placed.extend((f, posixpath.basename(f)) for f in _files_below(s.path))
        else:
            placed.append((s.path.name, s.path.name))
    suffixes = {posixpath.splitext(fname)[1].lower() for _, fname in placed}
    if placed and suffixes <= {".yaml", ".yml"}:
        return "kube", tuple(s.path.name for s in sources)
    shell = tuple(p for p, fname in placed if fname.lower().endswith(".sh"))
    if shell:
        return "shell", shell
    raise AppTypeError(
        f"cannot tell the type of app {name!r}: its files are neither a helm chart, nor only YAML, nor shell scripts",
        hint="an app is a helm chart directory, Kubernetes YAML files, or .sh scripts",
    )


def app_files(context: BuildContext, name: str, sources: tuple[str, ...], scratch: Path) -> AppFiles:
    """Resolve the app's sources and lay them out under application/apps/<name>/."""
    resolved: list[ContextSource] = []
    for src in sources:
        if src.startswith("local://"):
            resolved.extend(context.resolve(src.removeprefix("local://")))
        else:
            from builder.build._fetch import fetch_url  # urllib is slow to import

            fetched = fetch_url(src, scratch / "apps" / name)
            resolved.append(ContextSource(src, fetched, fetched.is_dir()))
    app_type, launch = detect_app_type(name, resolved)
    target = posixpath.join(APP_ROOT, name)
    groups = []
    for source in resolved:
        # A directory source keeps its name under the app dir (sealer copies with `COPY src app/`).
        dest = posixpath.join(target, source.path.name) if source.is_dir else target
        groups.append(source_entries(context, source, dest, chmod=None, into_dir=not source.is_dir))
    return AppFiles(merge_entries(groups), app_type, launch)
