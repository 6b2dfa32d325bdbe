"""A small, safe evaluator for the Go-template expressions Helm charts put in `image:` fields.

It understands field paths (`.Values.a.b`, `$.Values.x`, `.` inside `with`), string and number
literals, `$var` set by `$var := ...`, parentheses, pipelines, and the functions image fields
commonly use: default, quote, squote, printf, print, toString, trim, trimPrefix, trimSuffix,
lower, upper, replace, required, coalesce, and/or/not/eq/ne (for `if`). Anything else
(`include`, `template`, `tpl`, `.Release`, `.Capabilities`, `range` elements, ...) raises
`Unresolvable`: the caller records nothing rather than a guess (sealer #1913, sealos #1487
bundled literal `{{ .ProxyImage }}` and CUE field names as images).

No code runs: there is no access to anything but the chart's values and Chart.yaml facts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


class Unresolvable(Exception):
    """The expression needs something this evaluator does not model; `str()` says what."""


ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)
COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", re.DOTALL)

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<assign>:=|=)
    | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[()|,])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str


def _tokenize(expr: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise Unresolvable(f"cannot read {expr[pos:]!r}")
        kind = m.lastgroup
        assert kind is not None
        out.append(_Tok(kind, m.group(kind)))
        pos = m.end()
    return out


def is_empty(value: Any) -> bool:
    """Go template truthiness, as `if` and `default` see it."""
    return value is None or value is False or value == 0 or (hasattr(value, "__len__") and len(value) == 0)


def render_scalar(value: Any) -> str:
    """How Helm prints a value: nil as "" (Helm strips `<no value>`), booleans in lower case."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise Unresolvable("a map or list printed into a string")
    return str(value)


_PRINTF_VERB = re.compile(r"%([-+# 0]*\d*(?:\.\d+)?)([svdqtf%])")


def _printf(fmt: str, *args: Any) -> str:
    it = iter(args)

    def sub(m: re.Match[str]) -> str:
        verb = m.group(2)
        if verb == "%":
            return "%"
        try:
            arg = next(it)
        except StopIteration:
            raise Unresolvable(f"printf {fmt!r} has too few arguments") from None
        if verb == "q":
            return '"' + render_scalar(arg).replace("\\", "\\\\").replace('"', '\\"') + '"'
        if verb == "d" and isinstance(arg, int):
            return str(arg)
        return render_scalar(arg)

    return _PRINTF_VERB.sub(sub, fmt)


def _default(default: Any, *value: Any) -> Any:
    if not value or is_empty(value[0]):
        return default
    return value[0]


def _required(message: Any, value: Any) -> Any:
    if is_empty(value):
        raise Unresolvable(f"required value is not set ({render_scalar(message)})")
    return value


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if not is_empty(v)), None)


def _eq(first: Any, *others: Any) -> bool:
    return any(first == o for o in others)


FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "default": _default,
    "quote": lambda *a: " ".join('"' + render_scalar(x) + '"' for x in a),
    "squote": lambda *a: " ".join("'" + render_scalar(x) + "'" for x in a),
    "printf": lambda fmt, *a: _printf(render_scalar(fmt), *a),
    "print": lambda *a: "".join(render_scalar(x) for x in a),
    "toString": render_scalar,
    "trim": lambda s: render_scalar(s).strip(),
    "trimPrefix": lambda p, s: render_scalar(s).removeprefix(render_scalar(p)),
    "trimSuffix": lambda p, s: render_scalar(s).removesuffix(render_scalar(p)),
    "lower": lambda s: render_scalar(s).lower(),
    "upper": lambda s: render_scalar(s).upper(),
    "replace": lambda old, new, s: render_scalar(s).replace(render_scalar(old), render_scalar(new)),
    "required": _required,
    "coalesce": _coalesce,
    "and": lambda *a: next((x for x in a if is_empty(x)), a[-1] if a else None),
    "or": lambda *a: next((x for x in a if not is_empty(x)), a[-1] if a else None),
    "not": is_empty,
    "eq": _eq,
    "ne": lambda a, b: a != b,
    "toYaml": lambda v: v,  # structure is kept; only the caller decides what a list means
}


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


def _lookup(base: Any, names: list[str], text: str) -> Any:
    value = base
    for i, name in enumerate(names):
        if value is UNKNOWN:
            raise Unresolvable(f"{text} depends on a range element or an unknown context")
        if value is None:
            return None  # Helm renders a missing value as empty
        if i == 0 and isinstance(base, Mapping) and "Values" in base and name not in base:
            # The top level of a chart template is .Values, .Chart, .Release, ...; anything else
            # (istio's `.ProxyImage`) belongs to another templating layer.
            if name in _UNKNOWN_ROOTS:
                raise Unresolvable(f"{text} is only known at install time")
            raise Unresolvable(f"{text} is not a field of a chart template")
        if not isinstance(value, Mapping):
            raise Unresolvable(f"{text} reads a field of a non-map value")
        value = value.get(name)
    return value


class _Parser:
    def __init__(self, tokens: list[_Tok], scope: Scope, source: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.scope = scope
        self.source = source

    def peek(self) -> _Tok | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def pipeline(self) -> Any:
        value = self.command(None, piped=False)
        while (tok := self.peek()) is not None and tok.text == "|":
            self.pos += 1
            value = self.command(value, piped=True)
        return value

    def command(self, piped_value: Any, *, piped: bool) -> Any:
        tok = self.peek()
        if tok is None:
            raise Unresolvable(f"empty command in {self.source!r}")
        if tok.kind == "ident" and tok.text not in ("true", "false", "nil"):
            self.pos += 1
            fn = FUNCTIONS.get(tok.text)
            if fn is None:
                raise Unresolvable(f"function {tok.text!r} is not evaluated")
            args = list(self.operands())
            if piped:
                args.append(piped_value)
            try:
                return fn(*args)
            except TypeError:
                raise Unresolvable(f"{tok.text} called with {len(args)} arguments") from None
        if piped:
            raise Unresolvable(f"cannot pipe into {tok.text!r}")
        args = list(self.operands())
        if len(args) != 1:
            raise Unresolvable(f"unexpected arguments in {self.source!r}")
        return args[0]

    def operands(self) -> Iterator[Any]:
        while (tok := self.peek()) is not None and tok.text not in ("|", ")"):
            yield self.operand()

    def operand(self) -> Any:
        tok = self.peek()
        assert tok is not None
        self.pos += 1
        if tok.kind == "str":
            return bytes(tok.text[1:-1], "utf-8").decode("unicode_escape")
        if tok.kind == "raw":
            return tok.text[1:-1]
        if tok.kind == "num":
            return float(tok.text) if "." in tok.text else int(tok.text)
        if tok.kind == "ident":
            if tok.text in ("true", "false"):
                return tok.text == "true"
            if tok.text == "nil":
                return None
            raise Unresolvable(f"function {tok.text!r} used as an argument")
        if tok.kind == "field":
            if tok.text == ".":
                if self.scope.dot is UNKNOWN:
                    raise Unresolvable("`.` is a range element or an unknown context")
                return self.scope.dot
            return _lookup(self.scope.dot, tok.text[1:].split("."), tok.text)
        if tok.kind == "var":
            name, *names = tok.text.split(".")
            if name == "$":
                return _lookup(self.scope.root, names, tok.text)
            if name not in self.scope.variables:
                raise Unresolvable(f"variable {name} is not known here")
            return _lookup(self.scope.variables[name], names, tok.text)
        if tok.text == "(":
            value = self.pipeline()
            closing = self.peek()
            if closing is None or closing.text != ")":
                raise Unresolvable(f"unbalanced parentheses in {self.source!r}")
            self.pos += 1
            return value
        raise Unresolvable(f"unexpected {tok.text!r} in {self.source!r}")


def evaluate(expr: str, scope: Scope) -> Any:
    """The value of one action's pipeline, e.g. `.Values.tag | default .Chart.AppVersion`."""
    tokens = _tokenize(expr)
    if len(tokens) >= 2 and tokens[0].kind == "var" and tokens[1].kind == "assign":
        value = _Parser(tokens[2:], scope, expr).pipeline()
        scope.variables[tokens[0].text] = value
        return None
    parser = _Parser(tokens, scope, expr)
    value = parser.pipeline()
    if parser.pos != len(tokens):
        raise Unresolvable(f"cannot read {expr!r}")
    return value


def split_keyword(expr: str) -> tuple[str, str]:
    """(`if`, `.Values.x`) for `if .Values.x`; ("", expr) for a plain pipeline."""
    m = re.match(r"(if|else\s+if|else\s+with|else|end|with|range|define|block|template|include)\b\s*", expr)
    if m is None:
        return "", expr
    return " ".join(m.group(1).split()), expr[m.end() :]


def _segments(text: str) -> list[tuple[str, str]]:
    """("text", literal) and ("action", expr) pieces, with `{{-`/`-}}` whitespace trimming done."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in ACTION.finditer(text):
        literal = text[pos : m.start()]
        if m.group(1):
            literal = literal.rstrip()
        if out and out[-1][0] == "trim-next":
            out.pop()
            literal = literal.lstrip()
        out.append(("text", literal))
        out.append(("action", m.group(2)))
        if m.group(3):
            out.append(("trim-next", ""))
        pos = m.end()
    rest = text[pos:]
    if out and out[-1][0] == "trim-next":
        out.pop()
        rest = rest.lstrip()
    if "{{" in rest or "}}" in rest:
        raise Unresolvable("an action spans several lines")
    out.append(("text", rest))
    return [s for s in out if s != ("text", "")]


def render(text: str, scope: Scope) -> str:
    """Render one line of template text with inline if/else/with/end; Unresolvable otherwise."""
    out: list[str] = []
    # Each frame: (emitting, already_taken, saved_dot)
    frames: list[tuple[bool, bool, Any]] = []

    def emitting() -> bool:
        return all(f[0] for f in frames)

    for kind, content in _segments(COMMENT.sub("", text)):
        if kind == "text":
            if emitting():
                out.append(content)
            continue
        keyword, rest = split_keyword(content)
        if keyword in ("if", "with"):
            value = evaluate(rest, scope) if emitting() else None
            frames.append((not is_empty(value), not is_empty(value), scope.dot))
            if keyword == "with" and not is_empty(value):
                scope.dot = value
        elif keyword in ("else", "else if", "else with"):
            if not frames:
                raise Unresolvable("else without if")
            _, taken, saved = frames.pop()
            scope.dot = saved
            if taken:
                frames.append((False, True, saved))
                continue
            value = True if keyword == "else" else evaluate(rest, scope)
            frames.append((not is_empty(value), not is_empty(value), saved))
            if keyword == "else with" and not is_empty(value):
                scope.dot = value
        elif keyword == "end":
            if not frames:
                raise Unresolvable("end without if")
            scope.dot = frames.pop()[2]
        elif keyword:
            raise Unresolvable(f"{keyword!r} is not evaluated")
        elif emitting():
            out.append(render_scalar(evaluate(content, scope)))
    if frames:
        raise Unresolvable("if/with without end on the same line")
    return "".join(out)
