"""Images of a Helm chart directory, found without Helm: its values and its templates.

values.yaml is walked as YAML: an `image` key whose value is a string, or a mapping with
`repository` (or ingress-nginx's `image`) plus optional `registry`, `tag`, `digest`; a missing
tag is Chart.yaml's `appVersion`, and bitnami's `global.imageRegistry` overrides `registry`.
templates/**/*.yaml are read line by line as the YAML they render to: only `image:` keys of the
items of a `containers`, `initContainers` or `ephemeralContainers` list count, block scalars
(ConfigMap payloads such as istio's injection template or KubeVela's CUE) are skipped, and
`{{ if }}`/`{{ with }}`/`{{ range }}`/`{{ define }}` lines steer a scope stack so that `.` means
what it means to Helm. Each value is rendered by `_gotemplate`; what it cannot evaluate becomes
a warning, never a guessed image. Subcharts under `charts/` get their own values merged with the
parent's `<name>` (or alias) section and `global`, as Helm merges them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from builder.build.bundle._gotemplate import (
    ACTION,
    COMMENT,
    UNKNOWN,
    Scope,
    Unresolvable,
    evaluate,
    is_empty,
    render,
    split_keyword,
)
from builder.build.bundle._yaml import load_mapping, read_text

CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
TEMPLATE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Candidate:
    """An image text found in a chart, before reference parsing.

    `strict`: an invalid reference is an error (a literal in values or a template) rather than
    a warning (a rendered expression whose inputs may come from `--set` at install time).
    """

    text: str
    path: str  # as shown to users: context-relative
    where: str
    line: int | None
    strict: bool


@dataclass
class ChartScan:
    candidates: list[Candidate] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def deep_merge(base: Any, override: Any) -> Any:
    """Helm's coalescing of values: maps merge key by key, anything else is replaced."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = dict(base)
        for key, value in override.items():
            out[key] = deep_merge(base.get(key), value) if key in base else value
        return out
    return base if override is None else override


# --- values.yaml -------------------------------------------------------------------------


def _image_from_mapping(node: Mapping[str, Any], app_version: str, global_registry: str) -> str | None:
    repository = node.get("repository")
    if not isinstance(repository, str) or not repository:
        repository = node.get("image") if isinstance(node.get("image"), str) else None
    if not repository:
        return None
    registry = global_registry or node.get("registry") or ""
    tag = node.get("tag")
    tag_text = "" if is_empty(tag) and tag != 0 else str(tag)
    digest = node.get("digest") or ""
    text = f"{registry}/{repository}" if registry else repository
    has_tag = ":" in text.rsplit("/", 1)[-1]
    if not tag_text and not digest and not has_tag:
        tag_text = app_version
    if tag_text and not has_tag:
        text += f":{tag_text}"
    if digest:
        text += f"@{digest}"
    return text


def _walk_values(
    node: Any, where: str, app_version: str, global_registry: str
) -> Iterator[tuple[str, str | None]]:
    """(where, image text or None for an unusable `image` value) for every image in `node`."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            child = f"{where}.{key}" if where else str(key)
            if key == "image":
                if isinstance(value, str):
                    if value.strip():
                        yield child, value.strip()
                    continue
                if isinstance(value, Mapping):
                    text = _image_from_mapping(value, app_version, global_registry)
                    if text is not None:
                        yield child, text
                        continue
            yield from _walk_values(value, child, app_version, global_registry)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk_values(item, f"{where}[{i}]", app_version, global_registry)


def scan_values(values: Mapping[str, Any], app_version: str, values_path: str, out: ChartScan) -> None:
    global_ = values.get("global")
    global_registry = ""
    if isinstance(global_, Mapping) and isinstance(global_.get("imageRegistry"), str):
        global_registry = global_["imageRegistry"]
    for where, text in _walk_values(values, "", app_version, global_registry):
        if text is None:
            continue
        if "{{" in text:
            out.warnings.append(f"{values_path}: {where}: template {text!r} in values is not evaluated")
            continue
        out.candidates.append(Candidate(text, values_path, where, None, True))


# --- templates ---------------------------------------------------------------------------

_KEY = re.compile(
    r"^(?P<indent> *)(?P<dash>- +)?(?P<key>[A-Za-z_][\w.-]*|\"[^\"]*\"|'[^']*')\s*:(?:\s+(?P<value>.*))?$"
)
_DASH = re.compile(r"^(?P<indent> *)- *(?P<rest>.*)$")
_BLOCK_SCALAR = re.compile(r"[|>][-+0-9]*\s*(?:#.*)?$")


@dataclass
class _Frame:
    keyword: str
    active: bool
    taken: bool | None  # None: the condition could not be evaluated
    saved_dot: Any


@dataclass
class _ListBlock:
    key: str
    key_indent: int
    item_indent: int | None = None
    item_key_col: int | None = None


class _TemplateScan:
    def __init__(self, path: str, scope: Scope, out: ChartScan) -> None:
        self.path = path
        self.scope = scope
        self.out = out
        self.frames: list[_Frame] = []
        self.block: _ListBlock | None = None
        self.scalar_indent: int | None = None  # inside a block scalar deeper than this

    def active(self) -> bool:
        return all(f.active for f in self.frames)

    def run(self, text: str) -> None:
        text = COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for lineno, line in enumerate(text.splitlines(), start=1):
            try:
                self.line(lineno, line.rstrip())
            except Unresolvable as err:
                self.out.warnings.append(f"{self.path}:{lineno}: {err}")

    def control(self, lineno: int, line: str) -> bool:
        """Handle a line made only of actions; True when it was one."""
        if ACTION.sub("", line).strip():
            return False
        for m in ACTION.finditer(line):
            self.action(lineno, m.group(2))
        return True

    def action(self, lineno: int, expr: str) -> None:
        keyword, rest = split_keyword(expr)
        dot = self.scope.dot
        if keyword in ("if", "with", "range", "define", "block"):
            if keyword in ("define", "block"):
                self.frames.append(_Frame(keyword, False, None, dot))
                return
            value: Any = UNKNOWN
            if keyword != "range" and self.active():
                try:
                    value = evaluate(rest, self.scope)
                except Unresolvable:
                    value = UNKNOWN
            taken = None if value is UNKNOWN else not is_empty(value)
            # An unknown condition keeps both branches: more images, never a wrong one.
            self.frames.append(_Frame(keyword, taken is not False, taken, dot))
            if keyword == "with":
                self.scope.dot = value if taken is not False else dot
            elif keyword == "range":
                self.scope.dot = UNKNOWN
        elif keyword in ("else", "else if", "else with"):
            if not self.frames:
                return
            frame = self.frames[-1]
            self.scope.dot = frame.saved_dot
            if frame.taken is True:
                frame.active = False
                return
            value = True
            if keyword != "else":
                try:
                    value = evaluate(rest, self.scope)
                except Unresolvable:
                    value = UNKNOWN
            taken = None if value is UNKNOWN else not is_empty(value)
            frame.active = taken is not False and frame.keyword != "define"
            frame.taken = True if taken else frame.taken if frame.taken is None else taken
            if keyword == "else with" and taken:
                self.scope.dot = value
            elif frame.keyword == "range":
                self.scope.dot = UNKNOWN if keyword != "else" else frame.saved_dot
        elif keyword == "end":
            if self.frames:
                self.scope.dot = self.frames.pop().saved_dot
        elif not keyword and self.active():
            self.inline_value(lineno, expr)

    def inline_value(self, lineno: int, expr: str) -> None:
        """`{{ toYaml .Values.sidecars | nindent 8 }}` inside a container list, or `$x := ...`."""
        if self.block is not None and "toYaml" in expr:
            pipeline = re.sub(r"\|\s*n?indent\s+\d+\s*$", "", expr.strip())
            try:
                value = evaluate(pipeline, self.scope)
            except Unresolvable as err:
                self.out.warnings.append(f"{self.path}:{lineno}: {self.block.key}: {err}")
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, Mapping) and isinstance(item.get("image"), str):
                        where = f"{self.block.key}[] from {pipeline.strip()}[{i}].image"
                        self.out.candidates.append(Candidate(item["image"], self.path, where, lineno, True))
            return
        if re.match(r"\s*\$\w*\s*:?=", expr):
            try:
                evaluate(expr, self.scope)
            except Unresolvable:
                name = expr.split(":=")[0].split("=")[0].strip()
                self.scope.variables[name] = UNKNOWN

    def line(self, lineno: int, line: str) -> None:
        if not line.strip() or line.lstrip().startswith("#"):
            return
        if line.strip() == "---" or line.startswith("--- "):
            self.block, self.scalar_indent = None, None
            return
        if self.control(lineno, line):
            return
        indent = len(line) - len(line.lstrip(" "))
        if self.scalar_indent is not None:
            if indent > self.scalar_indent:
                return
            self.scalar_indent = None
        if not self.active():
            return
        key_match = _KEY.match(line)
        dash_match = _DASH.match(line)
        self.track_list(indent, key_match, dash_match)
        if key_match is not None:
            value = key_match.group("value") or ""
            if _BLOCK_SCALAR.match(value.strip()):
                self.scalar_indent = indent
                return
            key = key_match.group("key").strip("\"'")
            if key in CONTAINER_LISTS and not value.strip():
                self.block = _ListBlock(key, indent)
                return
            if key == "image" and self.block is not None and self.block.item_key_col is not None:
                col = len(key_match.group("indent")) + len(key_match.group("dash") or "")
                if col == self.block.item_key_col:
                    self.image_value(lineno, value)

    def track_list(
        self, indent: int, key_match: re.Match[str] | None, dash_match: re.Match[str] | None
    ) -> None:
        block = self.block
        if block is None:
            return
        is_item = dash_match is not None
        if block.item_indent is None:
            if is_item and indent >= block.key_indent:
                block.item_indent = indent
            elif indent <= block.key_indent:
                self.block = None
                return
        if indent < block.key_indent or (
            indent == block.key_indent and not (is_item and block.item_indent == indent)
        ):
            self.block = None
            return
        if is_item and indent == block.item_indent and key_match is not None:
            block.item_key_col = len(key_match.group("indent")) + len(key_match.group("dash") or "")
        elif is_item and indent == block.item_indent:
            block.item_key_col = None  # an item that is not a mapping

    def image_value(self, lineno: int, raw: str) -> None:
        assert self.block is not None
        where = f"{self.block.key}[].image"
        if "{{" not in raw:
            value = yaml.safe_load(raw) if raw.strip() else None
            if isinstance(value, str) and value.strip():
                self.out.candidates.append(Candidate(value.strip(), self.path, where, lineno, True))
            return
        try:
            rendered = render(raw, self.scope)
        except Unresolvable as err:
            raise Unresolvable(f"{where} {raw.strip()!r} not evaluated: {err}") from None
        try:
            value = yaml.safe_load(rendered) if rendered.strip() else None
        except yaml.YAMLError:
            raise Unresolvable(
                f"{where} {raw.strip()!r} renders to {rendered.strip()!r}, not an image"
            ) from None
        if not isinstance(value, str) or not value.strip():
            raise Unresolvable(f"{where} {raw.strip()!r} renders to {value!r}, not an image")
        self.out.candidates.append(Candidate(value.strip(), self.path, where, lineno, False))


def scan_template(path: str, text: str, root: Mapping[str, Any], out: ChartScan) -> None:
    _TemplateScan(path, Scope(root, root), out).run(text)


# --- a chart and its subcharts -----------------------------------------------------------


def is_chart(directory: Path) -> bool:
    return (directory / "Chart.yaml").is_file()


def scan_chart(
    chart_dir: Path,
    display: Callable[[Path], str],
    out: ChartScan,
    parent_values: Mapping[str, Any] | None = None,
) -> None:
    """Candidates of `chart_dir` and, recursively, of its unpacked subcharts."""
    chart = load_mapping(chart_dir / "Chart.yaml", display(chart_dir / "Chart.yaml"))
    values_file = chart_dir / "values.yaml"
    values: dict[str, Any] = {}
    if values_file.is_file():
        values = load_mapping(values_file, display(values_file))
    values = deep_merge(values, parent_values or {})
    app_version = chart.get("appVersion")
    app_version_text = "" if app_version is None else str(app_version)
    scan_values(values, app_version_text, display(values_file), out)
    root = {
        "Values": values,
        "Chart": {
            "Name": chart.get("name"),
            "Version": chart.get("version"),
            "AppVersion": app_version,
            "Description": chart.get("description"),
        },
    }
    templates = chart_dir / "templates"
    if templates.is_dir():
        for path in sorted(templates.rglob("*")):
            if path.suffix in TEMPLATE_SUFFIXES and path.is_file() and not path.is_symlink():
                scan_template(display(path), read_text(path, display(path)), root, out)
    aliases = {}
    for dep in chart.get("dependencies") or []:
        if isinstance(dep, Mapping) and isinstance(dep.get("name"), str):
            aliases[dep["name"]] = dep.get("alias") or dep["name"]
    sub_root = chart_dir / "charts"
    if not sub_root.is_dir():
        return
    for sub in sorted(sub_root.iterdir()):
        if sub.is_dir() and not sub.is_symlink() and is_chart(sub):
            name = load_mapping(sub / "Chart.yaml", display(sub / "Chart.yaml")).get("name") or sub.name
            section = values.get(aliases.get(str(name), str(name)))
            overrides: dict[str, Any] = dict(section) if isinstance(section, Mapping) else {}
            if isinstance(values.get("global"), Mapping):
                overrides["global"] = deep_merge(overrides.get("global") or {}, values["global"])
            scan_chart(sub, display, out, overrides)
        elif sub.suffix in (".tgz", ".tar.gz") or sub.name.endswith(".tar.gz"):
            out.warnings.append(
                f"{display(sub)}: packaged subchart not inspected; unpack it to bundle its images"
            )
