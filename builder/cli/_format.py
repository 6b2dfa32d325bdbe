"""`--format` for `inspect` and `images`: Go text/template over the JSON document, as docker does.

Field names match case-insensitively and without `_`/`-` (`.ImageExtension.Launch.AppNames`
reads `imageExtension.launch.app_names`), and `.Layers.1` indexes a list, so the names docker
and sealer users know work on sealer's JSON. A missing field is an error (docker: "can't
evaluate field"); a missing map key through `index` is `<no value>`. `json` alone prints JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from builder._gotemplate import Dialect, Template, parse
from builder._gotemplate_funcs import builtin_functions, go_text, to_json
from builder.errors import TemplateError


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _lookup(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        if name in value:
            return value[name]
        matches = [k for k in value if _norm(str(k)) == _norm(name)]
        if matches:
            return value[matches[0]]
        raise TemplateError(
            f"can't evaluate field {name}",
            hint=f"fields here: {', '.join(sorted(map(str, value))) or '(none)'}",
        )
    if isinstance(value, list) and name.isdigit():
        if int(name) < len(value):
            return value[int(name)]
        raise TemplateError(f"index out of range: {name}")
    raise TemplateError(f"can't evaluate field {name} in type {type(value).__name__}")


def _show(value: Any) -> str:
    return go_text(value, nil="<no value>")


DIALECT = Dialect(builtin_functions(_show), _lookup, _show)


def parse_format(template: str) -> Template:
    """Parse a `--format` template (before any work: a typo fails at once)."""
    return parse(template, DIALECT.functions, source="--format")


def render_parsed(template: Template, doc: Any) -> str:
    return template.execute(doc, DIALECT)


def render_format(template: str, doc: Any) -> str:
    """`doc` rendered by the Go template `template` (`json` alone: the document as JSON)."""
    if template.strip() == "json":
        return to_json(doc)
    return render_parsed(parse_format(template), doc)


__all__ = ["TemplateError", "parse_format", "render_format", "render_parsed", "to_json"]
