"""Helm's reading of the Go templates charts put in `image:` fields, on the shared engine.

The language is `builder._gotemplate` (the one engine of `--format` and `.tmpl` rendering);
this module adds what Helm means: the root is `.Values`/`.Chart` (`.Release`, `.Capabilities`
... are only known at install time), nil prints as "" (Helm strips `<no value>`), and the sprig
functions image fields commonly use (default, quote, squote, printf, toString, trim,
trimPrefix, trimSuffix, lower, upper, replace, required, coalesce, toYaml) next to the Go
builtins. Anything else (`include`, `template`, `tpl`, a range element, ...) raises
`Unresolvable`: the caller records nothing rather than a guess (sealer #1913, sealos #1487
bundled literal `{{ .ProxyImage }}` and CUE field names as images).

No code runs: there is no access to anything but the chart's values and Chart.yaml facts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from builder._gotemplate import Dialect, is_empty, parse
from builder._gotemplate import evaluate as evaluate_pipeline
from builder._gotemplate_funcs import helm_functions
from builder.errors import TemplateError

__all__ = ["ACTION", "COMMENT", "UNKNOWN", "Scope", "Unresolvable", "evaluate", "is_empty", "render"]


class Unresolvable(Exception):
    """The expression needs something this evaluator does not model; `str()` says what."""


ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)
COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", re.DOTALL)

_UNKNOWN_ROOTS = frozenset({"Release", "Capabilities", "Template", "Files", "Subcharts"})


class _Unknown:
    """The dot of a `range` body or a `define`: anything read from it is unresolvable."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Any = _Unknown()


@dataclass
class Scope:
    """What an expression sees: the root (`$`), the current dot, and `$variables`."""

    root: Mapping[str, Any]
    dot: Any
    variables: dict[str, Any] = field(default_factory=dict)


def render_scalar(value: Any) -> str:
    """How Helm prints a value: nil as "" (Helm strips `<no value>`), booleans in lower case."""
    if value is UNKNOWN:
        raise TemplateError("`.` is a range element or an unknown context")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise TemplateError("a map or list printed into a string")
    return str(value)


def _lookup(value: Any, name: str) -> Any:
    if value is UNKNOWN:
        raise TemplateError(f".{name} depends on a range element or an unknown context")
    if value is None:
        return None  # Helm renders a missing value as empty
    if isinstance(value, Mapping) and "Values" in value and name not in value:
        # The top level of a chart template is .Values, .Chart, .Release, ...; anything else
        # (istio's `.ProxyImage`) belongs to another templating layer.
        if name in _UNKNOWN_ROOTS:
            raise TemplateError(f".{name} is only known at install time")
        raise TemplateError(f".{name} is not a field of a chart template")
    if not isinstance(value, Mapping):
        raise TemplateError(f".{name} reads a field of a non-map value")
    return value.get(name)


def _unresolvable(err: TemplateError) -> Unresolvable:
    if err.detail.startswith("unclosed action"):
        return Unresolvable("an action spans several lines")
    m = re.fullmatch(r'function "(\w+)" not defined', err.detail)
    if m:  # a chart function (include, tpl, lookup, ...) that only Helm itself can run
        return Unresolvable(f"function {m.group(1)!r} is not evaluated")
    return Unresolvable(err.detail)


_DIALECT = Dialect(helm_functions(render_scalar), _lookup, render_scalar)


def evaluate(expr: str, scope: Scope) -> Any:
    """The value of one action's pipeline, e.g. `.Values.tag | default .Chart.AppVersion`;
    `$x := ...` sets `$x` in `scope.variables` and returns None."""
    variables = {**scope.variables, "$": scope.root}
    try:
        value = evaluate_pipeline(expr, _DIALECT, scope.dot, variables)
    except TemplateError as err:
        raise _unresolvable(err) from None
    scope.variables.update((k, v) for k, v in variables.items() if k != "$")
    return value


def split_keyword(expr: str) -> tuple[str, str]:
    """(`if`, `.Values.x`) for `if .Values.x`; ("", expr) for a plain pipeline."""
    m = re.match(r"(if|else\s+if|else\s+with|else|end|with|range|define|block|template|include)\b\s*", expr)
    if m is None:
        return "", expr
    return " ".join(m.group(1).split()), expr[m.end() :]


def render(text: str, scope: Scope) -> str:
    """Render one line of template text (if/else/with/range closed on the line); Unresolvable
    otherwise."""
    try:
        template = parse(text, _DIALECT.functions)
        return template.execute(scope.dot, _DIALECT, root=scope.root, variables=scope.variables)
    except TemplateError as err:
        raise _unresolvable(err) from None
